"""Calls seen before: the numpy functions' whole-call memo (``functions.common.CALLS``).

A repeated call of ``concatenate``, ``stack``, ``where``, ``clip``, ``take``, ``a[idx]``,
``dot``, ``einsum``, ``sort``, ``cumsum``/``cumprod`` skips the argument handling and
numpy's validation: it is looked up by everything its result depends on. Each test
makes the same call (or calls that differ only in what the key must tell apart) several
times, every result against numpy's, and the errors that depend on values (an index out
of bounds, a second device) are still raised at the call after the signature was seen.
"""

from __future__ import annotations

import warnings
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from _support.numpy_diff import compare, device, examples, layouts, same
from hypothesis import given
from hypothesis import strategies as st

import mtia_async
import mtia_async.sync as mtia
from mtia_async._arrays.functions.common import CALLS

SETTINGS = examples(25)
DTYPES = [np.bool_, np.int8, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64, np.complex64]
npf: Any = np  # numpy's stubs do not know DeviceArray's __array_function__


def values(dtype: Any, shape: Any) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        elements: Any = st.integers(0 if dt.kind == "u" else -50, 50)
    elif dt.kind == "b":
        elements = st.booleans()
    else:
        elements = st.floats(-50, 50, width=16) | st.sampled_from([np.nan, np.inf, -np.inf])
    return hnp.arrays(dt, shape, elements=elements)


def small(dtype: Any, shape: Any) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    """Small integers as ``dtype``: products and running products stay finite (no warning in a kernel)."""
    lo = 0 if np.dtype(dtype).kind in "bu" else -3
    hi = 1 if np.dtype(dtype).kind == "b" else 3
    return hnp.arrays(np.int64, shape, elements=st.integers(lo, hi)).map(lambda x: x.astype(dtype))


def twice(device_call: Any, host_call: Any) -> None:
    """The call three times (the first one resolves, the others are the memo's), each equal to numpy's."""
    for _ in range(3):
        compare(device_call, host_call)
    mtia.synchronize()


# --- differential: the repeated call is numpy's -----------------------------------------------------------
@SETTINGS
@given(data=st.data(), layout=layouts)
def test_repeated_joins_match_numpy(data: st.DataObject, layout: str) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    xs = [data.draw(values(data.draw(st.sampled_from(DTYPES)), shape)) for _ in range(data.draw(st.integers(1, 3)))]
    axis = data.draw(st.none() | st.integers(-len(shape) - 1, len(shape)))
    ds = [device(x, layout) for x in xs]
    twice(lambda: npf.concatenate(ds, axis=axis), lambda: np.concatenate(xs, axis=axis))
    if axis is not None:
        twice(lambda: npf.stack(ds, axis=axis), lambda: np.stack(xs, axis=axis))


@SETTINGS
@given(data=st.data(), layout=layouts)
def test_repeated_where_clip_take_match_numpy(data: st.DataObject, layout: str) -> None:
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=4)).input_shapes
    cond = data.draw(values(data.draw(st.sampled_from([np.bool_, np.int32, np.float32])), shapes[0]))
    x, y = (data.draw(values(data.draw(st.sampled_from(DTYPES)), s)) for s in shapes[1:])
    dc, dx, dy = device(cond, layout), device(x, layout), device(y, layout)
    twice(lambda: npf.where(dc, dx, dy), lambda: np.where(cond, x, y))
    bounds = st.none() | st.integers(-300, 300) | st.floats(-50, 50, width=16) | st.booleans()
    lo, hi = data.draw(bounds), data.draw(bounds)
    twice(lambda: npf.clip(dx, lo, hi), lambda: np.clip(x, lo, hi))
    n = x.size if x.ndim else 1
    idx = np.array(data.draw(st.lists(st.integers(-n - 1, n), max_size=5)), dtype=np.int64)
    mode = data.draw(st.sampled_from(["raise", "wrap", "clip"]))
    twice(lambda: npf.take(dx, idx, mode=mode), lambda: np.take(x, idx, mode=mode))
    if x.ndim:
        twice(lambda: dx[idx], lambda: x[idx])


@SETTINGS
@given(data=st.data(), layout=layouts)
def test_repeated_contractions_and_scans_match_numpy(data: st.DataObject, layout: str) -> None:
    n, k, m = (data.draw(st.integers(1, 4)) for _ in range(3))
    a = data.draw(small(data.draw(st.sampled_from(DTYPES[1:])), (n, k)))
    b = data.draw(small(data.draw(st.sampled_from(DTYPES[1:])), (k, m)))
    da, db = device(a, layout), device(b, layout)
    twice(lambda: npf.dot(da, db), lambda: np.dot(a, b))
    for subscripts in ("ij,jk->ik", "ij,jk->ki", "ij,jk", "ij,jk->"):
        twice(lambda: npf.einsum(subscripts, da, db), lambda: np.einsum(subscripts, a, b))
    axis = data.draw(st.none() | st.integers(-2, 1))
    kind = data.draw(st.sampled_from([None, "stable", "quicksort"]))
    twice(lambda: npf.sort(da, axis=axis, kind=kind), lambda: np.sort(a, axis=axis, kind=kind))
    dtype = data.draw(st.sampled_from([None, np.float64, "i8"]))
    with np.errstate(all="ignore"):
        twice(lambda: npf.cumsum(da, axis, dtype), lambda: np.cumsum(a, axis, dtype))
        twice(lambda: npf.cumprod(da, axis, dtype), lambda: np.cumprod(a, axis, dtype))


# --- what the key must tell apart -------------------------------------------------------------------------
def test_clip_int_bounds_at_the_dtype_limits_are_keyed_by_value() -> None:
    # -128 and -127 (127 and 126) have the same int_key, but only the first is no bound on int8
    h = np.array([-128, -127, 0, 126, 127], np.int8)
    a = mtia.asarray(h)
    for lo, hi in [(-128, 127), (-127, 126), (-128, 126), (-127, 127), (-128, 127), (-127, 126)]:
        same(npf.clip(a, lo, hi), np.clip(h, lo, hi))
    for lo, hi in [(-129, 5), (-127, 5), (None, 5), (5, None), (300, None)]:
        compare(lambda: npf.clip(a, lo, hi), lambda: np.clip(h, lo, hi))
    f = mtia.asarray(np.linspace(-2, 2, 9, dtype=np.float32))
    for lo, hi in [(0, 1), (0.5, 1.5), (0, 1), (True, 1), (0, 1.0)]:  # a float bound of another value: its type
        same(npf.clip(f, lo, hi), np.clip(f.numpy(), lo, hi))


def test_calls_that_differ_only_in_an_argument_are_not_confused() -> None:
    h = np.arange(12, dtype=np.float32).reshape(3, 4)[::-1]
    m = mtia.asarray(np.ascontiguousarray(h))
    for axis in (None, 0, 1, -1, None):
        same(npf.cumsum(m, axis), np.cumsum(h, axis))
        same(npf.sort(m, axis), np.sort(h, axis))
        same(npf.concatenate([m, m], axis), np.concatenate([h, h], axis))
    for dtype in (None, np.int16, "f8", None):
        same(npf.cumsum(m, 0, dtype), np.cumsum(h, 0, dtype))
    c_bool, c_int = mtia.asarray(np.array([True, False, True, False])), mtia.asarray(np.array([2, 0, 0, 1]))
    for c, hc in [(c_bool, c_bool.numpy()), (c_int, c_int.numpy()), (c_bool, c_bool.numpy())]:
        same(npf.where(c, m, m[:, ::-1]), np.where(hc, h, h[:, ::-1]))
    for subscripts in ("ij,kj->ik", "ij,kj->ki", "ij,kj->ik"):
        same(npf.einsum(subscripts, m, m), np.einsum(subscripts, h, h))
    idx = np.array([0, 2, -1])
    for mode in ("raise", "wrap", "clip", "raise"):
        same(npf.take(m, idx, 1, mode=mode), np.take(h, idx, 1, mode=mode))
    mtia.synchronize()


def test_value_errors_are_raised_at_the_call_after_the_signature_was_seen() -> None:
    h = np.arange(8, dtype=np.float32)
    a = mtia.asarray(h)
    good, bad = np.array([1, -8, 7]), np.array([1, 8, 7])  # the same dtype and shape
    same(npf.take(a, good), np.take(h, good))
    same(a[good], h[good])
    with pytest.raises(IndexError):
        npf.take(a, bad)
    with pytest.raises(IndexError):
        a[bad]
    same(npf.take(a, bad, mode="clip"), np.take(h, bad, mode="clip"))
    other = mtia.asarray(h, device=1)
    m, m1 = mtia.asarray(np.ones((2, 2), np.float32)), mtia.ones((2, 2), device=1)
    same(npf.dot(m, m), np.full((2, 2), 2.0, np.float32))
    same(npf.concatenate([a, a]), np.concatenate([h, h]))
    same(npf.where(a > 3, a, a), np.where(h > 3, h, h))
    same(npf.einsum("ij,jk->ik", m, m), np.full((2, 2), 2.0, np.float32))
    for call in (lambda: npf.dot(m, m1), lambda: npf.concatenate([a, other]), lambda: npf.where(a > 3, a, other),
                 lambda: npf.einsum("ij,jk->ik", m, m1), lambda: npf.stack([a, other])):  # fmt: skip
        with pytest.raises(ValueError, match="two devices"):
            call()
    mtia.synchronize()


def test_the_index_array_is_snapshotted_on_the_memo_path() -> None:
    a = mtia.asarray(np.arange(8, dtype=np.int64))
    idx = np.array([1, 2, 3])
    a[idx], npf.take(a, idx)  # the signature seen
    mtia.launch(__import__("time").sleep, 0.05)  # the next kernels run after the caller changed idx
    r1, r2 = a[idx], npf.take(a, idx)
    idx[:] = 0
    same(r1, np.array([1, 2, 3]))
    same(r2, np.array([1, 2, 3]))


def test_a_repeated_call_is_remembered_once() -> None:
    a = mtia.asarray(np.arange(5, dtype=np.float64))
    npf.cumsum(a)
    before = len(CALLS)
    for _ in range(5):
        npf.cumsum(a)
        npf.cumsum(a)
    assert len(CALLS) == before
    npf.cumsum(a, dtype=np.float32)  # another call: one entry more
    assert len(CALLS) == before + 1
    mtia.synchronize()


SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.4e38, -3.4e38, 1.5, 2.5, 1e-40, 5e-324, 1.7e308]


@SETTINGS
@given(data=st.data(), layout=layouts)
def test_repeated_median_is_numpys_bit_for_bit(data: st.DataObject, layout: str) -> None:
    # the whole array's median: signed zeros (numpy's sum starts at 0.0), subnormals, overflow, NaN
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.bool_]))
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=5))
    raw = data.draw(hnp.arrays(np.float64, shape, elements=st.sampled_from(SPECIALS) | st.floats(-1e6, 1e6)))
    with np.errstate(all="ignore"):
        h = np.nan_to_num(raw, nan=0, posinf=1, neginf=-1).astype(dtype) if dtype in (np.int32, np.bool_) \
            else raw.astype(dtype)  # fmt: skip
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        expected = np.asarray(np.median(h))
    d = device(h, layout)
    for _ in range(3):
        if warned:  # numpy's overflow or invalid-value warning (inf + -inf): the kernel's too, an error under pytest
            with pytest.raises(mtia_async.KernelError, match="RuntimeWarning"):
                npf.median(d).numpy()
            continue
        got = npf.median(d).numpy()
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes(), (h, got, expected)
    mtia.synchronize()


@pytest.mark.parametrize("n", [2, 3, 16, 257])
def test_median_with_several_nan_payloads_returns_numpys_nan(n: int) -> None:
    # short medians sort rather than partition; with NaNs the kernel returns the one numpy's partition puts last
    rng = np.random.default_rng(n)
    for dtype, utype, quiet in [(np.float32, np.uint32, 0x7FC00000), (np.float64, np.uint64, 0x7FF8000000000000)]:
        h = rng.standard_normal(n).astype(dtype)
        bits = h.view(utype)
        for i, payload in zip(rng.permutation(n)[:2], (1234, 98765)):
            bits[i] = quiet | payload
        a = mtia.asarray(h)
        for _ in range(2):
            assert npf.median(a).numpy().tobytes() == np.asarray(np.median(h)).tobytes()
