"""What every numpy function on DeviceArrays shares: devices, operands, outputs, kernels.

The shape of every implementation here:

1. on the caller: find the one device of the DeviceArray arguments (``device_of``; two
   devices are a ``ValueError`` at the call), bring host operands to it (``on_device``),
   work out the output shape and dtype from metadata only (never the data; cached with
   ``remember``), allocate the output (``target``: ``OutOfMemoryError`` at the call);
2. enqueue one kernel on the current stream of that device (``stream_of(dev).launch``,
   or ``enqueue``), saying exactly what it reads and writes: tuples of DeviceArrays only
   (``device_arrays``; the sanitizer and graph capture rely on them);
3. in the worker: the kernel calls numpy on the views of device memory (``as_view``),
   writing into the output's view (``out_kernel`` when numpy takes ``out=``,
   ``into_kernel`` when it takes it positionally, ``assign_kernel`` otherwise).

Operands checked from metadata before anything moves (``operands``, then ``placed``),
output dtypes from numpy run on small ``dummy`` arrays, and output shapes from numpy run
on ghosts (below) are what ``linalg``, ``sorting`` and ``selection`` share.

Output shapes of data-movement functions come from numpy itself, run on *ghosts*:
arrays of the right shape whose dtype has no bytes (``ghost``), so numpy validates the
arguments and computes the shape, with its own errors, and moves nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..._core.context import stream_of
from ..array import SCALARS, DeviceArray, as_view, new_array
from ..caches import cache_put, value_key
from ..checks import check_dtype, fmt_shape, two_devices
from ..transfer import from_host
from .registry import unsupported

if TYPE_CHECKING:
    from ..._core.device import DeviceImpl

__all__ = [
    "NO_KW",
    "VOID",
    "Shape",
    "CALLS",
    "assign_kernel",
    "device",
    "device_arrays",
    "device_of",
    "dummy",
    "enqueue",
    "freeze",
    "fresh",
    "ghost",
    "into_kernel",
    "key_of",
    "on_device",
    "ones",
    "operand",
    "operands",
    "out_kernel",
    "output",
    "placed",
    "remember",
    "remember_call",
    "result_dtype",
    "shape_of",
    "stand_in",
    "target",
    "views",
    "with_function",
]

Shape = tuple[int, ...]

VOID = np.dtype([])  # itemsize 0: a ghost's elements cost nothing to move
_empty = np.empty
_ZEROS = bytes(16)  # backs the zero-stride stand-ins (16: complex128's item)
_STAND_INS: dict[tuple[Any, ...], np.ndarray[Any, Any]] = {}


def ghost(x: Any) -> np.ndarray[Any, Any]:
    """An array shaped as ``x`` (a DeviceArray or a shape) that holds no bytes: numpy's shape oracle.

    Writable (numpy checks an assignment's broadcasting on it); ~0.25 us.
    """
    return _empty(x._shape if type(x) is DeviceArray else x, VOID)


def stand_in(shape: Shape, dtype: np.dtype[Any], fill: bytes = _ZEROS) -> np.ndarray[Any, Any]:
    """A read-only zero-stride array of ``shape`` and ``dtype`` holding ``fill`` (zeros, or True; cached):
    for an index array whose values the caller does not know (a DeviceArray's) or need not walk."""
    key = (shape, dtype, fill)
    g = _STAND_INS.get(key)
    if g is None:
        g = np.ndarray(shape, dtype, buffer=fill, strides=(0,) * len(shape))
        cache_put(_STAND_INS, key, g)
    return g


def device_of(items: Any) -> DeviceImpl | None:
    """The device of the DeviceArrays among ``items`` (lists and tuples searched one level deep).

    Raises:
        ValueError: DeviceArrays on two devices.
    """
    dev = None
    for x in items:
        for y in x if type(x) is list or type(x) is tuple else (x,):
            if type(y) is DeviceArray:
                if dev is None:
                    dev = y._dev
                elif y._dev is not dev:
                    raise ValueError(two_devices(dev, y._dev))
    return dev


def on_device(x: Any, dev: DeviceImpl, name: str) -> Any:
    """``x`` as an operand on ``dev``: a DeviceArray there, or a scalar; host data is copied over.

    Raises:
        ValueError: a DeviceArray of another device.
        TypeError: something numpy would not take as an array.
    """
    if type(x) is DeviceArray:
        if x._dev is not dev:
            raise ValueError(two_devices(dev, x._dev))
        return x
    if isinstance(x, (*SCALARS, np.generic)):
        return x
    if isinstance(x, (np.ndarray, list, tuple)):
        return from_host(x, None, dev)
    raise TypeError(
        f"numpy.{name}() on DeviceArrays takes DeviceArrays, scalars or host arrays, got {type(x).__name__} {x!r:.60}"
    )


def target(out: Any, shape: tuple[int, ...], dtype: Any, dev: DeviceImpl, name: str) -> DeviceArray:
    """The output: ``out`` checked (a DeviceArray of ``dev`` with exactly ``shape``), or a new array.

    Raises:
        TypeError: ``out`` is not a DeviceArray.
        ValueError: ``out`` is on another device or has another shape.
        OutOfMemoryError: the new array does not fit.
    """
    if out is None:
        return new_array(dev, shape, check_dtype(dtype), stream_of(dev))
    if type(out) is tuple and len(out) == 1:
        out = out[0]
    if type(out) is not DeviceArray:
        raise TypeError(f"out= of numpy.{name}() on DeviceArrays must be a DeviceArray, got {type(out).__name__}")
    if out._dev is not dev:
        raise ValueError(two_devices(dev, out._dev))
    if out._shape != shape:
        raise ValueError(f"out= of numpy.{name}() has shape {fmt_shape(out._shape)}; the result's is {fmt_shape(shape)}")
    return out


def device(items: tuple[Any, ...], name: str) -> DeviceImpl:
    """The one device of the DeviceArrays among ``items`` (numpy dispatched here: there is one).

    Raises:
        ValueError: DeviceArrays on two devices.
    """
    dev = device_of(items)
    if dev is None:
        raise unsupported(name, "no DeviceArray among its array arguments")
    return dev


# --- operands: validated from metadata first, moved to the device only once the call is valid ----------
def operand(x: Any, name: str) -> Any:
    """``x`` as numpy takes it, nothing moved yet: a DeviceArray, a scalar, or host data as an ndarray.

    Raises:
        TypeError: something numpy would not take as an array, or an unsupported dtype.
    """
    if type(x) is DeviceArray or type(x) in SCALARS:
        return x
    if isinstance(x, (np.ndarray, list, tuple, np.generic)):
        host = np.asarray(x)
        check_dtype(host.dtype)
        return host
    raise TypeError(
        f"numpy.{name}() on DeviceArrays takes DeviceArrays, scalars or host arrays, got {type(x).__name__} {x!r:.60}"
    )


def operands(args: tuple[Any, ...], out: Any, name: str) -> tuple[DeviceImpl, tuple[Any, ...]]:
    """The device and the operands (``operand``) of a call; DeviceArrays of one device pass as they are."""
    first = args[0]
    if out is None and type(first) is DeviceArray:
        dev = first._dev
        for x in args:
            if type(x) is not DeviceArray or x._dev is not dev:
                break
        else:
            return dev, args
    return device((*args, out), name), tuple(operand(x, name) for x in args)


def shape_of(x: Any) -> Shape:
    """The shape of an operand (a scalar's is ``()``)."""
    if type(x) is DeviceArray:
        return x._shape
    return x.shape if type(x) is np.ndarray else ()


def key_of(x: Any) -> Any:
    """What numpy's type resolution sees of an operand: an array's dtype, a scalar's class (or int range)."""
    if type(x) is DeviceArray:
        return x._dtype
    return x.dtype if type(x) is np.ndarray else value_key(x)


def dummy(x: Any, shape: Shape) -> Any:
    """A stand-in for ``x`` shaped ``shape`` (scalars stand for themselves): numpy's dtype oracle."""
    if type(x) is DeviceArray:
        return np.zeros(shape, x._dtype)
    return np.zeros(shape, x.dtype) if type(x) is np.ndarray else x


def ones(x: Any) -> Shape:
    """The one-element pattern of an operand's shape."""
    return (1,) * len(shape_of(x))


def result_dtype(value: Any) -> np.dtype[Any]:
    """The dtype of a dummy result (an array or a numpy scalar), checked."""
    return check_dtype(np.asarray(value).dtype)


def freeze(x: Any) -> Any:
    """A cache key of an argument: lists, tuples and dicts as tuples, every value with its type."""
    if type(x) is list or type(x) is tuple:
        return (type(x), *map(freeze, x))
    if type(x) is dict:
        return (dict, *[(k, freeze(v)) for k, v in x.items()])
    return (type(x), x)


# --- output, placing, enqueueing ------------------------------------------------------------------------
def output(out: Any, shape: Shape, dt: np.dtype[Any], dev: DeviceImpl, name: str) -> DeviceArray:
    """``out`` checked (``target``), or a new array of the checked dtype ``dt`` whose numpy view is built now."""
    if out is None:
        return new_array(dev, shape, dt, stream_of(dev), True)
    return target(out, shape, dt, dev, name)


def fresh(out: Any, shape: Shape, dt: Any, dev: DeviceImpl, name: str) -> tuple[DeviceArray, Any]:
    """The output (``output``; ``dt`` checked here) and what its kernel writes: a new array's numpy view, or ``out``.

    A kernel holding the new array's view rather than the array lets a result the caller
    drops free its block at once, on the caller (as ``fastpath._launch_fresh`` does).
    """
    if out is None:
        result = new_array(dev, shape, check_dtype(dt), stream_of(dev), True)
        return result, result._view
    result = target(out, shape, dt, dev, name)
    return result, result


def device_arrays(items: tuple[Any, ...]) -> tuple[DeviceArray, ...]:
    """The DeviceArrays among ``items``, for a launch's reads or writes (``items`` itself when all are)."""
    for x in items:
        if type(x) is not DeviceArray:
            return tuple(y for y in items if type(y) is DeviceArray)
    return items


def placed(ops: tuple[Any, ...], dev: DeviceImpl, name: str) -> tuple[tuple[Any, ...], tuple[DeviceArray, ...]]:
    """The operands on ``dev`` (host data copied over: ``on_device``), and the DeviceArrays among them."""
    for x in ops:
        if type(x) is not DeviceArray:
            ops = tuple(on_device(x, dev, name) if type(x) is np.ndarray else x for x in ops)
            return ops, device_arrays(ops)
    return ops, ops


def enqueue(dev: DeviceImpl, kernel: Any, fn: Any, args: Any, kw: Any, o: DeviceArray, reads: tuple[Any, ...],
            out: Any = None) -> DeviceArray:  # fmt: skip
    """Enqueue ``kernel(fn, args, kw, z)`` writing ``o`` (nothing if ``o`` is empty); return ``o``.

    ``z`` is a new output's numpy view (``out`` None), as the operators pass it
    (``fastpath._launch_fresh``: dropping the result frees its block at once, for work
    enqueued later on the same stream), or the caller's ``out=`` DeviceArray itself (it may
    have been allocated for another stream: the FIFO item keeps it alive).
    """
    if o._block is not None:
        stream_of(dev).launch(kernel, (fn, args, kw, o if out is not None else o._view), reads, (o,))
    return o


# --- in the worker ------------------------------------------------------------------------------------
_K = TypeVar("_K", bound=Callable[..., None])


def with_function(kernel: _K) -> _K:
    """Mark a kernel whose first argument is the numpy function it runs (``binds_kernel``).

    Failures, the profiler's trace and the sanitizer's reports then name that function
    (``concatenate``, ``sort``) rather than the kernel, as they name the user's kernel
    of a launch runner (``_arrays/bind.py``). Every kernel of this package is one.
    """
    kernel.binds_kernel = True  # type: ignore[attr-defined]
    return kernel


def views(x: Any) -> Any:
    """In a kernel: DeviceArrays replaced by numpy views of their memory, in lists and tuples too."""
    if type(x) is DeviceArray:
        return as_view(x)
    if type(x) is list or type(x) is tuple:
        return type(x)(views(y) for y in x)
    return x


NO_KW: dict[str, Any] = {}


@with_function
def out_kernel(fn: Any, args: tuple[Any, ...], kw: dict[str, Any], z: Any) -> None:
    """``fn(*args, out=z, **kw)`` on the views: numpy writes the output in place.

    ``args`` is flat (DeviceArrays, host arrays, scalars): ``views`` for nested ones.
    """
    fn(*[as_view(x) for x in args], out=as_view(z), **kw)


@with_function
def into_kernel(fn: Any, args: tuple[Any, ...], kw: dict[str, Any], z: Any) -> None:
    """``fn(*args, z, **kw)``: the output as the last positional argument (``ndarray.cumsum(axis, dtype,
    out)``, ``np.dot(a, b, out)``), the cheapest call of numpy's methods."""
    fn(*[as_view(x) for x in args], as_view(z), **kw)


@with_function
def assign_kernel(fn: Any, args: tuple[Any, ...], kw: dict[str, Any], z: Any) -> None:
    """``z[...] = fn(*args, **kw)`` on the views (``args`` flat): for numpy functions without ``out=``."""
    np.copyto(as_view(z), fn(*[as_view(x) for x in args], **kw), casting="unsafe")


# --- cached resolutions ---------------------------------------------------------------------------
_RESOLVED: dict[Any, Any] = {}

CALLS: dict[Any, Any] = {}
"""Whole calls seen before (the numpy functions' fast paths; ``remember_call`` fills it).

Key: the function and everything its result depends on (each DeviceArray operand's dtype
and shape, each other argument's value with its type); value: what the call resolved to
(the output's shape and dtype, and whatever the kernel needs). A call found here skips
the argument handling and numpy's validation, allocates and enqueues at once; only a
call that went through the full path once, without error, is stored.
"""


def remember_call(key: Any, value: Any) -> None:
    """Store a validated call's resolution in ``CALLS`` (bounded as every cache here)."""
    cache_put(CALLS, key, value)


def remember(key: Any, compute: Callable[[], Any]) -> Any:
    """``compute()``, cached under ``key`` (None or an unhashable key: not cached).

    For what a call resolves from metadata (output shape and dtype): the same call again
    costs a dict lookup. Errors are not cached (they raise each time).
    """
    if key is None:
        return compute()
    try:
        hit = _RESOLVED.get(key)
    except TypeError:  # an unhashable argument in the key
        return compute()
    if hit is None:
        hit = compute()
        cache_put(_RESOLVED, key, hit)
    return hit
