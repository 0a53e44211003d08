"""Integer-array and boolean-mask indexing of DeviceArrays: ``a[idx]`` and ``a[idx] = v``.

Differential: each index is applied to numpy's array and to the device's (host indices as
arrays or lists, or DeviceArrays; contiguous, transposed and strided inputs); the results
are equal exactly, or both raise the same exception type, the device one at the call.
Indices known only on the device are checked by the kernel (``KernelError`` at the next
wait); a DeviceArray mask sizes the result, so reading with one waits (blocks, or
``await mtia_async.getitem``), and refuses to block an event loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from _support.numpy_diff import awaited_while_looping, examples, on_device, same
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mtia_async
import mtia_async.sync as mtia
from mtia_async._arrays.functions import indexing

SETTINGS = examples(40)
DTYPES = [np.dtype(t) for t in (np.int8, np.int32, np.uint16, np.float32, np.float64, np.bool_, np.complex64)]


def index_form(item: Any, form: str) -> Any:
    """An index array as the caller may write it: a host array, a list, or a DeviceArray."""
    if not isinstance(item, np.ndarray):
        return item
    if form == "list":
        return item.tolist()
    if form == "device":
        return mtia.asarray(item)
    return item


@st.composite
def arrays_and_indices(draw: Any, masks: bool = False) -> tuple[np.ndarray[Any, Any], tuple[Any, ...]]:
    """An array and a mixed index: per axis a slice, an int, an integer array (one broadcast
    shape; sometimes separated by a slice) or, with ``masks``, a boolean mask; Nones between."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))
    h = draw(hnp.arrays(dtype, shape, elements={"allow_nan": False} if dtype.kind in "fc" else None))
    adv_shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    index: list[Any] = []
    axis = 0
    while axis < len(shape):
        n = shape[axis]
        kinds = ["slice", "array"] + (["int"] if n else []) + (["mask"] if masks else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "mask" and axis + 1 < len(shape) and draw(st.booleans()):  # a 2-d mask over two axes
            index.append(draw(hnp.arrays(np.bool_, shape[axis : axis + 2])))
            axis += 2
            continue
        if kind == "mask":
            index.append(draw(hnp.arrays(np.bool_, (n,))))
        elif kind == "array":
            elements = st.integers(-n, n - 1) if n else st.just(0)
            index.append(draw(hnp.arrays(np.intp, adv_shape if n else (0,), elements=elements)))
        elif kind == "int":
            index.append(draw(st.integers(-n, n - 1)))
        else:
            index.append(draw(st.slices(n)))
        if draw(st.integers(0, 5)) == 0:
            index.append(None)
        axis += 1
    cut = draw(st.integers(0, len(index)))
    if draw(st.booleans()):  # leave the trailing axes to an Ellipsis
        index = index[:cut] + [Ellipsis]
    return h, tuple(index)


@contextmanager
def shapes_by(path: str) -> Iterator[None]:
    """Index shapes from the ghost walking every index element, or from the large-index path
    (min/max bounds, numpy's broadcast shape put in place: ``indexing._large_shape``)."""
    saved = indexing._LARGE
    indexing._LARGE = saved if path == "ghost" else -1
    try:
        yield
    finally:
        indexing._LARGE = saved


PATHS = st.sampled_from(["ghost", "large"])


def applied(call: Any, host_call: Any) -> Any:
    """numpy's result on the host, or its exception type raised by the device call."""
    try:
        expected = host_call()
    except Exception as exc:
        with pytest.raises(type(exc)):
            call()
        mtia.synchronize()  # raised at the call: nothing failed in a worker
        return None
    return call(), expected


# --- reading ------------------------------------------------------------------------------------------
@SETTINGS
@given(arrays_and_indices(), st.sampled_from(["array", "list", "device"]), st.sampled_from(["C", "T", "strided"]), PATHS)
def test_integer_array_reading_matches_numpy(case: Any, form: str, layout: str, path: str) -> None:
    with shapes_by(path):
        _reading_matches_numpy(case, form, layout)


def _reading_matches_numpy(case: Any, form: str, layout: str) -> None:
    h, index = case
    a = on_device(h, layout)
    dev_index = tuple(index_form(i, form) for i in index)
    if form == "device" and any(isinstance(i, np.ndarray) and i.size and not h.size for i in index):
        return  # a DeviceArray index into an empty axis: numpy's error comes from the kernel (tested below)
    host_index = tuple(index_form(i, form) for i in index) if form == "list" else index  # [] is not (0, 3)
    result = applied(lambda: a[dev_index], lambda: h[host_index])
    if result is not None:
        same(*result)


@SETTINGS
@given(arrays_and_indices(masks=True), st.sampled_from(["array", "list"]), PATHS)
def test_host_masks_read_without_waiting_and_device_masks_match(case: Any, form: str, path: str) -> None:
    h, index = case
    a = mtia.asarray(h)
    host_index = tuple(index_form(i, form) for i in index)
    with shapes_by(path):
        result = applied(lambda: a[host_index], lambda: h[host_index])
    if result is not None:
        same(*result)
    dev_index = tuple(mtia.asarray(i) if isinstance(i, np.ndarray) and i.dtype == bool else i for i in index)
    try:
        expected = h[index]
    except Exception as exc:
        with pytest.raises(type(exc)):
            a[dev_index]
        return
    same(a[dev_index], expected)
    same(mtia.getitem(a, dev_index), expected)


def test_python_bools_and_0d_masks_index_as_numpy() -> None:
    h = np.arange(6.0).reshape(2, 3)
    a = mtia.asarray(h)
    for index in [True, False, np.True_, np.array(True), np.array(False), (Ellipsis, True), (0, False)]:
        same(a[index], h[index])
    same(a[mtia.asarray(np.array(True))], h[np.array(True)])  # a 0-d DeviceArray mask: sized
    same(a[mtia.asarray(np.array(False))], h[np.array(False)])
    same(a[np.array(1)], h[np.array(1)])  # a 0-d integer array: numpy takes it as an int, a copy
    same(a[[]], h[[]])  # an empty list is an empty integer index, as in numpy
    same(a[:, []], h[:, []])


def test_separated_advanced_indices_put_their_axes_first() -> None:
    h = np.arange(60).reshape(3, 4, 5)
    a = mtia.asarray(h)
    index = ([0, 2], slice(1, 3), mtia.asarray(np.array([4, 0])))
    got = a[index]
    assert got.shape == (2, 2) and got.shape == h[[0, 2], 1:3, [4, 0]].shape
    same(got, h[[0, 2], 1:3, [4, 0]])
    same(a[None, 1, [1, 3], None, ::2], h[None, 1, [1, 3], None, ::2])


def test_the_host_index_is_a_snapshot() -> None:
    idx = np.array([0, 1])
    a = mtia.asarray(np.arange(4))
    mtia.launch(time.sleep, 0.05)  # the kernel reading a runs after the caller changed idx
    r = a[idx]
    idx[:] = 3
    same(r, [0, 1])


# --- writing ------------------------------------------------------------------------------------------
@SETTINGS
@given(arrays_and_indices(masks=True), st.sampled_from(["array", "list", "device"]), st.sampled_from(["C", "T"]),
       st.sampled_from(["scalar", "host", "device"]), PATHS)  # fmt: skip
def test_writing_matches_numpy(case: Any, form: str, layout: str, vform: str, path: str) -> None:
    with shapes_by(path):
        _writing_matches_numpy(case, form, layout, vform)


def _writing_matches_numpy(case: Any, form: str, layout: str, vform: str) -> None:
    h, index = case
    if form == "list":
        index = tuple(index_form(i, form) for i in index)  # numpy's reading of the lists is the reference
    a = on_device(h, layout)
    try:
        target_shape = h[index].shape
    except IndexError:
        target_shape = None
    if target_shape is None:
        with pytest.raises(IndexError):
            a[tuple(index_form(i, "array" if form == "device" else form) for i in index)] = 1
        return
    if form == "device" and any(isinstance(i, np.ndarray) and i.dtype != bool and i.size and not h.size for i in index):
        return  # out of bounds on the device only: the kernel's (tested below)
    value: Any = 1
    if vform != "scalar":
        value = (np.arange(int(np.prod(target_shape[-1:]))) % 3).astype(h.dtype).reshape(target_shape[-1:])
    expected = h.copy()
    expected[index] = value
    a[tuple(index_form(i, form) for i in index)] = mtia.asarray(value) if vform == "device" else value
    same(a, expected)


def test_mask_writes_never_wait_and_value_errors_come_from_the_kernel() -> None:
    h = np.arange(6.0)
    a = mtia.asarray(h)
    mask = mtia.asarray(h > 2)
    mtia.launch(time.sleep, 0.3)
    started = time.perf_counter()
    a[mask] = -1.0
    a[mask] = mtia.asarray(np.array([7.0, 8.0, 9.0]))
    assert time.perf_counter() - started < 0.2  # enqueued behind the sleep, not waited for
    expected = h.copy()
    expected[h > 2] = [7.0, 8.0, 9.0]
    same(a, expected)
    a[mask] = np.array([1.0, 2.0])  # 3 values are True: numpy's ValueError, in the kernel
    with pytest.raises(mtia.KernelError, match="setitem.*cannot assign 2 input values"):
        mtia.synchronize()


def test_duplicates_and_overlap_write_as_numpy() -> None:
    h = np.arange(8)
    a = mtia.asarray(h)
    a[[1, 1, 3]] = [10, 11, 12]
    a[::-1][[0, 1]] = a[[2, 3]]  # a view as the target, values read from the same array
    expected = h.copy()
    expected[[1, 1, 3]] = [10, 11, 12]
    expected[::-1][[0, 1]] = expected[[2, 3]]
    same(a, expected)


# --- errors -------------------------------------------------------------------------------------------
def test_host_indices_out_of_bounds_are_numpys_error_at_the_call() -> None:
    a = mtia.ones((3, 4))
    with pytest.raises(IndexError, match="index 3 is out of bounds for axis 0 with size 3"):
        a[[0, 3]]
    with pytest.raises(IndexError, match="index -5 is out of bounds for axis 1 with size 4"):
        a[:, [-5]] = 0
    with pytest.raises(IndexError, match="boolean index did not match"):
        a[np.array([True, False])]
    with pytest.raises(IndexError, match="boolean index did not match"):
        a[mtia.asarray(np.array([True, False]))]
    with pytest.raises(IndexError, match="boolean index did not match"):
        a[mtia.asarray(np.array([True, False]))] = 1
    with pytest.raises(IndexError, match="arrays used as indices must be of integer"):
        a[np.array([0.0])]
    with pytest.raises(IndexError, match="arrays used as indices must be of integer"):
        a[mtia.asarray(np.array([0.0]))]
    with pytest.raises(IndexError, match="shape mismatch"):
        a[[0, 1], [0, 1, 2]]
    with pytest.raises(ValueError, match="shape mismatch: value array of shape"):
        a[[0, 1]] = np.ones(3)
    with pytest.raises(OverflowError, match="out of bounds for int8"):
        mtia.zeros(3, dtype=np.int8)[[0]] = 300
    with pytest.raises(IndexError, match="invalid index"):  # numpy's error type
        a[[0], 1.5]
    with pytest.raises(TypeError, match="implicitly"):
        a[[mtia.asarray(np.array(0))]]  # a list holding DeviceArrays would be copied to the host
    mtia.synchronize()  # every error above was raised at the call


def test_device_indices_out_of_bounds_are_a_kernel_error_at_the_next_wait() -> None:
    a = mtia.ones(4)
    r = a[mtia.asarray(np.array([0, 9]))]
    with pytest.raises(mtia.KernelError, match="getitem.*index 9 is out of bounds for axis 0 with size 4"):
        r.numpy()
    a[mtia.asarray(np.array([-7]))] = 0
    with pytest.raises(mtia.KernelError, match="setitem.*index -7 is out of bounds"):
        mtia.synchronize()


def test_two_devices() -> None:
    a = mtia.ones(4)
    other = mtia.asarray(np.array([0, 1]), device=1)
    with pytest.raises(ValueError, match="two devices, mtia:0 and mtia:1"):
        a[other]
    with pytest.raises(ValueError, match="two devices"):
        a[other] = 0
    with pytest.raises(ValueError, match="two devices"):
        a[[0, 1]] = mtia.ones(2, device=1)
    b = mtia.asarray(np.arange(5.0), device=1)
    r = b[other]
    assert r.device == 1
    same(r, [0.0, 1.0])
    same(b[mtia.asarray(np.arange(5) > 2, device=1)], [3.0, 4.0])


# --- the event loop -----------------------------------------------------------------------------------
async def test_reading_with_a_device_mask_never_blocks_the_loop() -> None:
    h = np.arange(10.0)
    a = mtia_async.asarray(h)
    mask = mtia_async.asarray(h % 3 == 0)
    with pytest.raises(RuntimeError, match=r"event loop thread.*await mtia_async.getitem\(a, index\)"):
        a[mask]
    got = await awaited_while_looping(lambda: mtia_async.getitem(a, mask))
    np.testing.assert_array_equal(await got.to_host(), h[h % 3 == 0])
    r = await mtia_async.getitem(a, [1, 2])  # no mask: no wait
    np.testing.assert_array_equal(await r.to_host(), [1.0, 2.0])
    a[mask] = 0.0  # writing never waits: fine on the loop
    np.testing.assert_array_equal(await a.to_host(), np.where(h % 3 == 0, 0.0, h))


def test_trio_awaits_a_mask_read_and_refuses_the_blocking_one() -> None:
    import trio

    async def main() -> list[float]:
        a = mtia_async.asarray(np.arange(4.0))
        mask = mtia_async.asarray(np.array([True, False, True, False]))
        with pytest.raises(RuntimeError, match=r"trio task.*await mtia_async.getitem"):
            a[mask]
        got = await mtia_async.getitem(a, mask)
        return (await got.to_host()).tolist()  # type: ignore[no-any-return]

    assert trio.run(main) == [0.0, 2.0]


def test_a_kernel_failure_before_a_mask_read_is_raised_by_it() -> None:
    a = mtia.ones(3)

    def boom() -> None:
        raise ZeroDivisionError("before the read")

    mtia.launch(boom)
    with pytest.raises(mtia.KernelError, match="before the read"):
        a[mtia.asarray(np.array([True, False, True]))]
