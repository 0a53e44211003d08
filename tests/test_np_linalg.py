"""Linear algebra on DeviceArrays: ``dot``, ``vdot``, ``inner``, ``outer``, ``tensordot``, ``einsum``,
``linalg.norm``, ``trace`` and the ``dot``/``trace`` methods.

Differential: every call is made on numpy and on the device with the same host data
(DeviceArrays contiguous, strided or transposed views); integer and bool results are
equal exactly, float results within allclose (BLAS may sum in another order), dtypes
and shapes exactly; or both raise the same exception type, the device one at the call,
before anything is allocated or enqueued.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from _support import numpy_diff
from _support.numpy_diff import close, device, examples, layouts, raises_at_the_call
from hypothesis import given
from hypothesis import strategies as st

import mtia_async.sync as mtia

SETTINGS = examples(30)
DTYPES = [np.int8, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64, np.complex64, np.bool_]


def tolerance(dtype: np.dtype[Any]) -> float | None:
    """Integers and bools exactly; floats within allclose (BLAS may sum in another order), by precision."""
    if dtype.kind in "biu":
        return None
    return {2: 1e-2, 4: 1e-5}.get(dtype.itemsize, 1e-5 if dtype == np.complex64 else 1e-12)


def same(got: Any, expected: Any) -> None:
    """Same dtype and shape; values exactly for integers and bools, within allclose for the rest."""
    close(got, expected, tolerance)


def compare(device_call: Callable[[], Any], host_call: Callable[[], Any]) -> Any:
    """numpy's result on the device, or numpy's exception type at the call (``raises_at_the_call``)."""
    return numpy_diff.compare(device_call, host_call, same, nothing_allocated=True)


def values(dtype: Any, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    """Small integers as ``dtype``: sums stay exact in every dtype but float16 (allclose covers it)."""
    lo = 0 if np.dtype(dtype).kind in "ub" else -6
    return hnp.arrays(np.int64, shape, elements=st.integers(lo, 6)).map(lambda x: x.astype(dtype))


dims = st.integers(0, 4)
dtypes = st.sampled_from(DTYPES)


# --- dot ---------------------------------------------------------------------------------------------
@st.composite
def dot_case(draw: st.DrawFn) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Operands of 0-3 dimensions whose contraction fits, mostly (a tenth do not)."""
    sa = draw(st.lists(dims, max_size=3))
    sb = draw(st.lists(dims, max_size=3))
    if sa and sb:
        k = draw(dims)
        sa[-1] = k
        sb[0 if len(sb) == 1 else -2] = k + draw(st.sampled_from([0] * 9 + [1]))
    return draw(values(draw(dtypes), tuple(sa))), draw(values(draw(dtypes), tuple(sb)))


@SETTINGS
@given(case=dot_case(), la=layouts, lb=layouts, method=st.booleans())
def test_dot_matches_numpy(case: tuple[Any, Any], la: str, lb: str, method: bool) -> None:
    a, b = case
    da, db = device(a, la), device(b, lb)
    if method:
        compare(lambda: da.dot(db), lambda: a.dot(b))
    else:
        compare(lambda: np.dot(da, db), lambda: np.dot(a, b))


def test_dot_of_integers_is_exact_and_wraps_as_numpy() -> None:
    rng = np.random.default_rng(1)
    for dt in (np.int8, np.int32, np.int64, np.uint8):
        a = rng.integers(-100, 100, (9, 7)).astype(dt)
        b = rng.integers(-100, 100, (7, 5)).astype(dt)
        da, db, ta, sb = device(a), device(b), device(a, "transposed"), device(b, "strided")
        compare(lambda: np.dot(da, db), lambda: np.dot(a, b))
        compare(lambda: np.dot(ta, sb), lambda: np.dot(a, b))


def test_dot_with_scalars_and_host_operands() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    da = device(a)
    compare(lambda: np.dot(da, 2.5), lambda: np.dot(a, 2.5))
    compare(lambda: np.dot(3, da), lambda: np.dot(3, a))
    compare(lambda: np.dot(da, a.T), lambda: np.dot(a, a.T))  # a host operand is copied over
    compare(lambda: np.dot(da, [1, 2, 3]), lambda: np.dot(a, [1, 2, 3]))
    compare(lambda: np.dot(da, np.float64(2)), lambda: np.dot(a, np.float64(2)))
    compare(lambda: np.dot(da, a), lambda: np.dot(a, a))  # misaligned: nothing copied over


def test_dot_out() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    da, dt = device(a), device(a.T)
    out = mtia.zeros((2, 2), np.float32)
    r = np.dot(da, dt, out=out)
    assert r is out
    same(out, np.dot(a, a.T))
    same(da.dot(dt, out), np.dot(a, a.T))
    big = mtia.zeros((2, 4), np.float32)
    for bad in [mtia.zeros((2, 2), np.float64), big[:, ::2], mtia.zeros((2, 3), np.float32)]:
        raises_at_the_call(ValueError, lambda: np.dot(da, dt, out=bad))
    with pytest.raises(TypeError, match="must be a DeviceArray"):
        np.dot(da, dt, out=np.zeros((2, 2), np.float32))


def test_dot_shape_mismatch_is_numpys_error_at_the_call() -> None:
    with pytest.raises(ValueError, match=r"shapes \(2,3\) and \(4,\) not aligned: 3 \(dim 1\) != 4 \(dim 0\)"):
        np.dot(mtia.ones((2, 3)), mtia.ones(4))
    with pytest.raises(ValueError, match=r"not aligned: 3 \(dim 2\) != 2 \(dim 1\)"):
        np.dot(mtia.ones((1, 2, 3)), mtia.ones((4, 2, 5)))
    mtia.synchronize()


# --- vdot, inner, outer ------------------------------------------------------------------------------
@st.composite
def pair(draw: st.DrawFn, last_equal: bool = True) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    sa = draw(st.lists(dims, max_size=3))
    sb = draw(st.lists(dims, max_size=3))
    if last_equal and sa and sb and draw(st.integers(0, 9)):
        sb[-1] = sa[-1]
    return draw(values(draw(dtypes), tuple(sa))), draw(values(draw(dtypes), tuple(sb)))


@SETTINGS
@given(case=pair(), la=layouts, lb=layouts)
def test_inner_matches_numpy(case: tuple[Any, Any], la: str, lb: str) -> None:
    a, b = case
    da, db = device(a, la), device(b, lb)
    compare(lambda: np.inner(da, db), lambda: np.inner(a, b))


@SETTINGS
@given(case=pair(last_equal=False), la=layouts, lb=layouts)
def test_outer_matches_numpy(case: tuple[Any, Any], la: str, lb: str) -> None:
    a, b = case
    da, db = device(a, la), device(b, lb)
    compare(lambda: np.outer(da, db), lambda: np.outer(a, b))


@SETTINGS
@given(dt=dtypes, shape=st.sampled_from([(6,), (2, 3), (3, 2), (1, 6), (0,), (5,)]), la=layouts, lb=layouts)
def test_vdot_matches_numpy(dt: Any, shape: tuple[int, ...], la: str, lb: str) -> None:
    a = (np.arange(6) - 2).astype(dt)
    b = (np.arange(int(np.prod(shape))) % 4).astype(np.complex64 if dt == np.float32 else dt).reshape(shape)
    da, db = device(a, la), device(b, lb)
    compare(lambda: np.vdot(da, db), lambda: np.vdot(a, b))


def test_vdot_conjugates_the_first_argument() -> None:
    a = np.array([1 + 2j, 3 - 1j], np.complex128)
    b = np.array([2 - 1j, 1j], np.complex128)
    da, db = device(a), device(b)
    compare(lambda: np.vdot(da, db), lambda: np.vdot(a, b))
    compare(lambda: np.vdot(db, da), lambda: np.vdot(b, a))


def test_outer_out_and_scalars() -> None:
    a, b = np.arange(3, dtype=np.int8), np.arange(4, dtype=np.int16)
    out = mtia.zeros((3, 4), np.float64)
    assert np.outer(device(a), device(b), out=out) is out
    same(out, np.outer(a, b, out=np.zeros((3, 4), np.float64)))
    da = device(a)
    compare(lambda: np.outer(da, 300), lambda: np.outer(a, 300))
    with pytest.raises(TypeError):  # numpy's casting rule for out=: float64 into int8
        np.outer(device(a.astype(np.float64)), device(b), out=mtia.zeros((3, 4), np.int8))
    with pytest.raises(ValueError, match="shape"):
        np.outer(device(a), device(b), out=mtia.zeros((4, 3), np.int16))


# --- tensordot ---------------------------------------------------------------------------------------
AXES = [0, 1, 2, 3, -1, ([1], [0]), ([0, 1], [1, 0]), (1, 0), ([-1], [-2]), ([5], [0]), ([0, 1], [1]), ((0,), (0,))]


@SETTINGS
@given(a=dtypes.flatmap(lambda dt: values(dt, (2, 3, 2))), b=dtypes.flatmap(lambda dt: values(dt, (3, 2, 3))),
       axes=st.sampled_from(AXES), la=layouts, lb=layouts)  # fmt: skip
def test_tensordot_matches_numpy(a: Any, b: Any, axes: Any, la: str, lb: str) -> None:
    bt = b.transpose(1, 0, 2)  # shape (2, 3, 3): more axes fit
    da, db, dbt = device(a, la), device(b, lb), device(bt, lb)
    compare(lambda: np.tensordot(da, db, axes), lambda: np.tensordot(a, b, axes))
    compare(lambda: np.tensordot(da, dbt, axes), lambda: np.tensordot(a, bt, axes))


def test_tensordot_empty_and_scalar_operands() -> None:
    a, b = np.zeros((2, 0), np.float32), np.zeros((0, 3), np.float32)
    da, db = device(a), device(b)
    compare(lambda: np.tensordot(da, db, 1), lambda: np.tensordot(a, b, 1))
    c = np.arange(6, dtype=np.int8).reshape(2, 3)
    dc = device(c)
    compare(lambda: np.tensordot(dc, 2, 0), lambda: np.tensordot(c, 2, 0))


# --- einsum ------------------------------------------------------------------------------------------
EINSUM = [
    ("ij,jk->ik", [(2, 3), (3, 4)]), ("ij,jk", [(2, 3), (3, 4)]), ("ij,kj->ik", [(2, 3), (4, 3)]),
    ("i,i", [(5,), (5,)]), ("i,i->i", [(1,), (3,)]), ("i,j->ij", [(2,), (3,)]), ("ii", [(3, 3)]),
    ("ii->i", [(3, 3)]), ("ij->ji", [(2, 3)]), ("ij->", [(2, 3)]), ("ij->j", [(2, 3)]),
    ("...ij,...jk->...ik", [(2, 2, 3), (3, 4)]), ("...i,...i", [(4, 3), (2, 1, 3)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]), ("i,", [(3,), ()]), ("ij,jk", [(2, 1), (3, 4)]),
    ("ij,jk", [(2, 2), (3, 4)]), ("ii", [(2, 3)]), ("ij", [(2, 3, 4)]), ("ijk", [(2, 3)]), ("ij->ii", [(2, 2)]),
    ("ij->k", [(2, 2)]), ("i->j", [(2,)]), ("i,i", [(2,), (2,), (2,)]), ("i..j", [(2, 2)]), ("i->->i", [(2,)]),
    ("ij,jk->ik", [(0, 3), (3, 4)]), ("ij,jk->ik", [(2, 0), (0, 4)]), ("...", [(2, 3)]), ("Ab,bC->AC", [(2, 2), (2, 3)]),
]  # fmt: skip


@SETTINGS
@given(case=st.sampled_from(EINSUM), dt=st.sampled_from([np.int32, np.int64, np.float32, np.float64, np.complex64]),
       optimize=st.sampled_from([False, True, "greedy", "optimal"]), layout=layouts)  # fmt: skip
def test_einsum_matches_numpy(case: tuple[str, list[tuple[int, ...]]], dt: Any, optimize: Any, layout: str) -> None:
    subscripts, shapes = case
    ops = [(np.arange(int(np.prod(s))) % 5 - 2).astype(dt).reshape(s) for s in shapes]
    dops = [device(x, layout) for x in ops]
    compare(lambda: np.einsum(subscripts, *dops, optimize=optimize),
            lambda: np.asarray(np.einsum(subscripts, *ops, optimize=optimize)))  # fmt: skip


@pytest.mark.parametrize("optimize", [False, True, "greedy", "optimal"])
def test_einsum_every_form_matches_numpy(optimize: Any) -> None:
    for subscripts, shapes in EINSUM:
        ops = [(np.arange(int(np.prod(s))) % 5 - 2).astype(np.int64).reshape(s) for s in shapes]
        dops = [device(x) for x in ops]
        compare(lambda: np.einsum(subscripts, *dops, optimize=optimize),
                lambda: np.asarray(np.einsum(subscripts, *ops, optimize=optimize)))  # fmt: skip


def test_norm_and_trace_every_form_matches_numpy() -> None:
    for shape in [(3,), (2, 3), (3, 3), (2, 3, 2), (), (0, 3)]:
        a = np.array([3, -2, 1, 2, -1])[np.arange(int(np.prod(shape))) % 5].astype(np.float64).reshape(shape)
        da = device(a)
        for kw in NORMS:
            compare(lambda: np.linalg.norm(da, **kw), lambda: np.asarray(np.linalg.norm(a, **kw)))
        for kw in TRACES:
            compare(lambda: np.trace(da, **kw), lambda: np.asarray(np.trace(a, **kw)))


def test_einsum_dtype_casting_and_out() -> None:
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    b = np.arange(3, dtype=np.int8)
    da, db = device(a), device(b)
    compare(lambda: np.einsum("ij,j->i", da, db), lambda: np.einsum("ij,j->i", a, b))
    compare(lambda: np.einsum("ij->i", da, dtype=np.float32, casting="unsafe"),
            lambda: np.einsum("ij->i", a, dtype=np.float32, casting="unsafe"))  # fmt: skip
    compare(lambda: np.einsum("ij->i", da, dtype=np.float32), lambda: np.einsum("ij->i", a, dtype=np.float32))
    out = mtia.zeros(2, np.float64)
    assert np.einsum("ij,j->i", da, db, out=out) is out
    same(out, np.einsum("ij,j->i", a, b))
    out0 = mtia.zeros((), np.float64)
    assert np.einsum("ij,ij", da, da, out=out0, optimize=True) is out0
    same(out0, np.einsum("ij,ij", a, a))
    with pytest.raises(TypeError):  # float64 into float32 is not 'safe'
        np.einsum("ij->i", da, out=mtia.zeros(2, np.float32))
    with pytest.raises(ValueError, match="shape"):
        np.einsum("ij->i", da, out=mtia.zeros(3, np.float64))
    compare(lambda: np.einsum("i,", db, 2.0), lambda: np.einsum("i,", b, 2.0))


def test_einsum_returns_a_view_where_numpy_does() -> None:
    m = mtia.asarray(np.arange(9.0).reshape(3, 3))
    d = np.einsum("ii->i", m)
    assert d.base is m and d.shape == (3,)
    t = np.einsum("ij->ji", m)
    assert t.base is m
    t[0] = -1.0  # writes through, as numpy's view
    same(m, np.array([[-1.0, 1, 2], [-1.0, 4, 5], [-1.0, 7, 8]]))
    assert np.einsum("ij->i", m).base is None  # a sum: a new array
    z = mtia.asarray(np.float64(2.5))
    for sub in ("", "->", "..."):  # numpy returns a scalar (a copy) for a 0-d result: a new array here
        r = np.einsum(sub, z)
        assert r.base is None
        same(r, np.asarray(np.einsum(sub, np.float64(2.5))))


def test_einsum_refuses_the_sublist_form_and_order_f() -> None:
    a = mtia.ones((2, 2))
    with pytest.raises(TypeError, match=r"numpy\.einsum\(\) is not supported.*sublist"):
        np.einsum(a, [0, 1], a, [1, 2])
    with pytest.raises(TypeError, match="C-ordered"):
        np.einsum("ij,jk", a, a, order="F")
    with pytest.raises(TypeError, match="unexpected keyword"):
        np.einsum("ij,jk", a, a, bogus=1)


# --- norm, trace -------------------------------------------------------------------------------------
NORMS = [
    {}, {"ord": 1}, {"ord": 2}, {"ord": np.inf}, {"ord": -np.inf}, {"ord": 0}, {"ord": 3}, {"ord": -1}, {"ord": "fro"},
    {"ord": "nuc"}, {"ord": -2}, {"axis": 0}, {"axis": -1, "keepdims": True}, {"axis": (0, 1)}, {"axis": (1, 0)},
    {"ord": 2, "axis": 1}, {"keepdims": True}, {"ord": "fro", "axis": (0, 1), "keepdims": True}, {"axis": 3},
    {"axis": (0, 0)}, {"ord": "bogus"}, {"axis": 1.5}, {"ord": 1, "axis": (0, 1)},
]  # fmt: skip


@SETTINGS
@given(dt=st.sampled_from([np.int32, np.float32, np.float64, np.complex64]), kw=st.sampled_from(NORMS),
       shape=st.sampled_from([(3,), (2, 3), (3, 3), (2, 3, 2), (), (0, 3)]), layout=layouts)  # fmt: skip
def test_norm_matches_numpy(dt: Any, kw: dict[str, Any], shape: tuple[int, ...], layout: str) -> None:
    a = np.array([3, -2, 1, 2, -1])[np.arange(int(np.prod(shape))) % 5].astype(dt).reshape(shape)  # no 0: no 1/0
    da = device(a, layout)
    compare(lambda: np.linalg.norm(da, **kw), lambda: np.asarray(np.linalg.norm(a, **kw)))


TRACES = [{}, {"offset": 1}, {"offset": -1}, {"offset": 5}, {"axis1": 1, "axis2": 0}, {"axis1": 0, "axis2": 2},
          {"axis1": 1, "axis2": 1}, {"axis1": 3}, {"dtype": np.float32}, {"dtype": np.int8}]  # fmt: skip


@SETTINGS
@given(dt=dtypes, kw=st.sampled_from(TRACES), shape=st.sampled_from([(3, 3), (2, 4), (2, 3, 4), (3,), (0, 2)]),
       layout=layouts, method=st.booleans())  # fmt: skip
def test_trace_matches_numpy(dt: Any, kw: dict[str, Any], shape: tuple[int, ...], layout: str, method: bool) -> None:
    a = (np.arange(int(np.prod(shape))) % 7).astype(dt).reshape(shape)
    da = device(a, layout)
    if method:
        compare(lambda: da.trace(**kw), lambda: np.asarray(a.trace(**kw)))
    else:
        compare(lambda: np.trace(da, **kw), lambda: np.asarray(np.trace(a, **kw)))


def test_trace_out_and_small_integers() -> None:
    a = np.full((3, 3), 100, np.int8)
    da = device(a)
    compare(lambda: np.trace(da), lambda: np.asarray(np.trace(a)))  # summed as the platform int
    out = mtia.zeros((), np.int16)
    assert np.trace(da, out=out) is out
    same(out, np.trace(a, out=np.zeros((), np.int16)))
    with pytest.raises(ValueError):
        np.trace(da, out=mtia.zeros(1, np.int64))


# --- devices and arguments ---------------------------------------------------------------------------
CALLS: list[Callable[[Any, Any], Any]] = [
    np.dot, np.vdot, np.inner, np.outer, lambda a, b: np.tensordot(a, b, 1), lambda a, b: np.einsum("ij,jk", a, b),
    lambda a, b: np.dot(a, a, out=b), lambda a, b: np.trace(a, out=b[0, 0]), lambda a, b: np.outer(a, a, out=b),
]  # fmt: skip


@pytest.mark.parametrize("call", CALLS)
def test_two_devices_are_a_value_error_at_the_call(call: Callable[[Any, Any], Any]) -> None:
    a, b = mtia.ones((2, 2)), mtia.ones((2, 2), device=1)
    with pytest.raises(ValueError, match="two devices"):
        call(a, b)
    with pytest.raises(ValueError, match="two devices"):
        call(b, a)
    mtia.synchronize()


def test_results_live_on_the_arguments_device() -> None:
    a = mtia.asarray(np.arange(4.0).reshape(2, 2), device=1)
    for r in (np.dot(a, a), np.einsum("ij->", a), np.linalg.norm(a), np.trace(a), np.tensordot(a, a), np.outer(a, a)):
        assert r.device == 1
    same(np.dot(a, a), np.dot(np.arange(4.0).reshape(2, 2), np.arange(4.0).reshape(2, 2)))


def test_unsupported_operands_are_type_errors() -> None:
    a = mtia.ones(3)
    with pytest.raises(TypeError):
        np.dot(a, object())
    with pytest.raises(TypeError):
        np.dot(a, np.array(["x", "y", "z"]))
    with pytest.raises(TypeError):
        np.inner(a, {1: 2})
