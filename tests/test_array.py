"""DeviceArray: factories, attributes, views, copies, kernel arguments, memory and guards."""

from __future__ import annotations

import asyncio
import copy
import gc
import pickle
import threading
import time
from collections.abc import Iterator

import ml_dtypes
import numpy as np
import pytest

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async.testing import fresh_runtime

BF16 = np.dtype(ml_dtypes.bfloat16)
F8 = np.dtype(ml_dtypes.float8_e4m3fn)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event a kernel can wait on, so work queues up behind it; always released."""
    ev = threading.Event()
    yield ev
    ev.set()


def hold(ev: threading.Event) -> None:
    assert ev.wait(10), "gate never opened"


# --- factories and attributes -----------------------------------------------------------
@pytest.mark.parametrize(
    "dtype", [np.bool_, np.int8, np.uint16, np.int64, np.float16, np.float32, np.float64, np.complex64, BF16, F8]
)
def test_asarray_roundtrip_keeps_values_and_dtype(dtype: object) -> None:
    host = (np.arange(12).reshape(3, 4) % 5).astype(dtype)
    a = mtia.asarray(host)
    assert a.shape == (3, 4) and a.dtype == np.dtype(dtype) and a.ndim == 2 and a.size == 12
    assert a.nbytes == host.nbytes and a.itemsize == host.itemsize and a.device == 0
    back = a.numpy()
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.view(np.uint8), host.view(np.uint8))  # byte-identical


def test_factories_fill_on_the_current_stream() -> None:
    np.testing.assert_array_equal(mtia.zeros((2, 3)).numpy(), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(mtia.ones(4, dtype=np.int16).numpy(), np.ones(4, np.int16))
    f = mtia.full((2, 2), 7.5, dtype=BF16)
    assert f.dtype == BF16
    np.testing.assert_array_equal(f.numpy().astype(np.float32), np.full((2, 2), 7.5, np.float32))
    assert mtia.full(3, 2).dtype == np.full(3, 2).dtype  # numpy's inference: int64
    np.testing.assert_array_equal(mtia.full((2, 3), [1, 2, 3], dtype=np.int32).numpy(), [[1, 2, 3], [1, 2, 3]])
    e = mtia.empty((5, 0, 2), dtype=np.float64)
    assert e.shape == (5, 0, 2) and e.size == 0 and e.data_ptr() == 0
    assert e.numpy().shape == (5, 0, 2)
    assert mtia.empty(()).shape == ()
    assert mtia.zeros((), np.int32).numpy() == 0


def test_factories_take_a_device() -> None:
    for device in (1, "mtia:1", mtia.device(1)):
        a = mtia.ones(3, device=device)
        assert a.device == 1
        np.testing.assert_array_equal(a.numpy(), [1, 1, 1])
    with mtia.device(1):
        assert mtia.zeros(2).device == 1
        assert mtia.asarray([1, 2]).device == 1


@pytest.mark.parametrize("bad", [-1, 2, 10**9, "cpu", "mtia:x", 1.5])
def test_bad_device_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match="out of index range|Invalid device string|Expected a mtia device"):
        mtia.empty(3, device=bad)
    with pytest.raises(ValueError, match=repr(bad) if not isinstance(bad, float) else "1.5"):
        mtia.asarray([1.0], device=bad)


@pytest.mark.parametrize(
    ("shape", "exc", "match"),
    [
        ((2, -1), ValueError, r"negative dimensions are not allowed: shape \(2, -1\)"),
        (-3, ValueError, "negative dimensions are not allowed: shape -3"),
        ((2, 1.5), TypeError, r"shape must be an int or a tuple of ints, got tuple \(2, 1.5\)"),
        ("3", TypeError, "shape must be an int or a tuple of ints, got str '3'"),
        ((True, 2), TypeError, "contains the bool True"),
        ((1,) * 65, ValueError, "has 65 dimensions; at most 64"),
    ],
)
def test_bad_shapes_are_named(shape: object, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        mtia.empty(shape)
    with pytest.raises(exc, match=match):
        mtia.zeros(shape)


@pytest.mark.parametrize(
    ("dtype", "match"),
    [
        (object, r"dtype\('O'\) \(kind 'O'\) is not supported"),
        (str, r"dtype\('<U'\) \(kind 'U'\) is not supported"),
        ("V8", r"dtype\('V8'\) \(kind 'V'\) is not supported"),
        ("datetime64[s]", "kind 'M'"),
        ("no-such-type", "'no-such-type' is not a dtype"),
    ],
)
def test_bad_dtypes_are_named_with_the_supported_kinds(dtype: object, match: str) -> None:
    with pytest.raises(TypeError, match=match) as info:
        mtia.empty(3, dtype=dtype)
    assert "bfloat16" in str(info.value)


def test_asarray_refuses_object_and_string_data() -> None:
    with pytest.raises(TypeError, match="kind 'U'"):
        mtia.asarray(np.array(["a", "b"]))
    with pytest.raises(TypeError, match="kind 'O'"):
        mtia.asarray([object()])


def test_repr_shows_metadata_and_never_values() -> None:
    a = mtia.asarray(np.array([123456.0, 654321.0], np.float32), device=1)
    text = repr(a)
    assert text == "DeviceArray(shape=(2,), dtype=float32, device='mtia:1')"
    assert "123456" not in str(a)
    assert repr(a[1:]) == "DeviceArray(shape=(1,), dtype=float32, device='mtia:1', view)"


def test_data_ptr_is_the_snapshot_block_address() -> None:
    a = mtia.empty(1000, dtype=np.float32)
    blocks = [
        blk for seg in mtia.snapshot()["segments"] for blk in seg["blocks"] if blk["state"] == "active_allocated"
    ]
    assert [blk["address"] for blk in blocks] == [a.data_ptr()]
    assert blocks[0]["requested_size"] == 4000
    assert a[10:].data_ptr() == a.data_ptr() + 40
    assert a.reshape(10, 100)[2, 3:].data_ptr() == a.data_ptr() + (203 * 4)


# --- implicit conversions ---------------------------------------------------------------------
def test_implicit_host_conversions_raise_and_name_the_explicit_copy() -> None:
    a = mtia.ones(3)
    s = mtia.ones(())
    match = r"to_host\(\).*numpy\(\)"
    for action in (
        lambda: np.asarray(a),
        lambda: np.array(a),
        lambda: float(s),
        lambda: int(s),
        lambda: complex(s),
        lambda: bool(a),
        lambda: bool(s),
        lambda: [0, 1, 2][s],  # __index__
        lambda: list(a),
        lambda: iter(a),
        lambda: 1.0 in a,
        lambda: pickle.dumps(a),
        lambda: np.fft.fft(a),  # a numpy function DeviceArray does not implement
    ):
        with pytest.raises(TypeError, match=match):
            action()
    assert not hasattr(a, "__array_interface__")
    assert not hasattr(a, "__array_struct__")
    assert len(a) == 3


def test_no_implicit_sync_in_comparisons() -> None:
    a = mtia.ones(3)
    eq = a == a
    assert isinstance(eq, mtia.DeviceArray) and eq.dtype == np.bool_
    with pytest.raises(TypeError, match="numpy"):
        if a == a:  # the truth value of an elementwise result is what must raise
            pass
    assert (a == None) is False  # noqa: E711 - None is no operand: Python's identity fallback


def test_device_array_cannot_be_constructed_or_subclassed() -> None:
    with pytest.raises(TypeError, match="asarray"):
        mtia.DeviceArray((3,))
    with pytest.raises(TypeError, match="cannot be subclassed"):

        class Sub(mtia.DeviceArray):  # type: ignore[misc]
            pass


# --- views ------------------------------------------------------------------------------------
def test_slices_are_views_sharing_memory() -> None:
    base = mtia.asarray(np.arange(24, dtype=np.float64).reshape(4, 6))
    host = np.arange(24, dtype=np.float64).reshape(4, 6)
    for index in [(slice(1, 3), slice(None, None, 2)), 0, (Ellipsis, None), (slice(None, None, -1), 2), (2, 3)]:
        view = base[index]
        assert view.shape == host[index].shape
        np.testing.assert_array_equal(view.numpy(), host[index])
    v = base[1:3, ::2]
    assert v.base is base and v[0].base is base
    v[...] = -1.0  # write through the view, read the base
    host[1:3, ::2] = -1.0
    np.testing.assert_array_equal(base.numpy(), host)
    base[0, 0] = 99  # write through the base, read a view
    assert base[0, :2].numpy().tolist() == [99.0, 1.0]
    assert base[0, 0].shape == ()  # a 0-d view, never a host scalar
    assert base.strides == (48, 8) and base[:, ::3].strides == (48, 24)


def test_views_keep_their_base_memory_alive() -> None:
    a = mtia.asarray(np.arange(10, dtype=np.int32))
    v = a[5:]
    allocated = mtia.memory_allocated()
    del a
    gc.collect()
    assert mtia.memory_allocated() == allocated
    np.testing.assert_array_equal(v.numpy(), [5, 6, 7, 8, 9])
    del v
    gc.collect()
    assert mtia.memory_allocated() == 0


def test_reshape_transpose_and_T() -> None:
    host = np.arange(12, dtype=np.int16)
    a = mtia.asarray(host)
    r = a.reshape(3, 4)
    assert r.base is a and r.shape == (3, 4)
    np.testing.assert_array_equal(r.T.numpy(), host.reshape(3, 4).T)
    np.testing.assert_array_equal(a.reshape((2, -1)).numpy(), host.reshape(2, -1))
    np.testing.assert_array_equal(r.transpose(1, 0).numpy(), host.reshape(3, 4).transpose(1, 0))
    t = r.T
    flat = t.reshape(12)  # not expressible as a view: a copy, as torch.reshape
    assert flat.base is not a and flat.data_ptr() != a.data_ptr()
    np.testing.assert_array_equal(flat.numpy(), host.reshape(3, 4).T.reshape(12))
    with pytest.raises(ValueError, match=r"cannot reshape array of size 12 into shape \(5,\)"):
        a.reshape(5)
    with pytest.raises(ValueError, match="can only specify one unknown dimension"):
        a.reshape(-1, -1)
    assert np.reshape(a, (4, 3)).shape == (4, 3) and np.transpose(r).shape == (4, 3)
    assert np.shape(r) == (3, 4) and np.ndim(r) == 2 and np.size(r) == 12 and np.size(r, 1) == 4


@pytest.mark.parametrize("index", [1.5, "0", (slice(None), 2.0)])
def test_what_is_no_index_is_refused(index: object) -> None:
    a = mtia.ones((3, 3))  # integer and boolean arrays are indices: tests/test_np_indexing.py
    with pytest.raises(IndexError, match="invalid index"):  # numpy's error type
        a[index]
    with pytest.raises(IndexError, match="invalid index"):
        a[index] = 0.0


def test_out_of_range_index_is_numpys_error() -> None:
    with pytest.raises(IndexError, match="out of bounds"):
        mtia.ones(3)[3]
    with pytest.raises(IndexError, match="too many indices"):
        mtia.ones(3)[0, 0]


def test_setitem_scalar_device_array_and_host_data() -> None:
    a = mtia.zeros((2, 3), dtype=np.int32)
    a[0] = 7
    a[1, 1:] = mtia.asarray(np.array([8, 9], np.int32))
    a[:, 0] = np.array([1.9, 2.9])  # numpy's unsafe cast on assignment: truncates
    np.testing.assert_array_equal(a.numpy(), [[1, 7, 7], [2, 8, 9]])
    a[...] = np.array([[4, 5, 6]])  # broadcast, with a leading unit dimension dropped
    np.testing.assert_array_equal(a.numpy(), [[4, 5, 6], [4, 5, 6]])
    with pytest.raises(OverflowError, match="Python integer 300 out of bounds for int32|300"):
        mtia.zeros(2, dtype=np.int8)[0] = 300
    with pytest.raises(ValueError, match=r"could not broadcast input array from shape \(4,\) into shape \(3,\)"):
        a[0] = np.arange(4)
    with pytest.raises(ValueError, match=r"could not broadcast input array from shape \(2,\) into shape \(3,\)"):
        a[0] = mtia.zeros(2, dtype=np.int32)
    with pytest.raises(ValueError, match="mtia:0 and mtia:1"):
        a[0] = mtia.zeros(3, dtype=np.int32, device=1)
    with pytest.raises(ValueError, match="could not convert string to float"):
        mtia.zeros(2)[0] = "abc"


def test_overlapping_setitem_behaves_as_numpy() -> None:
    host = np.arange(8.0)
    a = mtia.asarray(host)
    a[1:] = a[:-1]
    host[1:] = host[:-1].copy()
    np.testing.assert_array_equal(a.numpy(), host)


# --- copies and ordering ----------------------------------------------------------------------------
def test_asarray_snapshots_the_callers_buffer(gate: threading.Event) -> None:
    mtia.launch(hold, gate)  # the copy kernel cannot run yet
    host = np.arange(5, dtype=np.float32)
    a = mtia.asarray(host)
    v = mtia.asarray(host[::2])
    host[:] = -1  # mutate after asarray returned, before the copy ran
    gate.set()
    np.testing.assert_array_equal(a.numpy(), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(v.numpy(), [0, 2, 4])


def test_h2d_kernel_d2h_run_in_stream_order(gate: threading.Event) -> None:
    def double(x: np.ndarray) -> None:
        time.sleep(0.02)
        x *= 2

    mtia.launch(hold, gate)
    a = mtia.asarray(np.arange(4, dtype=np.int64))
    mtia.launch(double, a)
    b = a + 1
    mtia.launch(double, b)
    gate.set()
    np.testing.assert_array_equal(a.numpy(), [0, 2, 4, 6])
    np.testing.assert_array_equal(b.numpy(), [2, 6, 10, 14])


async def test_to_host_awaits_the_current_stream() -> None:
    s = mtia.Stream()
    with mtia.stream(s):
        a = mtia.zeros(3)
        mtia.launch(time.sleep, 0.05)
        mtia.launch(lambda x: x.fill(5), a)
        host = await a.to_host()
    np.testing.assert_array_equal(host, [5, 5, 5])
    assert s.query()


async def test_numpy_refuses_to_block_an_event_loop() -> None:
    a = mtia.ones(2)
    with pytest.raises(RuntimeError, match=r"DeviceArray.numpy\(\) cannot be called from the event loop thread"):
        a.numpy()
    np.testing.assert_array_equal(await a.to_host(), [1, 1])


async def test_to_host_raises_the_failure_of_an_earlier_kernel() -> None:
    a = mtia.ones(2)

    def boom() -> None:
        raise ZeroDivisionError("boom")

    mtia.launch(boom)
    with pytest.raises(mtia.KernelError, match="boom") as info:
        await a.to_host()
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_copy_and_astype() -> None:
    a = mtia.asarray(np.array([1.5, -2.5, 3.25], np.float64))
    c = a.copy()
    a[0] = 0
    np.testing.assert_array_equal(c.numpy(), [1.5, -2.5, 3.25])
    i = c.astype(np.int32)
    assert i.dtype == np.int32
    np.testing.assert_array_equal(i.numpy(), np.array([1.5, -2.5, 3.25]).astype(np.int32))
    b = c.astype(BF16)
    np.testing.assert_array_equal(b.numpy().astype(np.float64), [1.5, -2.5, 3.25])
    assert c.astype(np.float64, copy=False) is c
    assert copy.copy(c).data_ptr() != c.data_ptr() and copy.deepcopy(c).shape == (3,)
    np.testing.assert_array_equal(np.copy(c).numpy(), c.numpy())


def test_to_other_device_waits_for_the_source_stream(gate: threading.Event) -> None:
    src = mtia.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    mtia.launch(hold, gate)
    mtia.launch(lambda x: x.__imul__(10), src)  # pending on device 0's stream
    dst = src.to(1)
    assert dst.device == 1 and dst.shape == (2, 3)
    assert src.to(0) is src and src.to("mtia:0") is src
    gate.set()
    np.testing.assert_array_equal(dst.numpy(), np.arange(6, dtype=np.float32).reshape(2, 3) * 10)
    back = dst[:, 1].to(0)  # a view moves as a contiguous copy
    np.testing.assert_array_equal(back.numpy(), [10, 40])
    assert mtia.asarray(dst, device=0).device == 0
    assert mtia.asarray(dst).device == 1  # device=None keeps a DeviceArray's device


# --- kernel arguments ---------------------------------------------------------------------------------
def test_launch_passes_numpy_views_positional_and_keyword() -> None:
    a = mtia.asarray(np.array([1.0, 2.0, 3.0]))
    b = mtia.empty(3, dtype=np.float64)
    seen: list[object] = []

    def kernel(x: np.ndarray, *, out: np.ndarray, scale: float) -> None:
        seen.append((type(x), type(out)))
        np.multiply(x, scale, out=out)

    mtia.launch(kernel, a, out=b, scale=2.0)
    np.testing.assert_array_equal(b.numpy(), [2.0, 4.0, 6.0])
    assert seen == [(np.ndarray, np.ndarray)]
    s = mtia_sync.Stream(device=1)
    c = mtia.ones(2, device=1)
    s.wait_stream(mtia_sync.current_stream(1))  # the fill of c is done first
    s.launch(lambda x: x.__iadd__(1), c)
    s.synchronize()
    np.testing.assert_array_equal(c.numpy(), [2, 2])


def test_launch_with_an_array_of_another_device_raises_at_the_call() -> None:
    a1 = mtia.ones(2, device=1)
    with pytest.raises(ValueError, match=r"kernel argument #0 is a DeviceArray on mtia:1.*stream of mtia:0"):
        mtia.launch(np.negative, a1)
    with pytest.raises(ValueError, match=r"kernel argument 'out' is a DeviceArray on mtia:1.*mtia:0"):
        mtia.default_stream(0).launch(np.negative, mtia.ones(2), out=a1)


def test_launch_keeps_arrays_alive_until_the_kernel_ran(gate: threading.Event) -> None:
    got: list[float] = []
    mtia.launch(hold, gate)
    a = mtia.full(4, 3.0)
    mtia.launch(lambda x: got.append(float(x.sum())), a)
    del a
    gc.collect()
    assert mtia.memory_allocated() == 512  # still held by the queued kernel
    gate.set()
    mtia_sync.synchronize()
    assert got == [12.0]
    gc.collect()
    assert mtia.memory_allocated() == 0


def test_a_failing_kernel_with_array_arguments_is_named() -> None:
    def my_kernel(x: np.ndarray) -> None:
        raise ValueError("bad values")

    mtia.launch(my_kernel, mtia.ones(2))
    with pytest.raises(mtia.KernelError, match=r"kernel \S*my_kernel failed on device 0, stream 0: ValueError: bad values"):
        mtia_sync.synchronize()


# --- memory ------------------------------------------------------------------------------------------
def test_memory_goes_back_down_after_del() -> None:
    assert mtia.memory_allocated() == 0
    a = mtia.zeros((256, 256), dtype=np.float32)  # 256 KiB: small pool (zeros: a * 2 reads it)
    b = a * 2
    assert mtia.memory_allocated() == 2 * 256 * 1024
    mtia_sync.synchronize()
    del a, b
    gc.collect()
    assert mtia.memory_allocated() == 0
    assert mtia.memory_stats()["allocation.all.current"] == 0


def test_zero_size_arrays_hold_no_memory() -> None:
    z = mtia.zeros((0, 4))
    y = z + 1
    assert mtia.memory_allocated() == 0 and mtia.memory_stats()["num_device_alloc"] == 0
    assert y.shape == (0, 4) and y.numpy().shape == (0, 4)


def test_out_of_memory_is_raised_at_the_call() -> None:
    with fresh_runtime(device_count=1, device_memory="8MiB", workers=2):
        with pytest.raises(mtia.OutOfMemoryError, match="Tried to allocate 20.00 MiB"):
            mtia.empty(3 << 20, dtype=np.uint8)  # a 20 MiB segment does not fit 8 MiB
    with fresh_runtime(device_count=1, device_memory="8MiB", workers=2):
        big = mtia.empty((1 << 20) - 512, dtype=np.uint8)  # one 2 MiB small segment ...
        parts = [mtia.empty((1 << 20) - 512, dtype=np.uint8) for _ in range(7)]  # four: 8 MiB, full
        with pytest.raises(mtia.OutOfMemoryError, match="Tried to allocate 2.00 MiB") as info:
            big + 1  # the output does not fit: raised here, not in a worker
        assert isinstance(info.value, MemoryError)
        with pytest.raises(mtia.OutOfMemoryError):
            mtia.asarray(np.zeros(1 << 20, np.uint8))
        del parts
        gc.collect()
        out = big + 1  # fits again
        assert out.shape == big.shape


def test_record_stream_keeps_the_block_until_the_side_stream_is_done() -> None:
    side = mtia_sync.Stream()
    x = mtia.empty(1000)
    ptr = x.data_ptr()
    gate = threading.Event()
    side.launch(gate.wait, 30)  # work on the side stream that lasts until the test says so
    x[2:].record_stream(side)  # a view protects its whole base block
    del x
    gc.collect()
    y = mtia.empty(1000)  # same size, same (allocating) stream
    assert y.data_ptr() != ptr, "reused while the side stream was still running"
    gate.set()
    side.synchronize()
    z = mtia.empty(1000)
    assert z.data_ptr() == ptr, "not reused after the side stream finished"
    with pytest.raises(ValueError, match="mtia:1 but the array is on mtia:0"):
        y.record_stream(mtia_sync.Stream(device=1))
    with pytest.raises(TypeError, match="expects a mtia_async Stream"):
        y.record_stream("side")


def test_arrays_made_in_threads_and_tasks_use_their_current_stream() -> None:
    s = mtia_sync.Stream()

    def in_thread() -> None:
        with mtia_sync.stream(s):
            a = mtia.ones(4)
            (a + a).numpy()

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(10)
    assert not t.is_alive()

    async def task() -> np.ndarray:
        with mtia.stream(mtia.Stream(device=1)):
            return await (mtia.ones(2) * 3).to_host()

    np.testing.assert_array_equal(asyncio.run(task()), [3, 3])


# Regression (issue 15, defect 2).
def test_to_another_device_orders_later_writes_to_the_source_after_the_copy() -> None:
    a = mtia_sync.asarray(np.zeros(1000))
    mtia_sync.default_stream(1).launch(time.sleep, 0.2)  # device 1 busy: the copy runs late
    b = a.to(1)
    a[...] = 7
    with mtia_sync.device(1):
        np.testing.assert_array_equal(b.numpy(), np.zeros(1000))


# Regression (issue 15, smaller defects).
def test_dtype_none_means_the_documented_default() -> None:
    assert mtia_sync.empty(3, dtype=None).dtype == np.float32
    assert mtia_sync.zeros(3, dtype=None).dtype == np.float32
    assert mtia_sync.ones(3, dtype=None).dtype == np.float32


# Regression (issue 15, smaller defects).
@pytest.mark.parametrize("shape", [(0, 2**70), (0, 2**62), (2**62, 0, 8)])
def test_shapes_numpy_refuses_are_refused_at_the_call(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="too big|Maximum allowed dimension"):
        mtia_sync.empty(shape)
