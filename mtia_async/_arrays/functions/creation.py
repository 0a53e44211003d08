"""Creation: ``empty_like`` ... ``full_like`` (numpy dispatch); ``arange``, ``linspace``, ``eye``, ``identity``.

Each makes a new C-contiguous array (on the prototype's device, the ``device`` argument's,
or, through numpy's ``like=``, ``like``'s; numpy's ``order``, ``subok`` and ``device``
keywords are accepted only in the forms that mean that), and the filling ones enqueue one
kernel on the current stream of that device that fills it: nothing full-size is built on
the caller.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..._core.context import DeviceLike, stream_of
from ..array import DeviceArray, as_view, new_array
from ..checks import check_dtype, check_extent, check_shape, two_devices
from ..factories import device_impl, filled
from .common import device_arrays, device_of, ghost, on_device, remember, with_function
from .registry import implements, unsupported

if TYPE_CHECKING:
    from ..._core.device import DeviceImpl

__all__ = ["arange", "eye", "identity", "linspace", "prototype_of"]


def prototype_of(name: str, a: Any, dtype: Any, order: str, subok: bool, shape: Any,
                 device: Any) -> tuple[DeviceImpl, tuple[int, ...], np.dtype[Any]]:  # fmt: skip
    """Where, what shape and what dtype a ``*_like`` result of prototype ``a`` has (numpy's arguments checked)."""
    if type(a) is not DeviceArray:
        raise unsupported(name, "the prototype must be the DeviceArray")
    if order not in ("K", "A", "C"):
        raise unsupported(name, f"order={order!r}: DeviceArrays are C-ordered")
    if device not in (None, a._dev.index, f"mtia:{a._dev.index}"):
        raise ValueError(
            f"numpy.{name}(device={device!r}): the result is on the prototype's device mtia:{a._dev.index}; "
            "move it with .to(device) afterwards"
        )
    dt = a._dtype if dtype is None else check_dtype(dtype)
    sh = a._shape if shape is None else check_shape(shape)
    return a._dev, sh, dt


@implements(np.empty_like)
def empty_like(prototype: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, *,
               device: Any = None) -> DeviceArray:  # fmt: skip
    dev, sh, dt = prototype_of("empty_like", prototype, dtype, order, subok, shape, device)
    return new_array(dev, sh, dt, stream_of(dev))


@implements(np.zeros_like)
def zeros_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, *,
               device: Any = None) -> DeviceArray:  # fmt: skip
    return filled(*prototype_of("zeros_like", a, dtype, order, subok, shape, device), 0)


@implements(np.ones_like)
def ones_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, *,
              device: Any = None) -> DeviceArray:  # fmt: skip
    return filled(*prototype_of("ones_like", a, dtype, order, subok, shape, device), 1)


@implements(np.full_like)
def full_like(a: Any, fill_value: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, *,
              device: Any = None) -> DeviceArray:  # fmt: skip
    if type(fill_value) is DeviceArray:
        raise unsupported("full_like", "fill_value must be a scalar, not a DeviceArray")
    return filled(*prototype_of("full_like", a, dtype, order, subok, shape, device), fill_value)


# --- ranges and identities: the factories, and numpy's like= ------------------------------------
# ``mtia.arange``/``linspace``/``eye``/``identity`` allocate on the caller and enqueue one kernel
# filling the output. Dtypes: a dtype numpy infers from the values is numpy's (``arange(5)`` is
# int64, ``linspace(0, 1)`` float64, as ``full`` and ``asarray``); a fixed default is float32
# (``eye``, ``identity``, as ``empty``/``zeros``/``ones``). Through numpy (``np.eye(3, like=a)``)
# numpy's own defaults apply (float64): numpy passes them explicitly.
_REAL = (int, float, np.integer, np.floating, np.bool_)  # ``bool`` is an int
_NUMBER = (*_REAL, complex, np.complexfloating)


def _too_big() -> ValueError:
    return ValueError("Maximum allowed size exceeded")


def _ceil_length(value: float) -> int:
    """numpy's ``_arange_safe_ceil_to_intp``, with numpy 2's messages."""
    if math.isnan(value):
        raise ValueError("arange: cannot compute length")
    if math.isinf(value):
        raise _too_big()
    n = math.ceil(value)
    if not -(2.0**63) <= n <= 2.0**63:
        raise _too_big()
    return n if n < 2**63 else -(2**63)  # numpy's cast of 2.0**63 to intp wraps (then: empty)


def _arange_length(start: Any, stop: Any, step: Any, cmplx: bool) -> tuple[int, Any]:
    """numpy's ``_calc_length``: ``ceil((stop - start) / step)``, in the arguments' own arithmetic.

    Returns the length and the second value ``start + step`` (None for fewer than 2).
    """
    try:
        delta = stop - start
        nonzero = delta != 0
        val = delta / step
        if cmplx and isinstance(val, complex):  # numpy's PyComplex_Check: complex128 is one, complex64 not
            n = min(_ceil_length(float(val.real)), _ceil_length(float(val.imag)))
        else:
            value = float(val)
            if val == 0 and nonzero:  # underflow, or a step of infinity
                n = 0 if math.copysign(1.0, value) < 0 else 1
            else:
                n = _ceil_length(value)
        nxt = start + step if n > 0 else None
    except OverflowError:  # a Python int out of a numpy scalar's range
        raise _too_big() from None
    return max(n, 0), nxt


def _arange_meta(start: Any, stop: Any, step: Any, dtype: Any) -> tuple[int, np.dtype[Any]]:
    """The length and dtype of ``np.arange(start, stop, step, dtype)``, from the scalars only."""
    for x in (start, stop, step):
        if not isinstance(x, _NUMBER):
            if type(x) is DeviceArray:
                raise unsupported("arange", "start, stop and step must be scalars, not DeviceArrays")
            if type(x) is tuple:
                raise TypeError("arange: scalar arguments expected instead of a tuple.")
            raise TypeError(f"arange() takes int, float or complex scalars, got {type(x).__name__} {x!r:.60}")
    if dtype is None:
        dt: np.dtype[Any] = np.dtype(np.intp)  # numpy: at least intp, legacy promotion
        for x in (start, stop, step):
            dt = np.promote_types(dt, np.asarray(x).dtype)
    else:
        dt = np.dtype(dtype)
    n, nxt = _arange_length(start, stop, step, dt.kind == "c")
    dt = check_dtype(dt)
    check_extent((n,), dt)
    if n:  # numpy's conversions of the first two values (an int out of the dtype's range), on the caller
        first = np.empty(2, dt)
        to_int = dt.kind in "iu" and isinstance(start, _REAL)  # numpy goes through a Python int
        first[0] = int(start) if to_int else start
        if n > 1:
            first[1] = int(nxt) if to_int and isinstance(nxt, _REAL) else nxt
    if dt.kind == "b" and n > 2:
        raise TypeError("arange() is only supported for booleans when the result has at most length 2.")
    return n, dt


@with_function
def _arange_kernel(fn: Any, out: Any, start: Any, stop: Any, step: Any) -> None:
    v = as_view(out)
    r = fn(start, stop, step, dtype=v.dtype)
    if r.shape != v.shape:  # cannot happen unless the caller's length rule drifted from numpy's
        raise RuntimeError(f"arange: numpy made {r.shape[0]} elements, {v.shape[0]} were allocated")
    v[...] = r


def _arange(start: Any, stop: Any, step: Any, dtype: Any, dev: DeviceImpl) -> DeviceArray:
    if stop is None:
        if start is None:
            raise TypeError("arange() requires stop to be specified.")
        start, stop = 0, start
    if step is None:
        step = 1
    t = (type(start), type(stop), type(step))
    key = ("arange", start, stop, step, dtype) if t == (int, int, int) else None  # exact ints only
    n, dt = remember(key, lambda: _arange_meta(start, stop, step, dtype))
    out = new_array(dev, (n,), dt, stream_of(dev), True)
    if n:  # the kernel holds the output's numpy view, not the array: a dropped result frees at once
        stream_of(dev).launch(_arange_kernel, (np.arange, out._view, start, stop, step), (), (out,))
    return out


def arange(start: Any, stop: Any = None, step: Any = None, dtype: npt.DTypeLike | None = None,
           device: DeviceLike = None) -> DeviceArray:  # fmt: skip
    """Evenly spaced values in ``[start, stop)``, as ``numpy.arange`` (a kernel fills them).

    ``arange(n)`` counts from 0. The dtype is numpy's (int64 for ints, float64 for a
    float argument) unless ``dtype`` is given.

    Raises:
        TypeError / ValueError: numpy's, at the call (a zero step is ``ZeroDivisionError``).
        OutOfMemoryError: the device cannot hold it.
    """
    return _arange(start, stop, step, dtype, device_impl(device))


def _like_device(name: str, like: DeviceArray, device: Any) -> DeviceImpl:
    """The device of ``np.f(..., like=a)``: ``a``'s (numpy's own ``device=`` may only name it)."""
    if device not in (None, like._dev.index, f"mtia:{like._dev.index}"):
        raise ValueError(
            f"numpy.{name}(device={device!r}, like=a): the result is on a's device mtia:{like._dev.index}"
        )
    return like._dev


_MISSING: Any = object()


@implements(np.arange, like=True)
def _np_arange(start: Any = _MISSING, stop: Any = None, step: Any = None, *, dtype: Any = None, device: Any = None,
               like: DeviceArray) -> DeviceArray:  # fmt: skip
    if start is _MISSING:  # np.arange(stop=n): from 0
        start = None if stop is None else 0
    return _arange(start, stop, step, dtype, _like_device("arange", like, device))


# --- linspace ------------------------------------------------------------------------------------
@with_function
def _linspace_kernel(
    fn: Any, out: Any, step_out: Any, start: Any, stop: Any, kw: dict[str, Any]
) -> None:
    y, step = fn(as_view(start), as_view(stop), retstep=True, **kw)
    np.copyto(as_view(out), y, casting="unsafe")
    if step_out is not None:
        np.copyto(as_view(step_out), step, casting="unsafe")


def _shape(x: Any) -> tuple[int, ...]:
    return x._shape if type(x) is DeviceArray else np.shape(x)


def _kind(x: Any) -> Any:
    """What numpy's dtype resolution sees of an operand: a dtype, or a Python scalar's type (weak)."""
    return x._dtype if type(x) is DeviceArray else x.dtype if isinstance(x, (np.generic, np.ndarray)) else type(x)


def _linspace_meta(start: Any, stop: Any, num: int, dtype: Any, axis: Any) -> tuple[Any, ...]:
    """Shape, dtype, compute dtype and step shape of ``np.linspace``, from metadata."""
    inputs = [x._dtype if type(x) is DeviceArray else x for x in (start, stop)]
    dt = np.result_type(*inputs, 1.0)  # numpy's result_type(start, stop, ensure_inexact=True)
    out_dt = check_dtype(dt if dtype is None else dtype)
    core = np.broadcast_shapes(*(_shape(x) for x in (start, stop)))
    shape = np.moveaxis(ghost((num, *core)), 0, axis).shape if axis != 0 else (num, *core)
    return shape, out_dt, dt, core


def _linspace(start: Any, stop: Any, num: Any, endpoint: Any, retstep: Any, dtype: Any, axis: Any,
              dev: DeviceImpl | None) -> Any:  # fmt: skip
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    if dtype is not None:
        dtype = check_dtype(dtype)
    if isinstance(start, _NUMBER) and isinstance(stop, _NUMBER):  # scalar ends, the common case: in short
        if dev is None:
            dev = device_impl(None)
        key = ("linspace", _kind(start), _kind(stop), num, dtype, axis)
        shape, out_dt, dt, _ = remember(key, lambda: _linspace_meta(start, stop, num, dtype, axis))
        s = stream_of(dev)
        out = new_array(dev, shape, out_dt, s, True)
        if out._view is not None:
            kw = {"num": num, "endpoint": endpoint, "dtype": out_dt, "axis": axis}
            s.launch(_linspace_kernel, (np.linspace, out._view, None, start, stop, kw), (), (out,))
        if not retstep:
            return out
        div = (num - 1) if endpoint else num
        return out, (np.subtract(stop, start, dtype=type(dt)) / div if div > 0 else math.nan)
    found = device_of((start, stop))
    if dev is None:
        dev = device_impl(None) if found is None else found
    elif found is not None and found is not dev:
        raise ValueError(two_devices(dev, found))
    for x in (start, stop):
        if not isinstance(x, _NUMBER) and type(x) is not DeviceArray and not isinstance(x, (np.ndarray, list, tuple)):
            raise TypeError(f"linspace() takes scalars or arrays as start and stop, got {type(x).__name__} {x!r:.60}")
    start, stop = (np.asarray(x) if isinstance(x, (list, tuple)) else x for x in (start, stop))
    key = ("linspace", *(_kind(x) for x in (start, stop)), *(_shape(x) for x in (start, stop)), num, dtype, axis)
    shape, out_dt, dt, core = remember(key, lambda: _linspace_meta(start, stop, num, dtype, axis))
    div = (num - 1) if endpoint else num
    s = stream_of(dev)
    start, stop = (on_device(x, dev, "linspace") if isinstance(x, np.ndarray) else x for x in (start, stop))
    out = new_array(dev, shape, out_dt, s, True)
    step: Any = math.nan
    step_out = None
    if retstep and div > 0:
        if core or type(start) is DeviceArray or type(stop) is DeviceArray:
            step = step_out = new_array(dev, core, dt, s, True)  # numpy gives an array: here a DeviceArray
        else:
            step = np.subtract(stop, start, dtype=type(dt)) / div
    if out._block is not None or step_out is not None:
        kw = {"num": num, "endpoint": endpoint, "dtype": out_dt, "axis": axis}
        views = (out._np(), None if step_out is None else step_out._np())
        writes = (out,) if step_out is None else (out, step_out)
        s.launch(_linspace_kernel, (np.linspace, *views, start, stop, kw), device_arrays((start, stop)), writes)
    return (out, step) if retstep else out


def linspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True, retstep: bool = False,
             dtype: npt.DTypeLike | None = None, axis: int = 0, device: DeviceLike = None) -> Any:  # fmt: skip
    """``num`` evenly spaced values from ``start`` to ``stop``, as ``numpy.linspace`` (one kernel).

    ``start``/``stop`` are scalars or arrays (broadcast together; DeviceArrays of ``device``).
    The dtype is numpy's (float64 for Python numbers) unless ``dtype`` is given. With
    ``retstep``, returns ``(samples, step)``: ``step`` is a host scalar for scalar ends,
    a DeviceArray for array ends (numpy: an ndarray).

    Raises:
        TypeError / ValueError: numpy's, at the call.
        OutOfMemoryError: the device cannot hold it.
    """
    return _linspace(start, stop, num, endpoint, retstep, dtype, axis, None if device is None else device_impl(device))


@implements(np.linspace)
def _np_linspace(start: Any, stop: Any, num: Any = 50, endpoint: Any = True, retstep: Any = False, dtype: Any = None,
                 axis: Any = 0, *, device: Any = None) -> Any:  # fmt: skip
    if device is not None:
        raise unsupported("linspace", f"device={device!r}: the result is on the DeviceArrays' device")
    return _linspace(start, stop, num, endpoint, retstep, dtype, axis, None)


# --- eye, identity --------------------------------------------------------------------------------
@with_function
def _eye_kernel(fn: Any, out: Any, k: int) -> None:
    """numpy's own ``eye`` (``fn``, named in failures), written into ``out``."""
    m = as_view(out)
    m.fill(0)
    cols = m.shape[1]
    if k < cols:
        m[: cols - k].reshape(-1)[(k if k >= 0 else -k * cols) :: cols + 1] = 1  # numpy's own eye()


def _eye(name: str, n: Any, m: Any, k: Any, dtype: Any, order: Any, dev: DeviceImpl) -> DeviceArray:
    if order not in ("C", "K", "A"):
        raise unsupported(name, f"order={order!r}: DeviceArrays are C-ordered")
    shape = check_shape((n, n if m is None else m))
    dt = check_dtype(dtype)
    if not k >= shape[1]:
        k = operator.index(k)
    s = stream_of(dev)
    out = new_array(dev, shape, dt, s, True)
    if out._view is not None:
        s.launch(_eye_kernel, (np.eye, out._view, k), (), (out,))
    return out


def eye(N: int, M: int | None = None, k: int = 0, dtype: npt.DTypeLike | None = np.float32,
        device: DeviceLike = None) -> DeviceArray:  # fmt: skip
    """An ``N`` x ``M`` array with ones on diagonal ``k``, zeros elsewhere (one kernel).

    The dtype defaults to float32, as ``empty``/``zeros`` (``numpy.eye``'s is float64).
    """
    return _eye("eye", N, M, k, np.float32 if dtype is None else dtype, "C", device_impl(device))


def identity(n: int, dtype: npt.DTypeLike | None = np.float32, device: DeviceLike = None) -> DeviceArray:
    """The ``n`` x ``n`` identity matrix (one kernel); float32 by default, as ``eye``."""
    return _eye("identity", n, None, 0, np.float32 if dtype is None else dtype, "C", device_impl(device))


@implements(np.eye, like=True)
def _np_eye(N: Any, M: Any = None, k: Any = 0, dtype: Any = float, order: Any = "C", *, device: Any = None,
            like: DeviceArray) -> DeviceArray:  # fmt: skip
    return _eye("eye", N, M, k, dtype, order, _like_device("eye", like, device))


@implements(np.identity, like=True)
def _np_identity(n: Any, dtype: Any = None, *, like: DeviceArray) -> DeviceArray:
    return _eye("identity", n, None, 0, float if dtype is None else dtype, "C", like._dev)
