"""NumPy dispatch for DeviceArray: the operators and every ufunc method but two.

Every call works out its output shapes and dtypes here, on the caller, allocates the
outputs here (so ``OutOfMemoryError`` and numpy's own shape, dtype and casting errors
are raised at the call), and enqueues one kernel on the current stream of the
operands' device, which calls the ufunc with ``out=`` on numpy views of device memory.
Input views are built by the worker on first use and cached on their arrays.

Type resolution runs numpy itself on dummy operands that cost nothing to compute
(zero-size, or one element per dimension for reductions), so the result dtypes and the
errors are numpy's. It is cached per (ufunc, method, operand dtypes, keyword
arguments); a Python int operand is keyed by its sign and bit length, which is what
decides numpy's overflow errors (NEP 50). Output shapes are plain tuple arithmetic.

Three speeds: the operators (and plain one- or two-input ufunc calls) on DeviceArrays
and Python scalars take ``binop``/``unop``: two dict lookups, one allocation, one
enqueue. Any other call seen before with the same operand dtypes, shapes and keywords
is replayed from ``_CALLS`` (a device check, the allocation, the enqueue). The rest
takes the full path of ``array_ufunc``.

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
from .array import SCALARS, DeviceArray, as_view, new_array
from .checks import check_dtype
from .shapes import broadcast, check_out_shape, check_where, gufunc_shapes, pattern, reduce_shapes
from .operands import common_device, operand, outputs, shape_of, where_operand

if TYPE_CHECKING:
    from .._core.device import DeviceImpl
    from .._core.stream import StreamImpl

__all__ = [
    "RESOLVED",
    "array_ufunc",
    "array_ufunc_entry",
    "binop",
    "cache_put",
    "enqueue",
    "ibinop",
    "rbinop",
    "ufunc_operator",
    "unop",
    "keywords_key",
    "value_key",
]

_CACHE_MAX = 4096
BIN_CACHE: dict[tuple[Any, Any, Any], np.dtype[Any]] = {}  # (ufunc, key a, key b) -> result dtype
UN_CACHE: dict[tuple[Any, Any], np.dtype[Any]] = {}  # (ufunc, dtype) -> result dtype
RESOLVED: dict[tuple[Any, ...], tuple[np.dtype[Any], ...]] = {}  # general calls -> output dtypes
_METHODS = ("__call__", "reduce", "accumulate", "outer")
_ndarray = np.ndarray


def cache_put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Store in a resolution cache; a full cache is emptied first (it refills as calls come)."""
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


# --- kernels (run in a worker thread) -----------------------------------------------------
# The fast-path kernels get the output's numpy view itself (``z``), not its DeviceArray:
# see ``_fresh_output``. Inputs are DeviceArrays whose views are built here on first use.
def ufunc_aa(uf: Any, a: DeviceArray, b: DeviceArray, z: np.ndarray[Any, Any]) -> None:
    x = a._view
    if x is None:
        x = a._np()
    y = b._view
    if y is None:
        y = b._np()
    uf(x, y, out=z)


def ufunc_as(uf: Any, a: DeviceArray, b: Any, z: np.ndarray[Any, Any]) -> None:
    x = a._view
    if x is None:
        x = a._np()
    uf(x, b, out=z)


def ufunc_sa(uf: Any, a: Any, b: DeviceArray, z: np.ndarray[Any, Any]) -> None:
    y = b._view
    if y is None:
        y = b._np()
    uf(a, y, out=z)


def ufunc_a(uf: Any, a: DeviceArray, z: np.ndarray[Any, Any]) -> None:
    x = a._view
    if x is None:
        x = a._np()
    uf(x, out=z)


def ufunc_kernel(fn: Any, ins: list[Any], outs: tuple[DeviceArray, ...], kw: dict[str, Any]) -> None:
    """The general ufunc kernel: ``fn(*inputs, out=outputs, **kw)`` on numpy views."""
    where = kw.get("where")
    if type(where) is DeviceArray:
        kw = dict(kw, where=where._np())
    fn(*[as_view(x) for x in ins], out=tuple(o._np() for o in outs), **kw)


# --- helpers ---------------------------------------------------------------------------------
def int_key(v: int) -> Any:
    """Cache key of a Python int operand: what decides numpy's overflow errors (NEP 50)."""
    if -1 < v < 128:
        return int  # fits every integer dtype
    return (int, v < 0, (v if v >= 0 else ~v).bit_length())


def keywords_key(kw: dict[str, Any]) -> tuple[Any, ...]:
    """The cache key of keyword arguments: their exact values (``axis=0`` is not ``axis=1``).

    The type is part of it: ``1``, ``1.0`` and ``True`` hash alike but are different
    arguments. ``TypeError`` for an unhashable value (the call is then not cached).
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


def enqueue(dev: DeviceImpl, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    """Enqueue ``fn(*args)`` on the current stream of ``dev``."""
    stream_of(dev).launch(fn, args)


# --- the operators' fast path ----------------------------------------------------------------
def _fresh_output(dev: DeviceImpl, shape: tuple[int, ...], dt: np.dtype[Any], s: StreamImpl) -> DeviceArray:
    """A new output on ``s`` with its numpy view built now, for the kernel to write into.

    The FIFO item holds that view, not the DeviceArray, so dropping the result frees its
    block at once, as torch's caching allocator does: the block is reused only by work
    enqueued later on this same stream, which runs after the pending kernel (the view
    keeps the host memory valid even if ``empty_cache`` releases the segment meanwhile).
    That keeps the freeing on the caller's thread, where the next op reuses the block
    while it is hot, instead of on the worker (measured: ~4.1 vs ~5.7 us per ``a + b``).
    """
    out = new_array(dev, shape, dt, s)
    block = out._block
    if block is not None:
        out._view = _ndarray(shape, dt, block.buffer)
    return out


def binop(uf: Any, a: DeviceArray, b: Any) -> Any:
    """``a <op> b``: one kernel on the current stream, output allocated here."""
    tb = type(b)
    if tb is DeviceArray:
        dev = a._dev
        dt = BIN_CACHE.get((uf, a._dtype, b._dtype))
        if dt is None or b._dev is not dev:
            return ufunc_operator(uf, (a, b))
        shape = a._shape
        if shape != b._shape:
            shape = broadcast((shape, b._shape))
        kernel: Callable[..., None] = ufunc_aa
    elif tb is float or tb is int or tb is bool or tb is complex:
        dt = BIN_CACHE.get((uf, a._dtype, int_key(b) if tb is int else tb))
        if dt is None:
            return ufunc_operator(uf, (a, b))
        dev = a._dev
        shape = a._shape
        kernel = ufunc_as
    else:
        return ufunc_operator(uf, (a, b))
    s = stream_of(dev)
    out = _fresh_output(dev, shape, dt, s)
    z = out._view
    if z is not None:  # else empty: nothing to compute
        s.launch(kernel, (uf, a, b, z))
    return out


def rbinop(uf: Any, a: DeviceArray, b: Any) -> Any:
    """``b <op> a`` for a scalar or host ``b`` (the reflected operators)."""
    tb = type(b)
    if tb is float or tb is int or tb is bool or tb is complex:
        dt = BIN_CACHE.get((uf, int_key(b) if tb is int else tb, a._dtype))
        if dt is not None:
            dev = a._dev
            s = stream_of(dev)
            out = _fresh_output(dev, a._shape, dt, s)
            z = out._view
            if z is not None:
                s.launch(ufunc_sa, (uf, b, a, z))
            return out
    return ufunc_operator(uf, (b, a))


def ibinop(uf: Any, a: DeviceArray, b: Any) -> Any:
    """``a <op>= b``: ``uf(a, b, out=a)``, numpy's same_kind casting checked here."""
    result = ufunc_operator(uf, (a, b), out=a)
    return a if result is not NotImplemented else result


def unop(uf: Any, a: DeviceArray) -> DeviceArray:
    """``<op> a`` (``-a``, ``~a``, ``abs(a)``) and one-input ufunc calls."""
    dt = UN_CACHE.get((uf, a._dtype))
    if dt is None:
        result: DeviceArray = array_ufunc(uf, "__call__", (a,), {})
        return result
    dev = a._dev
    s = stream_of(dev)
    out = _fresh_output(dev, a._shape, dt, s)
    z = out._view
    if z is not None:
        s.launch(ufunc_a, (uf, a, z))
    return out


def ufunc_operator(uf: Any, inputs: tuple[Any, ...], out: DeviceArray | None = None) -> Any:
    """An operator off the fast path; NotImplemented for operands numpy would not take."""
    for x in inputs:
        if type(x) is not DeviceArray and not isinstance(x, (*SCALARS, np.generic, np.ndarray, list, tuple)):
            return NotImplemented
    return array_ufunc(uf, "__call__", inputs, {} if out is None else {"out": (out,)})


def array_ufunc_entry(uf: Any, method: str, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``DeviceArray.__array_ufunc__``: plain elementwise calls take the fast path."""
    if method == "__call__" and not kwargs and uf.nout == 1 and uf.signature is None:
        if len(inputs) == 2:
            a, b = inputs
            if type(a) is DeviceArray:
                return binop(uf, a, b)
            if type(b) is DeviceArray:
                return rbinop(uf, b, a)
        elif len(inputs) == 1 and type(inputs[0]) is DeviceArray:
            return unop(uf, inputs[0])
    return array_ufunc(uf, method, inputs, kwargs)


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
            if method == "__call__" and not kw and uf.nout == 1 and uf.signature is None and outs == (None,):
                _fill_fast_cache(uf, ins, dtypes[0])
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
    """Allocate the missing outputs and enqueue the ufunc kernel; return the outputs."""
    s = stream_of(dev)
    final = tuple([new_array(dev, shape, dt, s) if o is None else o for o, dt in zip(outs, dtypes)])
    if compute and 0 not in shape:
        s.launch(ufunc_kernel, (uf if method == "__call__" else getattr(uf, method), ins, final, kw))
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


def _fill_fast_cache(uf: Any, ins: list[Any], dt: np.dtype[Any]) -> None:
    """Remember a plain call's result dtype for the operators' fast path."""
    if len(ins) == 1:
        if type(ins[0]) is DeviceArray:
            cache_put(UN_CACHE, (uf, ins[0]._dtype), dt)
        return
    a, b = ins
    if (type(a) is DeviceArray or type(a) in SCALARS) and (type(b) is DeviceArray or type(b) in SCALARS):
        cache_put(BIN_CACHE, (uf, value_key(a), value_key(b)), dt)


