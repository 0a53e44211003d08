"""Shaping: ``ravel``, ``squeeze``, ``expand_dims``, ``moveaxis``, ``swapaxes``, ``broadcast_to``,
``flip``/``flipud``/``fliplr``, ``split``/``array_split``, ``atleast_1d/2d/3d``.

Each returns views of the same memory, as numpy does: numpy itself runs on the caller on
the array's numpy view (metadata: shapes and strides, never the data) and the result
becomes a DeviceArray view with ``_derive``. No kernel runs, so a view costs no stream
work, and a write through the base shows in the view in stream order.

The one copy is ``ravel`` of an array numpy cannot flatten in place (numpy copies too):
a copy kernel on the current stream, decided from the strides before numpy is called, so
numpy never copies device memory on the caller. ``broadcast_to`` gives numpy's read-only
view: a kernel writing through it fails (``KernelError``, numpy's "read-only" message).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from ..._core.context import stream_of
from ..array import DeviceArray, as_view, new_array
from .common import device_of, ghost, on_device, remember, with_function
from .registry import implements, unsupported

__all__ = ["ravel"]


def _array(a: Any, name: str) -> DeviceArray:
    """``a``, the DeviceArray numpy dispatched on."""
    if type(a) is not DeviceArray:
        raise unsupported(name, f"the array must be a DeviceArray here, got {type(a).__name__}")
    return a


def _views(a: DeviceArray, vs: Any) -> list[DeviceArray]:
    return [a._derive(v) for v in vs]


# --- ravel ----------------------------------------------------------------------------------------
def _keeps_a_view(v: np.ndarray[Any, Any]) -> bool:
    """numpy's ``PyArray_Ravel`` for ``order='K'``: the strides, sorted, are a contiguous layout."""
    stride = v.itemsize
    for s, d in sorted(zip(v.strides, v.shape), key=lambda sd: abs(sd[0])):  # ascending |stride|
        if d == 1:
            continue
        if s != stride:
            return False
        stride *= d
    return True


@with_function
def _ravel_kernel(fn: Any, out: Any, a: DeviceArray, order: str) -> None:
    dst, src = as_view(out), as_view(a)
    if order == "C":
        np.copyto(dst.reshape(src.shape), src)  # one copy, straight into the output
    elif order == "F":
        np.copyto(dst.reshape(src.shape[::-1]), src.T)
    else:  # "K": memory order, numpy's own walk
        dst[...] = fn(src, "K")


@implements(np.ravel)
def ravel(a: Any, order: Any = "C") -> DeviceArray:
    x = _array(a, "ravel")
    v = x._np()
    if order not in ("C", "F", "A", "K"):
        np.ravel(ghost(x), order)  # numpy's error for the order
    if order == "A":
        order = "F" if v.flags.f_contiguous and not v.flags.c_contiguous else "C"
    if order == "C" and v.flags.c_contiguous or order == "F" and v.flags.f_contiguous or (
        order == "K" and _keeps_a_view(v)
    ):  # fmt: skip
        return x._derive(v.ravel(order))
    s = stream_of(x._dev)
    out = new_array(x._dev, (v.size,), x._dtype, s, True)
    if out._view is not None:  # the kernel holds the output's numpy view: a dropped result frees at once
        s.launch(_ravel_kernel, (np.ravel, out._view, x, order), (x,), (out,))
    return out


# --- views of one array ---------------------------------------------------------------------------
@implements(np.squeeze)
def squeeze(a: Any, axis: Any = None) -> DeviceArray:
    x = _array(a, "squeeze")
    return x._derive(x._np().squeeze(axis))  # the method np.squeeze calls, without its dispatch


@implements(np.expand_dims)
def expand_dims(a: Any, axis: Any) -> DeviceArray:
    x = _array(a, "expand_dims")
    return x._derive(np.expand_dims(x._np(), axis))


@implements(np.moveaxis)
def moveaxis(a: Any, source: Any, destination: Any) -> DeviceArray:
    x = _array(a, "moveaxis")
    return x._derive(np.moveaxis(x._np(), source, destination))


@implements(np.swapaxes)
def swapaxes(a: Any, axis1: Any, axis2: Any) -> DeviceArray:
    x = _array(a, "swapaxes")
    return x._derive(x._np().swapaxes(axis1, axis2))


@implements(np.flip)
def flip(m: Any, axis: Any = None) -> DeviceArray:
    x = _array(m, "flip")
    return x._derive(np.flip(x._np(), axis))


@implements(np.flipud)
def flipud(m: Any) -> DeviceArray:
    x = _array(m, "flipud")
    return x._derive(np.flipud(x._np()))


@implements(np.fliplr)
def fliplr(m: Any) -> DeviceArray:
    x = _array(m, "fliplr")
    return x._derive(np.fliplr(x._np()))


@implements(np.broadcast_to)
def broadcast_to(array: Any, shape: Any, subok: bool = False) -> DeviceArray:
    """numpy's read-only view (stride 0 along the broadcast dimensions): writes through it fail."""
    x = _array(array, "broadcast_to")
    return x._derive(np.broadcast_to(x._np(), shape))


# --- lists of views -------------------------------------------------------------------------------
def _split_plan(name: str, shape: tuple[int, ...], indices_or_sections: Any, axis: Any) -> tuple[Any, ...]:
    """numpy's ``array_split``: the index of each piece (numpy's checks and errors, on a ghost)."""
    f = np.split if name == "split" else np.array_split
    pieces = f(ghost(shape), indices_or_sections, axis)
    ax = normalize_axis_index(axis, len(shape))
    try:
        points = [0, *indices_or_sections, shape[ax]]
    except TypeError:  # a number of sections
        each, extras = divmod(shape[ax], int(indices_or_sections))
        points = [0]
        for i in range(int(indices_or_sections)):
            points.append(points[-1] + each + (i < extras))
    lead = (slice(None),) * ax
    plan = tuple((*lead, slice(points[i], points[i + 1])) for i in range(len(points) - 1))
    assert [ghost(shape)[i].shape for i in plan] == [p.shape for p in pieces]  # once per call shape (cached)
    return plan


def _split(name: str, ary: Any, indices_or_sections: Any, axis: Any) -> list[DeviceArray]:
    if type(indices_or_sections) is DeviceArray:
        raise TypeError(
            f"numpy.{name}() on DeviceArrays takes its indices_or_sections on the host (an int or a sequence of "
            "ints): the pieces' shapes must be known at the call; copy the indices with .tolist() first"
        )
    x = _array(ary, name)
    ios = indices_or_sections
    try:
        key: Any = (name, x._shape, ios if type(ios) is int else tuple(ios), axis)
        hash(key)
    except TypeError:
        key = None
    plan = remember(key, lambda: _split_plan(name, x._shape, ios, axis))
    v = x._np()
    return [x._derive(v[index]) for index in plan]


@implements(np.split)
def split(ary: Any, indices_or_sections: Any, axis: Any = 0) -> list[DeviceArray]:
    return _split("split", ary, indices_or_sections, axis)


@implements(np.array_split)
def array_split(ary: Any, indices_or_sections: Any, axis: Any = 0) -> list[DeviceArray]:
    return _split("array_split", ary, indices_or_sections, axis)


def _atleast(f: Any, arys: tuple[Any, ...]) -> Any:
    """``f`` (numpy's ``atleast_Nd``) on each array: host arrays are copied to the DeviceArrays' device."""
    dev = device_of(arys)
    assert dev is not None  # numpy dispatched here: one of them is a DeviceArray
    res = [x if type(x) is DeviceArray else on_device(np.asarray(x), dev, f.__name__) for x in arys]
    out = tuple(x._derive(f(x._np())) for x in res)
    return out[0] if len(out) == 1 else out


@implements(np.atleast_1d)
def atleast_1d(*arys: Any) -> Any:
    return _atleast(np.atleast_1d, arys)


@implements(np.atleast_2d)
def atleast_2d(*arys: Any) -> Any:
    return _atleast(np.atleast_2d, arys)


@implements(np.atleast_3d)
def atleast_3d(*arys: Any) -> Any:
    return _atleast(np.atleast_3d, arys)
