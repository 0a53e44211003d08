"""Sorting and scans on DeviceArrays: ``sort``, ``argsort``, ``partition``, ``argpartition``, ``cumsum``,
``cumprod``, ``diff`` and the methods (``a.sort()`` and ``a.partition()`` in place).

Differential: every call is made on numpy and on the device with the same host data
(DeviceArrays contiguous, strided or transposed views); sorts, partitions and integer
scans are equal exactly (values, dtype, shape), float scans within allclose; or both
raise the same exception type, the device one at the call, before anything is
allocated or enqueued. Partitions are compared by what numpy promises (the kth element
in place, nothing larger before it, nothing smaller after it); argsorts exactly, ties
included (numpy's algorithm on the same values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from _support import numpy_diff
from _support.numpy_diff import LAYOUTS, close, device, examples, layouts, raises_at_the_call
from hypothesis import given
from hypothesis import strategies as st

import mtia_async.sync as mtia

SETTINGS = examples(30)
DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64, np.float16, np.float32, np.float64,
          np.complex64]  # fmt: skip


def tolerance(dtype: np.dtype[Any]) -> float | None:
    """Exactly (NaN == NaN) for all but inexact scans (allclose)."""
    if dtype.kind in "fc":
        return 1e-2 if dtype == np.float16 else 1e-5
    return None


def same(got: Any, expected: Any) -> None:
    """Same dtype and shape; values exactly (NaN == NaN) for all but inexact scans (allclose)."""
    close(got, expected, tolerance)


def compare(device_call: Callable[[], Any], host_call: Callable[[], Any]) -> Any:
    """numpy's result on the device, or numpy's exception type at the call (``raises_at_the_call``)."""
    return numpy_diff.compare(device_call, host_call, same, nothing_allocated=True)


def values(dtype: Any, shape: Any, lo: int = -9, hi: int = 9) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    """Small integers (many ties) as ``dtype``."""
    kind = np.dtype(dtype).kind
    low = 0 if kind in "ub" else lo
    return hnp.arrays(np.int64, shape, elements=st.integers(low, 1 if kind == "b" else hi)).map(lambda x: x.astype(dtype))


shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
arrays = st.sampled_from(DTYPES).flatmap(lambda dt: shapes.flatmap(lambda s: values(dt, s)))
floats = hnp.arrays(st.sampled_from([np.float32, np.float64]), hnp.array_shapes(min_dims=1, max_dims=2, max_side=6),
                    elements=st.floats(-50, 50, width=32) | st.just(np.nan) | st.just(-0.0))  # fmt: skip
axes = st.sampled_from([-1, 0, 1, 2, None, -3, 3])
SORT_KW = [{}, {"kind": "stable"}, {"kind": "heap"}, {"kind": "quicksort"}, {"stable": True}, {"stable": False},
           {"kind": "bogus"}, {"kind": "stable", "stable": True}, {"order": "x"}]  # fmt: skip


# --- sort, argsort -----------------------------------------------------------------------------------
@SETTINGS
@given(a=arrays | floats, axis=axes, kw=st.sampled_from(SORT_KW), layout=layouts)
def test_sort_matches_numpy(a: Any, axis: Any, kw: dict[str, Any], layout: str) -> None:
    da = device(a, layout)
    compare(lambda: np.sort(da, axis, **kw), lambda: np.sort(a, axis, **kw))


@SETTINGS
@given(a=arrays | floats, axis=axes, kw=st.sampled_from(SORT_KW), layout=layouts)
def test_sort_in_place_matches_numpy(a: Any, axis: Any, kw: dict[str, Any], layout: str) -> None:
    da = device(a, layout)
    host = a.copy()
    try:
        host.sort(axis, **kw)
    except Exception as exc:
        raises_at_the_call(type(exc), lambda: da.sort(axis, **kw))
        return
    assert da.sort(axis, **kw) is None
    same(da, host)
    if da.base is not None:  # a view sorts its base's memory
        assert da.base.numpy().size >= host.size


@SETTINGS
@given(a=arrays | floats, axis=axes, kw=st.sampled_from(SORT_KW), layout=layouts, method=st.booleans())
def test_argsort_matches_numpy(a: Any, axis: Any, kw: dict[str, Any], layout: str, method: bool) -> None:
    da = device(a, layout)  # numpy's algorithm on the same values: the same indices, ties included
    compare(lambda: da.argsort(axis, **kw) if method else np.argsort(da, axis, **kw), lambda: np.argsort(a, axis, **kw))


def test_sort_copies_and_leaves_the_input() -> None:
    a = np.array([[3, 1, 2], [9, 7, 8]], np.int32)
    da = device(a)
    s = np.sort(da, axis=None)
    assert s.base is None and s.shape == (6,)
    same(s, np.sort(a, axis=None))
    same(da, a)
    same(np.sort(da, axis=0), np.sort(a, axis=0))
    same(np.sort(mtia.asarray(np.float64(2.5)), axis=None), np.sort(np.float64(2.5), axis=None))


@pytest.mark.parametrize("dt", [np.int64, np.float32, np.int16, np.float64])
def test_argsort_of_many_ties_gives_numpys_indices(dt: Any) -> None:
    a = np.random.default_rng(3).integers(0, 10, (40, 300)).astype(dt)
    for layout in LAYOUTS:
        da = device(a, layout)
        for axis in (0, 1, None):
            for kind in (None, "stable", "heap"):
                same(np.argsort(da, axis, kind), np.argsort(a, axis, kind))
                same(np.sort(da, axis, kind), np.sort(a, axis, kind))


# --- partition, argpartition -------------------------------------------------------------------------
def check_partition(got: np.ndarray[Any, Any], a: np.ndarray[Any, Any], kth: Any, axis: Any) -> None:
    """numpy's promise: each kth element where a full sort puts it, nothing larger before, nothing smaller after."""
    flat = a.reshape(-1) if axis is None else a
    ax = -1 if axis is None else axis
    full = np.sort(flat, axis=ax)
    g = np.moveaxis(got, ax, -1)
    f = np.moveaxis(full, ax, -1)
    for k in np.atleast_1d(kth):
        k = int(k) % f.shape[-1]
        np.testing.assert_array_equal(g[..., k], f[..., k])
        assert (g[..., :k] <= g[..., k : k + 1]).all() and (g[..., k + 1 :] >= g[..., k : k + 1]).all()


@SETTINGS
@given(a=st.sampled_from([np.int16, np.int64, np.float32, np.uint8]).flatmap(
           lambda dt: hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5).flatmap(lambda s: values(dt, s))),
       data=st.data(), axis=st.sampled_from([-1, 0, None, 3]), layout=layouts, method=st.sampled_from(["np", "arg", "in"]))  # fmt: skip
def test_partition_matches_numpy(a: Any, data: st.DataObject, axis: Any, layout: str, method: str) -> None:
    n = a.size if axis is None else a.shape[axis] if axis < a.ndim else 1
    kth = data.draw(st.integers(-n - 1, n) | st.lists(st.integers(-n, max(n - 1, 0)), max_size=3) | st.just([]))
    da = device(a, layout)
    host = {"np": lambda: np.partition(a, kth, axis), "arg": lambda: np.argpartition(a, kth, axis),
            "in": lambda: a.copy().partition(kth, axis)}[method]  # fmt: skip
    dev = {"np": lambda: np.partition(da, kth, axis), "arg": lambda: np.argpartition(da, kth, axis),
           "in": lambda: da.partition(kth, axis)}[method]  # fmt: skip
    try:
        expected = host()
    except Exception as exc:
        raises_at_the_call(type(exc), dev)
        return
    got = dev()
    if method == "in":
        assert got is None
        got = da
    host_got = got.numpy()
    if method == "arg":
        assert host_got.dtype == expected.dtype and host_got.shape == expected.shape
        flat = a.reshape(-1) if axis is None else a
        host_got = np.take_along_axis(flat, host_got, -1 if axis is None else axis)
    else:
        assert host_got.dtype == a.dtype and host_got.shape == np.asarray(expected if method != "in" else a).shape
    if host_got.size and (not isinstance(kth, list) or kth):
        check_partition(host_got, a, kth, axis)


@pytest.mark.parametrize("kth", [True, 1.5, [[1]], "1", -5, 4, [0, 4]])
def test_partition_bad_kth_is_numpys_error(kth: Any) -> None:
    a = np.arange(4.0)
    da = device(a)
    for host, dev in [(lambda: np.partition(a, kth), lambda: np.partition(da, kth)),
                      (lambda: np.argpartition(a, kth), lambda: np.argpartition(da, kth)),
                      (lambda: a.copy().partition(kth), lambda: da.partition(kth))]:  # fmt: skip
        with pytest.raises(Exception) as err:
            host()
        with pytest.raises(err.type):
            dev()
    mtia.synchronize()


def test_partition_refuses_a_device_kth_and_checks_nothing_on_empty_arrays() -> None:
    da = mtia.asarray(np.arange(5))
    with pytest.raises(TypeError, match="kth"):
        np.partition(da, mtia.asarray(np.array([1])))
    e = np.zeros((0, 3))
    compare(lambda: np.partition(device(e), 5), lambda: np.partition(e, 5))
    compare(lambda: np.partition(mtia.asarray(np.float64(1.0)), 0, axis=None), lambda: np.partition(np.float64(1.0), 0, axis=None))
    compare(lambda: np.argpartition(mtia.asarray(np.float64(1.0)), 0), lambda: np.argpartition(np.float64(1.0), 0))


# --- cumsum, cumprod -----------------------------------------------------------------------------------
@SETTINGS
@given(a=arrays, axis=st.sampled_from([None, 0, 1, -1, 3]), dtype=st.sampled_from([None, np.int8, np.float32, np.int64]),
       layout=layouts, fn=st.sampled_from(["cumsum", "cumprod"]), method=st.booleans())  # fmt: skip
def test_scans_match_numpy(a: Any, axis: Any, dtype: Any, layout: str, fn: str, method: bool) -> None:
    a = np.asarray(np.clip(a, -3, 3) if a.dtype.kind != "u" else np.clip(a, 0, 3))  # no overflow warnings
    da = device(a, layout)
    if method:
        compare(lambda: getattr(da, fn)(axis, dtype), lambda: getattr(a, fn)(axis, dtype))
    else:
        compare(lambda: getattr(np, fn)(da, axis, dtype), lambda: getattr(np, fn)(a, axis, dtype))


@pytest.mark.parametrize("dt", [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.float16])
def test_scans_of_small_types_use_numpys_accumulator(dt: Any) -> None:
    a = np.full(40, 1 if dt == np.bool_ else 7, dt)  # int8 would wrap: numpy sums in the platform int
    da = device(a)
    r = compare(lambda: np.cumsum(da), lambda: np.cumsum(a))
    assert r is not None and r.dtype == np.cumsum(a).dtype
    small = a[:4]
    ds = device(small)
    compare(lambda: np.cumprod(ds), lambda: np.cumprod(small))


def test_scan_out() -> None:
    a = np.arange(6, dtype=np.int8).reshape(2, 3)
    da = device(a)
    out = mtia.zeros(6, np.float32)
    assert np.cumsum(da, out=out) is out
    same(out, np.cumsum(a, out=np.zeros(6, np.float32)))
    out2 = mtia.zeros((2, 3), np.int64)
    assert da.cumprod(axis=1, out=out2) is out2
    same(out2, np.cumprod(a, axis=1))
    view = mtia.zeros((2, 6), np.int64)[:, ::2]
    np.cumsum(da, axis=0, out=view)
    same(view, np.cumsum(a, axis=0))
    with pytest.raises(ValueError, match="shape"):
        np.cumsum(da, out=mtia.zeros((2, 3), np.int64))
    f = a.astype(np.float64)
    df = device(f)
    out8 = mtia.zeros((2, 3), np.int8)
    np.cumsum(df, axis=0, out=out8, dtype=np.float64)  # numpy casts into out= unsafely here
    same(out8, np.cumsum(f, axis=0, out=np.zeros((2, 3), np.int8), dtype=np.float64))
    with pytest.raises(TypeError, match="must be a DeviceArray"):
        np.cumsum(da, out=np.zeros(6))


# --- diff ----------------------------------------------------------------------------------------------
EXTRA = [None, 0, 2.5, [1, 2], "same", "row", "bad"]


@SETTINGS
@given(a=st.sampled_from([np.int8, np.int64, np.float32, np.bool_, np.uint8]).flatmap(
           lambda dt: hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5).flatmap(lambda s: values(dt, s))),
       n=st.sampled_from([0, 1, 2, 3, 7, -1]), axis=st.sampled_from([-1, 0, 1, 3]),
       prepend=st.sampled_from(EXTRA), append=st.sampled_from(EXTRA), layout=layouts)  # fmt: skip
def test_diff_matches_numpy(a: Any, n: int, axis: int, prepend: Any, append: Any, layout: str) -> None:
    def extra(e: Any, on_device: bool) -> Any:
        if e == "same":
            return device(a) if on_device else a
        if e == "row" and a.ndim:
            shape = list(a.shape)
            shape[axis if -a.ndim <= axis < a.ndim else -1] = 2
            r = np.ones(shape, a.dtype)
            return device(r) if on_device else r
        if e == "bad" and a.ndim:
            r = np.ones((*a.shape, 2), a.dtype)
            return device(r) if on_device else r
        return np._NoValue if e is None or not a.ndim and e in ("row", "bad") else e

    da = device(a, layout)
    dp, dq = extra(prepend, True), extra(append, True)
    hp, hq = extra(prepend, False), extra(append, False)
    compare(lambda: np.diff(da, n, axis, dp, dq) if n else np.diff(da, n, axis, dp, dq).copy(),
            lambda: np.diff(a, n, axis, hp, hq))  # fmt: skip


def test_diff_forms() -> None:
    a = np.array([1, 4, 9, 16], np.uint8)
    da = device(a)
    assert np.diff(da, 0) is da  # numpy returns its argument itself
    compare(lambda: np.diff(da), lambda: np.diff(a))  # uint8 wraps, as numpy
    compare(lambda: np.diff(da, prepend=0), lambda: np.diff(a, prepend=0))  # promoted as numpy
    compare(lambda: np.diff(da, append=da), lambda: np.diff(a, append=a))
    b = np.array([True, False, False, True])
    compare(lambda: np.diff(device(b), 2), lambda: np.diff(b, 2))  # not_equal for bools
    with pytest.raises(TypeError):
        np.diff(da, 1.5)
    with pytest.raises(ValueError, match="non-negative"):
        np.diff(da, -1)


# --- devices and arguments -------------------------------------------------------------------------------
CALLS: list[Callable[[Any, Any], Any]] = [
    lambda a, b: np.cumsum(a, out=b), lambda a, b: np.cumprod(a, axis=0, out=b), lambda a, b: np.diff(a, prepend=b),
    lambda a, b: np.diff(a, append=b),
]  # fmt: skip


@pytest.mark.parametrize("call", CALLS)
def test_two_devices_are_a_value_error_at_the_call(call: Callable[[Any, Any], Any]) -> None:
    a, b = mtia.ones(4), mtia.ones(4, device=1)
    with pytest.raises(ValueError, match="two devices"):
        call(a, b)
    mtia.synchronize()


def test_results_live_on_the_arguments_device() -> None:
    a = mtia.asarray(np.array([3.0, 1.0, 2.0]), device=1)
    for r in (np.sort(a), np.argsort(a), np.partition(a, 1), np.argpartition(a, 1), np.cumsum(a), np.cumprod(a),
              np.diff(a), a.cumsum()):  # fmt: skip
        assert r.device == 1
    a.sort()
    same(a, np.array([1.0, 2.0, 3.0]))


def test_host_arrays_with_a_device_out() -> None:
    out = mtia.zeros(3, np.int64)
    assert np.cumsum([1, 2, 3], out=out) is out
    same(out, np.array([1, 3, 6]))


def test_in_place_sort_of_a_view_writes_the_base() -> None:
    a = mtia.asarray(np.array([[5, 4, 3], [2, 1, 0]], np.int32))
    a[:, 1:].sort(axis=1)
    same(a, np.array([[5, 3, 4], [2, 0, 1]], np.int32))
    a.T.sort(axis=1)  # a transposed view: sorts a's columns
    same(a, np.array([[2, 0, 1], [5, 3, 4]], np.int32))
