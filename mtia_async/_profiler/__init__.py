"""The profiler (``mtia_async.profiler``): timelines per stream and worker, kernel statistics, user ranges.

``recorder`` is the instruments observer (the hot path: raw records into a ring buffer,
kernels wrapped to time them on the worker); ``naming`` names kernels as the user wrote
them; ``resolve`` turns raw records into ``events`` when results are read; ``chrome``
writes the Chrome Trace Event Format JSON that Perfetto opens; ``averages`` is
``key_averages()`` and its table; ``session`` holds ``profile`` and ``record_function``.
"""

from __future__ import annotations

from .averages import EventAverage as EventAverage
from .averages import EventAverages as EventAverages
from .events import ProfilerEvent as ProfilerEvent
from .session import DEFAULT_MAX_EVENTS as DEFAULT_MAX_EVENTS
from .session import profile as profile
from .session import record_function as record_function

__all__ = ["DEFAULT_MAX_EVENTS", "EventAverage", "EventAverages", "ProfilerEvent", "profile", "record_function"]
