"""Creation on DeviceArrays: ``arange``, ``linspace``, ``eye``, ``identity`` (facades and numpy's ``like=``).

Differential: every call is made on numpy and on the device; the results are equal
exactly (values, dtype, shape: the kernels run numpy itself), or both raise the same
exception type, the device one at the call (nothing reaches a worker).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _support import numpy_diff
from _support.numpy_diff import same, examples
from hypothesis import given
from hypothesis import strategies as st

import mtia_async as mtia_async_facade
import mtia_async.sync as mtia

SETTINGS = examples(40)
DTYPES = [None, np.int8, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64, np.complex64, np.bool_]


def same_or_with_step(got: Any, expected: Any) -> None:
    """``same``, and for ``linspace(retstep=True)`` the step too (numpy's type, or a DeviceArray)."""
    if isinstance(expected, tuple):
        same(got[0], expected[0])
        step = got[1].numpy() if isinstance(got[1], mtia.DeviceArray) else got[1]
        assert type(step) is type(expected[1]) or isinstance(got[1], mtia.DeviceArray)
        np.testing.assert_array_equal(step, expected[1])
    else:
        same(got, expected)


def compare(device_call: Callable[[], Any], host_call: Callable[[], Any]) -> Any:
    """numpy's result on the device, or numpy's exception type at the call."""
    return numpy_diff.compare(device_call, host_call, same_or_with_step)


# --- arange ---------------------------------------------------------------------------------------
ints = st.integers(-40, 40)
floats = st.floats(-30, 30, allow_nan=False, width=64)
numbers = st.one_of(ints, floats, ints.map(np.int16), floats.map(np.float32), st.booleans())
steps = st.one_of(ints, floats.filter(lambda x: abs(x) > 0.01), floats.map(np.float32).filter(lambda x: abs(x) > 0.01),
                  st.sampled_from([0, 0.0, 0.25, -1e-3, True, 1 + 2j]))  # fmt: skip


@SETTINGS
@given(start=numbers, stop=st.none() | numbers, step=st.none() | steps, dtype=st.sampled_from(DTYPES))
def test_arange_matches_numpy(start: Any, stop: Any, step: Any, dtype: Any) -> None:
    with np.errstate(all="ignore"):
        compare(lambda: mtia.arange(start, stop, step, dtype=dtype), lambda: np.arange(start, stop, step, dtype=dtype))


@pytest.mark.parametrize(
    "args",
    [(5,), (0, 5), (1, 10, 3), (10, 1, -2), (0.5, 3), (0, 1, 0.1), (3, 3), (5, 0), (0, 1e-320, 1), (0, -1e-320, 1),
     (0, 5, math.inf), (1 + 1j, 5 + 3j), (0, 5, 1 + 0j), (2**63, 2**63 + 3), (True, 3), (np.uint8(3),),
     (np.float16(1), np.float16(3))],
)  # fmt: skip
def test_arange_forms(args: tuple[Any, ...]) -> None:
    compare(lambda: mtia.arange(*args), lambda: np.arange(*args))


@pytest.mark.parametrize(
    "args, kw",
    [((0, 5, 0), {}), ((0, 5, 0.0), {}), ((0, math.nan), {}), ((0, math.inf), {}), ((0, 1e300, 1e-300), {}),
     (((1, 2),), {}), (("a", 3), {}), ((-3, 3), {"dtype": np.uint8}), ((300, 303), {"dtype": np.uint8}),
     ((0, 3), {"dtype": bool}), ((0, 2**62), {}), ((0, 5), {"dtype": "not a dtype"}),
     ((np.int8(3), 300), {})],
)  # fmt: skip
def test_arange_errors_are_numpys_at_the_call(args: tuple[Any, ...], kw: dict[str, Any]) -> None:
    with pytest.raises(Exception) as expected:
        np.arange(*args, **kw)
    with pytest.raises(expected.type):
        mtia.arange(*args, **kw)
    assert mtia.memory_allocated() == 0
    mtia.synchronize()


def test_arange_needs_a_stop_and_takes_no_device_arrays() -> None:
    with pytest.raises(TypeError, match="requires stop"):
        mtia.arange(None)
    with pytest.raises(TypeError, match="numpy.arange.*DeviceArray"):
        mtia.arange(mtia.asarray(3))
    with pytest.raises(TypeError, match="not supported on a DeviceArray"):
        mtia.arange(5, dtype=object)  # numpy makes one; a DeviceArray cannot hold objects


def test_arange_through_like_is_on_like_device() -> None:
    a = mtia.ones(3, device=1)
    for args, kw in [((5,), {}), ((1, 9, 2), {"dtype": np.float32}), ((), {"stop": 4}), ((), {"start": 2, "stop": 6})]:
        r = np.arange(*args, like=a, **kw)
        assert isinstance(r, mtia.DeviceArray) and r.device == 1
        same(r, np.arange(*args, **kw))
    with pytest.raises(ValueError, match="mtia:1"):
        np.arange(3, device="cpu", like=a)


def test_arange_facade_device_and_the_async_facade() -> None:
    r = mtia.arange(4, device=1)
    assert r.device == 1 and mtia_async_facade.arange is mtia.arange
    same(r, np.arange(4))
    assert mtia.arange(0).shape == (0,)


# --- linspace -------------------------------------------------------------------------------------
ends = st.one_of(ints, floats, floats.map(np.float32), floats.map(np.float16))


@SETTINGS
@given(start=ends, stop=ends, num=st.integers(-1, 12), endpoint=st.booleans(), retstep=st.booleans(),
       dtype=st.sampled_from(DTYPES))  # fmt: skip
def test_linspace_matches_numpy(start: Any, stop: Any, num: int, endpoint: bool, retstep: bool, dtype: Any) -> None:
    with np.errstate(all="ignore"):
        compare(
            lambda: mtia.linspace(start, stop, num, endpoint, retstep, dtype),
            lambda: np.linspace(start, stop, num, endpoint, retstep, dtype),
        )


shapes = st.lists(st.integers(1, 3), max_size=2).map(tuple)


@SETTINGS
@given(sa=shapes, sb=shapes, num=st.integers(0, 6), axis=st.integers(-3, 3), retstep=st.booleans(),
       host_stop=st.booleans(), seed=st.integers(0, 2**16))  # fmt: skip
def test_linspace_of_device_arrays_matches_numpy(
    sa: tuple[int, ...], sb: tuple[int, ...], num: int, axis: int, retstep: bool, host_stop: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-5, 5, sa), rng.uniform(-5, 5, sb).astype(np.float32)
    a = mtia.asarray(x, device=1)
    b = y if host_stop else mtia.asarray(y, device=1)
    got = compare(lambda: np.linspace(a, b, num, retstep=retstep, axis=axis),
                  lambda: np.linspace(x, y, num, retstep=retstep, axis=axis))  # fmt: skip
    if got is not None:
        assert (got[0] if retstep else got).device == 1


def test_linspace_errors() -> None:
    with pytest.raises(ValueError, match="Number of samples, -1, must be non-negative"):
        mtia.linspace(0, 1, -1)
    with pytest.raises(TypeError):
        mtia.linspace(0, 1, 2.5)  # type: ignore[arg-type]
    with pytest.raises(np.exceptions.AxisError):
        mtia.linspace(0, 1, 3, axis=1)
    with pytest.raises(ValueError, match="two devices"):
        np.linspace(mtia.zeros(2), mtia.ones(2, device=1))
    with pytest.raises(ValueError, match="two devices"):
        mtia.linspace(mtia.zeros(2), 1, device=1)
    with pytest.raises(TypeError, match="numpy.linspace.*device="):
        np.linspace(mtia.zeros(2), 1, device="cpu")
    with pytest.raises(TypeError, match="not supported"):
        mtia.linspace(0, 1, dtype=object)
    assert mtia.memory_allocated() == 0 or mtia.synchronize() is None


def test_linspace_device_follows_the_arrays_then_the_argument() -> None:
    assert mtia.linspace(mtia.zeros(2, device=1), 1, 3).device == 1
    assert mtia.linspace(0, 1, 3, device=1).device == 1
    assert mtia.linspace(0, 1, 3).device == 0


# --- eye, identity ------------------------------------------------------------------------------
@SETTINGS
@given(n=st.integers(-1, 6), m=st.none() | st.integers(0, 6), k=st.integers(-8, 8) | st.sampled_from([0.5, np.uint64(1)]),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.uint8, np.bool_, np.complex64]))  # fmt: skip
def test_eye_matches_numpy(n: int, m: int | None, k: Any, dtype: Any) -> None:
    compare(lambda: mtia.eye(n, m, k, dtype), lambda: np.eye(n, m, k, dtype))
    a = mtia.zeros(1, device=1)
    r = compare(lambda: np.eye(n, m, k, dtype, like=a), lambda: np.eye(n, m, k, dtype))
    assert r is None or r.device == 1


@pytest.mark.parametrize("n", [0, 1, 4])
@pytest.mark.parametrize("dtype", [None, np.int16, np.float64])
def test_identity_matches_numpy(n: int, dtype: Any) -> None:
    same(np.identity(n, dtype, like=mtia.zeros(1)), np.identity(n, dtype))
    same(mtia.identity(n, dtype=dtype or np.float32), np.identity(n, dtype or np.float32))


def test_eye_and_identity_default_to_float32_numpy_like_to_float64() -> None:
    assert mtia.eye(2).dtype == np.float32 and mtia.identity(2).dtype == np.float32
    assert mtia.eye(2, dtype=None).dtype == np.float32
    a = mtia.zeros(1)
    assert np.eye(2, like=a).dtype == np.float64 and np.identity(2, like=a).dtype == np.float64
    assert mtia.eye(3, device=1).device == 1 and mtia.identity(3, device=1).device == 1


def test_eye_errors() -> None:
    a = mtia.zeros(1)
    with pytest.raises(TypeError, match="order='F'"):
        np.eye(2, order="F", like=a)
    with pytest.raises(ValueError, match="negative"):
        mtia.eye(-1)
    with pytest.raises(TypeError):
        mtia.eye(2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        mtia.eye(3, k=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mtia:0"):
        np.eye(2, device="cpu", like=a)
    mtia.synchronize()


def test_the_values_are_made_by_a_kernel_not_on_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's arange/linspace run in a worker (the kernel), never on the calling thread."""
    threads: list[str] = []
    real_arange, real_linspace = np.arange, np.linspace

    def spy(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            threads.append(threading.current_thread().name)
            return real(*args, **kwargs)

        return call

    from mtia_async._arrays.functions import creation

    monkeypatch.setattr(creation.np, "arange", spy(real_arange))
    monkeypatch.setattr(creation.np, "linspace", spy(real_linspace))
    r = mtia.arange(6)
    y = mtia.linspace(0, 1, 3, device=1)
    same(r, real_arange(6))
    same(y, real_linspace(0, 1, 3))
    assert len(threads) == 2 and all(t.startswith("mtia_async-") for t in threads), threads
