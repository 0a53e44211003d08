"""The dispatch caches: what the general path resolved once, for the fast paths to reuse.

The general path (``dispatch.array_ufunc``) validates a call, resolves its output dtypes
with numpy itself and raises numpy's errors; once a call has gone through it, ``learn``
stores the decision here, keyed by everything that changes it. The fast paths
(``fastpath``) then only look a key up, allocate and enqueue.

What a key holds decides what may be reused, so each is complete:

* an operand is keyed by its dtype (a DeviceArray), by its class (a Python float,
  complex or bool: numpy treats them as weak scalars), or, for a Python int, by its sign
  and bit length: what decides numpy's overflow errors (NEP 50);
* shapes are in a key wherever they change the answer (gufuncs, reductions);
* keyword values are keyed exactly, with their type (``axis=0`` is not ``axis=1``, and
  ``1``, ``1.0`` and ``True`` hash alike but are different arguments).

Each cache is a plain dict, written whole per entry by the calling threads (a lost race
only recomputes), emptied when it reaches 4,096 entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .array import SCALARS, DeviceArray

__all__ = [
    "BIN_CACHE",
    "GU_CACHE",
    "OUT_CACHE",
    "RED_CACHE",
    "RESOLVED",
    "UN_CACHE",
    "cache_put",
    "int_key",
    "keywords_key",
    "learn",
    "value_key",
]

_CACHE_MAX = 4096
Dtype = np.dtype[Any]

BIN_CACHE: dict[tuple[Any, Any, Any], Dtype] = {}  # (ufunc, key a, key b) -> result dtype (elementwise)
UN_CACHE: dict[tuple[Any, Any], Dtype] = {}  # (ufunc, dtype) -> result dtype
GU_CACHE: dict[tuple[Any, ...], tuple[tuple[int, ...], Dtype]] = {}  # (gufunc, dt a, shape a, dt b, shape b)
OUT_CACHE: dict[tuple[Any, ...], bool] = {}  # (ufunc, key a[, key b], out dtype) -> castable into out
RED_CACHE: dict[tuple[Any, ...], tuple[tuple[int, ...], Dtype]] = {}  # (ufunc, dt, shape, axis, keepdims)
RESOLVED: dict[tuple[Any, ...], tuple[Dtype, ...]] = {}  # general calls -> output dtypes


def cache_put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Store in a cache; a full cache is emptied first (it refills as calls come)."""
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def int_key(v: int) -> Any:
    """Cache key of a Python int operand: what decides numpy's overflow errors (NEP 50)."""
    if -1 < v < 128:
        return int  # fits every integer dtype
    return (int, v < 0, (v if v >= 0 else ~v).bit_length())


def keywords_key(kw: dict[str, Any]) -> tuple[Any, ...]:
    """The cache key of keyword arguments: their exact values, with their type.

    Raises:
        TypeError: an unhashable value (the call is then not cached).
    """
    return tuple(sorted((k, type(v), v) for k, v in kw.items()))


def value_key(x: Any) -> Any:
    """The cache key of an operand: what numpy's type resolution depends on (a dtype, a scalar class)."""
    t = type(x)
    if t is DeviceArray:
        return x._dtype
    if t is int:
        return int_key(x)
    if t is float or t is complex or t is bool:
        return t
    if isinstance(x, np.generic):
        return x.dtype
    hash(x)  # TypeError: not cacheable
    return x


def _fast_operand(x: Any) -> bool:
    """Whether the fast paths take ``x`` as it is: a DeviceArray or an exact Python scalar."""
    return type(x) is DeviceArray or type(x) in SCALARS


def learn(
    uf: Any,
    method: str,
    ins: list[Any],
    outs: tuple[DeviceArray | None, ...],
    kw: dict[str, Any],
    shape: tuple[int, ...],
    dtypes: tuple[Dtype, ...],
) -> None:
    """Remember a call the general path validated and resolved, when a fast path can replay it.

    ``kw`` holds the call's keywords but ``out`` (``where`` included when given): a fast
    path replays only calls whose keywords it covers.
    """
    if uf.nout != 1 or not all(_fast_operand(x) for x in ins):
        return
    dt = dtypes[0]
    if method == "reduce":
        a = ins[0]
        if outs == (None,) and set(kw) <= {"axis", "keepdims"} and type(a) is DeviceArray:
            axis = kw.get("axis", 0)
            try:
                key = (uf, a._dtype, a._shape, type(axis), axis, bool(kw.get("keepdims", False)))
                cache_put(RED_CACHE, key, (shape, dt))
            except TypeError:  # an unhashable axis (a list): not cached
                pass
        return
    if method != "__call__" or kw:
        return
    if uf.signature is not None:
        if len(ins) == 2 and outs == (None,) and all(type(x) is DeviceArray for x in ins):
            a, b = ins
            cache_put(GU_CACHE, (uf, a._dtype, a._shape, b._dtype, b._shape), (shape, dt))
        return
    keys = tuple(value_key(x) for x in ins)
    if outs == (None,):
        if len(ins) == 1:
            if type(ins[0]) is DeviceArray:
                cache_put(UN_CACHE, (uf, keys[0]), dt)
        elif len(ins) == 2:
            cache_put(BIN_CACHE, (uf, *keys), dt)
    elif type(outs[0]) is DeviceArray and any(type(x) is DeviceArray for x in ins):
        cache_put(OUT_CACHE, (uf, *keys, outs[0]._dtype), True)
