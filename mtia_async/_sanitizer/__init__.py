"""The stream sanitizer: cross-stream data races and use after free, caught at the launch.

An :class:`~mtia_async._core.instrument.Observer` of the instruments layer. Modules:

* ``clocks``  — happens-before as vector clocks: per stream an epoch and what it is
  ordered after (events, stream waits), plus what the host knows completed;
* ``shadow``  — per allocation, the recent accesses (byte ranges, stream, epoch), frees
  and the reuse of freed memory;
* ``stacks``  — the launch stacks and kernel names a report shows, taken cheaply;
* ``report``  — ``UnsynchronizedAccessError`` / ``SanitizerWarning``;
* ``checker`` — the observer: every launch checked, then recorded;
* ``control`` — ``enable``/``disable``/``is_enabled``, ``MTIA_ASYNC_SANITIZE``.

docs/sanitizer.md says what it catches, how to read a report and what it costs.
"""

from __future__ import annotations

from .control import active, disable, enable, is_enabled, mode, suspended

__all__ = ["active", "disable", "enable", "is_enabled", "mode", "suspended"]
