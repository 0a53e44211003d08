"""Integer-array and boolean-mask indexing of DeviceArrays: ``a[idx]``, ``a[idx] = v`` (issue 18).

``DeviceArray.__getitem__``/``__setitem__`` keep their fast path for basic indices (ints,
slices, None, ``...``: a view, no kernel) and come here for numpy's "advanced" indices:
integer and boolean arrays (host ndarrays, lists, DeviceArrays), bools, mixed with basic
items as numpy mixes them (separated advanced indices move their axes first, as in numpy).

Reading ``a[idx]`` makes a new C-contiguous array filled by one kernel (``read_kernel``:
numpy's own indexing on the views). Its shape comes from numpy run on *ghosts*: ``a`` as
an array of zero-byte elements, index DeviceArrays as zero-stride arrays of their shape
and dtype (zeros; all True for a mask), so numpy checks everything it can at the call,
with its own errors:

* host indices are checked completely (an index out of bounds is numpy's ``IndexError``
  at the call) and snapshotted for the kernel;
* integer DeviceArray indices are read by the kernel only: one out of bounds is an
  ``IndexError`` in the kernel, raised as ``KernelError`` by the next wait;
* a boolean DeviceArray mask makes the result's size depend on its values: that read
  is ``sized``'s (it blocks; ``await mtia_async.getitem(a, idx)`` is the awaitable form).

Writing ``a[idx] = v`` is one kernel writing ``a`` (``write_kernel``) and never waits, masks
included; the value is a scalar or host data (converted to ``a``'s dtype at the call,
numpy's errors) or a DeviceArray of the same device. What depends on device values
(an index DeviceArray out of bounds, a value whose length must match a mask's count of
True) is an error in the kernel: ``KernelError`` at the next wait.

Also here: ``a.fill(value)`` (one fill kernel) and ``a.item(*args)``, which picks the
element's 0-d view (numpy's checks on a ghost) and reads it with ``sized.read_value``.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import numpy as np

from ..._core.context import stream_of
from ..array import SCALARS, DeviceArray, as_view, new_array
from ..checks import check_index, two_devices
from ..transfer import scalar_source, fill_kernel
from .common import ghost, stand_in, views, with_function
from .selection import _out_of_bounds
from .sized import Plan, blocking, device_array, read_value

__all__ = ["fill", "getitem", "index_plan", "item", "read", "read_kernel", "take_kernel", "write", "write_kernel"]

_BOOL = np.dtype(np.bool_)
_INTP = np.dtype(np.intp)
_TRUES = b"\x01" * 16


def _parse(a: DeviceArray, index: Any) -> tuple[tuple[Any, ...], tuple[Any, ...], list[DeviceArray], int, int, int]:
    """An index, taken apart: (numpy's view of it on ghosts, the kernel's, its DeviceArrays, masks, advanced
    items, elements of its index arrays).

    Raises:
        ValueError: an index DeviceArray on another device.
        TypeError: a list holding DeviceArrays (numpy would convert it to a host array).
    """
    dev = a._dev
    shape_index = []
    kernel_index = []
    arrays = []
    masks = advanced = elements = 0
    for it in index if type(index) is tuple else (index,):
        t = type(it)
        if t is DeviceArray:
            if it._dev is not dev:
                raise ValueError(two_devices(dev, it._dev))
            arrays.append(it)
            advanced += 1
            elements += it.size
            if it._dtype.kind == "b":
                masks += 1
                shape_index.append(stand_in(it._shape, _BOOL, _TRUES))
            else:  # zeros: numpy checks the dtype (integer) and the shapes; the values are the kernel's
                shape_index.append(stand_in(it._shape, it._dtype))
            kernel_index.append(it)
            continue
        if t is list or t is tuple:
            it = np.asarray(it)
            if it.size == 0 and it.dtype.kind == "f":
                it = it.astype(np.intp)  # numpy takes an empty list as an empty integer index
            kernel_index.append(it)
            advanced += 1
            elements += it.size
        elif t is np.ndarray:
            kernel_index.append(it.copy())  # a snapshot: the caller may change its array before the kernel runs
            advanced += 1
            elements += it.size
        else:
            kernel_index.append(it)
            advanced += t is bool or t is np.bool_
        shape_index.append(it)
    return tuple(shape_index), tuple(kernel_index), arrays, masks, advanced, elements


_LARGE = 1024
"""Index elements above which numpy's walk of a ghost (~6 ns an element, times the subspace) outweighs the kernel."""


def _large_shape(shape: tuple[int, ...], index: tuple[Any, ...], elements: int) -> tuple[int, ...] | None:
    """numpy's shape of ``ghost[index]`` for large index arrays, without walking them; None: ask the ghost.

    The bounds of each integer array are its min and max; the broadcast shape is numpy's;
    the rest (slices, ints, too many indices) is checked by the ghost with each advanced
    array replaced by a one-element stand-in, and the broadcast shape is put where numpy
    puts it (at the first advanced item when they are adjacent, else first). Anything
    unusual, and every error, is left to the ghost itself, for numpy's own message.
    """
    if elements <= _LARGE:
        return None
    consumed = 0
    for x in index:
        if type(x) is bool or type(x) is np.bool_ or (type(x) is np.ndarray and x.ndim == 0):
            return None  # 0-d masks and arrays: rare, the ghost is cheap for them
        consumed += x.ndim if type(x) is np.ndarray and x.dtype == _BOOL else x is not None and x is not Ellipsis
    ellipses = sum(x is Ellipsis for x in index)
    if ellipses > 1 or consumed > len(shape):
        return None
    fill = (slice(None),) * (len(shape) - consumed)
    items = [y for x in index for y in (fill if x is Ellipsis else (x,))]
    if not ellipses:
        items += fill
    axis = 0
    shapes = []
    advanced = []  # positions in items
    small: list[Any] = []
    for pos, x in enumerate(items):
        if x is None or type(x) is slice:
            small.append(x)
            axis += x is not None
            continue
        advanced.append(pos)
        if type(x) is not np.ndarray:  # an int: advanced beside arrays (numpy's placement)
            small.append(x)
            axis += 1
            continue
        if x.dtype == _BOOL:
            if x.shape != shape[axis : axis + x.ndim]:
                return None
            shapes.append((int(np.count_nonzero(x)),))
            small += [_SLOT] * x.ndim  # a k-d mask is k integer arrays (its nonzero())
            axis += x.ndim
            continue
        if x.dtype.kind not in "iu":
            return None
        n = shape[axis]
        if x.size and (int(x.min()) < -n or int(x.max()) >= n):
            return None
        shapes.append(x.shape)
        small.append(_SLOT)
        axis += 1
    if not shapes:
        return None
    try:
        broadcast = np.broadcast_shapes(*shapes)
    except ValueError:
        return None
    one = stand_in(tuple(min(d, 1) for d in broadcast), _INTP)
    result: tuple[int, ...] = ghost(shape)[tuple(one if x is _SLOT else x for x in small)].shape
    if advanced == list(range(advanced[0], advanced[-1] + 1)):  # adjacent: in place of the first one
        first = sum(1 for x in items[: advanced[0]] if x is None or type(x) is slice)
    else:
        first = 0
    return result[:first] + broadcast + result[first + len(broadcast) :]


_SLOT: Any = object()  # where an advanced item stood, in _large_shape
_SCALAR = ghost(())  # a scalar value's ghost (holds no bytes: shared)


# --- reading --------------------------------------------------------------------------------------------
@with_function
def read_kernel(fn: Any, out: np.ndarray[Any, Any], x: DeviceArray, index: tuple[Any, ...], on_device: bool) -> None:
    """``out[...] = x[index]`` (``fn`` is ``operator.getitem``) on numpy views; ``out`` is the output's view.

    ``on_device``: the index holds DeviceArrays (replaced by their views here).

    The FIFO item holds that view, not the output DeviceArray (as ``fastpath._launch_fresh``):
    dropping the result frees its block at once, for work enqueued later on this stream.
    """
    out[...] = fn(x._np(), views(index) if on_device else index)


@with_function
def take_kernel(fn: Any, out: np.ndarray[Any, Any], x: DeviceArray, indices: np.ndarray[Any, Any], axis: int) -> None:
    """``np.take(x, indices, axis, out=out, mode="wrap")`` (``fn``): straight into the output, no temporary.

    For host indices only: they were checked at the call, so ``wrap`` takes the very
    elements ``x[..., indices]`` takes (numpy buffers ``out=`` in ``raise`` mode).
    """
    x._np().take(indices, axis, out, "wrap")  # fn: numpy.take, which calls this method


def _take_axis(index: tuple[Any, ...]) -> int:
    """The axis of an index that is one host integer array after full slices (``np.take``'s form), else -1."""
    last = index[-1]
    if type(last) is not np.ndarray or last.dtype.kind not in "iu" or not last.ndim:
        return -1
    for x in index[:-1]:
        if type(x) is not slice or x != _ALL:
            return -1
    return len(index) - 1


_ALL = slice(None)


def read(a: DeviceArray, index: Any) -> DeviceArray:
    """``a[index]`` for an advanced index: a new array, one kernel (a DeviceArray mask: sized, blocks)."""
    if type(index) is np.ndarray and index.dtype.kind in "iu" and index.ndim and a._shape:
        # one host integer array (np.take's form on axis 0): checked and enqueued at once
        n = a._shape[0]
        idx = index.copy()  # a snapshot: the caller may change its array before the kernel runs
        if not idx.size or n and not _out_of_bounds(idx, n):  # else numpy's IndexError, below
            dev = a._dev
            s = stream_of(dev)
            out = new_array(dev, idx.shape + a._shape[1:], a._dtype, s, True)
            if out._view is not None:
                s.launch(take_kernel, (np.take, out._view, a, idx, 0), (a,), (out,))
            return out
    shape_index, kernel_index, arrays, masks, advanced, elements = _parse(a, index)
    if masks:
        return blocking(_masked_plan(a, shape_index, kernel_index, advanced))  # type: ignore[no-any-return]
    shape = _large_shape(a._shape, shape_index, elements)
    if shape is None:
        shape = ghost(a._shape)[shape_index].shape  # numpy's IndexError for host indices out of bounds
    dev = a._dev
    s = stream_of(dev)
    out = new_array(dev, shape, a._dtype, s, True)
    if out._view is not None:  # else empty: nothing to read
        axis = -1 if arrays else _take_axis(kernel_index)
        if axis >= 0:
            s.launch(take_kernel, (np.take, out._view, a, kernel_index[-1], axis), (a,), (out,))
        else:
            s.launch(read_kernel, (operator.getitem, out._view, a, kernel_index, bool(arrays)), (a, *arrays), (out,))
    return out


def _take(index: tuple[Any, ...], positions: tuple[int, ...], host: Any, *masks: Any) -> Any:
    """On the host copies: ``host[index]`` with the DeviceArrays at ``positions`` replaced by their copies."""
    items = list(index)
    for i, m in zip(positions, masks):
        items[i] = m
    return host[tuple(items)]


def _masked_plan(a: DeviceArray, shape_index: tuple[Any, ...], kernel_index: tuple[Any, ...], advanced: int) -> Plan:
    if advanced == 1:  # the mask alone: numpy checks its shape (on an all-True ghost) here, at the call
        ghost(a._shape)[shape_index]
    positions = tuple(i for i, x in enumerate(kernel_index) if type(x) is DeviceArray)
    inputs = (a, *(kernel_index[i] for i in positions))
    compute = functools.partial(_take, kernel_index, positions)
    return Plan(a._dev, inputs, compute, "a[mask] with a boolean DeviceArray mask", "getitem(a, index)")


def index_plan(a: Any, index: Any) -> Plan | None:
    """The sized plan of ``a[index]`` when the index holds a boolean DeviceArray, else None (no wait needed)."""
    a = device_array(a, "getitem")
    if check_index(index) is not None:
        return None
    shape_index, kernel_index, _, masks, advanced, _ = _parse(a, index)
    return _masked_plan(a, shape_index, kernel_index, advanced) if masks else None


def getitem(a: Any, index: Any) -> DeviceArray:
    """``a[index]``, for any index: blocks only for a boolean DeviceArray mask (its size depends on the data).

    Raises:
        RuntimeError: a boolean DeviceArray mask on an event-loop thread, in a trio task
            or inside a kernel (``await mtia_async.getitem(a, index)`` there).
        IndexError: host indices out of bounds (numpy's error).
    """
    return device_array(a, "getitem")[index]


# --- writing --------------------------------------------------------------------------------------------
@with_function
def write_kernel(fn: Any, x: DeviceArray, index: tuple[Any, ...], value: Any, on_device: bool) -> None:
    """``x[index] = value`` (``fn`` is ``operator.setitem``) on numpy views (``on_device``: as ``read_kernel``)."""
    fn(x._np(), views(index) if on_device else index, as_view(value))


def write(a: DeviceArray, index: Any, value: Any) -> None:
    """``a[index] = value`` for an advanced index: one kernel writing ``a``, never a wait."""
    shape_index, kernel_index, arrays, masks, advanced, elements = _parse(a, index)
    on_device = bool(arrays)  # DeviceArrays in the index: the kernel takes their views
    dev = a._dev
    src: Any
    if type(value) is DeviceArray:
        if value._dev is not dev:
            raise ValueError(two_devices(dev, value._dev))
        src, vshape = value, value._shape
        arrays.append(value)
    elif type(value) in SCALARS or isinstance(value, np.generic):
        src, vshape = scalar_source(a._dtype, value), ()  # numpy's conversion errors, here
    else:
        src = np.array(value, dtype=a._dtype)  # numpy's conversion errors, and a private snapshot
        vshape = src.shape
    target = ghost(a._shape)
    if not masks:  # numpy checks the indices and the value's shape on ghosts
        result = _large_shape(a._shape, shape_index, elements)
        if result is None or not _fits(vshape, result):
            target[shape_index] = ghost(vshape) if vshape else _SCALAR
    elif advanced == 1:  # the mask's shape; the value against its count of True is the kernel's check
        target[shape_index]
    if a._block is not None:
        stream_of(dev).launch(write_kernel, (operator.setitem, a, kernel_index, src, on_device), arrays, (a,))


def _fits(value: tuple[int, ...], result: tuple[int, ...]) -> bool:
    """Whether a value of shape ``value`` broadcasts to an index result of shape ``result`` (numpy's setitem)."""
    while len(value) > len(result) and value[0] == 1:
        value = value[1:]
    return len(value) <= len(result) and all(v in (1, r) for v, r in zip(value[::-1], result[::-1]))


def fill(a: DeviceArray, value: Any) -> None:
    """``a.fill(value)``: one fill kernel; ``value`` is converted to ``a``'s dtype here (numpy's errors)."""
    if type(value) is DeviceArray:
        raise TypeError("DeviceArray.fill() takes a scalar, not a DeviceArray; copy one with a[...] = v")
    src = scalar_source(a._dtype, value)
    if a._block is not None:
        stream_of(a._dev).launch(fill_kernel, (a, src[()]), (), (a,))


# --- item() -------------------------------------------------------------------------------------------
def item(a: DeviceArray, args: tuple[Any, ...]) -> Any:
    """``a.item(*args)``: the element as a Python scalar (awaitable on an event-loop thread).

    numpy checks ``args`` on a ghost at the call; only the element's 0-d view is copied.
    """
    shape = a._shape
    ghost(shape).item(*args)  # numpy's IndexError / ValueError for bad arguments, nothing read
    if not args:
        where: tuple[int, ...] = (0,) * len(shape)
    elif len(args) == 1 and type(args[0]) is not tuple:
        flat = operator.index(args[0])
        if flat < 0:
            flat += a.size
        rest = []
        for n in reversed(shape):  # numpy's C order
            flat, i = divmod(flat, n)
            rest.append(i)
        where = tuple(reversed(rest))
    else:
        where = tuple(args[0] if len(args) == 1 else args)
    return read_value(a[where] if where else a, "DeviceArray.item()", np.ndarray.item)
