"""Output shapes of ufunc calls: broadcasting, reductions, gufunc cores.

Pure tuple arithmetic on the caller (shapes in, shapes out; a leaf of ``_arrays``),
raising numpy's messages, plus the small "pattern" shapes of the dummies that
``dispatch`` resolves dtypes on (same ndim, one element per non-empty dimension, so
numpy's errors for empty reductions still show). An operand that is a scalar has the
shape ``()``; an ``out=`` slot left empty is None.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from .checks import fmt_shape

Shape = tuple[int, ...]

__all__ = [
    "Shape",
    "broadcast",
    "check_out_shape",
    "check_where",
    "gufunc_shapes",
    "pattern",
    "reduce_shapes",
    "reduced",
]


def broadcast(shapes: Any) -> tuple[int, ...]:
    """numpy's broadcasting of ``shapes``, with the message of a ufunc."""
    ndim = max(len(s) for s in shapes)
    result = [1] * ndim
    for s in shapes:
        off = ndim - len(s)
        for i, d in enumerate(s):
            r = result[off + i]
            if d != r:
                if r == 1:
                    result[off + i] = d
                elif d != 1:
                    raise ValueError(
                        "operands could not be broadcast together with shapes " + " ".join(fmt_shape(s) for s in shapes)
                    )
    return tuple(result)


def reduced(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    """The shape left by a reduction over ``axes``."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def pattern(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A cheap stand-in shape: same ndim, 1 for each non-empty dimension."""
    return tuple(1 if d else 0 for d in shape)


def check_out_shape(outs: Sequence[Shape | None], shape: Shape, what: str) -> None:
    """Raise ``ValueError`` unless every given ``out=`` shape is exactly ``shape``."""
    for o in outs:
        if o is not None and o != shape:
            raise ValueError(f"{what}: out= has shape {fmt_shape(o)}, expected {fmt_shape(shape)}")


def reduce_shapes(
    name: str,
    method: str,
    ins: Sequence[Shape | None],
    outs: Sequence[Shape | None],
    where: Shape | None,
    kw: dict[str, Any],
) -> tuple[Shape, list[Shape], Shape]:
    """Output shape, and input and output dummy shapes, of ``reduce`` / ``accumulate``.

    ``ins`` holds the array operands' shapes (None for a scalar), ``where`` the mask's.
    """
    if len(ins) != 1:
        raise TypeError(f"{name}.{method}() takes exactly one array, got {len(ins)}")
    (shape,) = ins
    if shape is None:
        raise TypeError(f"{name}.{method}() of a scalar is not supported on DeviceArray")
    axis = kw.get("axis", 0)
    if method == "accumulate":
        if not shape:
            raise TypeError("cannot accumulate on a scalar")
        if axis is None and len(shape) != 1:
            raise ValueError("accumulate does not allow multiple axes")
        out_shape = shape
        out_pattern = pattern(shape)
    else:
        if not shape and isinstance(axis, (int, np.integer)) and not isinstance(axis, (bool, np.bool_)) and axis in (0, -1):
            axes: tuple[int, ...] = ()  # numpy's legacy rule: a 0-d array reduces over axis 0 or -1
        else:
            axes = tuple(range(len(shape))) if axis is None else normalize_axis_tuple(axis, len(shape))
        keepdims = bool(kw.get("keepdims", False))
        out_shape = reduced(shape, axes, keepdims)
        out_pattern = reduced(pattern(shape), axes, keepdims)
    check_out_shape(outs, out_shape, f"{name}.{method}")
    check_where(where, shape)
    return out_shape, [pattern(shape)], out_pattern


def check_where(where: Shape | None, shape: Shape) -> None:
    """Raise ``ValueError`` unless a ``where=`` mask of shape ``where`` broadcasts to ``shape``."""
    if where is not None and broadcast((where, shape)) != shape:
        raise ValueError(f"where= of shape {fmt_shape(where)} does not broadcast to {fmt_shape(shape)}")


_SIG_RE = re.compile(r"\(([^)]*)\)")


_SIGNATURES: dict[str, tuple[list[list[str]], list[list[str]]]] = {}


def _cores(signature: str) -> tuple[list[list[str]], list[list[str]]]:
    """The core dimension names of a gufunc signature, inputs and outputs (parsed once)."""
    parsed = _SIGNATURES.get(signature)
    if parsed is None:
        sig_in, sig_out = signature.split("->")
        parsed = _SIGNATURES[signature] = (
            [[d.strip() for d in g.split(",") if d.strip()] for g in _SIG_RE.findall(sig_in)],
            [[d.strip() for d in g.split(",") if d.strip()] for g in _SIG_RE.findall(sig_out)],
        )
    return parsed


def gufunc_shapes(
    name: str, signature: str, ins: Sequence[Shape], outs: Sequence[Shape | None], kw: dict[str, Any]
) -> tuple[Shape, list[Shape], Shape]:
    """Output shape and dummy shapes of a generalized ufunc (matmul's ``?`` dimensions included)."""
    for bad in ("axes", "axis", "keepdims"):
        if bad in kw:
            raise TypeError(f"{name}(..., {bad}=) is not supported on DeviceArray")
    cores_in, cores_out = _cores(signature)
    sizes: dict[str, int] = {}
    missing: set[str] = set()
    loops = []
    patterns: list[tuple[int, ...]] = []
    for i, (shape, core) in enumerate(zip(ins, cores_in)):
        optional = [n[:-1] for n in core if n.endswith("?")]
        names = [n.rstrip("?") for n in core]
        if len(shape) < len(names):
            if optional and len(shape) >= len(names) - len(optional):
                missing.update(optional)
                names = [n for n in names if n not in optional]
            else:
                raise ValueError(
                    f"{name}: Input operand {i} does not have enough dimensions (has {len(shape)}, gufunc core "
                    f"with signature {signature} requires {len(names) - len(optional)})"
                )
        split = len(shape) - len(names)
        for j, (n, d) in enumerate(zip(names, shape[split:])):
            if sizes.setdefault(n, d) != d:
                raise ValueError(
                    f"{name}: Input operand {i} has a mismatch in its core dimension {j}, with gufunc signature "
                    f"{signature} (size {d} is different from {sizes[n]})"
                )
        loops.append(shape[:split])
        patterns.append((1,) * len(names))
    out_core = [n.rstrip("?") for n in cores_out[0] if n.rstrip("?") not in missing]
    for n in out_core:
        if n not in sizes:
            raise TypeError(f"{name}: output core dimension {n!r} is not set by any input; not supported")
    shape = (broadcast(loops) if loops else ()) + tuple(sizes[n] for n in out_core)
    check_out_shape(outs, shape, name)
    return shape, patterns, (1,) * len(out_core)
