"""Selection: ``where``, ``clip``, ``take``, ``take_along_axis``, ``put``, ``compress`` (numpy dispatch).

Each is one kernel on the current stream of the arrays' device, its output shape and
dtype worked out on the caller from metadata (numpy on empty dummies for the dtypes,
on ghosts for the shapes: ``common.dummy``, ``common.ghost``), so numpy's own errors are
raised at the call.

Indices given as host data (a list, an ndarray, an int) are known on the caller: they
are converted as numpy converts them, checked there (an index out of range with
``mode='raise'`` is numpy's ``IndexError`` at the call) and handed to the kernel as a
private host array, a kernel argument like a scalar (no copy to the device, no second
kernel). Indices in a DeviceArray are data on the device: an index out of range with
``mode='raise'`` can only be seen by the kernel, and is a ``KernelError`` at the next
wait. ``compress`` takes a host condition only (a device one would make the result's
size depend on device data). ``where(cond)`` with one argument is ``nonzero(cond)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from ..._core.context import stream_of
from ..array import SCALARS, DeviceArray, as_view, new_array
from ..caches import int_key, value_key
from ..checks import check_dtype
from ..dispatch import array_ufunc
from ..operands import shape_of
from ..shapes import broadcast
from ..transfer import from_host
from .common import CALLS, assign_kernel, device_arrays, device_of, dummy, fresh, ghost, on_device, out_kernel
from .common import remember, remember_call, stand_in, target, with_function
from .registry import implements, unsupported

__all__ = ["array_arg", "clip", "compress", "put", "take", "take_along_axis", "where"]

_NOT_GIVEN: Any = object()
_NO_VALUE: Any = np._NoValue  # numpy's "argument not given"
_INTP = np.dtype(np.intp)
_BOOL = np.dtype(np.bool_)
_EMPTY = (0,)  # the shape of the dummies numpy resolves dtypes on
_umath: Any = np._core.umath  # type: ignore[attr-defined]


def _key(x: Any) -> Any:
    """What numpy's type and shape resolution depends on: dtype and shape, or a scalar's kind."""
    return (x._dtype, x._shape) if type(x) is DeviceArray else value_key(x)


def array_arg(x: Any, dev: Any, name: str) -> DeviceArray:
    """The array argument of ``numpy.<name>`` on ``dev``: a scalar or host data becomes an array there (as numpy's)."""
    if dev is None:
        raise unsupported(name, "no DeviceArray among the arguments")
    x = on_device(x, dev, name)
    return x if type(x) is DeviceArray else from_host(x, None, dev)


def _host_indices(indices: Any) -> np.ndarray[Any, Any]:
    """A private intp copy of host indices numpy accepted, converted as numpy converts them."""
    return np.array(indices, dtype=np.intp)


# --- where ---------------------------------------------------------------------------------------
def _where_meta(c: Any, x: Any, y: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    shape = broadcast((shape_of(c), shape_of(x), shape_of(y)))
    return shape, check_dtype(np.where(dummy(c, _EMPTY), dummy(x, _EMPTY), dummy(y, _EMPTY)).dtype)


@with_function
def _where_kernel(fn: Any, c: Any, x: Any, y: Any, out: Any) -> None:
    """``fn`` (np.where; it has no ``out=``) into the output.

    Small outputs: ``y`` everywhere, then ``x`` where ``c`` (two copies, no temporary: a
    16-element where costs ~1.4 us rather than ~3.8 us). Large ones: a selection of bits
    when the operands allow it (``_select_bits``), else numpy's where, then a copy (a
    masked copy of a random mask is slower than where's own loop at 1M elements).
    The casts are np.where's own: both operands to the result dtype, scalars as numpy
    converts them (``np.asarray``, then an unsafe cast: ``where(c, i8, 1000)`` wraps).
    """
    o = as_view(out)
    cond, xv, yv = as_view(c), as_view(x), as_view(y)
    if o.size > _WHERE_MASKED:
        if not _select_bits(o, cond, xv, yv):
            np.copyto(o, fn(cond, xv, yv))
        return
    if type(cond) is not np.ndarray or cond.dtype != _BOOL:  # np.where reads any condition as nonzero
        cond = _umath.not_equal(cond, 0)
    o[...] = yv if type(yv) is np.ndarray else np.asarray(yv)  # an assignment casts as copyto(casting="unsafe")
    np.copyto(o, xv if type(xv) is np.ndarray else np.asarray(xv), casting="unsafe", where=cond)


_UINTS = {n: np.dtype(f"u{n}") for n in (1, 2, 4, 8)}
_CHUNK = 1 << 16  # elements per step of _select_bits: its temporaries stay in the cache


def _select_bits(o: np.ndarray[Any, Any], c: Any, x: Any, y: Any) -> bool:
    """``o[...] = where(c, x, y)`` as bits, ``y ^ ((x ^ y) & -c)`` on unsigned views of the same size, in
    steps along the first axis; False (nothing done) unless ``c`` is a bool array and ``x``, ``y`` arrays
    of ``o``'s dtype (an item of 1, 2, 4 or 8 bytes). The very bits np.where copies (NaN payloads,
    signed zeros), without its loop's branch on each element (~5x faster on a random condition)."""
    u = _UINTS.get(o.dtype.itemsize)
    if u is None or type(c) is not np.ndarray or type(x) is not np.ndarray or type(y) is not np.ndarray \
            or c.dtype != _BOOL or x.dtype != o.dtype or y.dtype != o.dtype:  # fmt: skip
        return False
    shape = o.shape
    oi = o.view(u)
    ci = np.broadcast_to(c, shape)
    xi = np.broadcast_to(x, shape).view(u)
    yi = np.broadcast_to(y, shape).view(u)
    rows = max(1, _CHUNK // (o.size // shape[0]))
    mask = np.empty((min(rows, shape[0]), *shape[1:]), u)
    for start in range(0, shape[0], rows):
        part = slice(start, start + rows)
        oc, yc = oi[part], yi[part]
        m = mask[: len(oc)]
        _umath.negative(ci[part], out=m, dtype=u, casting="unsafe")  # True: all ones, False: zero
        _umath.bitwise_xor(xi[part], yc, out=oc)
        _umath.bitwise_and(oc, m, out=oc)
        _umath.bitwise_xor(oc, yc, out=oc)
    return True


_WHERE_MASKED = 4096  # elements: up to this size the where kernel is two copies (dispatch-bound, not memory-bound)


@implements(np.where)
def where(condition: Any, x: Any = _NOT_GIVEN, y: Any = _NOT_GIVEN) -> Any:
    if type(condition) is DeviceArray and type(x) is DeviceArray and type(y) is DeviceArray:
        d = condition._dev
        if x._dev is d and y._dev is d:  # three arrays of one device: the call seen before (CALLS)?
            key = (np.where, condition._dtype, condition._shape, x._dtype, x._shape, y._dtype, y._shape)
            hit = CALLS.get(key)
            if hit is None:
                shape, dt = remember(("where", _key(condition), _key(x), _key(y)), lambda: _where_meta(condition, x, y))
                remember_call(key, (shape, dt))
            else:
                shape, dt = hit
            s = stream_of(d)
            out = new_array(d, shape, dt, s, True)
            if out._view is not None:
                s.launch(_where_kernel, (np.where, condition, x, y, out._view), (condition, x, y), (out,))
            return out
    if x is _NOT_GIVEN or y is _NOT_GIVEN:
        if x is not y:
            raise ValueError("either both or neither of x and y should be given")
        return np.nonzero(condition)  # data-dependent: see nonzero
    dev = device_of((condition, x, y))
    if dev is None:
        raise unsupported("where", "no DeviceArray among the arguments")
    c = condition if type(condition) is DeviceArray else on_device(condition, dev, "where")
    if type(x) is not DeviceArray:
        x = on_device(x, dev, "where")
    if type(y) is not DeviceArray:
        y = on_device(y, dev, "where")
    shape, dt = remember(("where", _key(c), _key(x), _key(y)), lambda: _where_meta(c, x, y))
    out, z = fresh(None, shape, dt, dev, "where")
    if z is not None:
        stream_of(dev).launch(_where_kernel, (np.where, c, x, y, z), device_arrays((c, x, y)), (out,))
    return out


# --- clip ----------------------------------------------------------------------------------------
@with_function
def _ufunc_kernel(uf: Any, ins: tuple[Any, ...], out: Any) -> None:
    if len(ins) == 3:
        uf(as_view(ins[0]), as_view(ins[1]), as_view(ins[2]), out=as_view(out))
    else:
        uf(*[as_view(x) for x in ins], out=as_view(out))


@implements(np.clip)
def clip(a: Any, a_min: Any = _NO_VALUE, a_max: Any = _NO_VALUE, out: Any = None, *, min: Any = _NO_VALUE,
         max: Any = _NO_VALUE, **kwargs: Any) -> Any:  # fmt: skip
    if type(a) is DeviceArray and out is None and not kwargs and min is _NO_VALUE and max is _NO_VALUE:
        t_min, t_max = type(a_min), type(a_max)
        if t_min in _BOUNDS and t_max in _BOUNDS:  # scalar bounds: the call seen before (CALLS)?
            # an int bound by value (whether it is beyond the dtype's range decides the ufunc), others by type
            key = (np.clip, a._dtype, a._shape, a_min if t_min is int else t_min, a_max if t_max is int else t_max)
            hit = CALLS.get(key)
            if hit is not None:
                uf, shape, dt, lo, hi = hit
                dev = a._dev
                s = stream_of(dev)
                result = new_array(dev, shape, dt, s, True)
                if result._view is not None:
                    args = (uf, a, a_min if lo else None, a_max if hi else None, result._view)
                    s.launch(_clip_kernel, args, (a,), (result,))
                return result
            result = _clip(a, a_min, a_max, None, _NO_VALUE, _NO_VALUE, kwargs)
            lo, hi = a_min is not None, a_max is not None
            if a._dtype.kind in "iu":  # as below: an int bound beyond the dtype's range is no bound
                lo = lo and not (t_min is int and a_min <= np.iinfo(a._dtype).min)
                hi = hi and not (t_max is int and a_max >= np.iinfo(a._dtype).max)
            remember_call(key, (_CLIP_UFUNCS[(lo, hi)], result._shape, result._dtype, lo, hi))
            return result
    return _clip(a, a_min, a_max, out, min, max, kwargs)


def _clip(a: Any, a_min: Any, a_max: Any, out: Any, min: Any, max: Any, kwargs: dict[str, Any]) -> Any:
    """numpy's clip, the full path."""
    # numpy's argument rules (numpy/_core/fromnumeric.py clip), then its _methods._clip
    if a_min is _NO_VALUE and a_max is _NO_VALUE:
        a_min = None if min is _NO_VALUE else min
        a_max = None if max is _NO_VALUE else max
    elif a_min is _NO_VALUE:
        raise TypeError("clip() missing 1 required positional argument: 'a_min'")
    elif a_max is _NO_VALUE:
        raise TypeError("clip() missing 1 required positional argument: 'a_max'")
    elif min is not _NO_VALUE or max is not _NO_VALUE:
        raise ValueError("Passing `min` or `max` keyword argument when `a_min` and `a_max` are provided is forbidden.")
    if type(a) is not DeviceArray:
        a = array_arg(a, device_of((a, a_min, a_max, out)), "clip")
    if a._dtype.kind in "iu":  # Python ints beyond the dtype's range: no clipping on that side (NEP 50)
        if type(a_min) is int and a_min <= np.iinfo(a._dtype).min:
            a_min = None
        if type(a_max) is int and a_max >= np.iinfo(a._dtype).max:
            a_max = None
    ins: tuple[Any, ...]
    if a_min is None:
        uf, ins = (_umath.positive, (a,)) if a_max is None else (_umath.minimum, (a, a_max))
    else:
        uf, ins = (_umath.maximum, (a, a_min)) if a_max is None else (_umath.clip, (a, a_min, a_max))
    key = _fast_key(ins, a._dev) if out is None and not kwargs else None
    first: list[DeviceArray] = []

    def general() -> tuple[tuple[int, ...], np.dtype[Any]]:  # validated, resolved and enqueued there
        first.append(array_ufunc(uf, "__call__", ins, kwargs if out is None else dict(kwargs, out=out)))
        return first[0]._shape, first[0]._dtype

    if key is None:
        general()
        return first[0]
    shape, dt = remember(("clip", uf, key), general)
    if first:
        return first[0]
    result, z = fresh(None, shape, dt, a._dev, "clip")  # a call seen before: allocate and enqueue
    if z is not None:
        stream_of(a._dev).launch(_ufunc_kernel, (uf, ins, z), device_arrays(ins), (result,))
    return result


_BOUNDS = frozenset((int, float, bool, complex, type(None)))  # the clip bounds the fast path takes
_CLIP_UFUNCS = {(False, False): _umath.positive, (False, True): _umath.minimum, (True, False): _umath.maximum,
                (True, True): _umath.clip}  # fmt: skip


@with_function
def _clip_kernel(uf: Any, a: DeviceArray, lo: Any, hi: Any, z: np.ndarray[Any, Any]) -> None:
    """numpy's clip of ``a`` (``uf``: clip, or minimum / maximum / positive when a bound is None) into ``z``."""
    x = a._view
    if x is None:
        x = a._np()
    if lo is None:
        if hi is None:
            uf(x, out=z)
        else:
            uf(x, hi, out=z)
    elif hi is None:
        uf(x, lo, out=z)
    else:
        uf(x, lo, hi, out=z)


def _fast_key(ins: tuple[Any, ...], dev: Any) -> Any:
    """The resolution key of ufunc operands that are DeviceArrays of ``dev`` or Python scalars; else None."""
    key: list[Any] = []
    for x in ins:
        t = type(x)
        if t is DeviceArray:
            if x._dev is not dev:
                return None
            key.append((x._dtype, x._shape))
        elif t is int:
            key.append(int_key(x))
        elif t is float or t is bool or t is complex:
            key.append(t)
        else:
            return None
    return tuple(key)


# --- take, take_along_axis -----------------------------------------------------------------------
def _take_check(a: DeviceArray, idx_dt: Any, out: Any, mode: Any) -> None:
    """numpy's checks of the index dtype, ``out``'s dtype and ``mode`` (cached: once per combination)."""

    def run() -> bool:
        o = None if out is None else np.empty(1, out._dtype)
        np.take(np.zeros(1, a._dtype), np.zeros(1, idx_dt), out=o, mode=mode)
        return True

    remember(("take", a._dtype, idx_dt, None if out is None else out._dtype, type(mode), mode), run)


def _out_arg(out: Any, name: str) -> None:
    if out is not None and type(out) is not DeviceArray:
        raise TypeError(f"out= of numpy.{name}() on DeviceArrays must be a DeviceArray, got {type(out).__name__}")


@with_function
def _take_kernel(fn: Any, a: DeviceArray, idx: Any, axis: Any, mode: Any, out: Any) -> None:
    as_view(a).take(as_view(idx), axis, as_view(out), mode)  # fn: numpy.take, which calls this method


@implements(np.take)
def take(a: Any, indices: Any, axis: Any = None, out: Any = None, mode: Any = "raise") -> Any:
    if type(indices) is np.ndarray and type(a) is DeviceArray and out is None and (axis is None or type(axis) is int):
        # host indices: a call seen before (CALLS) checks the bounds and enqueues
        key: Any = (np.take, a._dtype, a._shape, indices.dtype, indices.shape, axis, type(mode), mode)
        try:
            hit = CALLS.get(key)
        except TypeError:  # an unhashable mode: numpy's error on the full path
            hit, key = None, None
        if hit is not None:
            shape, n = hit
            # a private copy, converted as numpy converts it
            idx = indices.copy() if indices.dtype == _INTP else np.array(indices, dtype=_INTP)
            if not idx.size or n and (mode == "wrap" or mode == "clip" or not _out_of_bounds(idx, n)):
                dev = a._dev
                s = stream_of(dev)
                result = new_array(dev, shape, a._dtype, s, True)
                if result._view is not None:  # in bounds: "wrap" takes the same elements, unbuffered
                    args = (np.take, a, idx, axis, "wrap" if mode == "raise" else mode, result._view)
                    s.launch(_take_kernel, args, (a,), (result,))
                return result
        result = _take(a, indices, axis, out, mode)
        if key is not None:
            remember_call(key, (result._shape, a.size if axis is None else a._shape[normalize_axis_index(axis, a.ndim)]))
        return result
    return _take(a, indices, axis, out, mode)


def _take(a: Any, indices: Any, axis: Any, out: Any, mode: Any) -> Any:
    """numpy's take, the full path."""
    if type(a) is not DeviceArray:
        a = array_arg(a, device_of((a, indices, out)), "take")
    _out_arg(out, "take")
    device = type(indices) is DeviceArray
    if device:
        idx: Any = on_device(indices, a._dev, "take")
        _take_check(a, idx._dtype, out, mode)
    else:  # host indices: numpy's conversion (same-kind for arrays, element by element for sequences)
        _take_check(a, indices.dtype if isinstance(indices, (np.ndarray, np.generic)) else np.intp, out, mode)
        idx = _host_indices(indices)
    if axis is None:
        n, shape = a.size, idx.shape
    else:
        ax = normalize_axis_index(axis, a.ndim)
        n, shape = a._shape[ax], a._shape[:ax] + idx.shape + a._shape[ax + 1 :]
    if idx.size and (n == 0 or not device and mode != "wrap" and mode != "clip" and _out_of_bounds(idx, n)):
        index = stand_in(idx.shape, _INTP) if device else idx
        ghost(a).take(index, axis, None, mode)  # numpy's IndexError, if numpy raises one here
    result, z = fresh(out, shape, a._dtype, a._dev, "take")
    if result._block is not None:  # not empty
        if not device and mode == "raise":
            mode = "wrap"  # checked above: the same elements, and numpy does not buffer the output for it
        reads = (a, idx) if device else (a,)
        stream_of(a._dev).launch(_take_kernel, (np.take, a, idx, axis, mode, z), reads, (result,))
    return result


def _out_of_bounds(idx: np.ndarray[Any, Any], n: int) -> bool:
    """Whether a host index is outside ``[-n, n)`` (a short one read as Python ints: no numpy call)."""
    if idx.size <= 32:
        values: list[int] = (idx if idx.ndim == 1 else idx.ravel()).tolist()
        return min(values) < -n or max(values) >= n
    return bool(idx.min() < -n or idx.max() >= n)


@implements(np.take_along_axis)
def take_along_axis(arr: Any, indices: Any, axis: Any = -1) -> Any:
    arr = array_arg(arr, device_of((arr, indices)), "take_along_axis")
    if type(indices) is DeviceArray:
        idx: Any = on_device(indices, arr._dev, "take_along_axis")
        shape = _along_axis_shape(arr._shape, idx, axis)
    else:  # numpy on a blank: its errors (dtype, shapes, axis, bounds) and the result's shape
        shape = np.take_along_axis(ghost(arr), indices, axis=axis).shape
        idx = np.array(indices)  # a private copy for the kernel
    result = target(None, shape, arr._dtype, arr._dev, "take_along_axis")
    if result.size:
        reads = (arr, idx) if type(idx) is DeviceArray else (arr,)
        args = (np.take_along_axis, (arr, idx), {"axis": axis}, result)
        stream_of(arr._dev).launch(assign_kernel, args, reads, (result,))
    return result


def _along_axis_shape(shape: tuple[int, ...], idx: DeviceArray, axis: Any) -> tuple[int, ...]:
    """The shape of ``take_along_axis`` with device indices, with numpy's errors (its source's checks)."""
    if axis is None:
        if idx.ndim != 1:
            raise ValueError("when axis=None, `indices` must have a single dimension.")
        shape, ax = (math.prod(shape),), 0
    else:
        ax = normalize_axis_index(axis, len(shape))
    if not np.issubdtype(idx._dtype, np.integer):
        raise IndexError("`indices` must be an integer array")
    if len(shape) != idx.ndim:
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    result = []
    for i, (n, m) in enumerate(zip(shape, idx._shape)):
        if i != ax and n != m and 1 not in (n, m):
            zeros = np.lib.stride_tricks.as_strided(np.zeros(1, np.intp), idx._shape, (0,) * idx.ndim)
            np.take_along_axis(ghost(shape), zeros, axis=ax)  # numpy's own broadcasting error
        result.append(m if i == ax or n == 1 else n)
    return tuple(result)


# --- put, compress --------------------------------------------------------------------------------
@with_function
def _put_kernel(fn: Any, a: DeviceArray, ind: Any, v: Any, mode: str) -> None:
    fn(as_view(a), as_view(ind), as_view(v), mode=mode)


@implements(np.put)
def put(a: Any, ind: Any, v: Any, mode: Any = "raise") -> None:
    if type(a) is not DeviceArray:
        if isinstance(a, np.ndarray):
            raise unsupported("put", "it writes the array a in place: a must be the DeviceArray")
        raise TypeError(f"argument 1 must be numpy.ndarray, not {type(a)}")
    device_of((a, ind, v))  # one device
    if type(v) is DeviceArray:
        nv = v.size
    elif isinstance(v, (np.ndarray, np.generic, list, tuple, *SCALARS)):
        v = np.array(v, dtype=a._dtype)  # numpy's conversion (and its errors): a private copy for the kernel
        nv = v.size
    else:
        raise TypeError(
            f"numpy.put() on DeviceArrays takes values as DeviceArrays, scalars or host data, got {type(v).__name__}"
        )
    if type(ind) is DeviceArray:
        np.put(ghost((1,)), np.zeros(1, ind._dtype), ghost((1,)), mode=mode)  # numpy's checks of dtype and mode
        ni = ind.size
        if ni and a.size == 0:
            raise IndexError("cannot replace elements of an empty array")
    else:
        np.put(ghost((a.size,)), ind, ghost((nv,)), mode=mode)  # numpy's index checks (bounds too), on a blank
        ind = _host_indices(ind)
        ni = ind.size
    if ni and nv:
        stream_of(a._dev).launch(_put_kernel, (np.put, a, ind, v, mode), device_arrays((ind, v)), (a,))


@implements(np.compress)
def compress(condition: Any, a: Any, axis: Any = None, out: Any = None) -> Any:
    if type(condition) is DeviceArray:
        raise unsupported(
            "compress",
            "a DeviceArray condition makes the result's size depend on device data; pass the condition as "
            "host data, or index with a boolean mask (which synchronises)",
        )
    dev = device_of((a, out))
    a = array_arg(a, dev, "compress")
    _out_arg(out, "compress")
    cond = np.array(condition)  # a private copy, handed to the kernel
    shape = np.compress(cond, ghost(a), axis=axis).shape  # numpy's checks
    if out is not None:
        _take_check(a, np.intp, out, "raise")
    result = target(out, shape, a._dtype, a._dev, "compress")
    if result.size:
        stream_of(a._dev).launch(out_kernel, (np.compress, (cond, a), {"axis": axis}, result), (a,), (result,))
    return result
