"""Differential testing of numpy functions on DeviceArrays (the ``tests/test_np_*.py`` modules).

Every call is made on host numpy data and on the device with the same values; ``compare``
checks that the device gives numpy's result (``same``: exactly, ``close``: within a
tolerance chosen by dtype), or raises numpy's exception type at the call.

==========================  ==============================================================
``examples(n)``             hypothesis settings: ``n`` examples, no deadline
``LAYOUTS``, ``layouts``    ``"plain"``, ``"strided"``, ``"transposed"`` (and their strategy)
``device``                  a host array on the device in one of ``LAYOUTS``
``on_device``               the same, ``"C"``/``"T"``/``"strided"`` (strided on the last axis)
``same``, ``close``         a device result against numpy's: exactly, or by a tolerance
``compare``                 numpy's result on the device, or numpy's exception at the call
``raises_at_the_call``      the exception at the call, with nothing allocated
``awaited_while_looping``   an awaitable form waits for a 0.3 s kernel and the loop runs
==========================  ==============================================================
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import mtia_async
import mtia_async.sync as mtia

__all__ = [
    "LAYOUTS",
    "awaited_while_looping",
    "close",
    "compare",
    "device",
    "examples",
    "layouts",
    "on_device",
    "raises_at_the_call",
    "same",
]

T = TypeVar("T")
Tolerance = Callable[[np.dtype[Any]], "float | None"]
"""A result dtype's rtol and atol, or ``None``: that dtype compares exactly."""

LAYOUTS = ["plain", "strided", "transposed"]
layouts = st.sampled_from(LAYOUTS)


def examples(n: int) -> settings:
    """Hypothesis settings for the differential tests: ``n`` examples, no deadline."""
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def device(x: Any, layout: str = "plain", dev: int = 0) -> Any:
    """``x`` on the device with the same values, as a contiguous array or a strided/transposed view.

    ``"strided"`` steps over every other row of the first axis; anything but a numpy array
    (a scalar, a list) is returned as it is.
    """
    if not isinstance(x, np.ndarray):
        return x
    if layout == "strided" and x.ndim:
        big = np.zeros((2 * x.shape[0], *x.shape[1:]), x.dtype)
        big[::2] = x
        view = mtia.asarray(big, device=dev)[::2]
        assert view.base is not None
        return view
    if layout == "transposed" and x.ndim > 1:
        return mtia.asarray(np.ascontiguousarray(x.T), device=dev).T
    return mtia.asarray(x, device=dev)


def on_device(h: np.ndarray[Any, Any], layout: str, device: int = 0) -> Any:
    """``h``'s values as a contiguous DeviceArray (``"C"``), a transposed view (``"T"``) or a
    view strided on the last axis (``"strided"``)."""
    if layout == "T" and h.ndim > 1:
        return mtia.asarray(np.ascontiguousarray(h.T), device=device).T
    if layout == "strided" and h.ndim > 0:
        return mtia.asarray(np.repeat(h, 2, axis=-1), device=device)[..., ::2]
    return mtia.asarray(h, device=device)


def _results(got: Any, expected: Any) -> bool:
    """Whether ``expected`` is several results (numpy's tuple, or ``split``'s list of arrays), not array data."""
    if isinstance(expected, tuple) or (isinstance(expected, list) and expected and isinstance(expected[0], np.ndarray)):
        assert isinstance(got, type(expected)) and len(got) == len(expected), (type(got), got)
        return True
    return False


def _pair(got: Any, expected: Any, dtype: Any, host: bool) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``got`` copied back and ``expected`` as an array, after checking dtype (or ``dtype``) and shape."""
    if host and not isinstance(got, mtia.DeviceArray):
        assert isinstance(got, np.ndarray), type(got)
        values = got
    else:
        assert isinstance(got, mtia.DeviceArray), type(got)
        values = got.numpy()
    expected = np.asarray(expected)
    assert values.dtype == (expected.dtype if dtype is None else dtype), (values.dtype, expected.dtype, dtype)
    assert values.shape == expected.shape, (values.shape, expected.shape)
    return values, expected


def same(got: Any, expected: Any, *, host: bool = False) -> None:
    """Equal values (NaN == NaN), dtype and shape; several results one by one.

    ``got`` is a DeviceArray (or, with ``host``, one already copied back to numpy).
    """
    if _results(got, expected):
        for g, e in zip(got, expected):
            same(g, e, host=host)
        return
    values, expected = _pair(got, expected, None, host)
    np.testing.assert_array_equal(values, expected)


def close(got: Any, expected: Any, tolerance: Tolerance, *, dtype: Any = None, as_float64: bool = False) -> None:
    """numpy's dtype (or ``dtype``) and shape, values within ``tolerance(dtype)`` (NaN where numpy has NaN).

    A dtype whose tolerance is ``None`` compares exactly. ``as_float64`` compares the values
    converted to float64 (real results only). Several results are compared one by one, each
    with its own numpy dtype.
    """
    if _results(got, expected):
        for g, e in zip(got, expected):
            close(g, e, tolerance, as_float64=as_float64)
        return
    values, expected = _pair(got, expected, dtype, False)
    tol = tolerance(expected.dtype)
    if tol is None:
        np.testing.assert_array_equal(values, expected)
    elif as_float64:
        np.testing.assert_allclose(values.astype(np.float64), expected.astype(np.float64), rtol=tol, atol=tol)
    else:
        np.testing.assert_allclose(values, expected, rtol=tol, atol=tol)


def raises_at_the_call(exc: type[Exception], device_call: Callable[[], Any]) -> None:
    """``device_call`` raises ``exc`` at the call, with nothing allocated and nothing failed in a worker."""
    gc.collect(1)  # earlier examples' garbage (young: a full pass costs ~70 ms once torch is loaded) is not freed during the call
    before = mtia.memory_allocated(0)
    with pytest.raises(exc):
        device_call()
    assert mtia.memory_allocated(0) == before
    mtia.synchronize()


def compare(
    device_call: Callable[[], Any],
    host_call: Callable[[], Any],
    check: Callable[[Any, Any], None] = same,
    *,
    nothing_allocated: bool = False,
) -> Any:
    """numpy's result on the device (``check(got, expected)``), or numpy's exception type at the call.

    The exception is raised at the call and nothing fails in a worker; with
    ``nothing_allocated``, nothing is allocated either (``raises_at_the_call``).
    Returns the device's result (``None`` when numpy raised).
    """
    try:
        expected = host_call()
    except Exception as exc:
        if nothing_allocated:
            raises_at_the_call(type(exc), device_call)
        else:
            with pytest.raises(type(exc)):
                device_call()
            mtia.synchronize()
        return None
    got = device_call()
    check(got, expected)
    return got


async def awaited_while_looping(awaitable: Callable[[], Awaitable[T]]) -> T:
    """``awaitable()``'s result, awaited behind a 0.3 s kernel on the current stream: it
    waited for the kernel, and the event loop kept running (ticks every 10 ms) meanwhile."""
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    mtia_async.launch(time.sleep, 0.3)  # the input is read after this kernel
    started = time.perf_counter()
    got = await awaitable()
    took = time.perf_counter() - started
    beat.cancel()
    assert took >= 0.25 and ticks >= 5, (took, ticks)  # it waited for the sleep, and the loop kept running
    return got
