"""Selection on DeviceArrays: ``where``, ``clip``, ``take``, ``take_along_axis``, ``put``, ``compress``.

Differential: every call is made on numpy and on the device, with the same host data
(DeviceArrays contiguous, strided or transposed views); the results are equal exactly
(values, dtype, shape: data movement and numpy's own kernels), or both raise the same
exception type, the device one at the call. Indices in a DeviceArray that are out of
range are a ``KernelError`` at the next wait (only the kernel sees them).
"""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from _support.numpy_diff import compare, device, examples, layouts, same
from hypothesis import given
from hypothesis import strategies as st

import mtia_async.sync as mtia

SETTINGS = examples(30)
DTYPES = [np.bool_, np.int8, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64, np.complex64]


def values(dtype: Any, shape: Any) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    """Host arrays of small values (NaN and infinities for floats)."""
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        elements: Any = st.integers(0 if dt.kind == "u" else -50, 50)
    elif dt.kind == "b":
        elements = st.booleans()
    else:
        elements = st.floats(-50, 50, width=16) | st.sampled_from([np.nan, np.inf, -np.inf])
    return hnp.arrays(dt, shape, elements=elements)


scalars = st.integers(-50, 50) | st.floats(-50, 50, width=16) | st.booleans() | st.integers(0, 50).map(np.int16)


# --- where ------------------------------------------------------------------------------------------------
@st.composite
def where_case(draw: st.DrawFn) -> tuple[Any, ...]:
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=4)).input_shapes
    cond = draw(values(draw(st.sampled_from([np.bool_, np.int32, np.float32])), shapes[0]))
    dtypes = st.sampled_from(DTYPES)
    operands = [draw(scalars) if draw(st.booleans()) else draw(values(draw(dtypes), s)) for s in shapes[1:]]
    return cond, *operands


@SETTINGS
@given(case=where_case(), layout=layouts, host_operand=st.booleans())
def test_where_matches_numpy(case: tuple[Any, ...], layout: str, host_operand: bool) -> None:
    cond, x, y = case
    dx = x if host_operand else device(x, layout)  # host data among the operands is copied over
    compare(lambda: np.where(device(cond, layout), dx, device(y, layout)), lambda: np.where(cond, x, y))


def test_where_scalars_are_weak_and_converted_as_numpy() -> None:
    i8 = np.array([1, 2, 3], np.int8)
    c = np.array([True, False, True])
    for x, y in [(i8, 1000), (i8, 1.5), (1, 2.0), (True, 2), (i8, np.int64(1)), (i8.astype(np.float32), 3j)]:
        compare(lambda: np.where(device(c), device(x), device(y)), lambda: np.where(c, x, y))
    a = mtia.asarray(np.array([[1.0, -2.0], [3.0, -4.0]], np.float32))
    same(np.where(a > 0, a, 0), np.array([[1, 0], [3, 0]], np.float32))


def test_where_reads_any_condition_as_nonzero() -> None:
    # the kernel writes y, then x where the condition is nonzero: a non-bool condition is converted there
    x, y = np.arange(4, dtype=np.float32), np.full(4, -1.0, np.float32)
    for cond in [np.array([0, 1j, 2, 0]), np.array([np.nan, 0.0, -0.0, 3.0]), np.array([0, 7, 255, 0], np.uint8)]:
        compare(lambda: np.where(device(cond), device(x), device(y)), lambda: np.where(cond, x, y))
    for c in [5, 0, 0.0, True, np.float32(np.nan)]:
        compare(lambda: np.where(c, device(x), device(y)), lambda: np.where(c, x, y))
    compare(lambda: np.where(device(np.array([True, False, True, False])), 2, device(y)),
            lambda: np.where(np.array([True, False, True, False]), 2, y))
    big = np.arange(5000, dtype=np.float32)  # past the kernel's two-copy size: numpy's where, then a copy
    for cond in [big % 3 == 0, (big % 5).astype(np.int16), big % 7 - 3.5]:
        compare(lambda: np.where(device(cond), device(big), -1), lambda: np.where(cond, big, -1))


@examples(12)
@given(dtype=st.sampled_from(DTYPES + [np.complex128, np.uint64]), layout=layouts, data=st.data())
def test_large_where_selects_numpys_very_bits(dtype: Any, layout: str, data: st.DataObject) -> None:
    # past the two-copy size, operands of the result's dtype are selected as bits (y ^ ((x ^ y) & -c)) in
    # steps of 65,536 elements: NaN payloads, signed zeros and broadcast operands as np.where copies them
    rows = data.draw(st.sampled_from([70_000, 1_000, 3]))
    shape = (rows, 50_000 // rows + 2)
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    width = np.dtype(dtype).itemsize
    raw = rng.integers(0, 256, (2, shape[0], shape[1] * width), dtype=np.uint8)  # random bits: NaN payloads too
    x, y = (np.ascontiguousarray(r).view(dtype) for r in raw)
    if np.dtype(dtype) == np.bool_:
        x, y = x != 0, y != 0
    cond_shape = data.draw(st.sampled_from([shape, (shape[0], 1), (shape[1],)]))
    cond = rng.random(cond_shape) < data.draw(st.sampled_from([0.5, 0.0, 1.0]))
    y_arg = y[:1] if data.draw(st.booleans()) else y  # a broadcast operand
    got = np.where(device(cond, layout), device(x, layout), device(y_arg, layout)).numpy()
    expected = np.where(cond, x, y_arg)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()


def test_where_with_one_argument_is_nonzero() -> None:
    x = np.array([[0, 3, 0], [4, 0, 5]])
    try:
        expected_error = None
        got = np.where(mtia.asarray(x))
    except TypeError as exc:  # nonzero not (yet) implemented: the generic unsupported error
        expected_error = exc
    if expected_error is not None:
        assert "numpy.nonzero() is not supported" in str(expected_error)
        pytest.skip("numpy.nonzero is not implemented on DeviceArray")
    assert isinstance(got, tuple) and len(got) == 2
    for g, e in zip(got, np.where(x)):
        same(g, e)


def test_where_errors_at_the_call() -> None:
    a = mtia.ones(3)
    with pytest.raises(ValueError, match="either both or neither of x and y should be given"):
        np.where(a > 0, a)
    with pytest.raises(ValueError, match="could not be broadcast"):
        np.where(a > 0, a, mtia.ones(2))
    with pytest.raises(ValueError, match="two devices"):
        np.where(a > 0, a, mtia.ones(3, device=1))
    with pytest.raises(TypeError, match="takes DeviceArrays, scalars or host arrays"):
        np.where(a > 0, a, object())
    with pytest.raises(TypeError, match="dtype"):
        np.where(a > 0, a, np.str_("text"))  # a string result
    mtia.synchronize()


# --- clip -------------------------------------------------------------------------------------------------
@st.composite
def clip_case(draw: st.DrawFn) -> tuple[Any, ...]:
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=4)).input_shapes
    dtype = draw(st.sampled_from([np.int8, np.uint8, np.int32, np.float16, np.float32, np.float64]))
    a = draw(values(dtype, draw(st.sampled_from([shapes[0], np.broadcast_shapes(*shapes)]))))
    bounds = []
    for s in shapes[1:]:
        kind = draw(st.sampled_from(["none", "scalar", "array", "host"]))
        bounds.append(None if kind == "none" else draw(scalars) if kind == "scalar" else (kind, draw(values(dtype, s))))
    return a, *bounds


@SETTINGS
@given(case=clip_case(), layout=layouts, method=st.booleans())
def test_clip_matches_numpy(case: tuple[Any, ...], layout: str, method: bool) -> None:
    a, lo, hi = case
    host = [b[1] if isinstance(b, tuple) else b for b in (lo, hi)]
    dev = [(device(b[1], layout) if b[0] == "array" else b[1]) if isinstance(b, tuple) else b for b in (lo, hi)]
    with np.errstate(all="ignore"):
        if method:
            compare(lambda: device(a, layout).clip(*dev), lambda: a.clip(*host))
        else:
            compare(lambda: np.clip(device(a, layout), *dev), lambda: np.clip(a, *host))
        compare(lambda: np.clip(device(a, layout), *dev), lambda: np.clip(a, *host))  # the cached path


def test_clip_out_keywords_and_forms() -> None:
    x = np.array([[-3, 0, 5], [7, 2, -1]], np.int32)
    a = mtia.asarray(x)
    out = mtia.empty((2, 3), np.int32)
    assert np.clip(a, 0, 4, out=out) is out
    same(out, np.clip(x, 0, 4))
    assert a.clip(0, 4, out=a) is a  # in place, as numpy allows
    same(a, np.clip(x, 0, 4))
    a = mtia.asarray(x)
    same(np.clip(a, min=1), np.clip(x, min=1))
    same(np.clip(a, max=1), np.clip(x, max=1))
    same(np.clip(a, None, None), np.clip(x, None, None))
    same(np.clip(a, -(2**40), 2**40), np.clip(x, -(2**40), 2**40))  # beyond int32: no clipping (NEP 50)
    same(np.clip(a, 0.5, 2), np.clip(x, 0.5, 2))
    same(np.clip(a, 0, 4, dtype=np.float64), np.clip(x, 0, 4, dtype=np.float64))
    same(np.clip(a, mtia.asarray([0, 1, 2]), 3), np.clip(x, [0, 1, 2], 3))
    same(np.clip(5, a, 6), np.clip(5, x, 6))  # a scalar a, DeviceArray bounds
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'a_max'"):
        np.clip(a, 1)
    with pytest.raises(ValueError, match="Passing `min` or `max`"):
        np.clip(a, 0, 1, min=0)
    with pytest.raises(TypeError, match="Cannot cast"):
        np.clip(a, 0.5, 2, out=mtia.empty((2, 3), np.int32))
    with pytest.raises(ValueError, match="two devices"):
        np.clip(a, mtia.zeros(3, np.int32, device=1), 4)
    with pytest.raises(TypeError, match="must be DeviceArrays"):
        np.clip(a, 0, 1, out=np.empty((2, 3), np.int32))
    mtia.synchronize()


# --- take, take_along_axis --------------------------------------------------------------------------------
@st.composite
def take_case(draw: st.DrawFn) -> tuple[Any, ...]:
    a = draw(values(draw(st.sampled_from(DTYPES)), hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)))
    axis = draw(st.none() | st.integers(-a.ndim, a.ndim - 1))
    n = a.size if axis is None else a.shape[axis]
    mode = draw(st.sampled_from(["raise", "wrap", "clip"]))
    span = (-n, n - 1) if mode == "raise" else (-3 * n, 3 * n)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    idt = draw(st.sampled_from([np.int64, np.int32, np.uint8]))
    low = max(span[0], 0) if idt is np.uint8 else span[0]
    indices = draw(hnp.arrays(np.dtype(idt), shape, elements=st.integers(low, span[1])))
    return a, indices, axis, mode


@SETTINGS
@given(case=take_case(), layout=layouts, kind=st.sampled_from(["list", "ndarray", "device"]), method=st.booleans())
def test_take_matches_numpy(case: tuple[Any, ...], layout: str, kind: str, method: bool) -> None:
    a, indices, axis, mode = case
    host = indices.tolist() if kind == "list" else indices
    idx = device(indices) if kind == "device" else host
    if method:
        compare(lambda: device(a, layout).take(idx, axis=axis, mode=mode), lambda: a.take(host, axis=axis, mode=mode))
    else:
        compare(lambda: np.take(device(a, layout), idx, axis, mode=mode), lambda: np.take(a, host, axis, mode=mode))


def test_take_out_and_bounds() -> None:
    x = np.arange(12.0).reshape(3, 4)
    a = mtia.asarray(x)
    out = mtia.empty((3, 2), np.float64)
    assert np.take(a, [3, 0], axis=1, out=out) is out
    same(out, np.take(x, [3, 0], axis=1))
    same(np.take(a, 5), np.take(x, 5))  # a scalar index: a 0-d result
    row = out[0]
    assert np.take(x, [0, 11], out=row) is row  # a host array with a DeviceArray out= (a view)
    same(out, np.array([[0.0, 11.0], [7.0, 4.0], [11.0, 8.0]]))
    same(np.take(a, (1, -1)), np.take(x, (1, -1)))
    with pytest.raises(IndexError, match="index 12 is out of bounds for axis 0 with size 12"):
        np.take(a, [1, 12])  # host indices: checked at the call
    with pytest.raises(IndexError, match="index 4 is out of bounds for axis 1 with size 4"):
        np.take(a, np.array([[4]]), axis=1)
    with pytest.raises(IndexError, match="non-empty take from an empty axes"):
        np.take(mtia.zeros((0, 3)), mtia.asarray([0]), axis=0)
    with pytest.raises(TypeError, match="Cannot cast array data from dtype\\('float64'\\)"):
        np.take(a, np.array([1.5]))
    with pytest.raises(TypeError, match="Cannot cast"):
        np.take(a, mtia.asarray([1.5]))
    with pytest.raises(ValueError, match="clipmode must be one of"):
        np.take(a, [0], mode="bogus")
    with pytest.raises(np.exceptions.AxisError):
        np.take(a, [0], axis=2)
    with pytest.raises(ValueError, match="out= of numpy.take\\(\\) has shape"):
        np.take(a, [0], out=mtia.empty(2))
    with pytest.raises(TypeError, match="Cannot cast array data from dtype\\('float64'\\) to dtype\\('float32'\\)"):
        np.take(mtia.ones(3, np.float32), [0], out=mtia.empty(1, np.float64))  # numpy's (odd) rule for out=
    with pytest.raises(ValueError, match="two devices"):
        np.take(a, mtia.asarray([0], device=1))
    mtia.synchronize()
    bad = np.take(a, mtia.asarray([0, 12]))  # device indices: only the kernel sees them
    with pytest.raises(mtia.KernelError, match="index 12 is out of bounds"):
        bad.numpy()


@SETTINGS
@given(a=values(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)), layout=layouts,
       data=st.data(), on_device=st.booleans())  # fmt: skip
def test_take_along_axis_matches_numpy(a: np.ndarray[Any, Any], layout: str, data: st.DataObject,
                                       on_device: bool) -> None:  # fmt: skip
    axis = data.draw(st.none() | st.integers(-a.ndim, a.ndim - 1))
    if axis is None:
        shape: tuple[int, ...] = (data.draw(st.integers(0, 5)),)
        n = a.size
    else:
        shape = tuple(data.draw(st.sampled_from([1, d])) for d in a.shape)
        shape = shape[: axis % a.ndim] + (data.draw(st.integers(0, 4)),) + shape[axis % a.ndim + 1 :]
        n = a.shape[axis]
    indices = data.draw(hnp.arrays(np.intp, shape, elements=st.integers(-n, n - 1)))
    idx = device(indices) if on_device else indices
    compare(lambda: np.take_along_axis(device(a, layout), idx, axis), lambda: np.take_along_axis(a, indices, axis))


def test_take_along_axis_errors() -> None:
    x = np.arange(6.0).reshape(2, 3)
    a = mtia.asarray(x)
    order = np.argsort(x, axis=1)
    same(np.take_along_axis(a, mtia.asarray(order), axis=1), np.take_along_axis(x, order, 1))
    for idx in (np.zeros((2, 3)), np.zeros((3, 3), int), np.zeros(2, int), np.full((2, 1), 5), np.zeros((2, 1), bool)):
        for host in (True, False) if idx.max() < 5 else (True,):  # bounds of device indices: the kernel's
            d = idx if host else mtia.asarray(idx)
            for axis in (1, None):
                compare(lambda: np.take_along_axis(a, d, axis), lambda: np.take_along_axis(x, idx, axis))
    bad = np.take_along_axis(a, mtia.asarray(np.full((2, 1), 5)), 1)
    with pytest.raises(mtia.KernelError, match="index 5 is out of bounds"):
        bad.numpy()


# --- put, compress ----------------------------------------------------------------------------------------
@SETTINGS
@given(a=values(np.int32, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4)), data=st.data(),
       layout=layouts, ind_kind=st.sampled_from(["list", "device"]),
       v_kind=st.sampled_from(["scalar", "host", "device"]),
       mode=st.sampled_from(["raise", "wrap", "clip"]), method=st.booleans())  # fmt: skip
def test_put_matches_numpy(a: np.ndarray[Any, Any], data: st.DataObject, layout: str, ind_kind: str, v_kind: str,
                           mode: str, method: bool) -> None:  # fmt: skip
    n = a.size
    span = (-n, n - 1) if mode == "raise" else (-3 * n, 3 * n)
    indices = data.draw(st.lists(st.integers(*span), max_size=6))
    small = st.integers(-9, 9)
    v = data.draw(small) if v_kind == "scalar" else np.array(data.draw(st.lists(small, max_size=4)))
    d = device(a, layout)
    ind = indices if ind_kind == "list" else device(np.array(indices, np.intp))
    dv = device(v) if v_kind == "device" else v
    expected = a.copy()
    try:
        np.put(expected, indices, v, mode=mode)
    except Exception as exc:
        with pytest.raises(type(exc)):
            d.put(ind, dv, mode=mode) if method else np.put(d, ind, dv, mode=mode)
        return
    assert (d.put(ind, dv, mode=mode) if method else np.put(d, ind, dv, mode=mode)) is None
    same(d, expected)


def test_put_forms_and_errors() -> None:
    x = np.arange(6, dtype=np.int8)
    a = mtia.asarray(x)
    np.put(a, [0, 1], [2.7, -1.5])  # numpy's unsafe conversion of the values
    np.put(x, [0, 1], [2.7, -1.5])
    same(a, x)
    np.put(a, [2.0, 3.9], 9)  # a list of floats is converted, as numpy's
    np.put(x, [2.0, 3.9], 9)
    same(a, x)
    with pytest.raises(TypeError, match="Cannot cast array data from dtype\\('float64'\\)"):
        np.put(a, mtia.asarray([2.0]), 9)  # an array of floats is not (the rule 'safe')
    with pytest.raises(TypeError, match="Cannot cast array data from dtype\\('float64'\\)"):
        np.put(a, np.array([2.0]), 9)
    with pytest.raises(OverflowError, match="Python integer 1000 out of bounds for int8"):
        np.put(a, 0, 1000)
    with pytest.raises(IndexError, match="index 6 is out of bounds for axis 0 with size 6"):
        np.put(a, [6], 1)
    with pytest.raises(IndexError, match="cannot replace elements of an empty array"):
        np.put(mtia.zeros(0), mtia.asarray([0]), 1)
    with pytest.raises(ValueError, match="clipmode must be one of"):
        np.put(a, mtia.asarray([0]), 1, mode="nope")
    with pytest.raises(TypeError, match="a must be the DeviceArray"):
        np.put(np.zeros(3), [0], mtia.ones(1))
    with pytest.raises(ValueError, match="two devices"):
        np.put(a, [0], mtia.ones(1, device=1))
    np.put(a, [0], [])  # no values: nothing written, as numpy
    same(a, x)
    mtia.synchronize()
    np.put(a, mtia.asarray([7]), 1)
    with pytest.raises(mtia.KernelError, match="index 7 is out of bounds"):
        a.numpy()


@SETTINGS
@given(a=values(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)), data=st.data(),
       layout=layouts)  # fmt: skip
def test_compress_matches_numpy(a: np.ndarray[Any, Any], data: st.DataObject, layout: str) -> None:
    axis = data.draw(st.none() | st.integers(-a.ndim, a.ndim - 1))
    n = a.size if axis is None else a.shape[axis]
    cond = data.draw(st.lists(st.booleans(), max_size=n + 1))
    compare(lambda: np.compress(cond, device(a, layout), axis), lambda: np.compress(cond, a, axis))


def test_compress_out_and_device_condition() -> None:
    x = np.arange(6.0).reshape(2, 3)
    out = mtia.empty((2, 2), np.float64)
    assert np.compress([True, False, True], mtia.asarray(x), axis=1, out=out) is out
    same(out, np.compress([True, False, True], x, axis=1))
    with pytest.raises(TypeError, match="compress\\(\\) is not supported on DeviceArray \\(a DeviceArray condition"):
        np.compress(mtia.asarray([True, False]), mtia.asarray(x), axis=0)


# --- devices --------------------------------------------------------------------------------------------
def test_results_live_on_the_arguments_device() -> None:
    x = np.arange(6.0).reshape(2, 3)
    a = mtia.asarray(x, device=1)
    zeros = np.zeros((2, 1), int)
    for r, e in [(np.where(a > 2, a, -1), np.where(x > 2, x, -1)), (np.clip(a, 1, 4), np.clip(x, 1, 4)),
                 (np.take(a, [2, 0]), np.take(x, [2, 0])),
                 (np.take(a, mtia.asarray([1], device=1), axis=1), np.take(x, [1], axis=1)),
                 (np.take_along_axis(a, zeros, 1), np.take_along_axis(x, zeros, 1)),
                 (np.compress([False, True], a, axis=0), np.compress([False, True], x, axis=0))]:  # fmt: skip
        assert r.device == 1
        same(r, e)
    np.put(a, [0], mtia.asarray([9.0], device=1))
    same(a, np.where(np.arange(6).reshape(2, 3) == 0, 9.0, x))


async def test_from_an_event_loop_nothing_waits() -> None:
    """Every selection function only enqueues: called on the event loop, the results are awaited."""
    x = np.arange(6.0).reshape(2, 3)
    a = mtia.asarray(x)
    results = [np.where(a > 2, a, 0), np.clip(a, 1, 4), a.take([5, 0]), np.take_along_axis(a, np.zeros((2, 1), int), 1),
               np.compress([True, False], a, axis=0)]  # fmt: skip
    a.put([0], 9.0)
    expected = [np.where(x > 2, x, 0), np.clip(x, 1, 4), x.take([5, 0]), x[:, :1], x[:1]]
    for r, e in zip(results, expected):
        np.testing.assert_array_equal(await r.to_host(), e)
    assert (await a.to_host())[0, 0] == 9.0
