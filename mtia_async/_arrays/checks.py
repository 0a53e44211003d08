"""Argument checks of DeviceArray: dtypes, shapes, indices, reshape targets.

Each raises the builtin ``TypeError`` / ``ValueError`` at the call, naming the bad value
and what is accepted (numpy's own messages where numpy has one).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, SupportsIndex, TypeAlias

import ml_dtypes
import numpy as np

if TYPE_CHECKING:
    from .._core.device import DeviceImpl

__all__ = [
    "MAX_DIMS",
    "ShapeLike",
    "SUPPORTED_DTYPES",
    "check_dtype",
    "check_extent",
    "check_index",
    "check_shape",
    "fmt_shape",
    "reshape_target",
    "two_devices",
]

MAX_DIMS = 64  # numpy's NPY_MAXDIMS

ShapeLike: TypeAlias = "SupportsIndex | Sequence[SupportsIndex]"
"""A shape argument: an int, or a sequence of ints (``3``, ``(2, 3)``, ``[2, 3]``)."""

# --- dtypes and shapes -------------------------------------------------------------------
_ML_DTYPES = frozenset(
    np.dtype(getattr(ml_dtypes, name)) for name in dir(ml_dtypes) if name == "bfloat16" or name.startswith("float8_")
)
SUPPORTED_DTYPES = (
    "bool, int8..int64, uint8..uint64, float16/32/64, complex64/128, and ml_dtypes bfloat16 and float8_* "
    "(e.g. float8_e4m3fn, float8_e5m2)"
)
_dtype_cache: dict[Any, np.dtype[Any]] = {}


def check_dtype(dtype: object) -> np.dtype[Any]:
    """Return ``np.dtype(dtype)`` (native byte order) if a DeviceArray can hold it.

    Raises:
        TypeError: not a dtype, or an unsupported one (object, str, bytes, void,
            datetime, ...); the message names it and the supported kinds.
    """
    try:
        hit = _dtype_cache.get(dtype)
    except TypeError:  # unhashable: let np.dtype judge it
        hit = None
    if hit is not None:
        return hit
    try:
        dt: np.dtype[Any] = np.dtype(dtype)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{dtype!r:.80} is not a dtype ({exc}); DeviceArray supports {SUPPORTED_DTYPES}") from None
    if not dt.isnative:
        dt = np.dtype(dt.newbyteorder("="))
    if not ((dt.kind in "biufc" and dt.fields is None) or dt in _ML_DTYPES):
        raise TypeError(f"dtype {dt!r} (kind {dt.kind!r}) is not supported on a DeviceArray; supported: {SUPPORTED_DTYPES}")
    if len(_dtype_cache) < 256:
        try:
            _dtype_cache[dtype] = dt
        except TypeError:
            pass
    return dt


def check_shape(shape: object) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of non-negative ints.

    Raises:
        TypeError: not an int or a sequence of ints (bools and floats are refused).
        ValueError: a negative dimension, or more than 64 dimensions.
    """
    if type(shape) is int:  # the common cases, checked without a loop of calls
        if shape >= 0:
            return (shape,)
    elif type(shape) is tuple and len(shape) <= MAX_DIMS:
        for d in shape:
            if type(d) is not int or d < 0:
                break
        else:
            return shape
    if type(shape) is tuple:
        items: tuple[Any, ...] = shape
    elif isinstance(shape, (list, tuple)):
        items = tuple(shape)
    else:
        items = (shape,)
    dims = []
    for d in items:
        if isinstance(d, (bool, np.bool_)):
            raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r:.80} (contains the bool {d!r})")
        try:
            n = operator.index(d)
        except TypeError:
            raise TypeError(
                f"shape must be an int or a tuple of ints, got {type(shape).__name__} {shape!r:.80}"
            ) from None
        if n < 0:
            raise ValueError(f"negative dimensions are not allowed: shape {shape!r:.80}")
        dims.append(n)
    if len(dims) > MAX_DIMS:
        raise ValueError(f"shape {shape!r:.80} has {len(dims)} dimensions; at most {MAX_DIMS} are supported")
    return tuple(dims)


_INTP_MAX = int(np.iinfo(np.intp).max)


def check_extent(shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    """Raise numpy's ``ValueError`` for a shape numpy refuses, also when it holds no element.

    A dimension above ``intp``'s maximum, or a product of the non-zero dimensions times
    the item size above it, is refused by numpy whatever the other dimensions are.
    """
    extent = dtype.itemsize
    for d in shape:
        if d > _INTP_MAX:
            raise ValueError(f"Maximum allowed dimension exceeded: shape {shape!r:.80}")
        if d:
            extent *= d
    if extent > _INTP_MAX:
        raise ValueError(
            "array is too big; `arr.size * arr.dtype.itemsize` is larger than the maximum possible size: "
            f"shape {shape!r:.80}, dtype {dtype}"
        )


def fmt_shape(shape: tuple[int, ...]) -> str:
    """A shape as numpy's messages print it: ``(2,3)``, ``(3,)``, ``()``."""
    return "(" + ",".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


_INDEX_HELP = (
    "a DeviceArray takes ints, slices, None, ..., and integer or boolean arrays (host arrays, lists or "
    "DeviceArrays) as indices"
)


def check_index(index: object) -> tuple[Any, ...] | None:
    """Validate an index: a basic one as a tuple ending with ``...``, None for an advanced one.

    The trailing Ellipsis makes numpy return a 0-d view rather than a scalar, so the
    caller never reads device memory. An advanced index (an integer or boolean array,
    a list, a bool: numpy's "advanced indexing") is left to ``functions.indexing``.

    Raises:
        IndexError: an item that is no index at all (a float, a string, ...), as numpy.
    """
    items = index if type(index) is tuple else (index,)
    ellipsis = advanced = False
    for item in items:
        t = type(item)
        if t is int or t is slice or item is None:
            continue
        if item is Ellipsis:
            ellipsis = True
            continue
        if t is bool or isinstance(item, (np.bool_, np.ndarray, list, tuple)) or hasattr(item, "_dev"):
            advanced = True
            continue
        try:
            operator.index(item)
        except TypeError:
            raise IndexError(f"invalid index {item!r:.60} ({type(item).__name__}); {_INDEX_HELP}") from None
    if advanced:
        return None
    return items if ellipsis else items + (Ellipsis,)


def reshape_target(shape: tuple[Any, ...], size: int) -> tuple[int, ...]:
    """numpy's reshape rules (one -1 inferred), raising numpy's messages."""
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = tuple(shape[0]) if isinstance(shape[0], (tuple, list)) else shape
    dims = []
    unknown = -1
    for i, d in enumerate(shape):
        if isinstance(d, (bool, np.bool_)):
            raise TypeError(f"reshape() expects ints, got {shape!r:.80}")
        n = operator.index(d)
        if n == -1:
            if unknown >= 0:
                raise ValueError("can only specify one unknown dimension")
            unknown = i
        elif n < 0:
            raise ValueError(f"negative dimensions not allowed: {shape!r:.80}")
        dims.append(n)
    known = math.prod(d for d in dims if d != -1)
    if unknown >= 0:
        if known == 0 or size % known:
            raise ValueError(f"cannot reshape array of size {size} into shape {fmt_shape(tuple(dims))}")
        dims[unknown] = size // known
    elif known != size:
        raise ValueError(f"cannot reshape array of size {size} into shape {fmt_shape(tuple(dims))}")
    return tuple(dims)


def two_devices(a: DeviceImpl, b: DeviceImpl) -> str:
    """The message for operands on two devices."""
    if a.index == b.index:
        return (
            f"DeviceArrays of two runtimes (both mtia:{a.index}) cannot be mixed: the older runtime was shut down "
            "and its arrays are unusable"
        )
    return (
        f"operands are on two devices, mtia:{a.index} and mtia:{b.index}; move one with .to({a.index}) or "
        f".to({b.index}) first"
    )
