"""The DeviceArray factories: ``asarray``, ``empty``, ``zeros``, ``ones``, ``full``.

Each validates its arguments at the call, allocates on the caller (``OutOfMemoryError``
is raised here) for the current stream of the target device, and enqueues the fill or
host-to-device copy as a kernel on that stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .._core.context import DeviceLike, current_device_index, resolve_device, stream_of
from .._core.runtime import get_runtime, state
from .array import SCALARS, DeviceArray, new_array
from .checks import ShapeLike, check_dtype, check_shape
from .transfer import fill_kernel, from_host, scalar_source

if TYPE_CHECKING:
    from .._core.device import DeviceImpl

__all__ = ["asarray", "device_impl", "empty", "filled", "full", "ones", "zeros"]


def device_impl(device: DeviceLike) -> DeviceImpl:
    """The DeviceImpl named by a device argument (initialises the runtime)."""
    rt = state.runtime
    if rt is None:
        rt = get_runtime()
    if device is None:
        index = current_device_index()
        if index < len(rt.devices):
            return rt.devices[index]
    return rt.devices[resolve_device(device, rt)]


def asarray(obj: npt.ArrayLike | DeviceArray, dtype: npt.DTypeLike | None = None, device: DeviceLike = None) -> DeviceArray:
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


def empty(shape: ShapeLike, dtype: npt.DTypeLike | None = np.float32, device: DeviceLike = None) -> DeviceArray:
    """A new array with unspecified contents (no kernel runs).

    Raises:
        TypeError / ValueError: a bad shape, dtype or device (the value is named).
        OutOfMemoryError: the device cannot hold it.
    """
    shp = check_shape(shape)
    dt = check_dtype(np.float32 if dtype is None else dtype)  # None: the documented default, as torch
    dev = device_impl(device)
    return new_array(dev, shp, dt, stream_of(dev))


def filled(dev: DeviceImpl, shape: tuple[int, ...], dt: np.dtype[Any], value: Any) -> DeviceArray:
    """A new array of ``dev`` filled with the scalar ``value``: one fill kernel on the current stream.

    ``value`` is converted to ``dt`` here, before the allocation (numpy's errors, cached).
    The kernel holds the new array's numpy view, not the array, so a result the caller
    drops is freed at once (as ``fastpath._launch_fresh``).
    """
    src = scalar_source(dt, value)[()]
    s = stream_of(dev)
    out = new_array(dev, shape, dt, s, True)
    if out._view is not None:
        s.launch(fill_kernel, (out._view, src), (), (out,))
    return out


def _filled(shape: ShapeLike, dtype: npt.DTypeLike | None, device: DeviceLike, value: Any) -> DeviceArray:
    shp = check_shape(shape)
    dt = check_dtype(np.float32 if dtype is None else dtype)
    return filled(device_impl(device), shp, dt, value)


def zeros(shape: ShapeLike, dtype: npt.DTypeLike | None = np.float32, device: DeviceLike = None) -> DeviceArray:
    """A new array of zeros (a fill kernel on the current stream)."""
    return _filled(shape, dtype, device, 0)


def ones(shape: ShapeLike, dtype: npt.DTypeLike | None = np.float32, device: DeviceLike = None) -> DeviceArray:
    """A new array of ones (a fill kernel on the current stream)."""
    return _filled(shape, dtype, device, 1)


def full(
    shape: ShapeLike, fill_value: npt.ArrayLike | DeviceArray, dtype: npt.DTypeLike | None = None, device: DeviceLike = None
) -> DeviceArray:
    """A new array filled with ``fill_value`` (a kernel on the current stream).

    ``fill_value`` is a scalar, a host array or a DeviceArray that broadcasts to
    ``shape``; ``dtype`` defaults to the fill value's, as in ``numpy.full``.
    """
    if isinstance(fill_value, (*SCALARS, np.generic)):  # a fill kernel
        return _filled(shape, np.asarray(fill_value).dtype if dtype is None else dtype, device, fill_value)
    if dtype is None:
        dtype = fill_value.dtype if type(fill_value) is DeviceArray else np.asarray(fill_value).dtype
    out = empty(shape, dtype, device)
    out[...] = fill_value
    return out
