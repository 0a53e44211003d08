"""The DeviceArray factories: ``asarray``, ``empty``, ``zeros``, ``ones``, ``full``.

Each validates its arguments at the call, allocates on the caller (``OutOfMemoryError``
is raised here) for the current stream of the target device, and enqueues the fill or
host-to-device copy as a kernel on that stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._array import SCALARS, DeviceArray, copy_kernel, fill_kernel, new_array, stream_of
from ._checks import check_dtype, check_shape
from ._context import current_device_index, resolve_device
from ._runtime import get_runtime, state

if TYPE_CHECKING:
    from ._device import DeviceImpl

__all__ = ["asarray", "device_impl", "empty", "from_host", "full", "ones", "zeros"]


def device_impl(device: object) -> DeviceImpl:
    """The DeviceImpl named by a device argument (initialises the runtime)."""
    rt = state.runtime
    if rt is None:
        rt = get_runtime()
    if device is None:
        index = current_device_index()
        if index < len(rt.devices):
            return rt.devices[index]
    return rt.devices[resolve_device(device, rt)]


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
        s.launch(copy_kernel, (arr, host))
    return arr


def asarray(obj: Any, dtype: Any = None, device: Any = None) -> DeviceArray:
    """Copy ``obj`` (anything ``numpy.asarray`` accepts) to a device.

    The host-to-device copy is a kernel on the device's current stream. The host data is
    snapshotted here first whenever it could alias the caller's memory (ndarrays,
    buffers), so changing the caller's array afterwards never changes the device copy;
    lists and scalars are converted into a fresh array with no extra copy.
    A DeviceArray is returned as is, or converted (``astype``) / moved (``to``) when
    ``dtype`` / ``device`` ask for it (``device=None`` keeps its device).

    Args:
        obj: host data, or a DeviceArray.
        dtype: the element type (default: numpy's inference).
        device: None (the current device), an int, ``"mtia:N"`` or a device object.

    Raises:
        TypeError: an unsupported dtype (object, str, ...).
        ValueError: a bad device.
        OutOfMemoryError: the device cannot hold it.
    """
    dt = None if dtype is None else check_dtype(dtype)
    if type(obj) is DeviceArray:
        out = obj if device is None else obj.to(device)
        return out if dt is None else out.astype(dt, copy=False)
    return from_host(obj, dt, device_impl(device))


def empty(shape: Any, dtype: Any = np.float32, device: Any = None) -> DeviceArray:
    """A new array with unspecified contents (no kernel runs).

    Raises:
        TypeError / ValueError: a bad shape, dtype or device (the value is named).
        OutOfMemoryError: the device cannot hold it.
    """
    shp = check_shape(shape)
    dt = check_dtype(dtype)
    dev = device_impl(device)
    return new_array(dev, shp, dt, stream_of(dev))


def _filled(shape: Any, dtype: Any, device: Any, value: int) -> DeviceArray:
    out = empty(shape, dtype, device)
    if out._block is not None:
        s = stream_of(out._dev)
        s.launch(fill_kernel, (out, value))
    return out


def zeros(shape: Any, dtype: Any = np.float32, device: Any = None) -> DeviceArray:
    """A new array of zeros (a fill kernel on the current stream)."""
    return _filled(shape, dtype, device, 0)


def ones(shape: Any, dtype: Any = np.float32, device: Any = None) -> DeviceArray:
    """A new array of ones (a fill kernel on the current stream)."""
    return _filled(shape, dtype, device, 1)


def full(shape: Any, fill_value: Any, dtype: Any = None, device: Any = None) -> DeviceArray:
    """A new array filled with ``fill_value`` (a kernel on the current stream).

    ``fill_value`` is a scalar, a host array or a DeviceArray that broadcasts to
    ``shape``; ``dtype`` defaults to the fill value's, as in ``numpy.full``.
    """
    if dtype is None:
        dtype = fill_value.dtype if type(fill_value) is DeviceArray else np.asarray(fill_value).dtype
    out = empty(shape, dtype, device)
    out[...] = fill_value
    return out
