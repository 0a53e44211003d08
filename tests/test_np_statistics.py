"""Statistics on DeviceArrays: ``average``, ``median``, ``percentile``, ``quantile`` and the ``nan*`` forms.

Differential: every call is made on numpy and on the device with the same host data
(DeviceArrays contiguous, strided or transposed views, NaN among the values); the
results have numpy's dtype and shape and its values (``assert_allclose``, NaN where
numpy has NaN), or both raise the same exception type, the device one at the call.
What only the data can tell (weights summing to zero) is a ``KernelError`` at the next wait.
numpy's warnings for empty and all-NaN slices come from the kernels, in the worker threads:
this module lets them pass (under the suite's warnings-as-errors they would fail the kernel).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from _support import numpy_diff
from _support.numpy_diff import device, examples, layouts
from hypothesis import given
from hypothesis import strategies as st

import mtia_async.sync as mtia

pytestmark = [
    pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    # numpy's own interpolation of small ints overflows (int8 -45 - 84): both sides compute the same wrapped value
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
]
SETTINGS = examples(30)
DTYPES = [np.int8, np.int32, np.int64, np.uint8, np.float16, np.float32, np.float64, np.bool_]
METHODS = ["linear", "lower", "higher", "midpoint", "nearest", "inverted_cdf", "hazen", "weibull", "median_unbiased"]


def tolerance(dtype: np.dtype[Any]) -> float:
    """rtol and atol: 1e-2 for float16, 1e-6 for the rest (values compared as float64)."""
    return 1e-2 if dtype == np.float16 else 1e-6


def close(got: Any, expected: Any, dtype: Any = None) -> None:
    """numpy's dtype (or ``dtype``) and shape, values allclose (NaN where numpy has NaN)."""
    numpy_diff.close(got, expected, tolerance, dtype=dtype, as_float64=True)


def compare(device_call: Callable[[], Any], host_call: Callable[[], Any], dtype: Any = None) -> Any:
    """numpy's result on the device (``close``; a tuple item by item, with numpy's dtypes), or numpy's
    exception type at the call (nothing fails in a worker)."""
    return numpy_diff.compare(device_call, host_call, lambda got, expected: close(got, expected, dtype))


@st.composite
def data_and_axis(draw: st.DrawFn, min_side: int = 1) -> tuple[np.ndarray[Any, Any], Any]:
    dt = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=min_side, max_side=5))
    if dt.kind in "iu":
        elements: Any = st.integers(0 if dt.kind == "u" else -100, 100)
    elif dt.kind == "b":
        elements = st.booleans()
    else:
        elements = st.floats(-100, 100, width=16) | st.just(np.nan)
    a = draw(hnp.arrays(dt, shape, elements=elements))
    ndim = a.ndim
    axis = draw(
        st.none()
        | st.integers(-ndim, ndim - 1)
        | st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)
    )
    return a, axis


# --- median ----------------------------------------------------------------------------------------------
@SETTINGS
@given(case=data_and_axis(), layout=layouts, keepdims=st.booleans(), nan=st.booleans())
def test_median_matches_numpy(case: tuple[Any, Any], layout: str, keepdims: bool, nan: bool) -> None:
    a, axis = case
    fn = np.nanmedian if nan else np.median
    compare(lambda: fn(device(a, layout), axis=axis, keepdims=keepdims), lambda: fn(a, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint16, np.int64, np.float16, np.float32, np.float64])
def test_median_of_the_whole_array_is_exactly_numpys(dtype: Any) -> None:
    # axis=None has its own kernel (numpy's _median without its Python layers): bit-equal to numpy's
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 16, 17):
        x = (rng.random(n) * 200 - 100).astype(dtype)
        numpy_diff.compare(lambda: np.median(device(x)), lambda: np.median(x))
    x = (rng.random((6, 5)) * 100).astype(dtype)
    numpy_diff.compare(lambda: np.median(device(x, "strided")), lambda: np.median(x))
    numpy_diff.compare(lambda: np.median(device(x, "transposed")), lambda: np.median(x.T))
    if np.dtype(dtype).kind == "f":
        for special in ([1.0, np.nan, 2.0], [np.inf, -np.inf], [np.inf, np.inf, 1.0, 2.0], [np.nan]):
            y = np.array(special, dtype)
            with np.errstate(invalid="ignore"):
                numpy_diff.compare(lambda: np.median(device(y)), lambda: np.median(y))


def test_median_out_overwrite_input_and_nan() -> None:
    x = np.array([[3.0, np.nan, 1.0], [4.0, 2.0, 6.0]])
    a = mtia.asarray(x)
    close(np.median(a), np.median(x))  # NaN propagates
    close(np.median(a, axis=1), np.median(x, axis=1))
    close(np.nanmedian(a, axis=1), np.nanmedian(x, axis=1))
    out = mtia.empty(3, np.float32)  # numpy casts into out=
    assert np.median(a, axis=0, out=out) is out
    close(out, np.median(x, axis=0, out=np.empty(3, np.float32)))
    b = mtia.asarray(np.arange(7.0)[::-1].copy())
    close(np.median(b, overwrite_input=True), 3.0)  # the input may be reordered by the kernel
    host_out = mtia.empty(3)  # a host `a` with a DeviceArray out=: `a` is copied to out's device
    assert np.median(x.astype(np.float32), axis=0, out=host_out) is host_out
    close(host_out, np.median(x.astype(np.float32), axis=0))
    with pytest.raises(np.exceptions.AxisError):
        np.median(a, axis=2)
    with pytest.raises(ValueError, match="repeated axis"):
        np.median(a, axis=(0, 0))
    with pytest.raises(ValueError, match="has shape"):
        np.median(a, axis=0, out=mtia.empty(2))
    with pytest.raises(TypeError, match="must be a DeviceArray"):
        np.median(a, out=np.empty(()))
    with pytest.raises(ValueError, match="two devices"):
        np.median(a, axis=0, out=mtia.empty(3, device=1))
    mtia.synchronize()


# --- percentile, quantile --------------------------------------------------------------------------------
quantiles = st.floats(0, 1) | st.lists(st.floats(0, 1), max_size=4) | st.sampled_from([0, 1, np.float32(0.25)])


@SETTINGS
@given(case=data_and_axis(), layout=layouts, keepdims=st.booleans(), q=quantiles, method=st.sampled_from(METHODS),
       form=st.sampled_from(["percentile", "quantile", "nanpercentile", "nanquantile"]))  # fmt: skip
def test_quantiles_match_numpy(case: tuple[Any, Any], layout: str, keepdims: bool, q: Any, method: str,
                               form: str) -> None:  # fmt: skip
    a, axis = case
    if a.dtype == np.bool_:
        a = a.astype(np.int8)
    fn = getattr(np, form)
    if "percentile" in form:
        q = np.multiply(q, 100) if isinstance(q, list) else q * 100 if type(q) in (int, float) else q * np.float32(100)
    def host(x: np.ndarray[Any, Any]) -> Any:
        return fn(x, q, axis=axis, method=method, keepdims=keepdims)

    # numpy's quirk: a 0-d result over a NaN has the input's dtype (its NaN branch returns arr[-1]),
    # else the computed one; the device result has the computed dtype (its dtype cannot depend on data).
    dtype = None
    if a.dtype.kind == "f" and np.isnan(a).any():
        with np.errstate(all="ignore"):
            dtype = np.asarray(host(np.nan_to_num(a))).dtype
    compare(lambda: fn(device(a, layout), q, axis=axis, method=method, keepdims=keepdims), lambda: host(a), dtype)


def test_quantiles_out_weights_and_errors() -> None:
    x = np.array([[3.0, 7.0, 1.0], [4.0, 2.0, 6.0]], np.float32)
    a = mtia.asarray(x)
    close(np.percentile(a, 50.0), np.percentile(x, 50.0))  # a weak Python q keeps float32
    close(np.percentile(a, [50.0]), np.percentile(x, [50.0]))  # a float64 array q does not
    close(np.quantile(a, np.float64(0.5)), np.quantile(x, np.float64(0.5)))
    close(np.quantile(a, [[0.1], [0.9]], axis=1, keepdims=True), np.quantile(x, [[0.1], [0.9]], axis=1, keepdims=True))
    out = mtia.empty((2, 3), np.float32)
    assert np.percentile(a, [10, 90], axis=0, out=out) is out
    close(out, np.percentile(x, [10, 90], axis=0, out=np.empty((2, 3), np.float32)))
    w = np.array([1.0, 0.0, 2.0])
    for weights in (w, mtia.asarray(w)):
        close(np.quantile(a, 0.5, axis=1, method="inverted_cdf", weights=weights),
              np.quantile(x, 0.5, axis=1, method="inverted_cdf", weights=w))  # fmt: skip
    for bad in ([50, 101], -1, np.nan):
        compare(lambda: np.percentile(a, bad), lambda: np.percentile(x, bad))
    compare(lambda: np.quantile(a, 1.5), lambda: np.quantile(x, 1.5))
    compare(lambda: np.percentile(a, 5, method="nope"), lambda: np.percentile(x, 5, method="nope"))
    compare(lambda: np.percentile(a, 5, weights=w, axis=1), lambda: np.percentile(x, 5, weights=w, axis=1))
    compare(lambda: np.percentile(a, 5, method="inverted_cdf", weights=w),
            lambda: np.percentile(x, 5, method="inverted_cdf", weights=w))  # fmt: skip
    empty = mtia.zeros((0, 3), np.float64)
    for axis in (0, 1):  # empty slices: numpy's IndexError at the call; no slice: an empty result
        compare(lambda: np.percentile(empty, 5, axis=axis), lambda: np.percentile(np.zeros((0, 3)), 5, axis=axis))
    compare(lambda: np.percentile(a.astype(np.complex64), 5), lambda: np.percentile(x.astype(np.complex64), 5))
    compare(lambda: np.percentile(a, 5, out=mtia.empty((), np.int32)),
            lambda: np.percentile(x, 5, out=np.empty((), np.int32)))  # fmt: skip
    with pytest.raises(TypeError, match="q must be a scalar or host data"):
        np.percentile(a, mtia.asarray([50.0]))
    with pytest.raises(ValueError, match="two devices"):
        np.quantile(a, 0.5, method="inverted_cdf", weights=mtia.ones((2, 3), device=1))
    mtia.synchronize()
    bad_weights = np.quantile(a, 0.5, method="inverted_cdf", weights=mtia.asarray(-np.ones((2, 3))))
    with pytest.raises(mtia.KernelError, match="Weights must be non-negative"):
        bad_weights.numpy()


# --- average ---------------------------------------------------------------------------------------------
@SETTINGS
@given(case=data_and_axis(), layout=layouts, keepdims=st.none() | st.booleans(),
       weighted=st.sampled_from([None, "full", "axis"]), returned=st.booleans(), on_device=st.booleans(),
       data=st.data())  # fmt: skip
def test_average_matches_numpy(case: tuple[Any, Any], layout: str, keepdims: Any, weighted: Any, returned: bool,
                               on_device: bool, data: st.DataObject) -> None:  # fmt: skip
    a, axis = case
    kw: dict[str, Any] = {} if keepdims is None else {"keepdims": keepdims}
    w = None
    if weighted == "full" or (weighted == "axis" and axis is not None):
        axes = () if weighted == "full" else np.lib.array_utils.normalize_axis_tuple(axis, a.ndim)
        shape = a.shape if weighted == "full" else tuple(a.shape[i] for i in axes)
        w = data.draw(hnp.arrays(np.dtype(data.draw(st.sampled_from([np.float32, np.float64, np.int32]))), shape,
                                 elements=st.integers(1, 5)))  # fmt: skip
    dw = device(w) if on_device else w
    compare(lambda: np.average(device(a, layout), axis=axis, weights=dw, returned=returned, **kw),
            lambda: np.average(a, axis=axis, weights=w, returned=returned, **kw))  # fmt: skip


def test_average_errors() -> None:
    x = np.arange(6.0).reshape(2, 3)
    a = mtia.asarray(x)
    compare(lambda: np.average(a, weights=np.ones(3)), lambda: np.average(x, weights=np.ones(3)))
    compare(lambda: np.average(a, axis=1, weights=np.ones(2)), lambda: np.average(x, axis=1, weights=np.ones(2)))
    compare(lambda: np.average(a, axis=2), lambda: np.average(x, axis=2))
    w = np.array([1.0, 2.0, 3.0])
    close(np.average(x, axis=1, weights=mtia.asarray(w)), np.average(x, axis=1, weights=w))  # host a, device weights
    with pytest.raises(ValueError, match="two devices"):
        np.average(a, weights=mtia.ones((2, 3), device=1))
    mtia.synchronize()
    zero = np.average(a, axis=1, weights=np.zeros(3))  # only the data says the weights sum to zero
    with pytest.raises(mtia.KernelError, match="Weights sum to zero"):
        zero.numpy()


def test_results_live_on_the_arguments_device() -> None:
    x = np.array([[3.0, 7.0, 1.0], [4.0, 2.0, 6.0]])
    a = mtia.asarray(x, device=1)
    for r, e in [(np.median(a, axis=0), np.median(x, axis=0)), (np.percentile(a, [25, 75]), np.percentile(x, [25, 75])),
                 (np.quantile(a, 0.5, axis=1), np.quantile(x, 0.5, axis=1)), (np.average(a, axis=1, weights=[1, 2, 3]),
                 np.average(x, axis=1, weights=[1, 2, 3])), (np.nanmedian(a), np.nanmedian(x))]:  # fmt: skip
        assert r.device == 1
        close(r, e)


async def test_from_an_event_loop_nothing_waits() -> None:
    """Every statistics function only enqueues: called on the event loop, the results are awaited."""
    x = np.array([[3.0, 7.0, 1.0], [4.0, 2.0, 6.0]])
    a = mtia.asarray(x)
    results = [np.median(a, axis=1), np.percentile(a, [10, 90]), np.quantile(a, 0.5), np.average(a, weights=x)]
    expected = [np.median(x, axis=1), np.percentile(x, [10, 90]), np.quantile(x, 0.5), np.average(x, weights=x)]
    for r, e in zip(results, expected):
        np.testing.assert_allclose(await r.to_host(), e)
