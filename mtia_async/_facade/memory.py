"""The memory API of both facades: statistics, caching, history and snapshots.

Thin functions over each device's ``CachingAllocator`` (``runtime.devices[i].allocator``).
None of them waits, so both facades export these very objects.

Before initialisation (as torch.mtia): ``memory_stats()`` returns ``{}``, the byte
counters return 0, ``reset_peak_memory_stats()`` and ``empty_cache()`` do nothing and
``snapshot()`` returns an empty snapshot, all without initialising the runtime (the
device argument is still validated). ``record_memory_history`` and
``attach_out_of_memory_observer`` initialise it, so no request is lost; so do
``mem_get_info`` and ``memory_summary``, which describe a live device.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .._core.context import resolve_device
from .._core.runtime import get_runtime, peek_config, state
from .._memory import CachingAllocator
from .._memory import dump_snapshot as _dump_snapshot
from .._memory.history import history_settings
from .._memory.snapshot import allocator_settings

__all__ = [
    "attach_out_of_memory_observer",
    "dump_snapshot",
    "empty_cache",
    "max_memory_allocated",
    "max_memory_reserved",
    "mem_get_info",
    "memory_allocated",
    "memory_reserved",
    "memory_stats",
    "memory_summary",
    "record_memory_history",
    "reset_peak_memory_stats",
    "snapshot",
]


def _allocator(device: object) -> CachingAllocator | None:
    """The allocator of ``device`` (validated), or None before init (without initialising)."""
    rt = state.runtime
    if rt is None:
        resolve_device(device)  # ValueError for a bad device, without initialising
        return None
    return rt.devices[resolve_device(device, rt)].allocator


def _live_allocator(device: object) -> CachingAllocator:
    """The allocator of ``device`` (validated), initialising the runtime."""
    rt = get_runtime()
    return rt.devices[resolve_device(device, rt)].allocator


def memory_stats(device: object = None) -> dict[str, Any]:
    """Return the allocator statistics of ``device`` (default: the current device).

    torch.cuda's flat keys (``allocated_bytes.all.current``, ``reserved_bytes.large_pool.peak``,
    ``num_ooms``, ...) plus torch.mtia's ``"dram"`` dict; ``{}`` before initialisation.

    Raises:
        ValueError: a bad device (the message names it and the valid range).
    """
    alloc = _allocator(device)
    return {} if alloc is None else dict(alloc.memory_stats())


def _stat(device: object, key: str) -> int:
    alloc = _allocator(device)
    return 0 if alloc is None else int(alloc.memory_stats()[key])


def memory_allocated(device: object = None) -> int:
    """Return the bytes held by live arrays on ``device`` (0 before initialisation)."""
    return _stat(device, "allocated_bytes.all.current")


def max_memory_allocated(device: object = None) -> int:
    """Return the peak of ``memory_allocated`` since init or the last reset, in bytes."""
    return _stat(device, "allocated_bytes.all.peak")


def memory_reserved(device: object = None) -> int:
    """Return the bytes the caching allocator holds in segments on ``device``."""
    return _stat(device, "reserved_bytes.all.current")


def max_memory_reserved(device: object = None) -> int:
    """Return the peak of ``memory_reserved`` since init or the last reset, in bytes."""
    return _stat(device, "reserved_bytes.all.peak")


def reset_peak_memory_stats(device: object = None) -> None:
    """Set every peak statistic of ``device`` to its current value (no-op before init)."""
    alloc = _allocator(device)
    if alloc is not None:
        alloc.reset_peak_memory_stats()


def mem_get_info(device: object = None) -> tuple[int, int]:
    """Return ``(free, total)`` bytes of ``device``: free is what is not reserved."""
    free, total = _live_allocator(device).mem_get_info()
    return int(free), int(total)


def memory_summary(device: object = None, abbreviated: bool = False) -> str:
    """Return the statistics of ``device`` as torch.cuda.memory_summary()'s table.

    Args:
        device: the device (default: the current device).
        abbreviated: only the ``all`` row of each metric, without the per-pool rows.

    Raises:
        ValueError: a bad device.
        TypeError: ``abbreviated`` is not a bool.
    """
    if not isinstance(abbreviated, bool):
        raise TypeError(f"abbreviated must be a bool, got {type(abbreviated).__name__} {abbreviated!r:.60}")
    return _live_allocator(device).memory_summary(abbreviated)


def empty_cache() -> None:
    """Release every cached segment with no block in use, on every device; never waits.

    A block whose free waits on another stream (``record_stream``) is released once
    that stream's work is done.
    """
    rt = state.runtime
    if rt is not None:
        for dev in rt.devices:
            if dev._allocator is not None:
                dev._allocator.empty_cache()


def record_memory_history(
    enabled: str | None = "all",
    stacks: str = "python",
    max_entries: int = 0,
    context: str | None = "all",
    skip_actions: list[str] | None = None,
) -> None:
    """Start, change or stop recording allocation history on every device.

    Args:
        enabled: ``"all"`` (a trace of every action, and the stacks of live blocks),
            ``"state"`` (only the stacks of live blocks) or None (stop and clear).
        stacks: ``"python"`` or ``"all"``.
        max_entries: keep only the newest N trace entries per device; 0 keeps all.
        context: as torch: ``"all"``, ``"alloc"``, ``"state"`` record Python frames,
            None records none.
        skip_actions: trace actions to leave out, e.g. ``["free_requested"]``.

    Raises:
        ValueError: a bad argument (nothing changes).
    """
    history_settings(enabled, stacks, max_entries, context, skip_actions)  # validate before init
    rt = get_runtime()
    for dev in rt.devices:
        dev.allocator.record_memory_history(enabled, stacks, max_entries, context, skip_actions)


def snapshot() -> dict[str, Any]:
    """Return all devices' memory state as ``torch.cuda.memory._snapshot()`` does.

    Returns:
        ``{"segments": [...], "device_traces": [[...], ...], "allocator_settings": {...}}``:
        the segments of every device (each names its ``device``), one trace list per
        device and torch's allocator settings, which PyTorch's memory visualizer and
        ``torch.cuda._memory_viz`` read as is. No segments nor traces before initialisation.
    """
    rt = state.runtime
    if rt is None:
        traces: list[Any] = [[] for _ in range(peek_config().device_count)]
        return {"segments": [], "device_traces": traces, "allocator_settings": allocator_settings()}
    segments: list[Any] = []
    traces = []
    for dev in rt.devices:
        part = dev.allocator.snapshot()
        segments += part["segments"]
        traces += part["device_traces"]
    return {"segments": segments, "device_traces": traces, "allocator_settings": allocator_settings()}


def attach_out_of_memory_observer(observer: Callable[[int, int, int, int], object]) -> None:
    """Call ``observer(device, alloc_size, device_allocated, device_free)`` before each OOM.

    Applies to every device of the current runtime (initialising it).

    Raises:
        TypeError: ``observer`` is not callable.
    """
    if not callable(observer):
        raise TypeError(f"observer must be callable, got {type(observer).__name__} {observer!r:.60}")
    rt = get_runtime()
    for dev in rt.devices:
        dev.allocator.attach_out_of_memory_observer(observer)


def dump_snapshot(path: str | os.PathLike[str]) -> None:
    """Write ``snapshot()`` to ``path`` as a pickle that PyTorch's memory visualizer opens."""
    _dump_snapshot(snapshot(), path)
