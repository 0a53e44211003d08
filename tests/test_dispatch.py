"""NumPy dispatch on DeviceArrays: every ufunc family, methods, operators, errors at the call."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import mtia_async as mtia
import mtia_async.sync as mtia_sync

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.int32), np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64), BF16]
IDS = [str(d) for d in DTYPES]

X = np.array([[1, 2, 3], [4, 5, 6]])
Y = np.array([[2, 1, 3], [1, 2, 4]])
U = np.array([[0.25, 0.5, 0.75], [1.0, 1.5, 2.0]])  # for the transcendental functions

BINARY = [
    np.add, np.subtract, np.multiply, np.true_divide, np.floor_divide, np.remainder, np.power,
    np.maximum, np.minimum, np.fmax, np.fmin, np.arctan2, np.hypot, np.copysign,
]  # fmt: skip
COMPARISON = [np.less, np.less_equal, np.equal, np.not_equal, np.greater, np.greater_equal]
LOGICAL = [np.logical_and, np.logical_or, np.logical_xor]
BITWISE = [np.bitwise_and, np.bitwise_or, np.bitwise_xor, np.left_shift, np.right_shift, np.gcd, np.lcm]
UNARY = [
    np.negative, np.positive, np.absolute, np.sign, np.square, np.sqrt, np.exp, np.exp2, np.log, np.log2,
    np.log10, np.log1p, np.expm1, np.sin, np.cos, np.tan, np.tanh, np.arctan, np.arcsinh, np.floor, np.ceil,
    np.rint, np.trunc, np.logical_not, np.invert, np.isnan, np.isfinite, np.signbit, np.reciprocal,
]  # fmt: skip


def on_device(x: Any, device: int = 0) -> Any:
    return mtia.asarray(x, device=device) if isinstance(x, np.ndarray) else x


def host(x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(host(v) for v in x)
    assert isinstance(x, mtia.DeviceArray), type(x)
    return x.numpy()


def same(got: Any, expected: Any) -> None:
    """Equal values (NaN == NaN), dtype and shape; tuples element by element."""
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected):
            same(g, e)
        return
    expected = np.asarray(expected)
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def compare(op: Callable[..., Any], *args: Any) -> None:
    """Run ``op`` on host numpy data and on device copies: same result, or same error at the call."""
    try:
        expected = op(*args)
    except Exception as exc:
        with pytest.raises(type(exc)):
            op(*[on_device(a) for a in args])
        mtia_sync.synchronize()  # raised at the call: nothing failed in a worker
        return
    got = op(*[on_device(a) for a in args])
    same(host(got), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("uf", BINARY + COMPARISON + LOGICAL + BITWISE, ids=lambda u: u.__name__)
def test_binary_ufuncs_match_numpy(uf: np.ufunc, dtype: np.dtype[Any]) -> None:
    compare(uf, X.astype(dtype), Y.astype(dtype))
    compare(uf, X.astype(dtype), Y[1].astype(dtype))  # broadcasting


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("uf", UNARY, ids=lambda u: u.__name__)
def test_unary_ufuncs_match_numpy(uf: np.ufunc, dtype: np.dtype[Any]) -> None:
    data = U if dtype.kind in "fV" else X
    compare(uf, data.astype(dtype))


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)], ids=str)
@pytest.mark.parametrize("uf", [np.divmod, np.modf, np.frexp], ids=lambda u: u.__name__)
def test_two_output_ufuncs(uf: np.ufunc, dtype: np.dtype[Any]) -> None:
    compare(uf, *[(X * 1.5).astype(dtype)] * uf.nin)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("uf", [np.add, np.multiply, np.maximum, np.minimum, np.logical_and], ids=lambda u: u.__name__)
def test_reduce_accumulate_outer_match_numpy(uf: np.ufunc, dtype: np.dtype[Any]) -> None:
    x = X.astype(dtype)
    for kwargs in [{}, {"axis": 1}, {"axis": None}, {"axis": (0, 1), "keepdims": True}, {"axis": -1, "keepdims": True}]:
        compare(lambda a, kw=kwargs: uf.reduce(a, **kw), x)
    compare(lambda a: uf.reduce(a, axis=0, dtype=np.float64), x)
    compare(lambda a: uf.accumulate(a), x)
    compare(lambda a: uf.accumulate(a, axis=1), x)
    compare(lambda a, b: uf.outer(a, b), x[0], Y[1].astype(dtype))
    compare(lambda a, b: uf.outer(a, b), x, Y[1].astype(dtype))


def test_reduce_with_initial_and_where() -> None:
    x = X.astype(np.float32)
    mask = np.array([[True, False, True], [False, True, True]])
    expected = np.add.reduce(x, axis=1, where=mask, initial=10.0)
    got = np.add.reduce(mtia.asarray(x), axis=1, where=mtia.asarray(mask), initial=10.0)
    same(host(got), expected)
    same(host(np.maximum.reduce(mtia.asarray(x), axis=0, where=mask, initial=-1.0)),
         np.maximum.reduce(x, axis=0, where=mask, initial=-1.0))  # fmt: skip
    with pytest.raises(ValueError, match="to use a where mask one has to specify 'initial'"):
        np.maximum.reduce(mtia.asarray(x), where=mtia.asarray(mask))
    with pytest.raises(ValueError, match="zero-size array to reduction operation maximum which has no identity"):
        mtia.zeros((0, 3)).max(axis=0)
    same(host(mtia.zeros((0, 3)).max(axis=1)), np.zeros((0, 3), np.float32).max(axis=1))
    with pytest.raises(np.exceptions.AxisError, match="axis 2 is out of bounds for array of dimension 2"):
        np.add.reduce(mtia.asarray(x), axis=2)


def test_out_and_where() -> None:
    a, b = mtia.asarray(X.astype(np.float64)), mtia.asarray(Y.astype(np.float64))
    out = mtia.full((2, 3), -1.0)
    assert out.dtype == np.float64
    mask = X > 2
    r = np.add(a, b, out=out, where=mtia.asarray(mask))
    assert r is out
    same(host(out), np.where(mask, X + Y, -1.0))
    np.multiply(a, 2, out=out, where=mask)  # a host mask is copied to the device
    expected = np.where(mask, X * 2.0, np.where(mask, X + Y, -1.0))
    same(host(out), expected)
    np.subtract(a, b, out=(out,), where=False)  # nothing computed
    same(host(out), expected)
    wide = mtia.zeros((4, 2, 3), dtype=np.float64)
    np.add(a, 1, out=wide)  # out may be larger than the inputs' broadcast
    same(host(wide), np.broadcast_to(X + 1.0, (4, 2, 3)))
    q, rem = mtia.empty((2, 3), np.float64), mtia.empty((2, 3), np.float64)
    got = np.divmod(a, b, out=(q, rem))
    assert got[0] is q and got[1] is rem
    same((host(q), host(rem)), np.divmod(X.astype(np.float64), Y.astype(np.float64)))
    total = mtia.empty((), np.float64)
    assert np.add.reduce(a, axis=None, out=total) is total
    same(host(total), np.float64(21.0))
    acc = mtia.empty((2, 3), np.int64)
    np.add.accumulate(mtia.asarray(X), axis=1, out=acc)
    same(host(acc), np.add.accumulate(X, axis=1))


def test_errors_are_raised_at_the_call() -> None:
    f32, i32 = mtia.ones((2, 3)), mtia.ones(3, dtype=np.int32)
    with pytest.raises(ValueError, match=r"operands could not be broadcast together with shapes \(2,3\) \(4,\)"):
        f32 + mtia.ones(4)
    with pytest.raises(np._core._exceptions._UFuncOutputCastingError, match="Cannot cast ufunc 'add' output"):
        np.add(f32, f32, out=mtia.empty((2, 3), np.int32))
    with pytest.raises(TypeError, match="Cannot cast ufunc 'add' output from dtype\\('float64'\\)"):
        i32 += 1.5
    with pytest.raises(ValueError, match=r"out= has shape \(3,\), expected \(2,3\)"):
        f32 += mtia.ones((2, 3))[0:1] * mtia.ones((2, 1))  # fine ...
        i = mtia.ones(3)
        i += f32  # ... but this output does not fit
    with pytest.raises(OverflowError, match="Python integer 300 out of bounds for int8"):
        mtia.ones(3, np.int8) + 300
    with pytest.raises(OverflowError, match="Python integer -1 out of bounds for uint8"):
        mtia.ones(3, np.uint8) * -1
    with pytest.raises(TypeError, match="numpy boolean subtract"):
        mtia.ones(2, np.bool_) - mtia.ones(2, np.bool_)
    with pytest.raises(TypeError, match="ufunc 'bitwise_and' not supported for the input types"):
        f32 & f32
    with pytest.raises(TypeError, match="unsupported operand"):
        f32 + "text"
    mtia_sync.synchronize()  # no kernel was enqueued for any of them


def test_python_int_overflow_check_is_not_defeated_by_the_cache() -> None:
    a = mtia.ones(2, np.int8)
    same(host(a + 100), np.array([101, 101], np.int8))
    with pytest.raises(OverflowError, match="Python integer 200 out of bounds for int8"):
        a + 200
    same(host(a + 27), np.array([28, 28], np.int8))
    with pytest.raises(OverflowError, match="Python integer 129 out of bounds for int8"):
        np.add(a, 129)


def test_two_devices_are_refused_with_both_named() -> None:
    a0, a1 = mtia.ones(3), mtia.ones(3, device=1)
    for action in (
        lambda: a0 + a1,
        lambda: a1 * a0,
        lambda: np.add(a0, a1),
        lambda: np.add(a0, 1, out=mtia.empty(3, device=1)),
        lambda: np.add(a0, 1, out=mtia.empty(3), where=mtia.ones(3, np.bool_, device=1)),
        lambda: a0 @ a1,
    ):
        with pytest.raises(ValueError, match=r"two devices, mtia:[01] and mtia:[01]"):
            action()


def test_operators_scalars_host_arrays_and_reflection() -> None:
    x = X.astype(np.float32)
    a = mtia.asarray(x)
    ops: list[Callable[[Any], Any]] = [
        lambda v: v + 2, lambda v: 2 + v, lambda v: v - 1.5, lambda v: 10 - v, lambda v: v * True,
        lambda v: 2 ** v, lambda v: v ** 2, lambda v: 1 / v, lambda v: v // 2, lambda v: 7 % v,
        lambda v: v + (1 + 2j), lambda v: (1 - 2j) * v, lambda v: v + np.float64(1), lambda v: v + Y,
        lambda v: Y - v, lambda v: v * [1, 2, 3], lambda v: -v, lambda v: +v, lambda v: abs(-v),
        lambda v: v < 3, lambda v: 3 < v, lambda v: v == Y, lambda v: v != v, lambda v: v >= Y,
        lambda v: v - v[0], lambda v: divmod(v, 4), lambda v: divmod(9, v), lambda v: np.subtract(1, v),
        lambda v: np.sin(v),
    ]  # fmt: skip
    for _ in range(2):  # the first call resolves and caches, the second takes the fast path
        for op in ops:
            same(host(op(a)), op(x))
    i = mtia.asarray(X)
    int_ops: list[Callable[[Any], Any]] = [
        lambda v: v & 6, lambda v: 5 | v, lambda v: v ^ v, lambda v: ~v, lambda v: v << 2, lambda v: 64 >> v,
        lambda v: 300 - v, lambda v: v * -(2**40),
    ]  # fmt: skip
    for _ in range(2):
        for op in int_ops:
            same(host(op(i)), op(X))


def test_in_place_operators_write_into_the_array() -> None:
    x = X.astype(np.float64)
    a = mtia.asarray(x)
    view = a[:, 1:]
    ident = id(a)
    a += 1
    a *= mtia.asarray(Y.astype(np.float64))
    a -= Y[0]
    a /= 2
    a **= 2
    assert id(a) == ident
    expected = ((((x + 1) * Y) - Y[0]) / 2) ** 2
    same(host(a), expected)
    same(host(view), expected[:, 1:])  # the views see it: same memory
    i = mtia.asarray(X)
    i <<= 1
    i |= 1
    i //= 2
    i %= 3
    same(host(i), (((X << 1) | 1) // 2) % 3)


def test_matmul_shapes_and_errors() -> None:
    rng = np.random.default_rng(0)
    cases = [((2, 3), (3, 4)), ((3,), (3, 4)), ((2, 3), (3,)), ((3,), (3,)), ((2, 1, 3, 4), (5, 4, 2))]
    for sa, sb in cases:
        a, b = rng.integers(-3, 4, sa).astype(np.float64), rng.integers(-3, 4, sb).astype(np.float64)
        same(host(mtia.asarray(a) @ mtia.asarray(b)), a @ b)
        same(host(np.matmul(mtia.asarray(a), b)), np.matmul(a, b))
    m = mtia.asarray(np.eye(3, dtype=np.float32))
    m @= mtia.asarray(np.full((3, 3), 2, np.float32))
    same(host(m), np.full((3, 3), 2, np.float32))
    same(host(np.vecdot(mtia.asarray(X), mtia.asarray(Y))), np.vecdot(X, Y))
    with pytest.raises(ValueError, match=r"matmul: Input operand 1 has a mismatch in its core dimension 0"):
        mtia.ones((2, 3)) @ mtia.ones((4, 2))
    with pytest.raises(ValueError, match="matmul: Input operand 1 does not have enough dimensions"):
        np.matmul(mtia.ones((2, 3)), 2.0)
    with pytest.raises(ValueError, match="operands could not be broadcast together"):
        mtia.ones((2, 2, 3)) @ mtia.ones((3, 3, 1))
    m = mtia.ones((2, 2))
    with pytest.raises(TypeError, match="matmul.reduce is not supported: matmul is a generalized ufunc"):
        m.__array_ufunc__(np.matmul, "reduce", m)  # numpy itself refuses before dispatching


def test_reduction_methods_and_numpy_functions() -> None:
    x = (X * 1.25).astype(np.float32)
    a = mtia.asarray(x)
    for name in ("sum", "prod", "max", "min", "mean", "std", "var", "any", "all", "argmax", "argmin"):
        for kwargs in ({}, {"axis": 0}, {"axis": 1, "keepdims": True}):
            same(host(getattr(a, name)(**kwargs)), getattr(x, name)(**kwargs))
            same(host(getattr(np, name)(a, **kwargs)), getattr(np, name)(x, **kwargs))
    same(host(a.sum(dtype=np.float64)), x.sum(dtype=np.float64))
    same(host(a.std(ddof=1, axis=0)), x.std(ddof=1, axis=0))
    same(host(np.amax(a, axis=0)), np.amax(x, axis=0))
    same(host(a.mean(axis=1, where=mtia.asarray(X > 1))), x.mean(axis=1, where=X > 1))
    out = mtia.empty(3, np.float32)
    assert a.sum(axis=0, out=out) is out
    same(host(out), x.sum(axis=0))
    assert np.result_type(a, 1.0) == np.float32 and np.result_type(a, np.float64) == np.float64
    with pytest.raises(ValueError, match="attempt to get argmax of an empty sequence"):
        mtia.zeros(0).argmax()
    with pytest.raises(TypeError, match=r"numpy.polyfit\(\) is not supported on DeviceArray"):
        np.polyfit(a[0], a[1], 1)  # a numpy function DeviceArray does not implement
    with pytest.raises(TypeError, match=r"numpy.fft.fft\(\) is not supported on DeviceArray"):
        np.fft.fft(a[0])  # named with its submodule
    with pytest.raises(TypeError, match="reduceat is not supported on DeviceArray"):
        np.add.reduceat(a, [0, 1])
    with pytest.raises(TypeError, match="at is not supported on DeviceArray"):
        np.add.at(a, 0, 1)


def test_bfloat16_arithmetic_matches_numpy() -> None:
    x = np.linspace(-3, 3, 13).astype(BF16)
    a = mtia.asarray(x)
    same(host(a * a + 1), x * x + 1)
    same(host(np.exp(a) / 3), np.exp(x) / 3)
    same(host(a.sum()), x.sum())
    same(host(a.astype(np.float32) @ a.astype(np.float32)), x.astype(np.float32) @ x.astype(np.float32))
    same(host(a.mean()), x.mean())


def test_ufunc_keywords_dtype_and_casting() -> None:
    a = mtia.asarray(X.astype(np.int32))
    same(host(np.add(a, a, dtype=np.float64)), np.add(X.astype(np.int32), X.astype(np.int32), dtype=np.float64))
    same(host(np.multiply(a, 2.5, casting="unsafe", dtype=np.int32)), np.multiply(X.astype(np.int32), 2.5, casting="unsafe", dtype=np.int32))
    with pytest.raises(TypeError, match="Cannot cast"):
        np.add(a, 1.5, dtype=np.int32)


async def test_dispatch_from_an_event_loop_never_blocks() -> None:
    a = mtia.asarray(X.astype(np.float64))
    b = (a + 1) * 2 - a.sum(axis=0)
    np.testing.assert_array_equal(await b.to_host(), (X + 1) * 2.0 - X.sum(axis=0))


def test_results_are_deviceArrays_on_the_operands_device() -> None:
    a = mtia.asarray(X, device=1)
    for r in (a + 1, np.sin(a), a.sum(), np.add.outer(a, a), a @ a.T, np.divmod(a, 2)[0]):
        assert isinstance(r, mtia.DeviceArray) and r.device == 1


def test_repeated_general_calls_are_validated_per_signature() -> None:
    """The second identical call takes the memoized path: same results, and a call that
    differs only in a value (an axis, a scalar's size, a device) is validated anew."""
    x = X.astype(np.float32)
    a = mtia.asarray(x)
    calls: list[Callable[[Any], Any]] = [
        lambda v: np.add.reduce(v, axis=1),
        lambda v: np.add.reduce(v, axis=0, keepdims=True),
        lambda v: np.multiply.accumulate(v, axis=1),
        lambda v: np.subtract.outer(v[0], v[1]),
        lambda v: v @ v.T,
        lambda v: v.sum(),
        lambda v: np.maximum(v, 2.5, where=v > 2, out=v * 0),
        lambda v: np.divmod(v, 2.0),
    ]
    for _ in range(3):
        for call in calls:
            same(host(call(a)), call(x))
    with pytest.raises(np.exceptions.AxisError, match="axis 2 is out of bounds"):
        np.add.reduce(a, axis=2)
    i8 = mtia.ones(3, np.int8)
    np.add(i8, 5, out=i8)
    np.add(i8, 5, out=i8)
    with pytest.raises(OverflowError, match="Python integer 500 out of bounds for int8"):
        np.add(i8, 500, out=i8)
    same(host(i8), np.full(3, 11, np.int8))
    with pytest.raises(ValueError, match="mtia:0 and mtia:1"):
        np.add(i8, 5, out=mtia.ones(3, np.int8, device=1))
    t = mtia.ones(3)
    for _ in range(2):
        t += 1
    with pytest.raises(TypeError, match="Cannot cast ufunc 'add' output"):
        i8 += 1.5
    same(host(t), np.full(3, 3.0, np.float32))


# Regression (issue 15, defect 3).
@pytest.mark.parametrize("method", ["mean", "std", "var", "any", "all", "sum", "max"])
def test_a_where_mask_on_another_device_is_refused(method: str) -> None:
    x = mtia_sync.asarray(np.arange(6.0))
    mask = mtia_sync.asarray(np.ones(6, bool), device=1)
    with pytest.raises(ValueError, match="two devices"):
        getattr(x, method)(where=mask)


# Regression (issue 15, defect 11).
def test_reduction_caches_tell_axes_apart() -> None:
    a = mtia_sync.zeros((3, 0))
    assert a.max(axis=0).shape == (0,)
    with pytest.raises(ValueError, match="zero-size array"):
        a.max(axis=1)
    s = mtia_sync.current_stream()
    s.synchronize()  # nothing was enqueued that fails


# Regression (issue 15, smaller defects).
def test_int_subclasses_are_operands_as_in_numpy() -> None:
    class Three(enum.IntEnum):
        THREE = 3

    x = np.arange(4, dtype=np.float32)
    a = mtia_sync.asarray(x)
    for got, want in [(a + Three.THREE, x + Three.THREE), (Three.THREE * a, Three.THREE * x), (np.add(a, Three.THREE), np.add(x, Three.THREE))]:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.numpy(), want)


def test_torchs_dim_keyword_points_to_axis() -> None:
    a = mtia_sync.zeros((2, 3))
    for method in ("sum", "prod", "max", "min", "mean", "std", "var", "any", "all"):
        with pytest.raises(TypeError, match=r"takes numpy's axis=, not torch's dim=: use " + method):
            getattr(a, method)(dim=1)
    with pytest.raises(TypeError, match="unexpected keyword argument.*'foo'"):
        a.sum(foo=1)
    mtia_sync.synchronize()
