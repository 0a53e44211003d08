"""What every numpy function on DeviceArrays shares: devices, operands, outputs, kernels.

The shape of every implementation here:

1. on the caller: find the one device of the DeviceArray arguments (``device_of``; two
   devices are a ``ValueError`` at the call), bring host operands to it (``on_device``),
   work out the output shape and dtype from metadata only (never the data; cached with
   ``remember``), allocate the output (``target``: ``OutOfMemoryError`` at the call);
2. enqueue one kernel on the current stream of that device (``launch``), saying exactly
   what it reads and writes (the sanitizer and graph capture rely on it);
3. in the worker: the kernel calls numpy on the views of device memory (``views``),
   writing into the output's view (``out_kernel`` when numpy takes ``out=``,
   ``assign_kernel`` otherwise).

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
from ..caches import cache_put
from ..checks import check_dtype, fmt_shape, two_devices
from ..transfer import from_host

if TYPE_CHECKING:
    from ..._core.device import DeviceImpl

__all__ = [
    "VOID",
    "assign_kernel",
    "device_of",
    "ghost",
    "launch",
    "on_device",
    "out_kernel",
    "remember",
    "target",
    "views",
    "with_function",
]

VOID = np.dtype([])  # itemsize 0: a ghost's elements cost nothing to move
_empty = np.empty


def ghost(x: Any) -> np.ndarray[Any, Any]:
    """An array shaped as ``x`` (a DeviceArray or a shape) that holds no bytes: numpy's shape oracle.

    Writable (numpy checks an assignment's broadcasting on it); ~0.25 us.
    """
    return _empty(x._shape if type(x) is DeviceArray else x, VOID)


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


def launch(dev: DeviceImpl, kernel: Callable[..., None], args: tuple[Any, ...], reads: Any, writes: Any) -> None:
    """Enqueue ``kernel(*args)`` on the current stream of ``dev``; it reads ``reads``, writes ``writes``.

    ``reads`` and ``writes`` may hold anything: only their DeviceArrays are kept.
    """
    r = tuple(x for x in reads if type(x) is DeviceArray)
    w = tuple(x for x in writes if type(x) is DeviceArray)
    stream_of(dev).launch(kernel, args, r, w)


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


@with_function
def out_kernel(fn: Any, args: tuple[Any, ...], kw: dict[str, Any], out: DeviceArray) -> None:
    """``fn(*args, out=<out's view>, **kw)``: numpy writes the result in place."""
    fn(*views(args), out=as_view(out), **views(kw))


@with_function
def assign_kernel(fn: Any, args: tuple[Any, ...], kw: dict[str, Any], out: DeviceArray) -> None:
    """``out[...] = fn(*args, **kw)``: for numpy functions without ``out=``."""
    np.copyto(as_view(out), fn(*views(args), **views(kw)), casting="unsafe")


# --- cached resolutions ---------------------------------------------------------------------------
_RESOLVED: dict[Any, Any] = {}


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
