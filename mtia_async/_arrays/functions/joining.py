"""Joining and tiling: ``concatenate``, ``stack``, ``vstack``, ``hstack``, ``dstack``, ``column_stack``,
``roll``, ``tile``, ``repeat``.

Each is a copy into a new array (or ``out=``): one kernel on the current stream. The
output's shape and dtype, and numpy's errors, come from numpy on the caller, run on
metadata only: the shapes on ghosts (``common.ghost``), the dtype and the ``dtype=`` /
``casting=`` rules on empty arrays of the inputs' dtypes; both cached per call shape.
Host arrays among the inputs are copied to the device once every check has passed.
``vstack``, ``hstack``, ``dstack`` and ``column_stack`` are numpy's own recipes (each
input seen as ``atleast_2d`` ..., then ``concatenate``), run in the one kernel on the
numpy views. The joins write straight into the output (numpy's ``out=``); ``roll``,
``tile`` and ``repeat`` (an int) copy each element once, straight into it, by slices
and broadcasting.
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from ..._core.context import stream_of
from ..array import DeviceArray, as_view, new_array
from ..checks import check_dtype, two_devices
from ..transfer import from_host
from .common import CALLS, assign_kernel, ghost, remember, remember_call, target, with_function
from .registry import implements, unsupported

__all__ = ["concatenate", "stack"]


# --- operands ---------------------------------------------------------------------------------------
def _sequence(tup: Any) -> Any:
    if not hasattr(tup, "__getitem__"):
        raise TypeError('arrays to stack must be passed as a "sequence" type such as list or tuple.')
    return tup


# numpy's stacking recipes: the view each input becomes before the join (``atleast_2d`` for
# ``vstack``, ...), applied in the kernel to the numpy views, and that view's shape, on the caller.
def _shape_2d(s: tuple[int, ...]) -> tuple[int, ...]:
    return s if len(s) >= 2 else (1, *s) if s else (1, 1)


def _shape_3d(s: tuple[int, ...]) -> tuple[int, ...]:
    return s if len(s) >= 3 else (1, s[0], 1) if len(s) == 1 else (*s, 1) if s else (1, 1, 1)


def _shape_column(s: tuple[int, ...]) -> tuple[int, ...]:
    return s if len(s) >= 2 else (s[0], 1) if s else (1, 1)


def _column(v: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return v if v.ndim >= 2 else np.array(v, copy=None, ndmin=2).T  # numpy's column_stack: a view


_ATLEAST_1D = (np.atleast_1d, lambda s: s or (1,))
_ATLEAST_2D = (np.atleast_2d, _shape_2d)
_ATLEAST_3D = (np.atleast_3d, _shape_3d)
_COLUMN = (_column, _shape_column)


def _resolve(f: Any, pre: Any, shapes: tuple[Any, ...], dtypes: tuple[Any, ...], axis: Any, out: Any, dtype: Any,
             casting: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:  # fmt: skip
    """numpy's output shape (on ghosts) and dtype (on empty arrays: ``dtype=``, ``casting=``, ``out=``)."""
    if pre is not None:
        shapes = tuple(pre[1](s) for s in shapes)
    shape = f([ghost(s) for s in shapes], axis=axis).shape
    empties = [np.empty((0,), dt) for dt in dtypes]
    if out is not None:
        dt = np.concatenate(empties, out=np.empty((0,), out), casting=casting).dtype
    else:
        dt = np.concatenate(empties, dtype=dtype, casting=casting).dtype
    return shape, check_dtype(dt)


_STACK = np.stack


@with_function
def _join_kernel(fn: Any, out: Any, arrays: tuple[DeviceArray, ...], pre: Any, axis: Any) -> None:
    """``fn(arrays, axis, out=out)`` (``concatenate`` or ``stack``), each input seen through ``pre`` first."""
    vs = [as_view(x) for x in arrays]
    o = as_view(out)
    if pre is not None:
        vs = [pre[0](v) for v in vs]
    elif fn is _STACK:  # numpy's stack is Python: its own steps (a new axis on each input, then concatenate),
        sl = (slice(None),) * normalize_axis_index(axis, o.ndim) + (None,)  # checked on the caller
        vs, fn = [v[sl] for v in vs], np.concatenate
    fn(vs, axis=axis, out=o, casting="unsafe")  # the casting was checked at the call


def _join(name: str, f: Any, arrays: Any, axis: Any, out: Any = None, dtype: Any = None,
          casting: Any = "same_kind", pre: Any = None) -> DeviceArray:  # fmt: skip
    """``f(arrays, axis=axis, out=...)`` (numpy's ``concatenate`` or ``stack``) as one kernel writing the output.

    ``arrays``: DeviceArrays, and host data (taken as numpy takes it, copied over last).
    """
    dev = None
    items = []
    shapes = []
    dtypes = []
    host = False
    for x in arrays:
        if type(x) is DeviceArray:
            if dev is None:
                dev = x._dev
            elif x._dev is not dev:
                raise ValueError(two_devices(dev, x._dev))
            shapes.append(x._shape)
            dtypes.append(x._dtype)
        else:
            x = np.asarray(x)
            host = True
            shapes.append(x.shape)
            dtypes.append(x.dtype)
        items.append(x)
    out_dt = None
    if out is not None:
        if dtype is not None:
            raise TypeError(f"{name}() only takes `out` or `dtype` as an argument, but both were provided.")
        out_dt = getattr(out, "dtype", None)
        if dev is None and type(out) is DeviceArray:
            dev = out._dev
    if dev is None:
        raise unsupported(name, "no DeviceArray among the arrays")
    sh, dts = tuple(shapes), tuple(dtypes)
    key = (f, pre, sh, dts, axis, out_dt, dtype, casting)
    shape, dt = remember(key, lambda: _resolve(f, pre, sh, dts, axis, out_dt, dtype, casting))
    s = stream_of(dev)
    if out is None:  # the kernel holds a new output's numpy view, not the array: a dropped result frees at once
        result = new_array(dev, shape, dt, s, True)
        z: Any = result._view
    else:
        result = z = target(out, shape, dt, dev, name)
    if result._block is not None:
        ins = tuple([x if type(x) is DeviceArray else from_host(x, None, dev) for x in items]) if host else tuple(items)
        s.launch(_join_kernel, (f, z, ins, pre, axis), ins, (result,))
    return result


@with_function
def parts_kernel(fn: Any, z: np.ndarray[Any, Any], arrays: tuple[DeviceArray, ...], parts: Any) -> None:
    """``np.concatenate`` (``fn``) or ``np.stack`` of DeviceArrays into the new output's view ``z``: each input
    assigned to its part of ``z`` (``parts``: an index per input), as numpy's join copies them (the result
    dtype is the inputs' promoted one: the casts were checked at the call, their values do not depend on it)."""
    for x, part in zip(arrays, parts):
        v = x._view
        z[part] = v if v is not None else x._np()


def _parts(f: Any, shape: tuple[int, ...], arrays: Any, axis: int) -> tuple[tuple[Any, ...], ...]:
    """Where each input of ``f(arrays, axis)`` goes in a result of ``shape`` (an index of each)."""
    ax = normalize_axis_index(axis, len(shape))
    head = (slice(None),) * ax
    if f is np.stack:
        return tuple(head + (i,) for i in range(len(arrays)))
    parts, start = [], 0
    for x in arrays:
        stop = start + x._shape[ax]
        parts.append(head + (slice(start, stop),))
        start = stop
    return tuple(parts)


def _fast_join(f: Any, arrays: Any, axis: Any, out: Any, dtype: Any, casting: Any) -> Any:
    """``f(arrays, axis)`` (concatenate, stack) of DeviceArrays of one device seen before (CALLS): allocate and
    enqueue; else its key (the full path stores the call under it) or None (not a call this path takes)."""
    if out is not None or dtype is not None or casting != "same_kind" or not (axis is None or type(axis) is int):
        return None
    if type(arrays) is not list and type(arrays) is not tuple or not arrays:
        return None
    first = arrays[0]
    if type(first) is not DeviceArray:
        return None
    key = [f, axis]
    dev = first._dev
    for x in arrays:
        if type(x) is not DeviceArray or x._dev is not dev:
            return None
        key.append(x._shape)
        key.append(x._dtype)
    k = tuple(key)
    hit = CALLS.get(k)
    if hit is None:
        return k
    s = stream_of(dev)
    result = new_array(dev, hit[0], hit[1], s, True)
    if result._view is not None:
        ins = tuple(arrays)
        if hit[2] is None:  # axis=None: numpy's concatenate of the flattened inputs
            s.launch(_join_kernel, (f, result._view, ins, None, axis), ins, (result,))
        else:
            s.launch(parts_kernel, (f, result._view, ins, hit[2]), ins, (result,))
    return result


@implements(np.concatenate)
def concatenate(arrays: Any, axis: Any = 0, out: Any = None, *, dtype: Any = None,
                casting: Any = "same_kind") -> DeviceArray:  # fmt: skip
    fast = _fast_join(np.concatenate, arrays, axis, out, dtype, casting)
    if type(fast) is DeviceArray:
        return fast
    result = _join("concatenate", np.concatenate, arrays, axis, out, dtype, casting)
    if fast is not None:
        parts = None if axis is None else _parts(np.concatenate, result._shape, arrays, axis)
        remember_call(fast, (result._shape, result._dtype, parts))
    return result


@implements(np.stack)
def stack(arrays: Any, axis: Any = 0, out: Any = None, *, dtype: Any = None, casting: Any = "same_kind") -> DeviceArray:
    fast = _fast_join(np.stack, arrays, axis, out, dtype, casting)
    if type(fast) is DeviceArray:
        return fast
    result = _join("stack", np.stack, _sequence(arrays), axis, out, dtype, casting)
    if fast is not None:
        remember_call(fast, (result._shape, result._dtype, _parts(np.stack, result._shape, arrays, axis)))
    return result


@implements(np.vstack)
def vstack(tup: Any, *, dtype: Any = None, casting: Any = "same_kind") -> DeviceArray:
    return _join("vstack", np.concatenate, _sequence(tup), 0, None, dtype, casting, _ATLEAST_2D)


@implements(np.hstack)
def hstack(tup: Any, *, dtype: Any = None, casting: Any = "same_kind") -> DeviceArray:
    items = _sequence(tup)
    first: Any = items[0] if len(items) else None
    ndim = 0 if first is None else first.ndim if type(first) is DeviceArray else np.ndim(first)
    axis = 0 if ndim <= 1 else 1  # numpy: 1-d arrays join along their only axis (no array: numpy's error)
    return _join("hstack", np.concatenate, items, axis, None, dtype, casting, _ATLEAST_1D)


@implements(np.dstack)
def dstack(tup: Any) -> DeviceArray:
    return _join("dstack", np.concatenate, _sequence(tup), 2, pre=_ATLEAST_3D)


@implements(np.column_stack)
def column_stack(tup: Any) -> DeviceArray:
    return _join("column_stack", np.concatenate, _sequence(tup), 1, pre=_COLUMN)


# --- roll -------------------------------------------------------------------------------------------
def _roll_plan(shape: tuple[int, ...], shift: Any, axis: Any) -> tuple[tuple[Any, Any], ...]:
    """numpy's ``roll``: the (source, destination) slices that rebuild the rolled array."""
    axes = normalize_axis_tuple(axis, len(shape), allow_duplicate=True)
    broadcasted = np.broadcast(shift, axes)
    if broadcasted.ndim > 1:
        raise ValueError("'shift' and 'axis' should be scalars or 1D sequences")
    shifts = dict.fromkeys(range(len(shape)), 0)
    for sh, ax in broadcasted:
        shifts[ax] += int(sh)
    whole = (slice(None), slice(None))
    rolls: list[tuple[tuple[slice, slice], ...]] = [(whole,)] * len(shape)
    for ax, offset in shifts.items():
        offset %= shape[ax] or 1  # an empty axis: nothing moves
        if offset:
            rolls[ax] = ((slice(None, -offset), slice(offset, None)), (slice(-offset, None), slice(None, offset)))
    return tuple(tuple(zip(*indices)) for indices in itertools.product(*rolls))


@with_function
def _roll_kernel(fn: Any, out: Any, a: DeviceArray, plan: Any, flat: bool) -> None:
    dst, src = as_view(out), as_view(a)
    if flat:
        dst, src = dst.reshape(-1), src.reshape(-1)  # out is contiguous: a view; a may copy (numpy's ravel)
    for src_index, dst_index in plan:
        dst[dst_index] = src[src_index]


@implements(np.roll)
def roll(a: Any, shift: Any, axis: Any = None) -> DeviceArray:
    if type(a) is not DeviceArray:
        raise unsupported("roll", "the array must be a DeviceArray")
    if type(shift) is DeviceArray:
        raise TypeError("numpy.roll() on DeviceArrays takes the shift on the host (an int or a sequence of ints)")
    shape = (a.size,) if axis is None else a._shape
    try:
        key: Any = ("roll", shape, shift if type(shift) is int else tuple(shift), axis)
        hash(key)
    except TypeError:
        key = None
    plan = remember(key, lambda: _roll_plan(shape, shift, 0 if axis is None else axis))
    s = stream_of(a._dev)
    out = new_array(a._dev, a._shape, a._dtype, s, True)
    if out._view is not None:
        s.launch(_roll_kernel, (np.roll, out._view, a, plan, axis is None), (a,), (out,))
    return out


# --- tile, repeat -----------------------------------------------------------------------------------
def _tile_plan(shape: tuple[int, ...], reps: Any) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """numpy's ``tile``: the output shape, and the source/destination shapes that make it a broadcast."""
    out_shape = np.tile(ghost(shape), reps).shape  # numpy's checks and errors
    try:
        tup = tuple(operator.index(r) for r in reps)
    except TypeError:
        tup = (operator.index(reps),)
    ndim = max(len(tup), len(shape))
    src = (1,) * (ndim - len(shape)) + shape
    tup = (1,) * (ndim - len(tup)) + tup
    return out_shape, tuple(x for s in src for x in (1, s)), tuple(x for t, s in zip(tup, src) for x in (t, s))


@with_function
def _tile_kernel(fn: Any, out: Any, a: DeviceArray, src_shape: Any, dst_shape: Any) -> None:
    """``out`` seen as (reps, dim, reps, dim, ...) takes ``a`` seen as (1, dim, 1, dim, ...): a broadcast copy."""
    np.copyto(as_view(out).reshape(dst_shape), as_view(a).reshape(src_shape))  # unit dimensions added: a view


@implements(np.tile)
def tile(A: Any, reps: Any) -> DeviceArray:
    if type(A) is not DeviceArray:
        raise unsupported("tile", "the array must be a DeviceArray")
    try:
        key: Any = ("tile", A._shape, reps if type(reps) is int else tuple(reps))
        hash(key)
    except TypeError:
        key = None
    out_shape, src_shape, dst_shape = remember(key, lambda: _tile_plan(A._shape, reps))
    s = stream_of(A._dev)
    out = new_array(A._dev, out_shape, A._dtype, s, True)
    if out._view is not None:
        s.launch(_tile_kernel, (np.tile, out._view, A, src_shape, dst_shape), (A,), (out,))
    return out


def _repeat_plan(shape: tuple[int, ...], repeats: Any, axis: Any) -> tuple[tuple[int, ...], Any]:
    """numpy's output shape (on a ghost), and for an int ``repeats``: (flatten ``a`` first, the new unit
    axis of ``a``, ``out``'s shape split there)."""
    out_shape = np.repeat(ghost(shape), repeats, axis).shape
    if type(repeats) is not int:
        return out_shape, None
    flat = axis is None or not shape  # numpy takes a 0-d array as 1-d
    src = (int(np.prod(shape)),) if flat else shape
    ax = 0 if axis is None else normalize_axis_index(axis, len(src))
    return out_shape, (flat, ax + 1, src[: ax + 1] + (repeats,) + src[ax + 1 :])


@with_function
def _repeat_kernel(fn: Any, out: Any, a: DeviceArray, flat: bool, unit: int, split: Any) -> None:
    """``out`` split after the repeated axis takes ``a`` with a unit axis there: a broadcast copy."""
    src = as_view(a)
    if flat:
        src = src.reshape(-1)  # numpy's ravel (a copy only if ``a`` is not contiguous)
    np.copyto(as_view(out).reshape(split), np.expand_dims(src, unit))


@implements(np.repeat)
def repeat(a: Any, repeats: Any, axis: Any = None) -> DeviceArray:
    if type(a) is not DeviceArray:
        raise unsupported("repeat", "the array must be a DeviceArray")
    if type(repeats) is DeviceArray:
        raise TypeError(
            "numpy.repeat() on DeviceArrays takes repeats on the host (an int or a sequence of ints): the result's "
            "size depends on them; pass repeats.tolist() (it synchronises) or a host array"
        )
    if type(repeats) is not int:
        repeats = np.array(repeats)  # a private copy: the kernel runs later
        if repeats.ndim == 0 and repeats.dtype.kind in "iu":
            repeats = int(repeats)
    key = ("repeat", a._shape, repeats, axis) if type(repeats) is int else None
    out_shape, split = remember(key, lambda: _repeat_plan(a._shape, repeats, axis))
    s = stream_of(a._dev)
    out = new_array(a._dev, out_shape, a._dtype, s, True)
    z = out._view
    if z is not None:
        if split is not None:
            s.launch(_repeat_kernel, (np.repeat, z, a, *split), (a,), (out,))
        else:
            s.launch(assign_kernel, (np.repeat, (a, repeats), {"axis": axis}, z), (a,), (out,))
    return out
