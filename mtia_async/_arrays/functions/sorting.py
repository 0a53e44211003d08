"""Sorting and scans: ``sort``, ``argsort``, ``partition``, ``argpartition``, ``cumsum``, ``cumprod``,
``diff`` (numpy dispatch), and the in-place ``a.sort()`` / ``a.partition()`` of the methods.

The result shapes are the input's (flattened for ``axis=None``); numpy validates the
keywords (axis, kind, stable, order) and gives the dtypes on a one-element dummy of the
same dimensions, once per call form (cached); ``kth`` is checked against the real axis
length here, as numpy does. ``sort`` and ``partition`` are one kernel that copies the input
into the output and sorts that in place (numpy's own steps); the scans write into the
output (``out=``); ``argsort``/``argpartition`` copy numpy's index array into it.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from ..._core.context import stream_of
from ..array import DeviceArray, as_view, new_array
from .common import (
    CALLS,
    NO_KW,
    Shape,
    assign_kernel,
    device,
    dummy,
    enqueue,
    ghost,
    into_kernel,
    key_of,
    ones,
    operand,
    operands,
    output,
    placed,
    remember,
    remember_call,
    shape_of,
    with_function,
)
from .registry import implements, unsupported

if TYPE_CHECKING:
    from ..._core.device import DeviceImpl


__all__ = [
    "argpartition",
    "argsort",
    "cumprod",
    "cumsum",
    "diff",
    "partition",
    "partition_in_place",
    "sort",
    "sort_in_place",
]

_NO_VALUE: Any = np._NoValue  # numpy's "argument not given"
_INTP = np.dtype(np.intp)


def as_array(x: Any) -> Any:
    """An operand as numpy's ``asanyarray`` sees it: a DeviceArray as it is, host data or a scalar as an ndarray."""
    return x if type(x) is DeviceArray or type(x) is np.ndarray else np.asarray(x)


def array(a: Any, name: str, out: Any = None) -> tuple[DeviceImpl, Any]:
    """The device (of ``a`` and ``out=``) and the array argument (``as_array``), nothing moved yet."""
    if type(a) is DeviceArray and out is None:
        return a._dev, a
    dev, (x,) = operands((a,), out, name)
    return dev, as_array(x)


def result_shape(shape: Shape, axis: Any, oracle: Any) -> Shape:
    """A sort's or scan's result shape: the input's, flattened for ``axis=None``; for a 0-d input,
    the shape numpy gave the 0-d dummy (``oracle``: numpy treats it as one element, or refuses)."""
    if not shape:
        return tuple(np.shape(oracle))
    return (math.prod(shape),) if axis is None else shape


# --- kernels (in the worker) -------------------------------------------------------------------------
@with_function
def copy_sort(fn: Any, args: tuple[Any, ...], kw: dict[str, Any], z: Any) -> None:
    """``fn`` (np.sort, np.partition) as numpy runs it: copy the input (flattened for ``axis=None``)
    into the output, then sort that in place (``args``: ndarray.sort or .partition, input, kth)."""
    method, a, extra = args
    x = as_view(a)
    if kw["axis"] is None:
        x, kw = x.reshape(-1), dict(kw, axis=-1)
    o = as_view(z)
    np.copyto(o, x)
    method(o, *extra, **kw)


@with_function
def in_place(fn: Any, args: tuple[Any, ...], kw: dict[str, Any], z: Any) -> None:
    """``fn(z, *args, **kw)``: ndarray.sort / ndarray.partition on the array's view, in place."""
    fn(as_view(z), *args, **kw)


# --- sort, argsort, partition, argpartition ------------------------------------------------------------
def _sort_like(fn: Any, name: str, a: Any, kw: dict[str, Any], kth: Any = None) -> tuple[DeviceImpl, Any, Shape, Any]:
    """The device, the operand, the result shape and the kth argument of ``fn(a, [kth,] **kw)``, validated.

    numpy validates ``axis`` and the keywords on a one-element dummy with the same
    dimensions; ``kth`` (partitions) is checked here against the real axis length.
    """
    dev, x = array(a, name)
    shape = shape_of(x)
    axis = kw["axis"]

    def resolve() -> Shape:
        extra = () if kth is None else (0,)
        return result_shape(shape, axis, fn(dummy(x, ones(x)), *extra, **kw))  # numpy's errors

    out_shape = remember((name, key_of(x), shape, type(axis), axis, *kw.values()), resolve)
    kths = None if kth is None else check_kth(kth, name)  # after the axis, as numpy
    if kths:  # the dummy took the axis; now the kth against its real length
        n = math.prod(shape) if axis is None or not shape else shape[normalize_axis_index(axis, len(shape))]
        check_bounds(kths, n, math.prod(shape))
    return dev, x, out_shape, None if kths is None else kth_arg(kth, kths)


def check_kth(kth: Any, name: str) -> list[int]:
    """``kth`` as numpy reads it (an int or a 1-d sequence of ints): a list of ints, numpy's errors."""
    if type(kth) is int:
        return [kth]
    if type(kth) is DeviceArray:
        raise unsupported(name, "kth as a DeviceArray (it would be read on the host); pass ints")
    k = np.asarray(kth)
    if k.dtype == np.bool_:
        raise ValueError("Booleans unacceptable as partition index")
    if k.ndim > 1:
        raise ValueError(f"kth must be an int or a 1-d sequence of ints, got {k.ndim} dimensions")
    if k.dtype.kind not in "iu":  # [] too: numpy reads it as float64
        raise TypeError("Partition index must be integer")
    return [int(v) for v in k.reshape(-1).tolist()]


def check_bounds(kths: list[int], n: int, size: int) -> None:
    """numpy's bounds check of ``kth`` on an axis of length ``n`` (none on an empty array)."""
    if size:
        for k in kths:
            if not -n <= k < n:
                raise ValueError(f"kth(={k + n if k < 0 else k}) out of bounds ({n})")


def kth_arg(kth: Any, kths: list[int]) -> Any:
    """The kth the kernel gets: the checked ints, never the caller's (mutable) object."""
    return kths[0] if type(kth) is int or np.ndim(kth) == 0 else kths


@with_function
def sort_kernel(fn: Any, a: DeviceArray, axis: Any, kind: Any, z: np.ndarray[Any, Any]) -> None:
    """``np.sort(a, axis, kind)`` (``fn``) as ``copy_sort`` runs it, into the new output's view ``z``."""
    x = a._view
    if x is None:
        x = a._np()
    if axis is None:
        x, axis = x.reshape(-1), -1
    np.copyto(z, x)
    z.sort(axis, kind)


@implements(np.sort)
def sort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> DeviceArray:
    fast = type(a) is DeviceArray and order is None and stable is None and (axis is None or type(axis) is int)
    if fast:  # a call seen before (CALLS): allocate and enqueue
        key = (np.sort, a._dtype, a._shape, axis, type(kind), kind)
        try:
            shape = CALLS.get(key)
        except TypeError:  # an unhashable kind: numpy's error on the full path
            shape, fast = None, False
        if shape is not None:
            dev = a._dev
            s = stream_of(dev)
            o = new_array(dev, shape, a._dtype, s, True)
            if o._view is not None:
                s.launch(sort_kernel, (np.sort, a, axis, kind, o._view), (a,), (o,))
            return o
    kw = {"axis": axis, "kind": kind, "order": order, "stable": stable}
    dev, x, shape, _ = _sort_like(np.sort, "sort", a, kw)
    if fast:
        remember_call(key, shape)
    o = output(None, shape, x.dtype, dev, "sort")
    (x,), reads = placed((x,), dev, "sort")
    return enqueue(dev, copy_sort, np.sort, (np.ndarray.sort, x, ()), kw, o, reads)


@implements(np.argsort)
def argsort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> DeviceArray:
    kw = {"axis": axis, "kind": kind, "order": order, "stable": stable}
    dev, x, shape, _ = _sort_like(np.argsort, "argsort", a, kw)
    o = output(None, shape, _INTP, dev, "argsort")
    (x,), reads = placed((x,), dev, "argsort")
    return enqueue(dev, assign_kernel, np.ndarray.argsort, (x, axis, kind, order), {"stable": stable}, o, reads)


@implements(np.partition)
def partition(a: Any, kth: Any, axis: Any = -1, kind: str = "introselect", order: Any = None) -> DeviceArray:
    kw = {"axis": axis, "kind": kind, "order": order}
    dev, x, shape, k = _sort_like(np.partition, "partition", a, kw, kth)
    o = output(None, shape, x.dtype, dev, "partition")
    (x,), reads = placed((x,), dev, "partition")
    return enqueue(dev, copy_sort, np.partition, (np.ndarray.partition, x, (k,)), kw, o, reads)


@implements(np.argpartition)
def argpartition(a: Any, kth: Any, axis: Any = -1, kind: str = "introselect", order: Any = None) -> DeviceArray:
    kw = {"axis": axis, "kind": kind, "order": order}
    dev, x, shape, k = _sort_like(np.argpartition, "argpartition", a, kw, kth)
    o = output(None, shape, _INTP, dev, "argpartition")
    (x,), reads = placed((x,), dev, "argpartition")
    return enqueue(dev, assign_kernel, np.ndarray.argpartition, (x, k, axis, kind, order), NO_KW, o, reads)


# --- in place (the methods a.sort(), a.partition()) ---------------------------------------------------
def _in_place(method: Any, a: DeviceArray, kw: dict[str, Any], kth: Any = None) -> None:
    """``method(a, [kth,] **kw)`` (ndarray.sort, ndarray.partition) as a kernel writing ``a``.

    numpy validates the call on a one-element dummy first; ``kth`` is then checked against
    the real axis length, as numpy does (after the axis).
    """
    axis = kw["axis"]
    extra: tuple[Any, ...] = () if kth is None else (0,)
    remember((method, a._dtype, len(a._shape), type(axis), *kw.values()),
             lambda: method(np.zeros(ones(a), a._dtype), *extra, **kw) or True)  # fmt: skip
    if kth is not None:
        kths = check_kth(kth, method.__name__)
        check_bounds(kths, a._shape[normalize_axis_index(axis, len(a._shape))], a.size)
        extra = (kth_arg(kth, kths),)
    enqueue(a._dev, in_place, method, extra, kw, a, (a,), a)


def sort_in_place(a: DeviceArray, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> None:
    """``a.sort()``: ``a`` sorted in place along ``axis`` (a kernel on the current stream)."""
    _in_place(np.ndarray.sort, a, {"axis": axis, "kind": kind, "order": order, "stable": stable})


def partition_in_place(a: DeviceArray, kth: Any, axis: Any = -1, kind: str = "introselect", order: Any = None) -> None:
    """``a.partition(kth)``: ``a`` partitioned in place along ``axis`` (a kernel on the current stream)."""
    _in_place(np.ndarray.partition, a, {"axis": axis, "kind": kind, "order": order}, kth)


# --- scans -----------------------------------------------------------------------------------------------
def _scan(fn: Any, method: Any, name: str, a: Any, axis: Any, dtype: Any, out: Any) -> DeviceArray:
    """``fn(a, axis, dtype, out)`` (np.cumsum, np.cumprod), as the kernel ``method(a, axis, dtype, out)``."""
    dev, x = array(a, name, out)
    shape = shape_of(x)
    out_dt = out._dtype if type(out) is DeviceArray else None

    def resolve() -> tuple[Shape, np.dtype[Any]]:
        with np.errstate(all="ignore"):
            r = fn(dummy(x, ones(x)), axis, dtype)  # numpy's errors, and its dtype rules
            if out_dt is not None:
                fn(dummy(x, ones(x)), axis, dtype, np.empty(r.shape, out_dt))  # numpy's casting errors
        return result_shape(shape, axis, r), r.dtype

    out_shape, dt = remember((name, key_of(x), shape, type(axis), axis, dtype, out_dt), resolve)
    o = output(out, out_shape, dt, dev, name)
    (x,), reads = placed((x,), dev, name)
    return enqueue(dev, into_kernel, method, (x, axis, dtype), NO_KW, o, reads, out)


@with_function
def scan_kernel(fn: Any, a: DeviceArray, axis: Any, dtype: Any, z: np.ndarray[Any, Any]) -> None:
    """``fn(a, axis, dtype, z)`` (ndarray.cumsum, .cumprod) into the new output's view ``z``."""
    x = a._view
    fn(x if x is not None else a._np(), axis, dtype, z)


def _fast_scan(fn: Any, method: Any, name: str, a: Any, axis: Any, dtype: Any, out: Any) -> DeviceArray:
    """``_scan``, for a call seen before (CALLS) at once: allocate and enqueue."""
    if out is None and type(a) is DeviceArray and (axis is None or type(axis) is int):
        key = (fn, a._dtype, a._shape, axis, type(dtype), dtype)
        try:
            hit = CALLS.get(key)
        except TypeError:  # an unhashable dtype= (numpy's error on the full path)
            return _scan(fn, method, name, a, axis, dtype, out)
        if hit is None:
            o = _scan(fn, method, name, a, axis, dtype, out)
            remember_call(key, (o._shape, o._dtype))
            return o
        dev = a._dev
        s = stream_of(dev)
        o = new_array(dev, hit[0], hit[1], s, True)
        if o._view is not None:
            s.launch(scan_kernel, (method, a, axis, dtype, o._view), (a,), (o,))
        return o
    return _scan(fn, method, name, a, axis, dtype, out)


@implements(np.cumsum)
def cumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> DeviceArray:
    return _fast_scan(np.cumsum, np.ndarray.cumsum, "cumsum", a, axis, dtype, out)


@implements(np.cumprod)
def cumprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> DeviceArray:
    return _fast_scan(np.cumprod, np.ndarray.cumprod, "cumprod", a, axis, dtype, out)


# --- diff --------------------------------------------------------------------------------------------------
@with_function
def diff_kernel(fn: Any, args: tuple[Any, ...], kw: dict[str, Any], z: Any) -> None:
    """numpy.diff's own steps (``fn``), the last difference written into the output."""
    a, n, axis, prepend, append = args
    x = as_view(a)
    if prepend is not None or append is not None:
        side = x.shape[:axis] + (1,) + x.shape[axis + 1 :]
        parts = []
        for e in (prepend, a, append):
            if e is not None:
                v = as_view(e)
                parts.append(np.broadcast_to(v, side) if v.ndim == 0 else v)
        x = np.concatenate(parts, axis)
    op = np.not_equal if x.dtype == np.bool_ else np.subtract
    head = (slice(None),) * axis
    later, earlier = head + (slice(1, None),), head + (slice(None, -1),)
    for _ in range(n - 1):
        x = op(x[later], x[earlier])
    op(x[later], x[earlier], out=as_view(z))


@implements(np.diff)
def diff(a: Any, n: Any = 1, axis: Any = -1, prepend: Any = _NO_VALUE, append: Any = _NO_VALUE) -> Any:
    if n == 0:
        return a  # numpy returns its argument itself
    if n < 0:
        raise ValueError("order must be non-negative but got " + repr(n))
    n = operator.index(n)
    if prepend is _NO_VALUE and append is _NO_VALUE:
        dev, x = array(a, "diff")
        pre = app = None
    else:
        dev = device((a, prepend, append), "diff")
        x, pre, app = (None if e is _NO_VALUE else as_array(operand(e, "diff")) for e in (a, prepend, append))
    shape = shape_of(x)

    def resolve() -> tuple[int, Shape, np.dtype[Any]]:
        if not shape:
            raise ValueError("diff requires input that is at least one dimensional")
        ax = normalize_axis_index(axis, len(shape))
        side = shape[:ax] + (1,) + shape[ax + 1 :]
        parts = [ghost(shape_of(e) or side) for e in (pre, x, app) if e is not None]
        joined = np.concatenate(parts, ax).shape if len(parts) > 1 else shape  # numpy's errors
        extra = {k: dummy(e, ones(e)) for k, e in (("prepend", pre), ("append", app)) if e is not None}
        dt = np.diff(dummy(x, ones(x)), 1, ax, **extra).dtype
        return ax, joined[:ax] + (max(joined[ax] - n, 0),) + joined[ax + 1 :], dt

    extras = (
        () if pre is None and app is None else [None if e is None else (key_of(e), shape_of(e)) for e in (pre, app)]
    )
    ax, out_shape, dt = remember(("diff", key_of(x), shape, n, type(axis), axis, *extras), resolve)
    o = output(None, out_shape, dt, dev, "diff")
    if pre is None and app is None:
        (x,), reads = placed((x,), dev, "diff")
    else:
        (x, pre, app), reads = placed((x, pre, app), dev, "diff")
    return enqueue(dev, diff_kernel, np.diff, (x, n, ax, pre, app), NO_KW, o, reads)
