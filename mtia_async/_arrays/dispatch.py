"""NumPy dispatch for DeviceArray, the general path: every ufunc method but two, validated once.

Every call works out its output shapes and dtypes here, on the caller, allocates the
outputs here (so ``OutOfMemoryError`` and numpy's own shape, dtype and casting errors
are raised at the call), and enqueues one kernel on the current stream of the
operands' device, which calls the ufunc with ``out=`` on numpy views of device memory.

Type resolution runs numpy itself on dummy operands that cost nothing to compute
(zero-size, or one element per dimension for reductions), so the result dtypes and the
errors are numpy's. Resolutions are cached (``caches.RESOLVED``), and a call the fast
paths cover is remembered for them (``caches.learn``; ``fastpath`` replays it). Any
other call seen before with the same operand dtypes, shapes and keywords is replayed
from ``_CALLS`` (a device check, the allocation, the enqueue).

Supported: every ufunc's ``__call__``, ``reduce``, ``accumulate`` and ``outer``
(``out=``, ``where=``, ``dtype=``, ``axis=``, ``keepdims=``, ``initial=``, ``casting=``),
generalized ufuncs (``matmul``, ``vecdot``, ...) without ``axes=``; ``reduceat`` and
``at`` raise ``TypeError`` (no device implementation). Host arrays among the operands
are copied to the device first (as ``asarray``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.context import stream_of
from .array import SCALARS, DeviceArray, new_array
from .caches import RESOLVED, cache_put, int_key, keywords_key, learn, value_key
from .checks import check_dtype
from .kernels import ufunc_kernel
from .operands import common_device, operand, outputs, shape_of, where_operand
from .shapes import broadcast, check_out_shape, check_where, gufunc_shapes, pattern, reduce_shapes

if TYPE_CHECKING:
    from .._core.device import DeviceImpl

__all__ = ["array_ufunc", "enqueue", "ufunc_operator"]

_METHODS = ("__call__", "reduce", "accumulate", "outer")


def enqueue(
    dev: DeviceImpl, fn: Callable[..., None], args: tuple[Any, ...], reads: tuple[Any, ...], writes: tuple[Any, ...]
) -> None:
    """Enqueue ``fn(*args)`` on the current stream of ``dev``; it reads ``reads`` and writes ``writes``."""
    stream_of(dev).launch(fn, args, reads, writes)


def ufunc_operator(uf: Any, inputs: tuple[Any, ...], out: DeviceArray | None = None) -> Any:
    """An operator off the fast path; NotImplemented for operands numpy would not take."""
    for x in inputs:
        if type(x) is not DeviceArray and not isinstance(x, (*SCALARS, np.generic, np.ndarray, list, tuple)):
            return NotImplemented
    return array_ufunc(uf, "__call__", inputs, {} if out is None else {"out": (out,)})


# --- the general ufunc path --------------------------------------------------------------------
def array_ufunc(uf: Any, method: str, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``ufunc.method(*inputs, **kwargs)`` on DeviceArrays: one kernel, outputs returned.

    Raises:
        ValueError: operands on two devices, shapes that do not broadcast, a bad axis.
        TypeError: numpy's type-resolution and casting errors; ``reduceat``/``at``.
    """
    call: tuple[Any, ...] | None
    try:
        call = _call_key(uf, method, inputs, kwargs)
    except TypeError:  # host data, numpy scalars, unhashable keywords: the full path
        call = None
    if call is not None:
        hit = _CALLS.get(call)
        if hit is not None:
            result = _replay(hit, uf, method, inputs, kwargs)
            if result is not None:
                return result
    name = getattr(uf, "__name__", repr(uf))
    if method not in _METHODS:
        raise TypeError(
            f"numpy.{name}.{method} is not supported on DeviceArray (supported: __call__, reduce, accumulate, "
            "outer); copy to the host with to_host()/numpy() first"
        )
    if uf.signature is not None and method != "__call__":
        raise TypeError(f"numpy.{name}.{method} is not supported: {name} is a generalized ufunc")
    kw = dict(kwargs)
    outs = outputs(kw.pop("out", None), uf.nout, name)
    where = kw.pop("where", True)
    dev = common_device((*inputs, *outs, where))
    if dev is None:
        return NotImplemented
    ins = [operand(x, dev) for x in inputs]
    if any(x is None for x in ins):
        return NotImplemented
    where = where_operand(where, dev)
    # Output shape, and the shapes of the dummies numpy resolves the types on.
    out_shapes = [None if o is None else o._shape for o in outs]
    where_shape = where._shape if type(where) is DeviceArray else None
    if uf.signature is not None:
        if where is not None:
            raise TypeError(f"where= is not supported by the generalized ufunc {name}")
        shape, patterns, out_pattern = gufunc_shapes(name, uf.signature, [shape_of(x) for x in ins], out_shapes, kw)
    elif method == "__call__":
        shapes = [shape_of(x) for x in ins] + [o for o in out_shapes if o is not None]
        shape = broadcast(shapes + [where_shape] if where_shape is not None else shapes)
        check_out_shape(out_shapes, shape, name)
        patterns, out_pattern = [(0,)] * len(ins), (0,)  # zero-size: numpy computes nothing
    elif method == "outer":
        patterns = [tuple(0 for _ in shape_of(x)) for x in ins]
        shape = shape_of(ins[0]) + shape_of(ins[1]) if len(ins) == 2 else ()
        out_pattern = sum(patterns, ())
        check_out_shape(out_shapes, shape, f"{name}.outer")
        check_where(where_shape, shape)
    else:
        in_shapes = [x._shape if type(x) is DeviceArray else None for x in ins]
        shape, patterns, out_pattern = reduce_shapes(name, method, in_shapes, out_shapes, where_shape, kw)
    try:
        key: Any = (uf, method, tuple(value_key(x) for x in ins), tuple(None if o is None else o._dtype for o in outs))
        if kw:
            key += keywords_key(kw)
        if method != "__call__":
            key += (tuple(patterns), where is not None)
        dtypes = RESOLVED.get(key)
    except TypeError:  # an unhashable keyword value: resolve without caching
        key, dtypes = None, None
    if dtypes is None:
        dtypes = _resolve(uf, method, ins, patterns, outs, out_pattern, where, kw)
        if key is not None:
            cache_put(RESOLVED, key, dtypes)
    if call is not None:
        cache_put(_CALLS, call, (shape, dtypes))
    if where is not None:
        kw["where"] = where
    return _enqueue_call(uf, method, dev, ins, outs, shape, dtypes, kw, where is not False)


def _enqueue_call(
    uf: Any,
    method: str,
    dev: DeviceImpl,
    ins: list[Any],
    outs: tuple[DeviceArray | None, ...],
    shape: tuple[int, ...],
    dtypes: tuple[np.dtype[Any], ...],
    kw: dict[str, Any],
    compute: bool,
) -> Any:
    """Allocate the missing outputs and enqueue the ufunc kernel; return the outputs.

    Every call of the general path ends here, validated and resolved: the fast paths
    learn it (``caches.learn``) when they can replay it.
    """
    learn(uf, method, ins, outs, kw, shape, dtypes)
    s = stream_of(dev)
    final = tuple([new_array(dev, shape, dt, s) if o is None else o for o, dt in zip(outs, dtypes)])
    if compute and 0 not in shape:
        reads = tuple(x for x in (*ins, kw.get("where")) if type(x) is DeviceArray)
        s.launch(ufunc_kernel, (uf if method == "__call__" else getattr(uf, method), ins, final, kw), reads, final)
    return final[0] if len(final) == 1 else final


# --- memoized calls ----------------------------------------------------------------------------------
# A call whose operands are all DeviceArrays or Python scalars, with hashable keywords, is
# keyed by (ufunc, method, each operand's dtype and shape, the keywords): once the full path
# has validated and resolved it, the same call again is only a device check, the
# allocation and the enqueue (in-place operators, reductions and matmul in a loop).
_CALLS: dict[tuple[Any, ...], tuple[tuple[int, ...], tuple[np.dtype[Any], ...]]] = {}


def _operand_key(x: Any) -> Any:
    t = type(x)
    if t is DeviceArray:
        return (x._dtype, x._shape)
    if t is int:
        return int_key(x)
    if t is float or t is complex or t is bool:
        return t
    raise TypeError("not memoizable")


def _call_key(uf: Any, method: str, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The memo key of a call; TypeError when it cannot be memoized."""
    key: list[Any] = [uf, method]
    for x in inputs:
        key.append(_operand_key(x))
    for k, v in kwargs.items():
        if k == "out":
            key.append(tuple(None if o is None else _operand_key(o) for o in (v if type(v) is tuple else (v,))))
        elif k == "where":
            key.append(_operand_key(v) if type(v) is DeviceArray else (bool, v) if type(v) is bool else _bad())
        else:
            hash(v)
            key.append((k, type(v), v))  # exact values: axis=1 and axis=2 are different calls
    return tuple(key)


def _bad() -> Any:
    raise TypeError("not memoizable")


def _replay(
    hit: tuple[tuple[int, ...], tuple[np.dtype[Any], ...]], uf: Any, method: str, inputs: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Enqueue a memoized call; None when its arrays are on two devices (the full path raises)."""
    shape, dtypes = hit
    kw = dict(kwargs)
    out = kw.pop("out", None)
    outs = (None,) * uf.nout if out is None else out if type(out) is tuple else (out,)
    where = kw.get("where")
    dev = None
    for x in (*inputs, *outs, where):
        if type(x) is DeviceArray:
            if dev is None:
                dev = x._dev
            elif x._dev is not dev:
                return None
    if dev is None:
        return None
    if where is True:
        del kw["where"]
    return _enqueue_call(uf, method, dev, list(inputs), outs, shape, dtypes, kw, where is not False)


def _resolve(
    uf: Any,
    method: str,
    ins: list[Any],
    patterns: list[tuple[int, ...]],
    outs: tuple[DeviceArray | None, ...],
    out_pattern: tuple[int, ...],
    where: Any,
    kw: dict[str, Any],
) -> tuple[np.dtype[Any], ...]:
    """The output dtypes, from numpy run on dummies of ``patterns`` shapes (numpy's errors)."""
    dummies = [np.zeros(p, x._dtype) if type(x) is DeviceArray else x for x, p in zip(ins, patterns)]
    dkw = dict(kw)
    if any(o is not None for o in outs):
        dkw["out"] = tuple(None if o is None else np.empty(out_pattern, o._dtype) for o in outs)
    if method in ("reduce", "accumulate") and where is not None:
        dkw["where"] = np.ones(pattern(where._shape) if type(where) is DeviceArray else (), bool)
    with np.errstate(all="ignore"):
        result = (uf if method == "__call__" else getattr(uf, method))(*dummies, **dkw)
    return tuple(check_dtype(r.dtype) for r in (result if uf.nout > 1 else (result,)))
