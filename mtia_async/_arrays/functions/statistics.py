"""Statistics: ``average``, ``median``, ``percentile``, ``quantile`` and their NaN-ignoring forms (numpy dispatch).

Each is one kernel on the current stream calling numpy's function on the views: with
``out=`` the output's view (``median``, ``percentile``, ``quantile``, the ``nan*`` forms),
a copy of numpy's result for ``average`` (numpy's has no ``out=``). The output shape
comes from metadata: ``a``'s shape reduced over ``axis`` (``keepdims``), after ``q``'s
shape for the quantiles; the dtype from numpy run once on one- or two-element dummies
(cached), which also raises numpy's errors for a bad ``method``, an ``out=`` dtype
numpy would not cast to, a complex ``a`` (quantiles).

``q`` is a scalar or host data, checked at the call as numpy checks it; a DeviceArray
``q`` is refused (numpy reads its values to validate them). What only the data can tell
is found by the kernel, a ``KernelError`` at the next wait: ``average``'s
"Weights sum to zero" and the quantiles' "Weights must be non-negative". numpy's
warnings (the mean of an empty slice, an all-NaN slice) come from the kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from ..._core.context import stream_of
from ..array import DeviceArray, as_view, new_array
from ..checks import check_dtype
from ..shapes import pattern, reduced
from .common import CALLS, device_of, fresh, remember, remember_call, target, with_function
from .registry import implements, unsupported
from .selection import array_arg

__all__ = ["average", "median", "nanmedian", "nanpercentile", "nanquantile", "percentile", "quantile"]

_NO_VALUE: Any = np._NoValue  # numpy's "argument not given"


def _axes(axis: Any, ndim: int, argname: str | None = None) -> tuple[int, ...]:
    """The reduced axes, normalised as numpy does (its AxisError, its repeated-axis ValueError)."""
    return tuple(range(ndim)) if axis is None else normalize_axis_tuple(axis, ndim, argname)


def _weights(weights: Any, a: DeviceArray, axis: Any) -> DeviceArray:
    """``weights`` on ``a``'s device, its shape checked as numpy's ``_weights_are_valid`` does."""
    w: DeviceArray = array_arg(weights, a._dev, "weights")
    if w._shape != a._shape:
        if axis is None:
            raise TypeError("Axis must be specified when shapes of a and weights differ.")
        if w._shape != tuple(a._shape[ax] for ax in normalize_axis_tuple(axis, a.ndim, argname="axis")):
            raise ValueError("Shape of weights must be consistent with shape of a along specified axis.")
    return w


def _stat_target(out: Any, shape: tuple[int, ...], dt: Any, a: DeviceArray, name: str) -> tuple[DeviceArray, Any]:
    """The output (``out`` checked, or a new array) and what the kernel writes (``fresh``)."""
    if out is not None and type(out) is not DeviceArray:
        raise TypeError(f"out= of numpy.{name}() on DeviceArrays must be a DeviceArray, got {type(out).__name__}")
    return fresh(out, shape, dt, a._dev, name)


@with_function
def _stat_kernel(fn: Any, a: DeviceArray, q: Any, kw: dict[str, Any], out: Any) -> None:
    """``fn(a[, q], out=out, **kw)``; a DeviceArray ``weights`` in ``kw`` is given as its view."""
    w = kw.get("weights")
    if type(w) is DeviceArray:
        kw = dict(kw, weights=as_view(w))
    if q is None:
        fn(as_view(a), out=as_view(out), **kw)
    else:
        fn(as_view(a), q, out=as_view(out), **kw)


# --- median ----------------------------------------------------------------------------------------
def _median(fn: Any, a: Any, axis: Any, out: Any, overwrite_input: Any, keepdims: Any) -> DeviceArray:
    name = fn.__name__
    if type(a) is not DeviceArray:  # host data: copied to the device of the other arguments
        a = array_arg(a, device_of((a, out)), name)
    shape = reduced(a._shape, _axes(axis, a.ndim), keepdims is not _NO_VALUE and bool(keepdims))
    odt = None if out is None or type(out) is not DeviceArray else out._dtype

    def resolve() -> np.dtype[Any]:  # numpy on a two-element dummy: the dtype, numpy's errors for out=
        dummy = np.ones(2, a._dtype)
        dt = check_dtype(fn(dummy).dtype)
        if odt is not None:
            fn(dummy, out=np.empty((), odt))
        return dt

    dt = remember((name, a._dtype, odt), resolve)
    result, z = _stat_target(out, shape, dt, a, name)
    if result.size and fn is np.median and axis is None and out is None and not overwrite_input and a.size \
            and a._dtype.type in _MEAN_DTYPES and (keepdims is False or keepdims is _NO_VALUE):  # fmt: skip
        stream_of(a._dev).launch(_median_kernel, (fn, a, a.size, _kth(a), z), (a,), (result,))
    elif result.size:
        kw = {"axis": axis, "overwrite_input": overwrite_input}
        if keepdims is not _NO_VALUE:
            kw["keepdims"] = keepdims
        stream_of(a._dev).launch(_stat_kernel, (fn, a, None, kw, z), (a,), (result, a) if overwrite_input else (result,))
    return result


# What np.mean sums in for median's middle elements (numpy/_core/_methods.py _mean): f8 for bool and
# integers, f4 for f2, the input's own dtype for f4 and f8.
_MEAN_DTYPES: dict[Any, Any] = {
    t: np.dtype(np.float64) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                      np.uint32, np.uint64)  # fmt: skip
} | {np.float16: np.dtype(np.float32), np.float32: None, np.float64: None}


def _kth(a: DeviceArray) -> np.ndarray[Any, Any]:
    """Where the median kernel partitions a flat copy of ``a``: the middle one or two, and -1 for floats
    (numpy's NaN check), as an intp array (a list would be converted in every kernel)."""
    n = a.size
    h = n // 2
    kth = np.array(([h] if n % 2 else [h - 1, h]) + ([-1] if a._dtype.kind == "f" else []), np.intp)
    kth.flags.writeable = False
    return kth


@with_function
def _median_kernel(fn: Any, a: DeviceArray, n: int, kth: np.ndarray[Any, Any], out: Any) -> None:
    """``np.median(a)`` (``fn``; ``axis=None``, no ``out=``) as numpy's ``_median`` computes it, without its
    Python layers (``_ureduce``, ``np.mean``: ~30 us of a 16-element median): partition a flat copy at the
    middle (and at -1 for floats: the NaN check), then the mean of the middle one or two.

    For float32 and float64, the mean is numpy's in scalar arithmetic of the dtype: its sum starts at
    0.0 (so -0.0 + -0.0 is 0.0, as numpy's add.reduce gives) and halving is exact before the one
    rounding numpy's division by the count makes; other dtypes take np.mean's own two calls."""
    x = as_view(a)
    part = x.flatten()
    mean_dt = _MEAN_DTYPES[x.dtype.type]
    floats = x.dtype.kind == "f"
    if n <= _SORT_MAX and (mean_dt is None or not floats):
        part.sort()  # the same middle values (a signed zero's sign is lost to the sum's 0.0 below); faster when short
    else:
        part.partition(kth)
    z = as_view(out)
    h = n // 2
    if mean_dt is None:
        z[()] = part[h] + 0.0 if n % 2 else (part[h - 1] + part[h] + 0.0) * 0.5
    else:
        middle = part[h : h + 1] if n % 2 else part[h - 1 : h + 1]
        np.add.reduce(middle, 0, mean_dt, z)
        np.true_divide(z, np.intp(len(middle)), out=z, casting="unsafe")
    if floats:
        last = part[-1]
        if last != last:  # numpy's _median_nancheck: the NaN its partition puts last (which, of several)
            part = x.flatten()
            part.partition(kth)
            z[()] = part[-1]


_SORT_MAX = 256  # elements up to which the median kernel sorts rather than partitions (one call, no kth)


@implements(np.median)
def median(a: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False, keepdims: bool = False) -> Any:
    if axis is None and out is None and type(a) is DeviceArray and overwrite_input is False and keepdims is False:
        key = (np.median, a._dtype, a._shape)  # the whole array's median, seen before (CALLS)?
        hit = CALLS.get(key)
        if hit is not None:
            dev = a._dev
            s = stream_of(dev)
            result = new_array(dev, (), hit[0], s, True)
            s.launch(_median_kernel, (np.median, a, a.size, hit[1], result._view), (a,), (result,))
            return result
        result = _median(np.median, a, axis, out, overwrite_input, keepdims)
        if a.size and a._dtype.type in _MEAN_DTYPES:  # the kernel above is _median's for these
            remember_call(key, (result._dtype, _kth(a)))
        return result
    return _median(np.median, a, axis, out, overwrite_input, keepdims)


@implements(np.nanmedian)
def nanmedian(a: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
              keepdims: Any = _NO_VALUE) -> Any:  # fmt: skip
    return _median(np.nanmedian, a, axis, out, overwrite_input, keepdims)


# --- percentile, quantile ----------------------------------------------------------------------------
def _quantile_is_valid(q: np.ndarray[Any, Any]) -> bool:
    """numpy's check of the quantiles (numpy/lib/_function_base_impl.py), on the host copy of ``q``."""
    if q.ndim == 1 and q.size < 10:
        for i in range(q.size):
            if not (0.0 <= q[i] <= 1.0):
                return False
    elif not (q.min() >= 0 and q.max() <= 1):
        return False
    return True


def _quantiles(fn: Any, scale: int, a: Any, q: Any, axis: Any, out: Any, overwrite_input: Any, method: Any,
               keepdims: Any, weights: Any) -> DeviceArray:  # fmt: skip
    name = fn.__name__
    if type(q) is DeviceArray:
        raise unsupported(name, "q must be a scalar or host data: numpy validates its values; pass q.numpy()")
    if type(a) is not DeviceArray:  # host data: copied to the device of the other arguments
        a = array_arg(a, device_of((a, out, weights)), name)
    if a._dtype.kind == "c":
        raise TypeError("a must be an array of real numbers")
    weak = type(q) in (int, float)  # numpy promotes a Python scalar q weakly
    if not weak and not isinstance(q, np.generic):
        q = np.array(q)  # a private copy for the kernel
    qs = np.true_divide(q, scale, out=...) if scale != 1 else np.asanyarray(q)
    if not _quantile_is_valid(qs):
        what = "Percentiles must be in the range [0, 100]" if scale != 1 else "Quantiles must be in the range [0, 1]"
        raise ValueError(what)
    w = None
    if weights is not None:
        if method != "inverted_cdf":
            raise ValueError(f"Only method 'inverted_cdf' supports weights. Got: {method}.")
        w = _weights(weights, a, axis)
    kw = {"axis": axis, "overwrite_input": overwrite_input, "method": method}
    if keepdims is not _NO_VALUE:
        kw["keepdims"] = keepdims
    shape = qs.shape + reduced(a._shape, _axes(axis, a.ndim), keepdims is not _NO_VALUE and bool(keepdims))
    odt = None if out is None or type(out) is not DeviceArray else out._dtype
    wdt = None if w is None else w._dtype
    qkey = type(q) if weak else (q.dtype, q.ndim)  # numpy's result dtype depends on q being 0-d

    def resolve() -> np.dtype[Any]:  # numpy on two-element dummies: the dtype, numpy's errors (method, out=)
        dummy, qd = np.ones(2, a._dtype), q if weak or q.ndim == 0 else q[(slice(0, 1),) * q.ndim]
        wd = None if wdt is None else np.ones(2, wdt)
        r = fn(dummy, qd, method=method, weights=wd)
        if odt is not None:
            fn(dummy, qd, method=method, weights=wd, out=np.empty(np.shape(r), odt))
        return check_dtype(r.dtype)

    try:
        dt = remember((name, a._dtype, qkey, type(method), method, wdt, odt), resolve)
    except TypeError:  # an unhashable method: numpy's error (or a result) without the cache
        dt = resolve()
    if a.size == 0 and 0 not in shape and fn in _ERROR_ON_EMPTY:  # numpy's IndexError for empty slices
        fn(np.ones(pattern(a._shape), a._dtype), q, axis=axis, method=method)
    result, z = _stat_target(out, shape, dt, a, name)
    if result.size:
        if w is not None:
            kw["weights"] = w
        reads = (a,) if w is None else (a, w)
        stream_of(a._dev).launch(_stat_kernel, (fn, a, q, kw, z), reads, (result, a) if overwrite_input else (result,))
    return result


_ERROR_ON_EMPTY = (np.percentile, np.quantile)  # the nan* forms warn and give NaN instead


@implements(np.percentile)
def percentile(a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False, method: str = "linear",
               keepdims: bool = False, *, weights: Any = None) -> Any:  # fmt: skip
    return _quantiles(np.percentile, 100, a, q, axis, out, overwrite_input, method, keepdims, weights)


@implements(np.quantile)
def quantile(a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False, method: str = "linear",
             keepdims: bool = False, *, weights: Any = None) -> Any:  # fmt: skip
    return _quantiles(np.quantile, 1, a, q, axis, out, overwrite_input, method, keepdims, weights)


@implements(np.nanpercentile)
def nanpercentile(a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
                  method: str = "linear", keepdims: Any = _NO_VALUE, *, weights: Any = None) -> Any:  # fmt: skip
    return _quantiles(np.nanpercentile, 100, a, q, axis, out, overwrite_input, method, keepdims, weights)


@implements(np.nanquantile)
def nanquantile(a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
                method: str = "linear", keepdims: Any = _NO_VALUE, *, weights: Any = None) -> Any:  # fmt: skip
    return _quantiles(np.nanquantile, 1, a, q, axis, out, overwrite_input, method, keepdims, weights)


# --- average -----------------------------------------------------------------------------------------
@with_function
def _average_kernel(fn: Any, a: DeviceArray, axis: Any, w: Any, kw: dict[str, Any], out: DeviceArray, scl: Any) -> None:
    r = fn(as_view(a), axis, as_view(w), scl is not None, **kw)
    if scl is None:
        np.copyto(as_view(out), r)
    else:
        np.copyto(as_view(out), r[0])
        np.copyto(as_view(scl), r[1])


@implements(np.average)
def average(a: Any, axis: Any = None, weights: Any = None, returned: bool = False, *, keepdims: Any = _NO_VALUE) -> Any:
    if type(a) is not DeviceArray:  # host data: copied to the device of the other arguments
        a = array_arg(a, device_of((a, weights)), "average")
    axes = None if axis is None else _axes(axis, a.ndim, "axis")
    kw = {} if keepdims is _NO_VALUE else {"keepdims": keepdims}
    w = None if weights is None else _weights(weights, a, axes)
    shape = reduced(a._shape, _axes(axes, a.ndim), bool(kw.get("keepdims", False)))

    def resolve() -> tuple[np.dtype[Any], np.dtype[Any]]:  # numpy on one-element dummies
        wd = None if w is None else np.ones((1,) * w.ndim, w._dtype)
        average: Any = np.average
        r, s = average(np.ones((1,) * a.ndim, a._dtype), axes, wd, True, **kw)
        return check_dtype(np.asarray(r).dtype), check_dtype(np.asarray(s).dtype)

    key = ("average", a._dtype, a.ndim, axes, None if w is None else (w._dtype, w.ndim), tuple(kw.items()))
    dt, sdt = remember(key, resolve)
    result = target(None, shape, dt, a._dev, "average")
    scl = target(None, shape, sdt, a._dev, "average") if returned else None
    if result.size:
        reads = (a,) if w is None else (a, w)
        writes = (result,) if scl is None else (result, scl)
        stream_of(a._dev).launch(_average_kernel, (np.average, a, axes, w, kw, result, scl), reads, writes)
    return (result, scl) if returned else result
