"""What the caching allocator shows: statistics, the summary, observers, history, snapshots.

The read side of :class:`~mtia_async._memory.allocator.CachingAllocator`, its base
class: every method here takes the allocator's lock through ``_locked()`` and first
brings the cache to the form it is observed in (``_refresh()``: pending frees that
completed are reclaimed, free chunks coalesced, fragmentation sampled), so what is read
is torch's coalesced layout, taken at one instant.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

from .blocks import Chunk, Observer
from .history import Trace, capture_frames, history_settings, trace_entry
from .segments import SegmentCache
from .snapshot import allocator_settings, render_segment
from .stats import Counters, build_stats
from .summary import format_summary

__all__ = ["AllocatorViews"]


class AllocatorViews(SegmentCache):
    """The read side of the caching allocator (the subclass owns the state it reads)."""

    _lock: threading.RLock
    _small: Counters
    _large: Counters
    _all: Counters
    _pending: dict[Chunk, None]
    _observers: list[Observer]
    _context: int
    _frames: bool

    def _locked(self) -> AbstractContextManager[None]:
        """Hold the allocator's lock (the subclass's; see ``CachingAllocator._locked``)."""
        raise NotImplementedError

    def _refresh(self) -> None:
        """Bring the cache to the form it is observed in (see the module docstring)."""
        raise NotImplementedError

    def _reclaim_done(self) -> None:
        """Complete the pending frees whose streams' work is done."""
        raise NotImplementedError

    # --- statistics ------------------------------------------------------------------
    def memory_stats(self) -> dict[str, Any]:
        """Return torch.cuda's flat statistics and torch.mtia's ``"dram"`` dict.

        Returns:
            The keys described in the module docstring, sorted, then ``"dram"``.
        """
        with self._locked():
            self._refresh()
            return build_stats(self._small, self._large, self._all, self._slow, self._counts)

    def allocated_bytes(self) -> int:
        """Bytes in live allocations (``allocated_bytes.all.current``), without building the statistics."""
        with self._locked():
            return self._all.nbytes

    def reserved_unlocked(self) -> int:
        """Reserved bytes now, read without the lock: the profiler's memory counter, from any thread.

        Two integer reads; a worker thread may call it (it never takes the allocator lock).
        A call changing the cache at that moment may be half seen: the value can lag by it.
        """
        return self._reserved()

    def reset_peak_memory_stats(self) -> None:
        """Set every peak to its current value; nothing else changes."""
        with self._locked():
            self._refresh()
            for counters in (self._small, self._large, self._all):
                counters.reset_peaks()
            for stat in self._slow.values():
                stat.reset_peaks()

    def mem_get_info(self) -> tuple[int, int]:
        """Return ``(free, total)`` in bytes: the capacity, less what is reserved, and the capacity."""
        with self._locked():
            if self._pending:
                self._reclaim_done()
            return self.capacity - self._reserved(), self.capacity

    def memory_summary(self, abbreviated: bool = False) -> str:
        """Return ``memory_stats()`` as the table of ``torch.cuda.memory_summary()``.

        Args:
            abbreviated: only the ``all`` row of each metric, as torch.
        """
        return format_summary(self.memory_stats(), self.device, abbreviated)

    def attach_out_of_memory_observer(self, observer: Observer) -> None:
        """Call ``observer(device, alloc_size, device_allocated, device_free)`` before each OOM.

        ``alloc_size`` is the segment that could not be reserved, ``device_allocated`` the
        bytes in live allocations, ``device_free`` the capacity not reserved. It runs
        without the allocator lock, so it may read statistics or take a snapshot; if it
        raises, the OutOfMemoryError is raised all the same, carrying that error.

        Args:
            observer: a callable taking four ints.

        Raises:
            TypeError: ``observer`` is not callable.
        """
        if not callable(observer):
            raise TypeError(f"observer must be callable, got {type(observer).__name__} {observer!r}")
        with self._lock:
            self._observers.append(observer)

    # --- history and snapshots -------------------------------------------------------
    def _capture(self) -> list[dict[str, Any]]:
        return capture_frames() if self._frames else []

    def record_memory_history(
        self,
        enabled: str | None = "all",
        stacks: str = "python",
        max_entries: int = 0,
        context: str | None = "all",
        skip_actions: list[str] | None = None,
    ) -> None:
        """Start, change or stop recording the allocation history.

        Args:
            enabled: ``"all"``: a trace of every action, and the stacks of live blocks;
                ``"state"``: only the stacks of live blocks; None: stop, clear the trace.
            stacks: ``"python"`` or ``"all"`` (the same here: there are no C++ frames).
            max_entries: keep only the newest N trace entries; 0 keeps them all.
            context: None records no Python frames; ``"all"``, ``"alloc"`` and
                ``"state"`` (torch's values) record them.
            skip_actions: trace actions to leave out (e.g. ``["free_requested"]``).

        Raises:
            ValueError: an argument is not an allowed value (nothing changes).
        """
        level, maxlen, frames, skip = history_settings(enabled, stacks, max_entries, context, skip_actions)
        with self._locked():
            trace = Trace(self._trace or (), maxlen, skip) if level == 2 else None  # first: it may fail
            self._context, self._frames, self._trace = level, frames, trace

    def snapshot(self) -> dict[str, Any]:
        """Return this device's ``torch.cuda.memory._snapshot()``.

        Returns:
            ``{"segments": [...], "device_traces": [[...]], "allocator_settings": {...}}``,
            of plain Python values.
        """
        with self._locked():
            self._refresh()
            return self._snapshot()

    def stats_and_snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(memory_stats(), snapshot())`` taken at one instant."""
        with self._locked():
            self._refresh()
            return build_stats(self._small, self._large, self._all, self._slow, self._counts), self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        segments = [render_segment(self.device, self._segments[addr]) for addr in sorted(self._segments)]
        trace: list[dict[str, Any]] = []
        if self._trace is not None:
            active = sum(seg["active_size"] for seg in segments)
            self._trace.append(trace_entry("snapshot", 0, active, 0, None))
            trace = [dict(entry) for entry in self._trace]
        return {"segments": segments, "device_traces": [trace], "allocator_settings": allocator_settings()}
