"""Shaping (views) and joining (copies) on DeviceArrays, differential against numpy (hypothesis).

Every call runs on host numpy data and on a device copy laid out the same way (a base
array, a transpose, a step slice, a reversed slice): the results are equal exactly
(values, dtype, shape; these functions only move data), or both raise the same exception
type, the device one at the call. Views share the device memory: a write through the
base shows in the view, in stream order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _support.numpy_diff import compare, device, examples, same
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mtia_async.sync as mtia

SETTINGS = examples(30)
DTYPES = [np.dtype(t) for t in (np.float32, np.int64, np.uint8, np.bool_, np.complex64, np.float16)]
LAYOUTS: dict[str, Callable[[Any], Any]] = {
    "base": lambda x: x,
    "T": lambda x: x.T,
    "step": lambda x: x[::2] if x.ndim else x,
    "reversed": lambda x: x[..., ::-1] if x.ndim else x,
}


@st.composite
def laid_out(draw: Any, min_dims: int = 0, max_dims: int = 4, dtype: Any = None) -> tuple[np.ndarray[Any, Any], Any]:
    """A host array and its device copy, both seen through the same layout (a view, maybe non-contiguous)."""
    dt = draw(st.sampled_from(DTYPES)) if dtype is None else dtype
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=4))
    x = draw(hnp.arrays(dt, shape))
    layout = LAYOUTS[draw(st.sampled_from(sorted(LAYOUTS)))]
    return layout(x), layout(mtia.asarray(x))


axes = st.integers(-5, 4)


# --- views ----------------------------------------------------------------------------------------
@SETTINGS
@given(xa=laid_out(), order=st.sampled_from(["C", "F", "A", "K", "Z"]))
def test_ravel_matches_numpy_and_is_a_view_exactly_when_numpy_s_is(xa: Any, order: str) -> None:
    x, a = xa
    r = compare(lambda: np.ravel(a, order), lambda: np.ravel(x, order))
    if r is not None and x.size > 1:
        assert (r.base is not None) == np.shares_memory(np.ravel(x, order), x)
    compare(lambda: a.ravel(order), lambda: x.ravel(order))
    f = compare(lambda: a.flatten(order), lambda: x.flatten(order))
    assert f is None or f.base is None


@SETTINGS
@given(xa=laid_out(), axis=st.none() | axes | st.tuples(axes, axes))
def test_squeeze_expand_dims_flip_match_numpy(xa: Any, axis: Any) -> None:
    x, a = xa
    compare(lambda: np.squeeze(a, axis), lambda: np.squeeze(x, axis))
    compare(lambda: a.squeeze(axis), lambda: x.squeeze(axis))
    compare(lambda: np.flip(a, axis), lambda: np.flip(x, axis))
    if axis is not None:
        compare(lambda: np.expand_dims(a, axis), lambda: np.expand_dims(x, axis))
    compare(lambda: np.flipud(a), lambda: np.flipud(x))
    compare(lambda: np.fliplr(a), lambda: np.fliplr(x))


@SETTINGS
@given(xa=laid_out(), src=axes | st.tuples(axes, axes), dst=axes | st.tuples(axes, axes), a1=axes, a2=axes)
def test_moveaxis_swapaxes_match_numpy(xa: Any, src: Any, dst: Any, a1: int, a2: int) -> None:
    x, a = xa
    compare(lambda: np.moveaxis(a, src, dst), lambda: np.moveaxis(x, src, dst))
    compare(lambda: np.swapaxes(a, a1, a2), lambda: np.swapaxes(x, a1, a2))
    compare(lambda: a.swapaxes(a1, a2), lambda: x.swapaxes(a1, a2))


@SETTINGS
@given(xa=laid_out(max_dims=3), lead=st.lists(st.integers(0, 3), max_size=2), ones=st.lists(st.booleans(), max_size=3))
def test_broadcast_to_matches_numpy(xa: Any, lead: list[int], ones: list[bool]) -> None:
    x, a = xa
    shape = tuple(lead) + tuple(3 if one and d == 1 else d for d, one in zip(x.shape, ones + [False] * x.ndim))
    compare(lambda: np.broadcast_to(a, shape), lambda: np.broadcast_to(x, shape))
    compare(lambda: np.broadcast_to(a, (2,) + x.shape[1:] + (5,)), lambda: np.broadcast_to(x, (2,) + x.shape[1:] + (5,)))


@SETTINGS
@given(xa=laid_out(min_dims=1), sections=st.integers(-1, 5) | st.lists(st.integers(-6, 6), max_size=4), axis=axes)
def test_split_and_array_split_match_numpy(xa: Any, sections: Any, axis: int) -> None:
    x, a = xa
    compare(lambda: np.split(a, sections, axis), lambda: np.split(x, sections, axis))
    compare(lambda: np.array_split(a, sections, axis), lambda: np.array_split(x, sections, axis))


@SETTINGS
@given(xs=st.lists(laid_out(max_dims=3), min_size=1, max_size=3), host=st.booleans())
def test_atleast_match_numpy(xs: list[Any], host: bool) -> None:
    hosts = [x for x, _ in xs]
    devs = [a for _, a in xs]
    if host and len(xs) > 1:
        devs[-1] = hosts[-1]  # a host array among them: copied to the device
    for f in (np.atleast_1d, np.atleast_2d, np.atleast_3d):
        compare(lambda: f(*devs), lambda: f(*hosts))


def test_views_share_memory_with_the_base() -> None:
    x = np.arange(24, dtype=np.int32).reshape(2, 1, 3, 4)
    a = mtia.asarray(x)
    views = [
        np.ravel(a), np.squeeze(a), np.expand_dims(a, 0), np.moveaxis(a, 0, -1), np.swapaxes(a, 0, 3), np.flip(a),
        np.flipud(a), np.fliplr(a[0, 0]), np.broadcast_to(a, (2, 2, 1, 3, 4)), *np.split(a, 2), *np.array_split(a, 3, 3),
        np.atleast_3d(a[0, 0, 0]), a.ravel(), a.squeeze(), a.swapaxes(1, 2),
    ]  # fmt: skip
    for v in views:
        assert v.base is a, v
    a[...] = 7  # a kernel writing the base, before the reads below on the same stream
    for v in views:
        assert (v.numpy() == 7).all(), v
    np.squeeze(a)[1, 2, 3] = -1  # and writes through a view show in the base
    assert a.numpy()[1, 0, 2, 3] == -1


def test_ravel_of_a_non_contiguous_array_is_a_copy_kernel() -> None:
    x = np.arange(12.0).reshape(3, 4)
    a = mtia.asarray(x)
    r = np.ravel(a[:, ::2])
    assert r.base is None
    a[...] = 0  # after the copy: the copy keeps the old values
    same(r, np.ravel(x[:, ::2]))


def test_broadcast_to_is_read_only() -> None:
    a = mtia.arange(3)
    b = np.broadcast_to(a, (2, 3))
    b[...] = 1
    with pytest.raises(mtia.KernelError, match="read-only"):
        mtia.synchronize()
    np.add(a, 1, out=b[0])
    with pytest.raises(mtia.KernelError, match="read-only"):
        mtia.synchronize()


def test_view_function_errors() -> None:
    a = mtia.zeros((2, 3))
    with pytest.raises(TypeError, match="numpy.split.*host"):
        np.split(a, mtia.asarray([1]))
    with pytest.raises(TypeError, match="numpy.split"):
        np.split(np.zeros(3), mtia.asarray([1]))
    with pytest.raises(ValueError, match="two devices"):
        np.atleast_1d(a, mtia.zeros(1, device=1))
    with pytest.raises(np.exceptions.AxisError):
        np.squeeze(a, 3)
    with pytest.raises(ValueError):
        np.squeeze(a, 0)
    with pytest.raises(ValueError):
        np.broadcast_to(a, (3, 3))
    mtia.synchronize()


# --- joining ------------------------------------------------------------------------------------
@st.composite
def joinable(draw: Any, same_shape: bool = False) -> tuple[list[Any], list[Any], int]:
    """2-3 arrays that (mostly) fit along an axis: host arrays and device copies, mixed layouts and dtypes."""
    ndim = draw(st.integers(1, 3))
    shape = draw(st.lists(st.integers(0, 3), min_size=ndim, max_size=ndim))
    axis = draw(st.integers(-ndim - 1, ndim))
    hosts, devs = [], []
    for _ in range(draw(st.integers(1, 3))):
        s = list(shape)
        if not same_shape and -ndim <= axis < ndim:
            s[axis] = draw(st.integers(0, 3))
        if draw(st.integers(0, 9)) == 0:
            s[0] += 1  # sometimes a misfit: numpy's error
        dt = draw(st.sampled_from(DTYPES[:4]))
        values = st.booleans() if dt.kind == "b" else st.integers(0 if dt.kind == "u" else -100, 100)
        x = draw(hnp.arrays(dt, tuple(s), elements=values))  # castable to every dtype without a warning
        layout = draw(st.sampled_from(["base", "step", "host"]))
        if layout == "host":
            hosts.append(x)
            devs.append(x)
        else:
            hosts.append(x)  # "step": the same values seen through a step slice (non-contiguous)
            devs.append(mtia.asarray(x) if layout == "base" else mtia.asarray(np.repeat(x, 2, axis=0))[::2])
    if all(not isinstance(d, mtia.DeviceArray) for d in devs):
        devs[0] = mtia.asarray(hosts[0])
    return hosts, devs, axis


def test_stack_along_every_axis_of_views_matches_numpy() -> None:
    # the kernel runs numpy's stack steps itself (a new axis on each view, then concatenate)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    for layout in ("plain", "strided", "transposed"):  # the same values, other strides
        for axis in range(-3, 3):
            compare(lambda: np.stack([device(x, layout), device(x + 1, layout)], axis),
                    lambda: np.stack([x, x + 1], axis))  # fmt: skip
    z2, z3 = np.array(2, np.float32), np.array(3, np.float32)  # 0-d inputs
    compare(lambda: np.stack([device(z2), device(z3)], -1), lambda: np.stack([z2, z3], -1))


@SETTINGS
@given(j=joinable(), dtype=st.none() | st.sampled_from([np.int8, np.float64]),
       casting=st.sampled_from(["same_kind", "unsafe", "no"]))  # fmt: skip
def test_concatenate_matches_numpy(j: Any, dtype: Any, casting: str) -> None:
    hosts, devs, axis = j
    compare(lambda: np.concatenate(devs, axis, dtype=dtype, casting=casting),
            lambda: np.concatenate(hosts, axis, dtype=dtype, casting=casting))  # fmt: skip
    compare(lambda: np.concatenate(devs, axis=None), lambda: np.concatenate(hosts, axis=None))


@SETTINGS
@given(j=joinable(same_shape=True), dtype=st.none() | st.sampled_from([np.int8, np.float64]))
def test_stacking_matches_numpy(j: Any, dtype: Any) -> None:
    hosts, devs, axis = j
    compare(lambda: np.stack(devs, axis, dtype=dtype), lambda: np.stack(hosts, axis, dtype=dtype))
    for f in (np.vstack, np.hstack):
        compare(lambda: f(devs, dtype=dtype), lambda: f(hosts, dtype=dtype))
    for f in (np.dstack, np.column_stack):
        compare(lambda: f(devs), lambda: f(hosts))


@SETTINGS
@given(j=joinable(), out_dtype=st.sampled_from([np.float32, np.int8]), casting=st.sampled_from(["same_kind", "unsafe"]))
def test_concatenate_and_stack_into_out(j: Any, out_dtype: Any, casting: str) -> None:
    hosts, devs, axis = j
    try:
        shape = np.concatenate(hosts, axis).shape
    except Exception:
        return
    host_out, dev_out = np.zeros(shape, out_dtype), mtia.zeros(shape, out_dtype)
    got = compare(lambda: np.concatenate(devs, axis, out=dev_out, casting=casting),
                  lambda: np.concatenate(hosts, axis, out=host_out, casting=casting))  # fmt: skip
    assert got is None or got is dev_out
    if len(hosts) > 1 and all(h.shape == hosts[0].shape for h in hosts):
        shape = np.stack(hosts).shape
        host_out, dev_out = np.zeros(shape, out_dtype), mtia.zeros(shape, out_dtype)
        got = compare(lambda: np.stack(devs, out=dev_out, casting=casting),
                      lambda: np.stack(hosts, out=host_out, casting=casting))  # fmt: skip
        assert got is None or got is dev_out


@SETTINGS
@given(xa=laid_out(), shift=st.integers(-7, 7) | st.lists(st.integers(-7, 7), min_size=1, max_size=3),
       axis=st.none() | axes | st.lists(axes, min_size=1, max_size=3).map(tuple))  # fmt: skip
def test_roll_matches_numpy(xa: Any, shift: Any, axis: Any) -> None:
    x, a = xa
    compare(lambda: np.roll(a, shift, axis), lambda: np.roll(x, shift, axis))


@SETTINGS
@given(xa=laid_out(max_dims=3), reps=st.integers(-1, 3) | st.lists(st.integers(0, 3), max_size=4).map(tuple))
def test_tile_matches_numpy(xa: Any, reps: Any) -> None:
    x, a = xa
    compare(lambda: np.tile(a, reps), lambda: np.tile(x, reps))


@SETTINGS
@given(xa=laid_out(max_dims=3), repeats=st.integers(-1, 3) | st.lists(st.integers(0, 3), min_size=1, max_size=4),
       axis=st.none() | axes)  # fmt: skip
def test_repeat_matches_numpy(xa: Any, repeats: Any, axis: Any) -> None:
    x, a = xa
    compare(lambda: np.repeat(a, repeats, axis), lambda: np.repeat(x, repeats, axis))
    compare(lambda: a.repeat(repeats, axis), lambda: x.repeat(repeats, axis))


def test_joining_copies_do_not_alias() -> None:
    a = mtia.asarray(np.arange(4))
    results = [np.concatenate([a, a]), np.stack([a]), np.vstack([a]), np.tile(a, 1), np.repeat(a, 1), np.roll(a, 0)]
    a[...] = 0
    for r in results:
        assert r.base is None
        assert r.numpy().ravel().tolist() == [0, 1, 2, 3] * (r.size // 4)


def test_joining_errors_at_the_call() -> None:
    a, b1 = mtia.zeros((2, 3)), mtia.zeros((2, 3), device=1)
    out1, small, out0, reps, shift = (mtia.zeros((4, 3), device=1), mtia.zeros((3, 3)), mtia.zeros((4, 3)),
                                      mtia.asarray([1, 2]), mtia.asarray(1))  # fmt: skip
    mtia.synchronize()
    before = mtia.memory_allocated(0), mtia.memory_allocated(1)
    with pytest.raises(ValueError, match="two devices"):
        np.concatenate([a, b1])
    with pytest.raises(ValueError, match="two devices"):
        np.stack([a, b1])
    with pytest.raises(ValueError, match="two devices"):
        np.concatenate([a, a], out=out1)
    with pytest.raises(ValueError, match="shape"):
        np.concatenate([a, a], out=small)
    with pytest.raises(TypeError, match="DeviceArray"):
        np.concatenate([a, a], out=np.zeros((4, 3)))
    with pytest.raises(TypeError, match="only takes `out` or `dtype`"):
        np.concatenate([a, a], out=out0, dtype=np.float32)
    with pytest.raises(TypeError, match="Cannot cast"):
        np.concatenate([a, a], dtype=np.int32)
    with pytest.raises(TypeError, match="sequence"):
        np.stack(x for x in [a, a])
    with pytest.raises(TypeError, match="numpy.repeat.*host"):
        np.repeat(a, reps, axis=0)
    with pytest.raises(TypeError, match="numpy.roll.*host"):
        np.roll(a, shift)
    with pytest.raises(TypeError, match="not supported"):
        np.concatenate([a, np.array(["x"] * 3)[None]])
    with pytest.raises(ValueError, match="need at least one"):
        np.concatenate([], out=a)
    with pytest.raises(ValueError):
        np.concatenate([a, np.zeros((2, 2))])  # a host array that does not fit: not copied over
    assert (mtia.memory_allocated(0), mtia.memory_allocated(1)) == before  # nothing allocated, nothing enqueued
    mtia.synchronize()


def test_joining_on_device_1_stays_there() -> None:
    a = mtia.arange(6, device=1).reshape(2, 3)
    for r in (np.concatenate([a, a]), np.stack([a, a]), np.hstack([a, np.ones((2, 1), np.int64)]), np.roll(a, 1),
              np.tile(a, 2), np.repeat(a, 2), np.ravel(a.T), a.flatten()):  # fmt: skip
        assert r.device == 1


def test_a_dropped_result_frees_its_block_at_once() -> None:
    """The kernels hold a new output's numpy view, not the array: dropping the result frees its block
    on the caller at once, while its kernel is still queued (as the operators do)."""
    a = mtia.arange(64, dtype=np.float32).reshape(8, 8)
    gate = threading.Event()
    mtia.launch(gate.wait, 10)  # holds the stream: nothing below runs before gate.set()
    before = mtia.memory_allocated()
    try:
        np.concatenate([a, a])
        np.stack([a, a], axis=1)
        np.vstack([a, a])
        np.roll(a, 3)
        np.tile(a, 2)
        np.repeat(a, 2)
        np.repeat(a, [1, 2, 0, 1, 1, 1, 1, 1], axis=0)
        np.ravel(a.T)
        mtia.arange(100)
        mtia.eye(9)
        mtia.linspace(0, 1, 100)
        mtia.zeros(100), mtia.ones((3, 3)), mtia.full(7, 2.0)  # fills too
        np.zeros_like(a), np.ones_like(a), np.full_like(a, 3), np.empty_like(a)
        assert mtia.memory_allocated() == before
    finally:
        gate.set()
    mtia.synchronize()
