"""Reductions that are not ufunc methods, and the numpy functions DeviceArray implements.

``a.sum()/prod()/max()/min()`` are ``ufunc.reduce`` with ndarray's defaults (through
``_dispatch.array_ufunc``); ``mean/std/var/any/all`` and ``argmax/argmin`` are kernels
calling numpy's function with ``out=``, their output dtype resolved on a tiny dummy.
The numpy functions that are these methods (``np.sum``, ``np.mean``, ...) are registered
here for ``__array_function__`` (``functions.registry``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from .._core.context import stream_of
from .array import DeviceArray, new_array
from .checks import check_dtype, two_devices
from .caches import RESOLVED, cache_put, keywords_key
from .dispatch import array_ufunc, enqueue
from .fastpath import reduce_fast
from .functions.registry import implements
from .operands import where_operand
from .shapes import check_out_shape, check_where, reduced

__all__ = ["argreduce", "reduce", "statistic"]

_NO_VALUE: Any = np._NoValue  # numpy's "argument not given"
_METHOD_NAMES = {np.add: "sum", np.multiply: "prod", np.maximum: "max", np.minimum: "min"}


def function_kernel(fn: Any, a: DeviceArray, out: DeviceArray, kw: dict[str, Any]) -> None:
    """``fn(a, out=out, **kw)`` on numpy views (np.mean, np.argmax, ...)."""
    where = kw.get("where")
    if type(where) is DeviceArray:
        kw = dict(kw, where=where._np())
    fn(a._np(), out=out._np(), **kw)


# --- reductions that are not ufunc methods -----------------------------------------------------------
def check_keywords(method: str, kw: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse keywords a reduction method does not take, torch's ``dim=`` with a pointer to ``axis=``."""
    unknown = [k for k in kw if k not in allowed]
    if not unknown:
        return
    if "dim" in unknown:
        raise TypeError(f"DeviceArray.{method}() takes numpy's axis=, not torch's dim=: use {method}(axis=...)")
    raise TypeError(
        f"DeviceArray.{method}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
        f"besides its named parameters it takes {' and '.join(allowed)}, as numpy's {method}() does"
    )


def reduce(uf: Any, a: DeviceArray, axis: Any, dtype: Any, out: Any, keepdims: bool, kw: dict[str, Any]) -> DeviceArray:
    """``a.sum()`` and friends: ``uf.reduce`` with ndarray's defaults (all axes)."""
    if kw:
        check_keywords(_METHOD_NAMES.get(uf, uf.__name__), kw, ("initial", "where"))
    if dtype is None and out is None and not kw:
        fast = reduce_fast(uf, a, axis, bool(keepdims))
        if fast is not None:
            return fast
    kwargs = dict(kw, axis=axis)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if out is not None:
        kwargs["out"] = out
    if keepdims:
        kwargs["keepdims"] = True
    for k in ("initial", "where"):
        if kwargs.get(k, None) is _NO_VALUE:
            del kwargs[k]
    result: DeviceArray = array_ufunc(uf, "reduce", (a,), kwargs)
    return result


def _reduction_target(
    fn: Any, a: DeviceArray, axes: tuple[int, ...], out: Any, keepdims: bool, dt: np.dtype[Any]
) -> DeviceArray:
    shape = reduced(a._shape, axes, keepdims)
    if out is None:
        return new_array(a._dev, shape, dt, stream_of(a._dev))
    if type(out) is tuple and len(out) == 1:
        out = out[0]
    if type(out) is not DeviceArray:
        raise TypeError(f"out= of {fn.__name__} on a DeviceArray must be a DeviceArray, got {type(out).__name__}")
    if out._dev is not a._dev:
        raise ValueError(two_devices(a._dev, out._dev))
    check_out_shape((out._shape,), shape, fn.__name__)
    return out


def statistic(fn: Any, a: DeviceArray, axis: Any, dtype: Any, out: Any, keepdims: bool, kw: dict[str, Any]) -> DeviceArray:
    """``np.mean/std/var/any/all`` over ``axis`` as a kernel calling ``fn(view, out=...)``."""
    check_keywords(fn.__name__, kw, ("where", "ddof"))
    kw = {k: v for k, v in kw.items() if v is not _NO_VALUE}
    axes = tuple(range(a.ndim)) if axis is None else normalize_axis_tuple(axis, a.ndim)
    extra = dict(kw)
    where = where_operand(extra.pop("where", True), a._dev)
    check_where(where._shape if type(where) is DeviceArray else None, a._shape)
    if dtype is not None:
        extra["dtype"] = dtype
    try:
        key: Any = (fn, a._dtype, keywords_key(extra))
        dt = RESOLVED.get(key)
    except TypeError:
        key, dt = None, None
    if dt is None:
        ddof = extra.get("ddof", 0)
        n = 2 + (int(ddof) if isinstance(ddof, (int, np.integer)) and ddof > 0 else 0)
        with np.errstate(all="ignore"):
            dt = (check_dtype(np.asarray(fn(np.ones(n, a._dtype), axis=0, **extra)).dtype),)
        if key is not None:
            cache_put(RESOLVED, key, dt)
    target = _reduction_target(fn, a, axes, out, keepdims, dt[0])
    call = dict(extra, axis=axis, keepdims=keepdims)
    if where is not None:
        call["where"] = where
    if a.size or target.size:
        enqueue(a._dev, function_kernel, (fn, a, target, call), (a,) if where is None else (a, where), (target,))
    return target


def argreduce(fn: Any, a: DeviceArray, axis: Any, out: Any, keepdims: bool) -> DeviceArray:
    """``a.argmax()`` / ``a.argmin()``: indices (intp), as numpy."""
    if axis is None:
        axes = tuple(range(a.ndim))
        empty = a.size == 0
    else:
        axes = (normalize_axis_index(axis, a.ndim),)
        empty = a._shape[axes[0]] == 0
    if empty:
        raise ValueError(f"attempt to get {fn.__name__} of an empty sequence")
    target = _reduction_target(fn, a, axes, out, keepdims, np.dtype(np.intp))
    if target._dtype != np.intp:
        raise TypeError(f"out= of {fn.__name__} must have dtype {np.dtype(np.intp)}, got {target._dtype}")
    enqueue(a._dev, function_kernel, (fn, a, target, {"axis": axis, "keepdims": keepdims}), (a,), (target,))
    return target


# --- numpy functions (__array_function__) ------------------------------------------------------------
def _method(name: str) -> Callable[..., Any]:
    def call(a: Any, *args: Any, **kwargs: Any) -> Any:
        if type(a) is not DeviceArray:
            raise TypeError(f"numpy.{name}() with a DeviceArray argument needs the DeviceArray first")
        return getattr(a, name)(*args, **kwargs)

    return call


def _reshape(a: DeviceArray, shape: Any = None, order: str = "C", *, newshape: Any = None, copy: bool | None = None) -> DeviceArray:
    if order != "C":
        raise TypeError(f"numpy.reshape(DeviceArray, order={order!r}) is not supported; only order='C'")
    shape = newshape if shape is None else shape
    result = a.reshape(shape)
    if copy:
        return result.copy()
    if copy is False and result._block is not a._block:
        raise ValueError("Unable to avoid creating a copy while reshaping.")
    return result


def _transpose(a: DeviceArray, axes: Any = None) -> DeviceArray:
    return a.transpose() if axes is None else a.transpose(*axes)


def _size(a: DeviceArray, axis: int | None = None) -> int:
    return a.size if axis is None else a.shape[axis]


def _result_type(*args: Any) -> np.dtype[Any]:
    return np.result_type(*[np.empty(0, x._dtype) if type(x) is DeviceArray else x for x in args])


_FUNCTIONS: dict[Any, Callable[..., Any]] = {
    np.sum: _method("sum"),
    np.prod: _method("prod"),
    np.max: _method("max"),
    np.amax: _method("max"),
    np.min: _method("min"),
    np.amin: _method("min"),
    np.mean: _method("mean"),
    np.std: _method("std"),
    np.var: _method("var"),
    np.any: _method("any"),
    np.all: _method("all"),
    np.argmax: _method("argmax"),
    np.argmin: _method("argmin"),
    np.copy: lambda a, *args, **kwargs: a.copy(),
    np.reshape: _reshape,
    np.transpose: _transpose,
    np.shape: lambda a: a.shape,
    np.ndim: lambda a: a.ndim,
    np.size: _size,
    np.result_type: _result_type,
}
for _func, _impl in _FUNCTIONS.items():
    implements(_func)(_impl)
