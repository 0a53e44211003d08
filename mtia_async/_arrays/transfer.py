"""Moving data: host to device, device to host, device to device, fills and ``__setitem__``.

Each copy is a kernel on a stream: the host-to-device copy and fills on the current
stream of the target's device, the device-to-host copy on the current stream of the
source's device (then a wait: the only waits of the array API), a device-to-device copy
on the destination's current stream after the work enqueued so far on the source's.
Host data that could alias the caller's memory is snapshotted at the call, so changing
the caller's buffer afterwards never changes the device copy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.context import resolve_device, stream_of
from .._core.mark import Mark
from .._core.runtime import get_runtime
from .._core.wait import check_may_block, wait_mark_async, wait_mark_blocking
from .array import SCALARS, DeviceArray, as_view, new_array
from .caches import cache_put
from .checks import check_dtype, fmt_shape, two_devices

if TYPE_CHECKING:
    from .._core.device import DeviceImpl

__all__ = [
    "astype",
    "copy_kernel",
    "fill_kernel",
    "from_host",
    "scalar_source",
    "setitem",
    "start_to_host",
    "to_device",
    "to_host",
    "to_host_blocking",
]


# --- kernels (run in a worker thread) -----------------------------------------------------
def copy_kernel(dst: Any, src: Any) -> None:
    np.copyto(as_view(dst), as_view(src), casting="unsafe")


def fill_kernel(dst: Any, value: Any) -> None:
    as_view(dst).fill(value)


def setitem_kernel(dst: DeviceArray, value: Any) -> None:
    dst._np()[...] = as_view(value)


# --- host to device ---------------------------------------------------------------------------
def from_host(obj: Any, dtype: np.dtype[Any] | None, dev: DeviceImpl) -> DeviceArray:
    """Copy host data to ``dev``: a private snapshot is taken here unless numpy already made one."""
    host = np.asarray(obj, dtype=dtype)
    if dtype is None:
        dt = check_dtype(host.dtype)
        if dt != host.dtype:
            host = host.astype(dt)  # non-native byte order: converting makes a private copy
    else:
        dt = dtype
    # The copy kernel runs later, so whatever may alias the caller's memory is snapshotted
    # now: changing the caller's buffer after asarray() returns must not change the device
    # copy. numpy makes a new array from lists, tuples and scalars, and from an ndarray
    # only when it converts it; anything else (buffers, __array__ objects) may alias.
    converted = isinstance(obj, (list, tuple, *SCALARS, np.generic)) or (
        isinstance(obj, np.ndarray) and host is not obj and host.base is None
    )
    if not converted:
        host = host.copy()
    s = stream_of(dev)
    arr = new_array(dev, host.shape, dt, s)
    if arr._block is not None:
        s.launch(copy_kernel, (arr, host), (), (arr,))
    return arr


def scalar_source(dtype: np.dtype[Any], value: Any) -> np.ndarray[Any, Any]:
    """``value`` converted to a 0-d array of ``dtype`` on the caller (numpy's errors raised here).

    Conversions of exact Python ints, bools and floats are cached (read-only 0-d arrays,
    keyed with the sign of a float so ``-0.0`` is not ``0.0``): ``a[...] = 0`` in a loop
    converts once.
    """
    t = type(value)
    key: tuple[Any, ...] | None
    if t is int or t is bool:
        key = (dtype, t, value)
    elif t is float:
        key = (dtype, t, value, math.copysign(1.0, value))
    else:
        key = None
    if key is not None:
        src = _SOURCES.get(key)
        if src is not None:
            return src
    src = np.empty((), dtype)
    src[()] = value  # numpy's own conversion errors, here on the caller
    if key is not None:
        src.flags.writeable = False
        cache_put(_SOURCES, key, src)
    return src


_SOURCES: dict[tuple[Any, ...], np.ndarray[Any, Any]] = {}


def setitem(target: DeviceArray, value: Any) -> None:
    """``a[index] = value`` once ``target`` is the view ``a[index]``: a kernel writing it."""
    shape = target._shape
    if type(value) in SCALARS:  # the common case: no shape to check
        if target._block is not None:
            stream_of(target._dev).launch(setitem_kernel, (target, scalar_source(target._dtype, value)), (), (target,))
        return
    if type(value) is DeviceArray:
        if value._dev is not target._dev:
            raise ValueError(two_devices(target._dev, value._dev))
        src: Any = value
        vshape = value._shape
    elif isinstance(value, (*SCALARS, np.generic)):
        src = scalar_source(target._dtype, value)
        vshape = ()
    else:
        src = np.array(value, dtype=target._dtype)  # a private snapshot of the host data
        vshape = src.shape
    while len(vshape) > len(shape) and vshape[0] == 1:
        vshape = vshape[1:]  # numpy drops leading unit dimensions of the value
    if len(vshape) > len(shape) or any(v not in (1, t) for v, t in zip(vshape[::-1], shape[::-1])):
        raise ValueError(
            f"could not broadcast input array from shape {fmt_shape(getattr(src, 'shape', vshape))} "
            f"into shape {fmt_shape(shape)}"
        )
    if target._block is not None:
        reads = (src,) if type(src) is DeviceArray else ()
        stream_of(target._dev).launch(setitem_kernel, (target, src), reads, (target,))


# --- device to host ---------------------------------------------------------------------------
def start_to_host(a: DeviceArray) -> tuple[list[np.ndarray[Any, Any]], Mark]:
    """Enqueue a copy of ``a`` to the host on the current stream: ``([host array], mark after it)``.

    The host array is the box's item once the mark is done. A device whose memory is
    not in this process (a cluster device) brings the bytes over itself
    (``DeviceImpl.copy_to_host``) and may put the array it received in the box instead
    of copying it into a preallocated one.
    """
    dev = a._dev
    s = stream_of(dev)
    remote = dev.copy_to_host
    if remote is not None:
        result: tuple[list[np.ndarray[Any, Any]], Mark] = remote(s, a)
        return result
    if s.capture is not None:  # refused before anything reaches the capture
        raise s.capture.forbidden(s, "a copy to the host (to_host()/numpy())")
    host = np.empty(a._shape, a._dtype)
    s.launch(copy_kernel, (host, a), (a,), ())
    return [host], s.record_mark("a copy to the host (to_host()/numpy())")


async def to_host(a: DeviceArray) -> np.ndarray[Any, Any]:
    """``await a.to_host()``: a copy kernel on the current stream, then await it."""
    box, mark = start_to_host(a)
    await wait_mark_async(mark, "DeviceArray.to_host()")
    return box[0]


def to_host_blocking(a: DeviceArray) -> np.ndarray[Any, Any]:
    """``a.numpy()``: a copy kernel on the current stream, then block on it."""
    check_may_block("DeviceArray.numpy()")
    box, mark = start_to_host(a)
    wait_mark_blocking(mark, "DeviceArray.numpy()")
    return box[0]


# --- device to device ---------------------------------------------------------------------------
def astype(a: DeviceArray, dtype: object, copy: bool) -> DeviceArray:
    """``a.astype(dtype, copy)``: a converting copy kernel on the current stream."""
    dt = check_dtype(dtype)
    if not copy and dt == a._dtype:
        return a
    dev = a._dev
    s = stream_of(dev)
    out = new_array(dev, a._shape, dt, s)
    if out._block is not None:  # copy_kernel gets DeviceArrays: an ndarray operand means host memory (graphs, traces)
        s.launch(copy_kernel, (out, a), (a,), (out,))
    return out


def to_device(a: DeviceArray, device: object) -> DeviceArray:
    """``a.to(device)``: ``a`` itself when already there, else a copy on the destination.

    Both sides are ordered, as PyTorch does for a copy between devices: the copy runs on
    the destination's current stream after the work enqueued so far on the source's
    current stream, and later work on the source's stream (a write to ``a``) waits for it.
    """
    rt = get_runtime()
    index = resolve_device(device, rt)
    if index == a._dev.index and rt is a._dev.runtime:
        return a
    dst = rt.devices[index]
    dst_stream = stream_of(dst)
    out = new_array(dst, a._shape, a._dtype, dst_stream)
    if out._block is not None:
        src_stream = stream_of(a._dev)
        dst_stream.wait_mark(src_stream.record_event())
        dst_stream.launch(copy_kernel, (out, a), (a,), (out,))
        src_stream.wait_mark(dst_stream.record_event())
    return out
