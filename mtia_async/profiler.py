"""The profiler, modelled on ``torch.profiler``; a submodule of both facades (``mtia_async.sync.profiler`` is it too).

``profile()`` records what the runtime does: kernels on each stream and worker thread,
launches and the time kernels waited in their stream, event records and waits, host
waits, allocations (``profile_memory``) and ``record_function`` ranges. Then
``export_chrome_trace(path)`` writes a trace Perfetto (ui.perfetto.dev) and
chrome://tracing open, ``key_averages().table()`` prints statistics per kernel, and
``events()`` gives the raw events. See docs/profiling.md. This module only re-exports.
"""

from __future__ import annotations

from ._facade import set_public_module as _set_public_module
from ._profiler import DEFAULT_MAX_EVENTS as DEFAULT_MAX_EVENTS
from ._profiler import EventAverage as EventAverage
from ._profiler import EventAverages as EventAverages
from ._profiler import ProfilerEvent as ProfilerEvent
from ._profiler import profile as profile
from ._profiler import record_function as record_function

__all__ = ["DEFAULT_MAX_EVENTS", "EventAverage", "EventAverages", "ProfilerEvent", "profile", "record_function"]

_set_public_module(globals(), __all__, "mtia_async.profiler")
