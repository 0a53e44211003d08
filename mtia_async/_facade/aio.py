"""The async facade's classes and waiting functions: every wait is ``await``-ed."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from .._arrays.array import DeviceArray
from .._arrays.functions import sized
from .._arrays.functions.indexing import index_plan
from .._core.wait import wait_mark_async, wait_marks_async
from .common import StreamBase, device_sync_marks, stream_getters
from .event import EventBase

__all__ = [
    "Event",
    "Stream",
    "argwhere",
    "current_stream",
    "default_stream",
    "flatnonzero",
    "getitem",
    "histogram",
    "nonzero",
    "synchronize",
    "unique",
]


class Event(EventBase):
    """A marker in a stream's work: record, query, wait, time, and ``await``.

    Args:
        enable_timing: record timestamps so ``elapsed_time`` works.
        blocking: accepted for torch compatibility (waits never spin here).
        interprocess: must be False.
    """

    __slots__ = ()

    async def synchronize(self) -> None:
        """Wait until the recorded work is done (at once if never recorded).

        Raises:
            KernelError: a kernel before the record failed.
        """
        mark = self._mark
        if mark is not None:
            await wait_mark_async(mark, "Event.synchronize()")

    def __await__(self) -> Generator[Any, None, None]:
        """``await e`` is ``await e.synchronize()``."""
        return self.synchronize().__await__()


class Stream(StreamBase[Event]):
    """An in-order queue of kernels on one device; see the module docs.

    Args:
        device: None (current), an int, ``"mtia:N"`` or a device object.
        priority: 0 (normal) to -3 (highest); out-of-range values are clamped.
    """

    __slots__ = ()
    _event_class = Event

    async def synchronize(self) -> None:
        """Wait until all work enqueued on this stream so far is done.

        Costs no thread hop on a drained stream.

        Raises:
            KernelError: a kernel failed; the stream runs work launched after this wait.
        """
        mark = self._impl.sync_mark()
        if mark is not None:
            await wait_mark_async(mark, "Stream.synchronize()")


current_stream, default_stream = stream_getters(Stream)


async def synchronize(device: object = None) -> None:
    """Wait for all work on every stream of ``device`` (default: current device).

    Raises:
        KernelError: one or more kernels failed (all are reported, none lost).
    """
    await wait_marks_async(device_sync_marks(device))


# --- results sized by the data (docs/arrays.md, "What synchronises") -------------------------------
async def nonzero(a: DeviceArray) -> tuple[DeviceArray, ...]:
    """The indices of the non-zero elements, one intp DeviceArray per axis, as ``numpy.nonzero``.

    ``a`` is copied to the host (in stream order) and the indices back; the loop runs
    meanwhile. ``numpy.nonzero(a)`` itself would block, and raises ``RuntimeError`` here.

    Raises:
        ValueError: ``a`` is 0-d (numpy's error).
        KernelError: a kernel before the call failed on that stream.
    """
    result: tuple[DeviceArray, ...] = await sized.awaited(sized.nonzero_plan(a))
    return result


async def argwhere(a: DeviceArray) -> DeviceArray:
    """The indices of the non-zero elements as rows, shape ``(N, a.ndim)``, as ``numpy.argwhere``."""
    result: DeviceArray = await sized.awaited(sized.argwhere_plan(a))
    return result


async def flatnonzero(a: DeviceArray) -> DeviceArray:
    """The indices of the non-zero elements of the flattened array, as ``numpy.flatnonzero``."""
    result: DeviceArray = await sized.awaited(sized.flatnonzero_plan(a))
    return result


async def unique(ar: DeviceArray, return_index: bool = False, return_inverse: bool = False, return_counts: bool = False,
                 axis: Any = None, *, equal_nan: bool = True, sorted: bool = True) -> Any:  # fmt: skip
    """The sorted unique elements (and the optional index, inverse and counts arrays), as ``numpy.unique``.

    Raises:
        AxisError: a bad ``axis`` (numpy's error).
        KernelError: a kernel before the call failed on that stream.
    """
    plan = sized.unique_plan(ar, return_index, return_inverse, return_counts, axis, equal_nan=equal_nan, sorted=sorted)
    return await sized.awaited(plan)


async def histogram(a: Any, bins: Any = 10, range: Any = None, density: Any = None, weights: Any = None) -> Any:
    """``(hist, bin_edges)`` as ``numpy.histogram``: two **host** numpy arrays.

    ``bins`` is an int, a bin-estimator name or a host sequence of edges; ``weights`` a
    DeviceArray of the same device or host data.

    Raises:
        ValueError: bad bins, range or weights (numpy's errors).
    """
    return await sized.awaited(sized.histogram_plan(a, bins, range, density, weights))


async def getitem(a: DeviceArray, index: Any) -> DeviceArray:
    """``a[index]`` for any index, awaiting the one kind that must wait: a boolean DeviceArray mask.

    ``a[mask]`` with a DeviceArray mask has a size only the mask's values tell; it would
    block, and raises ``RuntimeError`` on an event loop. Other indices return at once.

    Raises:
        IndexError: host indices out of bounds (numpy's error).
        KernelError: a kernel before the call failed on that stream (a DeviceArray mask).
    """
    plan = index_plan(a, index)
    if plan is None:
        return a[index]
    result: DeviceArray = await sized.awaited(plan)
    return result
