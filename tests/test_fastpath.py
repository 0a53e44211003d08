"""The dispatch fast paths never drift from numpy (hypothesis), and their caches are complete.

Every call is made twice: the first goes through the general path (which validates it
and teaches the caches), the second takes the fast path. Both must give numpy's result
and dtype, and a call numpy refuses must raise numpy's exception type at the call,
never later as a ``KernelError`` from a worker.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mtia_async.sync as mtia

DTYPES = [np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_]
BINARY = [np.add, np.subtract, np.multiply, np.maximum, np.minimum, np.less, np.equal, np.logical_and]
UNARY = [np.negative, np.absolute, np.exp, np.logical_not, np.square]
REDUCE = [np.add, np.multiply, np.maximum, np.minimum]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _host(dtype: Any, shape: tuple[int, ...], seed: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if np.dtype(dtype).kind == "f":
        return rng.uniform(-3, 3, shape).astype(dtype)  # exp stays finite: no overflow warnings
    return rng.integers(0, 5, shape).astype(dtype)


def _same(device: Any, host: Any) -> None:
    assert device.dtype == host.dtype, (device.dtype, host.dtype)
    got = device.numpy() if isinstance(device, mtia.DeviceArray) else device
    assert got.shape == host.shape
    np.testing.assert_allclose(got, host, rtol=1e-6, atol=1e-6) if host.dtype.kind in "fc" else np.testing.assert_array_equal(got, host)


def _twice(device_call: Callable[[], Any], host_call: Callable[[], Any]) -> None:
    """Run both calls twice; equal results, or the same exception type at the call both times."""
    for _ in range(2):
        try:
            with np.errstate(all="ignore"):
                expected = host_call()
        except Exception as exc:  # numpy refuses: so must the device, at the call
            with pytest.raises(type(exc)):
                device_call()
            continue
        _same(device_call(), expected)


shapes = st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple)
broadcastable = st.tuples(shapes, st.lists(st.sampled_from([True, False]), min_size=3, max_size=3))


def _broadcast_partner(shape: tuple[int, ...], ones: list[bool]) -> tuple[int, ...]:
    """A shape that broadcasts with ``shape``: some dimensions set to 1, maybe fewer dims."""
    partner = tuple(1 if one else d for d, one in zip(shape, ones))
    return partner[1:] if ones[-1] and partner else partner


@SETTINGS
@given(uf=st.sampled_from(BINARY), da=st.sampled_from(DTYPES), db=st.sampled_from(DTYPES), shape=broadcastable,
       seed=st.integers(0, 2**16))  # fmt: skip
def test_binary_operators_match_numpy(uf: Any, da: Any, db: Any, shape: Any, seed: int) -> None:
    sa = shape[0]
    sb = _broadcast_partner(sa, shape[1])
    x, y = _host(da, sa, seed), _host(db, sb, seed + 1)
    a, b = mtia.asarray(x), mtia.asarray(y)
    _twice(lambda: uf(a, b), lambda: uf(x, y))


@SETTINGS
@given(uf=st.sampled_from(BINARY), da=st.sampled_from(DTYPES), shape=shapes, seed=st.integers(0, 2**16),
       scalar=st.one_of(st.integers(-300, 300), st.floats(-4, 4), st.booleans()), reflected=st.booleans())  # fmt: skip
def test_scalar_operands_match_numpy(uf: Any, da: Any, shape: Any, seed: int, scalar: Any, reflected: bool) -> None:
    x = _host(da, shape, seed)
    a = mtia.asarray(x)
    if reflected:
        _twice(lambda: uf(scalar, a), lambda: uf(scalar, x))
    else:
        _twice(lambda: uf(a, scalar), lambda: uf(x, scalar))


@SETTINGS
@given(uf=st.sampled_from(UNARY), da=st.sampled_from(DTYPES), shape=shapes, seed=st.integers(0, 2**16))
def test_unary_ufuncs_match_numpy(uf: Any, da: Any, shape: Any, seed: int) -> None:
    x = _host(da, shape, seed)
    a = mtia.asarray(x)
    _twice(lambda: uf(a), lambda: uf(x))


@SETTINGS
@given(uf=st.sampled_from(BINARY + UNARY), da=st.sampled_from(DTYPES), dout=st.sampled_from(DTYPES),
       shape=shapes, seed=st.integers(0, 2**16), alias=st.booleans())  # fmt: skip
def test_out_calls_match_numpy_also_aliased(uf: Any, da: Any, dout: Any, shape: Any, seed: int, alias: bool) -> None:
    x = _host(da, shape, seed)
    y = _host(da, shape, seed + 1)
    out_host = x.copy() if alias else _host(dout, shape, seed + 2)
    a, b = mtia.asarray(x), mtia.asarray(y)
    o = a if alias else mtia.asarray(out_host)
    inputs_dev = (a,) if uf.nin == 1 else (a, b)
    inputs_host = (x,) if uf.nin == 1 else (x, y)
    host_out = out_host  # numpy writes into it; the device writes into o

    def device() -> Any:
        uf(*inputs_dev, out=o)
        return o

    def host() -> Any:
        uf(*[host_out if alias and i == 0 else v for i, v in enumerate(inputs_host)], out=host_out)
        return host_out.copy()

    _twice(device, host)


@SETTINGS
@given(uf=st.sampled_from(REDUCE), da=st.sampled_from(DTYPES), shape=shapes, seed=st.integers(0, 2**16),
       axis=st.one_of(st.none(), st.integers(-3, 2)), keepdims=st.booleans())  # fmt: skip
def test_reductions_with_axes_match_numpy(uf: Any, da: Any, shape: Any, seed: int, axis: Any, keepdims: bool) -> None:
    x = _host(da, shape, seed)
    a = mtia.asarray(x)
    _twice(lambda: uf.reduce(a, axis=axis, keepdims=keepdims), lambda: uf.reduce(x, axis=axis, keepdims=keepdims))
    method = {np.add: "sum", np.multiply: "prod", np.maximum: "max", np.minimum: "min"}[uf]
    _twice(lambda: getattr(a, method)(axis=axis, keepdims=keepdims), lambda: getattr(x, method)(axis=axis, keepdims=keepdims))


@SETTINGS
@given(da=st.sampled_from([np.float32, np.float64, np.int64]), n=st.integers(1, 4), k=st.integers(1, 4),
       m=st.integers(1, 4), batch=st.sampled_from([(), (2,), (3, 1)]), seed=st.integers(0, 2**16))  # fmt: skip
def test_matmul_matches_numpy_for_shapes_seen_and_new(da: Any, n: int, k: int, m: int, batch: Any, seed: int) -> None:
    x, y = _host(da, (*batch, n, k), seed), _host(da, (k, m), seed + 1)
    a, b = mtia.asarray(x), mtia.asarray(y)
    _twice(lambda: a @ b, lambda: x @ y)
    _twice(lambda: np.matmul(a, b), lambda: np.matmul(x, y))
    bad = mtia.asarray(_host(da, (k + 1, m), seed))  # a new shape: the cache must not answer for it
    _twice(lambda: a @ bad, lambda: x @ _host(da, (k + 1, m), seed))


def test_a_cached_out_call_never_answers_for_another_out_dtype() -> None:
    a = mtia.asarray(np.arange(4, dtype=np.float32))
    np.exp(a, out=mtia.empty(4, dtype=np.float32))
    np.exp(a, out=mtia.empty(4, dtype=np.float32))  # now from the cache
    with pytest.raises(TypeError):  # numpy: float32 cannot go into int32 under same_kind
        np.exp(a, out=mtia.empty(4, dtype=np.int32))
    with pytest.raises(ValueError):  # a shape the inputs do not broadcast to
        np.exp(a, out=mtia.empty(5, dtype=np.float32))
    mtia.synchronize()


def test_a_cached_reduction_never_answers_for_another_axis_or_shape() -> None:
    a = mtia.zeros((3, 0))
    assert a.max(axis=0).shape == (0,)
    assert a.max(axis=0).shape == (0,)
    with pytest.raises(ValueError):
        a.max(axis=1)
    with pytest.raises(ValueError):
        mtia.zeros((0, 3)).max(axis=0)
    mtia.synchronize()


def test_a_queued_kernel_keeps_only_its_argument_tuple_alive() -> None:
    """Issue 11: ``launch(np.exp, X, out=Y)`` adds one tracked object per queued kernel."""
    x, y = mtia.zeros(16), mtia.zeros(16)
    s = mtia.Stream()
    s.wait_stream(mtia.current_stream())  # the fills of x and y are done first
    gate = threading.Event()
    s.launch(gate.wait, 10)
    s.launch(np.exp, x, out=y)  # the runner of this call shape exists now
    gc.collect()
    before = len(gc.get_objects())
    n = 10_000  # many: other threads' objects (tens, in a busy suite) stay a small share
    for _ in range(n):
        s.launch(np.exp, x, out=y)
    gc.collect()
    added = len(gc.get_objects()) - before
    gate.set()
    s.synchronize()
    assert 0.95 * n <= added <= 1.1 * n, added  # one tuple per launch (a partial and a wrapper made it 3)


def test_launch_failures_name_the_users_kernel_not_the_runner() -> None:
    def broken(x: Any, *, out: Any) -> None:
        raise ValueError("nope")

    s = mtia.Stream()
    x, y = mtia.zeros(2), mtia.zeros(2)
    s.wait_stream(mtia.current_stream())  # their fills are done first
    s.launch(broken, x, out=y)
    with pytest.raises(mtia.KernelError, match="kernel .*broken failed"):
        s.synchronize()


def test_an_output_view_reshaped_in_place_by_a_kernel_is_never_reused() -> None:
    """Outputs reuse the numpy view of the chunk they take over, only while it still matches."""
    a = mtia.ones(16)
    c = a + a

    def reshape(v: Any) -> None:
        v.shape = (4, 4)

    mtia.launch(reshape, c)
    mtia.synchronize()
    del c
    d = a + a  # the same chunk again
    result = d.numpy()
    assert result.shape == (16,) and (result == 2).all()
