"""The blocking facade, shaped like ``torch.mtia``: ``import mtia_async.sync as mtia``.

A thin layer over the same core as ``mtia_async``: streams, events and arrays are the
same objects underneath (``Stream`` objects compare equal across facades). Only the
waiting calls differ: here they block the calling thread. Calling one from an event
loop thread, a trio task or inside a kernel raises ``RuntimeError`` instead of
deadlocking; use ``await`` with ``mtia_async`` there.
"""

from __future__ import annotations

from ._api import (
    StreamBase,
    StreamContext,
    configure,
    current_device,
    device,
    device_count,
    device_sync_marks,
    get_device_capability,
    get_device_properties,
    init,
    is_available,
    is_bf16_supported,
    is_initialized,
    launch,
    set_device,
    set_stream,
    stream,
)
from ._array import DeviceArray
from ._memory import (
    attach_out_of_memory_observer,
    dump_snapshot,
    empty_cache,
    max_memory_allocated,
    max_memory_reserved,
    mem_get_info,
    memory_allocated,
    memory_reserved,
    memory_stats,
    memory_summary,
    record_memory_history,
    reset_peak_memory_stats,
    snapshot,
)
from ._context import current_stream_impl, resolve_device
from ._random import (
    Generator,
    get_rng_state,
    get_rng_state_all,
    initial_seed,
    manual_seed,
    manual_seed_all,
    seed,
    seed_all,
    set_rng_state,
    set_rng_state_all,
)
from ._random_kernels import bernoulli, normal, rand, randint, randn, randperm, uniform
from ._event import EventBase
from ._exceptions import DeferredMtiaCallError, DeviceFailedError, KernelError, MTIAError, OutOfMemoryError
from ._factories import asarray, empty, full, ones, zeros
from ._log import set_debug_logging
from ._runtime import get_runtime
from ._wait import wait_mark_blocking, wait_marks_blocking

__all__ = sorted(
    [
        "DeferredMtiaCallError",
        "DeviceFailedError",
        "Event",
        "KernelError",
        "MTIAError",
        "OutOfMemoryError",
        "Stream",
        "StreamContext",
        "configure",
        "current_device",
        "current_stream",
        "default_stream",
        "device",
        "device_count",
        "get_device_capability",
        "get_device_properties",
        "init",
        "is_available",
        "is_bf16_supported",
        "is_initialized",
        "launch",
        "set_debug_logging",
        "set_device",
        "set_stream",
        "stream",
        "synchronize",
        "Generator",
        "get_rng_state",
        "get_rng_state_all",
        "initial_seed",
        "manual_seed",
        "manual_seed_all",
        "seed",
        "seed_all",
        "set_rng_state",
        "set_rng_state_all",
        "bernoulli",
        "normal",
        "rand",
        "randint",
        "randn",
        "randperm",
        "uniform",
        "DeviceArray",
        "asarray",
        "empty",
        "full",
        "ones",
        "zeros",
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
)


class Event(EventBase):
    """A marker in a stream's work (blocking facade); see ``mtia_async.Event``."""

    __slots__ = ()

    def synchronize(self) -> None:
        """Block until the recorded work is done (at once if never recorded).

        Raises:
            KernelError: a kernel before the record failed.
            RuntimeError: called on an event-loop thread or inside a kernel.
        """
        wait_mark_blocking(self._mark, "Event.synchronize()")


class Stream(StreamBase):
    """An in-order queue of kernels on one device (blocking facade)."""

    __slots__ = ()
    _event_class = Event

    def record_event(self, event: EventBase | None = None) -> Event:
        """Record ``event`` (a new ``Event`` if None) on this stream and return it."""
        result: Event = super().record_event(event)
        return result

    def synchronize(self) -> None:
        """Block until all work enqueued on this stream so far is done.

        Raises:
            KernelError: a kernel failed; the stream runs work launched after this wait.
            RuntimeError: called on an event-loop thread or inside a kernel.
        """
        wait_mark_blocking(self._impl.sync_mark(), "Stream.synchronize()")


def current_stream(device: object = None) -> Stream:
    """Return the current stream of ``device`` (default: current device) for this thread."""
    return Stream._wrap(current_stream_impl(device))


def default_stream(device: object = None) -> Stream:
    """Return the default stream (``stream_id == 0``) of ``device``."""
    rt = get_runtime()
    return Stream._wrap(rt.devices[resolve_device(device, rt)].default_stream)


def synchronize(device: object = None) -> None:
    """Block until all work on every stream of ``device`` (default: current) is done.

    Raises:
        KernelError: one or more kernels failed (all are reported, none lost).
        RuntimeError: called on an event-loop thread or inside a kernel.
    """
    wait_marks_blocking(device_sync_marks(device), "synchronize()")
