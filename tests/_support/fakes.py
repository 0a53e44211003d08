"""Fake streams and markers for testing the caching allocator in isolation.

``FakeStream`` has what the allocator needs of a stream (``stream_id``, ``marker()``);
while it is ``busy`` its markers stay pending until the test calls ``finish()``.
Used by ``test_allocator.py`` and by the ``alloc``/``s0`` fixtures of ``conftest.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from mtia_async.testing import check_invariants

__all__ = ["FakeMarker", "FakeStream", "checked", "stats_of"]


class FakeMarker:
    """A marker the test completes by hand (``complete``), or that ``wait`` completes."""

    def __init__(self, done: bool = False) -> None:
        self._lock = threading.Lock()
        self.done = done
        self._callbacks: list[Callable[[], None]] = []
        self.waited = False

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if not self.done:
                self._callbacks.append(fn)
                return
        fn()

    def complete(self) -> None:
        with self._lock:
            self.done = True
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn()

    def wait(self) -> None:
        """Waiting lets the stream finish its work (the work the marker is behind)."""
        self.waited = True
        self.complete()


class FakeStream:
    """A stream with an int ``stream_id``; while ``busy``, its markers stay pending."""

    def __init__(self, stream_id: int, busy: bool = False) -> None:
        self.stream_id = stream_id
        self.pool = stream_id  # the allocator's reuse key (a capturing stream's is its graph's pool)
        self.busy = busy
        self.markers: list[FakeMarker] = []

    def marker(self) -> FakeMarker:
        mark = FakeMarker(done=not self.busy)
        self.markers.append(mark)
        return mark

    def finish(self) -> None:
        """All queued work ran: complete every marker taken so far."""
        for mark in self.markers:
            mark.complete()


def stats_of(allocator: Any) -> dict[str, Any]:
    """``allocator.memory_stats()``."""
    stats: dict[str, Any] = allocator.memory_stats()
    return stats


def checked(allocator: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(stats, snapshot)`` taken atomically, after asserting the invariants M5 and M6 on them."""
    stats, snap = allocator.stats_and_snapshot()
    check_invariants(stats, snap)
    return stats, snap
