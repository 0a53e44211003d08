"""The kernels that numpy's operations on DeviceArrays enqueue (they run in a worker thread).

Inputs arrive as DeviceArrays whose numpy views are built here on first use and cached
on the arrays. A freshly allocated output arrives as its numpy view itself (``z``),
built on the caller, not as its DeviceArray: the FIFO item then does not keep the
output array alive, so dropping a result frees its block at once (see
``fastpath._launch_fresh``). An ``out=`` the caller passed arrives as its DeviceArray.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .array import DeviceArray, as_view

__all__ = [
    "UNARY",
    "reduce_kernel",
    "ufunc_a",
    "ufunc_aa",
    "ufunc_as",
    "ufunc_kernel",
    "ufunc_out",
    "ufunc_sa",
]

View = np.ndarray[Any, Any]


def ufunc_aa(uf: Any, a: DeviceArray, b: DeviceArray, z: View) -> None:
    """``uf(a, b, out=z)``: two arrays (an elementwise ufunc, or a gufunc such as matmul)."""
    x = a._view
    if x is None:
        x = a._np()
    y = b._view
    if y is None:
        y = b._np()
    uf(x, y, out=z)


def ufunc_as(uf: Any, a: DeviceArray, b: Any, z: View) -> None:
    """``uf(a, b, out=z)`` with a scalar ``b``."""
    x = a._view
    if x is None:
        x = a._np()
    uf(x, b, out=z)


def ufunc_sa(uf: Any, a: Any, b: DeviceArray, z: View) -> None:
    """``uf(a, b, out=z)`` with a scalar ``a`` (the reflected operators)."""
    y = b._view
    if y is None:
        y = b._np()
    uf(a, y, out=z)


def ufunc_a(uf: Any, a: DeviceArray, z: View) -> None:
    """``uf(a, out=z)``: one array."""
    x = a._view
    if x is None:
        x = a._np()
    uf(x, out=z)


def ufunc_out(uf: Any, a: Any, b: Any, o: DeviceArray) -> None:
    """``uf(a[, b], out=o)`` into a DeviceArray the caller gave (``b`` is ``_UNARY`` for one input)."""
    z = o._view
    if z is None:
        z = o._np()
    if type(a) is DeviceArray:
        x = a._view
        if x is None:
            x = a._np()
    else:
        x = a
    if b is _UNARY:
        uf(x, out=z)
        return
    if type(b) is DeviceArray:
        y = b._view
        if y is None:
            y = b._np()
    else:
        y = b
    uf(x, y, out=z)


def reduce_kernel(reduce: Any, a: DeviceArray, z: View, axis: Any, keepdims: bool) -> None:
    """``ufunc.reduce(a, axis=axis, out=z, keepdims=keepdims)`` (``a.sum()``, ``np.add.reduce(a)``)."""
    x = a._view
    if x is None:
        x = a._np()
    reduce(x, axis=axis, out=z, keepdims=keepdims)


def ufunc_kernel(fn: Any, ins: list[Any], outs: tuple[DeviceArray, ...], kw: dict[str, Any]) -> None:
    """The general ufunc kernel: ``fn(*inputs, out=outputs, **kw)`` on numpy views."""
    where = kw.get("where")
    if type(where) is DeviceArray:
        kw = dict(kw, where=where._np())
    fn(*[as_view(x) for x in ins], out=tuple(o._np() for o in outs), **kw)


class _Unary:
    """The ``b`` of ``ufunc_out`` for a one-input ufunc (None could be a real operand)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unary>"

    def __reduce__(self) -> str:
        return "_UNARY"  # the one instance, also after a trip through pickle (a cluster worker)


_UNARY: Any = _Unary()
UNARY = _UNARY
