"""The random kernels: rand, randn, normal, uniform, randint, randperm, bernoulli.

Each call checks its arguments (``TypeError`` / ``ValueError`` at the call, never in a
worker), allocates the output on the caller (``OutOfMemoryError`` at the call, before
any counter is reserved), reserves its blocks of the generator's Philox counter under
the generator's lock, and enqueues a kernel (``philox.py``) on the current stream of
the output's device. None of them waits, so both facades export them as they are.
Defaults follow torch: float32 for floating-point results, int64 for integers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np

from .._arrays.array import DeviceArray, new_array
from .._arrays.checks import check_dtype, check_shape
from .._core.context import resolve_device, stream_of
from .._core.instrument import Launch
from .._core.runtime import get_runtime
from . import philox as px
from .generator import Generator, default_generators, index_arg

__all__ = ["bernoulli", "normal", "rand", "randint", "randn", "randperm", "uniform"]

_F16, _BF16, _F32, _F64 = np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), px.F32, px.F64
_FLOATS = (_F16, _BF16, _F32, _F64)
_DIGITS = {_F16: 11, _BF16: 8, _F32: 24, _F64: 53}
_FLOAT_MAX = {dt: float(ml_dtypes.finfo(dt).max) for dt in _FLOATS}  # type: ignore[no-untyped-call]  # exactly representable integers: |x| <= 2**digits


# --- argument checks ---------------------------------------------------------------------------
def _real_arg(value: object, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__} {value!r:.60}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {v!r}")
    return v


def _size_arg(size: tuple[Any, ...]) -> tuple[int, ...]:
    return check_shape(size[0] if len(size) == 1 else size)


def _float_dtype(dtype: object, fn: str) -> np.dtype[Any]:
    dt = _F32 if dtype is None else check_dtype(dtype)
    if dt not in _FLOATS:
        raise TypeError(f"{fn}() makes floating-point numbers: dtype must be float16, bfloat16, float32 or float64, got {dt}")
    return dt


def _number_range(dt: np.dtype[Any], fn: str) -> tuple[int, int]:
    """The integers ``dt`` holds exactly, as ``(min, max)``."""
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return int(info.min), int(info.max)
    digits = _DIGITS.get(dt)
    if digits is None:
        raise TypeError(f"{fn}() makes integers: dtype must be an integer or float type, got {dt}")
    return -(1 << digits), 1 << digits


def _target(device: object, generator: object) -> tuple[Any, Generator]:
    """The DeviceImpl to draw on and the generator to draw from."""
    rt = get_runtime()
    if generator is None:
        index = resolve_device(device, rt)
        return rt.devices[index], default_generators(rt)[index]
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a mtia_async.Generator or None, got {type(generator).__name__} {generator!r:.60}")
    index = resolve_device(generator._index if device is None else device, rt)
    if index != generator._index:
        raise ValueError(f"generator is on mtia:{generator._index} but the output is on mtia:{index}")
    return rt.devices[index], generator


def _launch(
    device: object, generator: object, shape: tuple[int, ...], dt: np.dtype[Any], blocks: int,
    kernel: Callable[..., None], *params: object,
) -> DeviceArray:  # fmt: skip
    """Allocate the output, reserve ``blocks`` of the counter, enqueue ``kernel``.

    On a stream that captures a graph nothing is reserved: the capture records the
    kernel and each replay reserves the blocks (``_graphs``), so replays draw new numbers.
    """
    dev, gen = _target(device, generator)
    s = stream_of(dev)
    out = new_array(dev, shape, dt, s)  # OutOfMemoryError here, before reserving anything
    if out.size:
        reads = tuple(p for p in params if type(p) is DeviceArray)  # bernoulli's array of probabilities
        capture = s.capture
        if capture is not None:
            capture.launch_random(Launch(s, kernel, (out, *params), reads, (out,)), gen, blocks)
            return out
        key, start = gen._reserve(blocks)
        s.launch(kernel, (out, key, start, *params), reads, (out,))
    return out


# --- random kernels -----------------------------------------------------------------------------
def rand(*size: Any, dtype: object = None, device: object = None, generator: Generator | None = None) -> DeviceArray:
    """Uniform numbers in [0, 1): ``rand(2, 3)`` or ``rand((2, 3))``.

    Args:
        dtype: float32 (default), float16, bfloat16 or float64.
        device: None (the current device, or the generator's), an int or ``"mtia:N"``.
        generator: draw from this Generator instead of the device's default one.

    Raises:
        TypeError: a bad size, dtype or generator. ValueError: a negative size or bad device.
    """
    shape = _size_arg(size)
    dt = _float_dtype(dtype, "rand")
    n = math.prod(shape)
    blocks = px.blocks_u64(n) if dt == _F64 else px.blocks_u32(n)
    return _launch(device, generator, shape, dt, blocks, px.uniform_kernel, 0.0, 1.0)


def randn(*size: Any, dtype: object = None, device: object = None, generator: Generator | None = None) -> DeviceArray:
    """Standard normal numbers: ``randn(2, 3)`` or ``randn((2, 3))`` (arguments as ``rand``)."""
    shape = _size_arg(size)
    dt = _float_dtype(dtype, "randn")
    blocks = px.blocks_normal(math.prod(shape), dt == _F64)
    return _launch(device, generator, shape, dt, blocks, px.normal_kernel, blocks, 0.0, 1.0)


def normal(
    mean: float = 0.0, std: float = 1.0, size: Any = None, *,
    dtype: object = None, device: object = None, generator: Generator | None = None,
) -> DeviceArray:  # fmt: skip
    """Normal numbers of mean ``mean`` and standard deviation ``std``, of shape ``size``.

    Raises:
        TypeError: no size, or non-numeric mean/std. ValueError: ``std < 0`` or non-finite.
    """
    m = _real_arg(mean, "mean")
    sd = _real_arg(std, "std")
    if sd < 0.0:
        raise ValueError(f"normal expects std >= 0.0, but found std {sd!r}")
    if size is None:
        raise TypeError("normal() needs a size, e.g. normal(0.0, 1.0, (2, 3))")
    shape = check_shape(size)
    dt = _float_dtype(dtype, "normal")
    blocks = px.blocks_normal(math.prod(shape), dt == _F64)
    return _launch(device, generator, shape, dt, blocks, px.normal_kernel, blocks, m, sd)


def uniform(
    low: float = 0.0, high: float = 1.0, size: Any = None, *,
    dtype: object = None, device: object = None, generator: Generator | None = None,
) -> DeviceArray:  # fmt: skip
    """Uniform numbers in ``[low, high)``, of shape ``size``.

    Raises:
        TypeError: no size, or non-numeric bounds.
        ValueError: ``low >= high``, non-finite bounds, or bounds (or ``high - low``) the
            dtype cannot hold.
    """
    lo = _real_arg(low, "low")
    hi = _real_arg(high, "high")
    if not lo < hi:
        raise ValueError(f"uniform expects low < high, but got low={lo!r} >= high={hi!r}")
    if not math.isfinite(hi - lo):
        raise ValueError(f"uniform: high - low overflows ({hi!r} - {lo!r})")
    if size is None:
        raise TypeError("uniform() needs a size, e.g. uniform(0.0, 1.0, (2, 3))")
    shape = check_shape(size)
    dt = _float_dtype(dtype, "uniform")
    _check_uniform_bounds(lo, hi, dt)
    n = math.prod(shape)
    blocks = px.blocks_u64(n) if dt == _F64 else px.blocks_u32(n)
    return _launch(device, generator, shape, dt, blocks, px.uniform_kernel, lo, hi)


def _check_uniform_bounds(lo: float, hi: float, dt: np.dtype[Any]) -> None:
    """Raise ``ValueError`` when ``dt`` cannot hold ``[lo, hi)`` (ATen's ``check_uniform_bounds``)."""
    top = _FLOAT_MAX[dt]
    for name, value in (("low", lo), ("high", hi)):
        if not -top <= value <= top:
            raise ValueError(
                f"uniform: {name}={value!r} is out of bounds for dtype {dt} (it holds [{-top:g}, {top:g}]); "
                "choose bounds in that range or a wider dtype"
            )
    if hi - lo > top:
        raise ValueError(
            f"uniform expects high - low <= {top:g}, the largest {dt}, but high={hi!r} and low={lo!r} "
            "exceed it; narrow the range or use a wider dtype"
        )


def randint(
    low: int, high: Any = None, size: Any = None, *,
    dtype: object = np.int64, device: object = None, generator: Generator | None = None,
) -> DeviceArray:  # fmt: skip
    """Integers in ``[low, high)``: ``randint(low, high, size)`` or ``randint(high, size)``.

    Args:
        dtype: int64 (default), any integer dtype, or a float dtype (bounds limited to
            the integers it holds exactly).

    Raises:
        TypeError: non-int bounds, no size, or a bad dtype.
        ValueError: ``low >= high``, or bounds the dtype cannot hold.
    """
    if high is None:  # randint(high, size=...)
        low, high = 0, low
    elif size is None:  # randint(high, size)
        if isinstance(high, (int, np.integer)):
            raise TypeError("randint() needs a size: randint(low, high, size) or randint(high, size)")
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint() needs a size: randint(low, high, size) or randint(high, size)")
    lo = index_arg(low, "low")
    hi = index_arg(high, "high")
    if lo >= hi:
        raise ValueError(f"randint expects low < high, but got low={lo} >= high={hi}")
    shape = check_shape(size)
    dt = check_dtype(dtype)
    vmin, vmax = _number_range(dt, "randint")
    if lo < vmin or hi - 1 > vmax:
        raise ValueError(f"randint: [{lo}, {hi}) does not fit dtype {dt} (it holds [{vmin}, {vmax}] exactly)")
    blocks = px.blocks_u64(math.prod(shape))
    return _launch(device, generator, shape, dt, blocks, px.randint_kernel, lo, hi - lo)


def randperm(n: int, *, dtype: object = np.int64, device: object = None, generator: Generator | None = None) -> DeviceArray:
    """A random permutation of ``0 .. n-1``.

    Raises:
        TypeError: ``n`` is not an int, or a bad dtype. ValueError: ``n < 0`` or too big for dtype.
    """
    count = index_arg(n, "n")
    if count < 0:
        raise ValueError(f"randperm expects n >= 0, got {count}")
    dt = check_dtype(dtype)
    _, vmax = _number_range(dt, "randperm")
    if count - 1 > vmax:
        raise ValueError(f"randperm: n={count} does not fit dtype {dt} (largest value {vmax})")
    return _launch(device, generator, (count,), dt, px.blocks_u64(count), px.randperm_kernel)


def bernoulli(
    p: float | DeviceArray, size: Any = None, *,
    dtype: object = None, device: object = None, generator: Generator | None = None,
) -> DeviceArray:  # fmt: skip
    """Draw 1 with probability ``p``, else 0.

    ``p`` is a float (the output has shape ``size``, default ``()``, dtype float32 by
    default) or a DeviceArray of probabilities (the output has its shape, device and,
    by default, dtype). An array's values are checked in the kernel (they are not
    readable at the call): one outside [0, 1] raises ``KernelError`` at the next wait.

    Raises:
        TypeError: a bad p or dtype. ValueError: a float p outside [0, 1], or a size or
        device that does not match the array p.
    """
    if type(p) is DeviceArray:
        if p.dtype not in _FLOATS:
            raise TypeError(f"bernoulli: an array of probabilities must be float16/bfloat16/float32/float64, got {p.dtype}")
        if size is not None and check_shape(size) != p.shape:
            raise ValueError(f"bernoulli: size {size!r} differs from the shape {p.shape} of p")
        if device is not None and resolve_device(device) != p.device:
            raise ValueError(f"bernoulli: p is on mtia:{p.device}, not on {device!r}")
        shape = p.shape
        dev: object = p.device
        default_dt = p.dtype
        prob: object = p
    else:
        pf = _real_arg(p, "p")
        if not 0.0 <= pf <= 1.0:
            raise ValueError(f"bernoulli expects 0 <= p <= 1, but got p={pf!r}")
        prob = pf
        shape = () if size is None else check_shape(size)
        dev = device
        default_dt = _F32
    dt = default_dt if dtype is None else check_dtype(dtype)
    if not (dt.kind in "biuf" or dt == _BF16):
        raise TypeError(f"bernoulli: dtype must be a float, integer or bool type, got {dt}")
    blocks = px.blocks_u64(math.prod(shape))
    return _launch(dev, generator, shape, dt, blocks, px.bernoulli_kernel, prob)
