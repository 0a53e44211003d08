"""Results sized by the data (``nonzero``, ``argwhere``, ``flatnonzero``, ``unique``, ``histogram``)
and the conveniences (``item``, ``tolist``, ``fill``, ``view``, ``astype``).

Differential: the same call on numpy's array and on the device's (contiguous, transposed
and strided inputs) gives equal results exactly, or the same exception type. The sized
functions block in ``mtia_async.sync`` and through numpy, are awaited in ``mtia_async``,
and never block an event loop: the blocking form raises ``RuntimeError`` there, naming
the awaitable one, and the awaitable form lets the loop run while it waits.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from _support import numpy_diff
from _support.numpy_diff import awaited_while_looping, examples, on_device
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mtia_async
import mtia_async.sync as mtia

SETTINGS = examples(30)
DTYPES = [np.dtype(t) for t in (np.bool_, np.int8, np.int32, np.uint16, np.float32, np.float64)]


def same(got: Any, expected: Any) -> None:
    """Equal values (NaN == NaN), dtype and shape; tuples item by item; DeviceArrays copied back
    (histogram's results are host arrays, and so are the awaited forms' once copied back)."""
    numpy_diff.same(got, expected, host=True)


def compare(device_call: Callable[[], Any], host_call: Callable[[], Any]) -> None:
    """numpy's result on the device (``same``), or numpy's exception type at the call."""
    numpy_diff.compare(device_call, host_call, same)


@st.composite
def host_arrays(draw: Any, min_dims: int = 0, nan: bool = True) -> np.ndarray[Any, Any]:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=0, max_side=5))
    if dtype.kind == "f":
        elements = st.sampled_from([0.0, 1.5, -2.0, 3.0] + ([np.nan] if nan else []))
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        elements = st.integers(0, 3)  # repeats, for unique
    return draw(hnp.arrays(dtype, shape, elements=elements))  # type: ignore[no-any-return]


LAYOUTS = st.sampled_from(["C", "T", "strided"])


# --- nonzero, argwhere, flatnonzero, unique -------------------------------------------------------------
@SETTINGS
@given(host_arrays(), LAYOUTS)
def test_nonzero_argwhere_flatnonzero_match_numpy(h: Any, layout: str) -> None:
    a = on_device(h, layout)
    compare(lambda: np.nonzero(a), lambda: np.nonzero(h))
    compare(lambda: mtia.nonzero(a), lambda: np.nonzero(h))
    compare(lambda: np.argwhere(a), lambda: np.argwhere(h))
    compare(lambda: np.flatnonzero(a), lambda: np.flatnonzero(h))
    if h.ndim:
        same(a.nonzero(), np.nonzero(h))


@SETTINGS
@given(host_arrays(), LAYOUTS, st.booleans(), st.booleans(), st.booleans(), st.sampled_from([None, 0, -1, 3]),
       st.booleans())  # fmt: skip
def test_unique_matches_numpy(h: Any, layout: str, index: bool, inverse: bool, counts: bool, axis: Any,
                              equal_nan: bool) -> None:  # fmt: skip
    a = on_device(h, layout)
    kw = dict(return_index=index, return_inverse=inverse, return_counts=counts, axis=axis, equal_nan=equal_nan)
    compare(lambda: np.unique(a, **kw), lambda: np.unique(h, **kw))  # type: ignore[call-overload]
    compare(lambda: mtia.unique(a, **kw), lambda: np.unique(h, **kw))  # type: ignore[call-overload]


@SETTINGS
@given(host_arrays(nan=False), LAYOUTS, st.sampled_from([1, 3, "auto", [0.0, 1.0, 2.5], -1]),
       st.sampled_from([None, (0.0, 2.0), (2.0, 0.0)]), st.sampled_from([None, True]),
       st.sampled_from(["none", "host", "device"]))  # fmt: skip
def test_histogram_matches_numpy_on_the_host(h: Any, layout: str, bins: Any, range_: Any, density: Any,
                                             weights: str) -> None:  # fmt: skip
    a = on_device(h, layout)
    w_host = None if weights == "none" else np.arange(h.size, dtype=np.float32).reshape(h.shape)
    w_dev = mtia.asarray(w_host) if weights == "device" else w_host
    with np.errstate(all="ignore"):  # density of an empty histogram divides by zero, on both sides
        compare(lambda: np.histogram(a, bins, range_, density, w_dev), lambda: np.histogram(h, bins, range_, density, w_host))


def test_results_are_device_arrays_on_the_input_device_and_histogram_is_on_the_host() -> None:
    h = np.array([[0, 3, 0], [1, 0, 3]])
    a = mtia.asarray(h, device=1)
    rows, cols = np.nonzero(a)
    assert rows.device == 1 and cols.device == 1 and rows.dtype == np.intp
    values, inverse = np.unique(a, return_inverse=True)
    assert values.device == 1 and inverse.shape == h.shape  # numpy 2: the inverse has the input's shape
    hist, edges = np.histogram(a, bins=3, weights=mtia.asarray(np.ones((2, 3)), device=1))
    assert type(hist) is np.ndarray and type(edges) is np.ndarray
    same(hist, np.histogram(h, bins=3, weights=np.ones((2, 3)))[0])


def test_bad_arguments_are_numpys_errors_at_the_call() -> None:
    a = mtia.asarray(np.arange(6).reshape(2, 3))
    mtia.launch(time.sleep, 0.2)  # anything enqueued by an error would run behind this
    started = time.perf_counter()
    with pytest.raises(ValueError, match="Calling nonzero on 0d arrays is not allowed"):
        np.nonzero(mtia.asarray(np.array(1)))
    with pytest.raises(np.exceptions.AxisError):
        np.unique(a, axis=2)
    with pytest.raises(ValueError, match="`bins` must be positive"):
        np.histogram(a, bins=-1)
    with pytest.raises(ValueError, match="max must be larger than min"):
        np.histogram(a, range=(3, 1))
    with pytest.raises(ValueError, match="must increase monotonically"):
        np.histogram(a, bins=[2, 1])
    with pytest.raises(ValueError, match="weights should have the same shape as a"):
        np.histogram(a, weights=np.ones(3))
    with pytest.raises(TypeError, match=r"numpy.histogram\(\) is not supported.*bins= must be host values"):
        np.histogram(a, bins=mtia.asarray(np.array([0.0, 1.0])))
    with pytest.raises(TypeError, match=r"mtia_async.nonzero\(\) takes a DeviceArray"):
        mtia.nonzero(np.arange(3))
    with pytest.raises(ValueError, match="two devices, mtia:0 and mtia:1"):
        np.histogram(a, weights=mtia.ones((2, 3), device=1))
    assert time.perf_counter() - started < 0.15  # none of them waited for the sleep
    mtia.synchronize()


def test_a_kernel_failure_before_the_call_is_raised_by_it() -> None:
    a = mtia.ones(3)

    def boom() -> None:
        raise ZeroDivisionError("before nonzero")

    mtia.launch(boom)
    with pytest.raises(mtia.KernelError, match="before nonzero"):
        np.nonzero(a)
    mtia.launch(boom)
    with pytest.raises(mtia.KernelError, match="before nonzero"):
        asyncio.run(mtia_async.unique(a))


def test_inside_a_kernel_the_blocking_forms_raise() -> None:
    a = mtia.asarray(np.array([0, 2, 0]))
    errors: list[BaseException] = []

    def kernel() -> None:
        for call in (lambda: np.nonzero(a), lambda: a.item(1), lambda: a.tolist()):
            try:
                call()
            except RuntimeError as exc:
                errors.append(exc)

    mtia.launch(kernel)
    mtia.synchronize()
    assert len(errors) == 3 and all("inside a kernel" in str(e) for e in errors), errors


def test_graph_capture_refuses_a_sized_call() -> None:
    a = mtia.ones(3)
    g = mtia.MTIAGraph()
    with pytest.raises(RuntimeError, match=r"numpy.nonzero\(\), a copy to the host, is not allowed while .* captures"):
        with mtia.graph(g):
            np.nonzero(a)
    with pytest.raises(RuntimeError, match=r"DeviceArray.item\(\), a copy to the host, is not allowed"):
        with mtia.graph(g):
            a.item(0)


# --- the event loop ---------------------------------------------------------------------------------------
SIZED_CALLS: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any], Callable[[Any], Any]]] = [
    ("nonzero(a)", np.nonzero, mtia_async.nonzero, np.nonzero),
    ("argwhere(a)", np.argwhere, mtia_async.argwhere, np.argwhere),
    ("flatnonzero(a)", np.flatnonzero, mtia_async.flatnonzero, np.flatnonzero),
    ("unique(a, ...)", lambda a: np.unique(a, return_counts=True), lambda a: mtia_async.unique(a, return_counts=True),
     lambda h: np.unique(h, return_counts=True)),
    ("histogram(a, ...)", lambda a: np.histogram(a, 4), lambda a: mtia_async.histogram(a, 4), lambda h: np.histogram(h, 4)),
]  # fmt: skip


async def _host(x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple([await _host(v) for v in x])
    return await x.to_host() if isinstance(x, mtia_async.DeviceArray) else x


@pytest.mark.parametrize("hint, blocking, awaitable, reference", SIZED_CALLS, ids=[c[0] for c in SIZED_CALLS])
async def test_the_awaitable_forms_let_the_loop_run(hint: str, blocking: Any, awaitable: Any, reference: Any) -> None:
    h = np.array([0.0, 2.0, 0.0, 2.0, 5.0])
    a = mtia_async.asarray(h)
    with pytest.raises(RuntimeError, match=f"event loop thread.*await mtia_async.{re.escape(hint)}"):
        blocking(a)
    got = await awaited_while_looping(lambda: awaitable(a))
    same(await _host(got), reference(h))


def test_trio_awaits_and_refuses_to_block() -> None:
    import trio

    async def main() -> Any:
        a = mtia_async.asarray(np.array([[0, 1], [1, 1]]))
        with pytest.raises(RuntimeError, match="trio task.*await mtia_async.nonzero"):
            np.nonzero(a)
        nz = await mtia_async.nonzero(a)
        values = await mtia_async.unique(a)
        return (await nz[0].to_host(), await nz[1].to_host()), await values.to_host(), await a.item(1), await a.tolist()

    nz, values, first, listed = trio.run(main)
    same(nz, (np.array([0, 1, 1]), np.array([1, 0, 1])))
    same(values, np.array([0, 1]))
    assert first == 1 and type(first) is int and listed == [[0, 1], [1, 1]]


def test_the_sync_facade_blocks_from_any_thread() -> None:
    a = mtia.asarray(np.array([3, 0, 3]))
    results: list[Any] = []
    t = threading.Thread(target=lambda: results.append((mtia.flatnonzero(a).numpy(), a.item(0), a.tolist())))
    t.start()
    t.join(10)
    same(results[0][0], np.array([0, 2]))
    assert results[0][1:] == (3, [3, 0, 3])


# --- item(), tolist() ------------------------------------------------------------------------------------
@SETTINGS
@given(host_arrays(nan=False), LAYOUTS, st.sampled_from([(), (0,), (-1,), (7,), (0, 1), ((1, 0),), (1, 1, 1), (-2, -1)]))
def test_item_and_tolist_match_numpy(h: Any, layout: str, args: tuple[Any, ...]) -> None:
    a = on_device(h, layout)
    try:
        expected = h.item(*args)
    except Exception as exc:
        with pytest.raises(type(exc)):
            a.item(*args)
    else:
        got = a.item(*args)
        assert got == expected and type(got) is type(expected)
    assert a.tolist() == h.tolist()


async def test_item_and_tolist_are_awaitable_on_an_event_loop() -> None:
    a = mtia_async.asarray(np.array([[1.5, 2.5], [3.5, 4.5]], dtype=np.float32))
    pending = a.item(1, 0)  # the copy is enqueued here: a later write does not change it
    a[1, 0] = 0.0
    assert await pending == 3.5
    assert await a.tolist() == [[1.5, 2.5], [0.0, 4.5]]
    with pytest.raises(IndexError, match="index 9 is out of bounds"):
        a.item(9)  # numpy's error at the call, not at the await
    bf = mtia_async.asarray(np.array([1.25], dtype=ml_dtypes.bfloat16))
    assert await bf.item() == np.array([1.25], dtype=ml_dtypes.bfloat16).item()


# --- fill, view, astype --------------------------------------------------------------------------------------
@SETTINGS
@given(host_arrays(), LAYOUTS, st.sampled_from([0, 1, -1, 300, 2.5, True, np.float32(7), np.int8(-3), 1j, "x", None,
                                                 [1], np.array(4)]))  # fmt: skip
def test_fill_matches_numpy(h: Any, layout: str, value: Any) -> None:
    a = on_device(h, layout)
    expected = h.copy()
    try:
        expected.fill(value)
    except Exception as exc:
        with pytest.raises(type(exc)):
            a.fill(value)
        mtia.synchronize()
        return
    a.fill(value)
    same(a, expected)


def test_fill_of_a_view_writes_the_base() -> None:
    a = mtia.zeros((2, 3), dtype=np.int32)
    a[:, 1].fill(5)
    same(a, np.array([[0, 5, 0], [0, 5, 0]], dtype=np.int32))
    with pytest.raises(TypeError, match="takes a scalar, not a DeviceArray"):
        a.fill(mtia.ones(()))


@SETTINGS
@given(host_arrays(nan=False), LAYOUTS, st.sampled_from([None, np.int8, np.uint8, np.int16, np.float32, np.int64,
                                                          np.complex128, np.bool_]))  # fmt: skip
def test_view_matches_numpy_and_shares_memory(h: Any, layout: str, dtype: Any) -> None:
    a = on_device(h, layout)
    host = np.ascontiguousarray(h.T).T if layout == "T" and h.ndim > 1 else h
    if layout == "strided" and h.ndim:
        host = np.repeat(h, 2, axis=-1)[..., ::2]
    try:
        expected = host.view(dtype) if dtype is not None else host.view()
    except Exception as exc:
        with pytest.raises(type(exc)):
            a.view(dtype)
        return
    v = a.view(dtype)
    assert v.base is (a if a.base is None else a.base) and v.data_ptr() == a.data_ptr()
    same(v, expected)


def test_writes_through_a_view_reach_the_array() -> None:
    a = mtia.zeros(2, dtype=np.float32)
    a.view(np.int32)[...] = 0x3F800000  # the bits of 1.0
    same(a, np.ones(2, np.float32))
    with pytest.raises(TypeError, match="view\\(type=...\\) is not supported"):
        a.view(np.ndarray)
    with pytest.raises(TypeError, match="not supported on a DeviceArray"):
        a.view(np.str_)


@SETTINGS
@given(host_arrays(nan=False), LAYOUTS, st.sampled_from([np.int8, np.int64, np.float16, np.float64, np.bool_]),
       st.sampled_from(["no", "equiv", "safe", "same_kind", "unsafe", "bad"]), st.booleans(),
       st.sampled_from(["K", "C", "A"]))  # fmt: skip
def test_astype_matches_numpy(h: Any, layout: str, dtype: Any, casting: str, copy: bool, order: str) -> None:
    a = on_device(h, layout)
    compare(lambda: a.astype(dtype, order, casting, copy=copy), lambda: h.astype(dtype, order, casting, copy=copy))
    if not copy and np.dtype(dtype) == h.dtype:
        assert a.astype(dtype, copy=False) is a


def test_astype_refuses_what_it_cannot_do() -> None:
    a = mtia.ones((2, 2))
    with pytest.raises(TypeError, match="order='F'"):
        a.astype(np.float32, order="F")
    same(mtia.ones(3).astype(np.int8, order="F"), np.ones(3, np.int8))  # one dimension: C and F agree
    with pytest.raises(TypeError, match="same_value"):
        a.astype(np.int32, casting="same_value")
    with pytest.raises(ValueError, match="order must be one of"):
        a.astype(np.int32, order="X")
    with pytest.raises(TypeError, match="Cannot cast array data from dtype\\('float32'\\) to dtype\\('int32'\\)"):
        a.astype(np.int32, casting="safe")


# --- a cluster device: its memory is in another process --------------------------------------------------------
def test_cluster_devices_take_the_same_path(remote: Any) -> None:
    h = np.array([[0, 4, 4], [2, 0, 2]])
    a = mtia.asarray(h)
    same(np.nonzero(a), np.nonzero(h))
    same(np.unique(a, return_counts=True), np.unique(h, return_counts=True))
    same(a[a > 1], h[h > 1])
    same(a[[1, 0], [2, 2]], h[[1, 0], [2, 2]])
    a[a == 4] = 9
    a[[0], [0]] = -1
    expected = h.copy()
    expected[h == 4] = 9
    expected[0, 0] = -1
    assert a.tolist() == expected.tolist() and a.item(-1) == 2
    same(np.histogram(a, bins=2)[0], np.histogram(expected, bins=2)[0])
