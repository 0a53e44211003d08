"""Reliability against bad inputs: catalogue rows B1-B11 (see docs/reliability.md).

Every bad argument raises at the call, in the caller, and changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import pickle
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _support import GiB, MiB, FakeStream, block_state, checked, join_all, run_python, seeded

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async._memory import Block, CachingAllocator
from mtia_async import OutOfMemoryError
from mtia_async._core.runtime import get_runtime, peek_config
from mtia_async.testing import fresh_runtime


# --- B1 ------------------------------------------------------------------------------------------
class FakeTorchDevice:
    """What a foreign ``torch.device("cuda:0")`` looks like to the API."""

    type = "cuda"
    index = 0

    def __repr__(self) -> str:
        return "device(type='cuda', index=0)"


class MtiaDevice:
    type = "mtia"
    index = 1


DEVICE_CALLS: dict[str, Callable[[object], object]] = {
    "set_device": mtia.set_device,
    "device": mtia.device,
    "current_stream": mtia.current_stream,
    "default_stream": mtia.default_stream,
    "Stream": lambda d: mtia.Stream(device=d),
    "get_device_capability": mtia.get_device_capability,
    "get_device_properties": mtia.get_device_properties,
    "sync.synchronize": mtia_sync.synchronize,
    "synchronize": lambda d: asyncio.run(mtia.synchronize(d)),
    "memory_stats": mtia.memory_stats,
    "memory_allocated": mtia.memory_allocated,
    "max_memory_allocated": mtia.max_memory_allocated,
    "memory_reserved": mtia.memory_reserved,
    "max_memory_reserved": mtia.max_memory_reserved,
    "reset_peak_memory_stats": mtia.reset_peak_memory_stats,
    "mem_get_info": mtia.mem_get_info,
    "memory_summary": mtia.memory_summary,
    "empty": lambda d: mtia.empty(4, device=d),
    "zeros": lambda d: mtia.zeros(4, device=d),
    "asarray": lambda d: mtia.asarray([1.0], device=d),
    "rand": lambda d: mtia.rand(4, device=d),
    "Generator": mtia.Generator,
    "get_rng_state": mtia.get_rng_state,
    "set_rng_state": lambda d: mtia.set_rng_state(np.zeros(16, np.uint8), d),
}


def _observable_state() -> tuple[Any, ...]:
    return (
        mtia.current_device(),
        mtia_sync.current_stream(),
        mtia_sync.current_stream(1),
        mtia.memory_stats(0),
        mtia.memory_stats(1),
        [s.tobytes() for s in mtia.get_rng_state_all()],
        mtia.snapshot()["segments"],
    )


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (-2, "out of index range"),
        (2, "out of index range"),  # device_count()
        (10**9, "out of index range"),
        (1.5, "Expected a mtia device"),
        ("mtia:x", "Invalid device string"),
        ("cpu", "Expected a mtia device"),
        ("cuda:0", "Invalid device string|Expected a mtia device"),
        (True, "bool"),
        ([0], "Expected a mtia device"),
        (FakeTorchDevice(), "Expected a mtia device"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, str) else v,
)
def test_B1_bad_device_argument_raises_in_every_public_function_and_changes_nothing(bad: object, match: str) -> None:
    mtia.init()
    keep = mtia.zeros(16, device=1)
    mtia_sync.synchronize(1)
    before = _observable_state()
    for name, call in DEVICE_CALLS.items():
        with pytest.raises(ValueError, match=match):
            call(bad)
            pytest.fail(f"{name}({bad!r}) did not raise")
    assert _observable_state() == before
    del keep


def test_B1_none_means_the_current_device_and_device_objects_are_accepted() -> None:
    mtia.set_device(MtiaDevice())  # a device object with type "mtia"
    assert mtia.current_device() == 1
    assert mtia.current_stream(None) == mtia.current_stream(1) and mtia.current_stream().device_index == 1
    assert mtia.default_stream(None) == mtia.default_stream(1)
    assert mtia.Stream(device=None).device_index == 1
    assert mtia.get_device_properties(None)["index"] == 1
    assert mtia.empty(4, device=None).device == 1
    assert mtia.Generator(None).device == "mtia:1"
    with mtia.device(None):
        assert mtia.current_device() == 1
    keep = mtia.zeros(16)
    assert mtia.memory_allocated(None) == mtia.memory_allocated(1) == 512
    assert mtia.memory_stats(None) == mtia.memory_stats(1)
    mtia_sync.synchronize(None)
    del keep


# --- B2 ------------------------------------------------------------------------------------------
def test_B2_event_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="enable_timing"):
        mtia.Event(enable_timing="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="blocking"):
        mtia.Event(blocking=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interprocess"):
        mtia.Event(interprocess=True)
    e = mtia_sync.Event()
    with pytest.raises(TypeError, match="record"):
        e.record(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wait"):
        e.wait(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expects an Event"):
        e.elapsed_time(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query"):
        bool(e)


async def test_B2_unrecorded_event_is_complete_and_every_wait_returns_at_once() -> None:
    e = mtia.Event()
    assert e.query()
    async with asyncio.timeout(1):
        await e.synchronize()
        await e
    s = mtia.Stream()
    e.wait(s)
    s.wait_event(e)
    assert s.query()
    blocking = mtia_sync.Event()
    done = threading.Event()
    t = threading.Thread(target=lambda: (blocking.synchronize(), done.set()))
    t.start()
    join_all([t], timeout=1)
    assert done.is_set() and blocking.query()


def test_B2_elapsed_time_errors_are_explicit_and_never_a_stale_number() -> None:
    s = mtia_sync.Stream()
    timed = mtia_sync.Event(enable_timing=True)
    untimed = mtia_sync.Event()
    timed.record(s)
    untimed.record(s)
    s.synchronize()
    with pytest.raises(ValueError, match="Both events must be created with argument 'enable_timing=True'"):
        timed.elapsed_time(untimed)
    with pytest.raises(ValueError, match="enable_timing=True"):
        untimed.elapsed_time(timed)
    never = mtia_sync.Event(enable_timing=True)
    with pytest.raises(ValueError, match="Both events must be recorded before calculating elapsed time"):
        timed.elapsed_time(never)
    with pytest.raises(ValueError, match="must be recorded"):
        never.elapsed_time(timed)
    gate = threading.Event()
    s.launch(gate.wait, 5)
    pending = s.record_event(mtia_sync.Event(enable_timing=True))
    with pytest.raises(RuntimeError, match="completed"):
        timed.elapsed_time(pending)
    gate.set()
    pending.synchronize()
    first = timed.elapsed_time(pending)
    assert first >= 0
    # Re-recorded on pending work: the old, complete record must not answer (#85796).
    gate2 = threading.Event()
    s.launch(gate2.wait, 5)
    pending.record(s)
    with pytest.raises(RuntimeError, match="completed"):
        timed.elapsed_time(pending)
    gate2.set()
    pending.synchronize()
    assert timed.elapsed_time(pending) > first
    other = mtia_sync.Stream(device=1).record_event(mtia_sync.Event(enable_timing=True))
    other.synchronize()
    with pytest.raises(RuntimeError, match="same device"):
        timed.elapsed_time(other)


# --- B3 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [object(), 42, "stream", None])
def test_B3_foreign_objects_are_refused_at_the_call(bad: object) -> None:
    s = mtia_sync.Stream()
    with pytest.raises(TypeError, match="wait_stream"):
        s.wait_stream(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wait_event"):
        s.wait_event(bad)  # type: ignore[arg-type]
    if bad is not None:
        with pytest.raises(TypeError, match="set_stream"):
            mtia_sync.set_stream(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="StreamContext"):
            mtia_sync.stream(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="record_event"):
            s.record_event(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Event.record"):
            mtia_sync.Event().record(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="record_stream"):
            mtia.zeros(4).record_stream(bad)
    assert s.query()


def test_B3_another_devices_stream_and_another_runtimes_objects_are_refused_at_the_call() -> None:
    e = mtia_sync.Event()
    e.record(mtia_sync.Stream(device=0))
    with pytest.raises(ValueError, match="mtia:0"):
        e.record(mtia_sync.Stream(device=1))  # an event belongs to one device
    with pytest.raises(ValueError, match="mtia:1"):
        mtia.zeros(4, device=0).record_stream(mtia.Stream(device=1))
    with fresh_runtime(device_count=2, workers=2):
        old_stream = mtia_sync.Stream()
        old_event = old_stream.record_event()
        old_event.synchronize()
    s = mtia_sync.Stream()
    new_event = s.record_event()
    for call in (
        lambda: s.wait_event(old_event),  # complete, so waiting would silently do nothing
        lambda: old_event.wait(s),
        lambda: s.wait_stream(old_stream),
        lambda: old_stream.wait_stream(s),
        lambda: old_stream.wait_event(new_event),
    ):
        with pytest.raises(ValueError, match="two mtia_async runtimes"):
            call()
    for call in (lambda: old_stream.launch(print), lambda: new_event.record(old_stream), old_stream.synchronize):
        with pytest.raises(RuntimeError, match="shut down"):
            call()
    old_event.record(s)  # re-recording an event in the current runtime is allowed
    old_event.synchronize()
    assert s.query()


# --- B4 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "error", "match"),
    [
        (-1, ValueError, "negative dimensions"),
        (1.5, TypeError, "1.5"),
        ("8", TypeError, "'8'"),
        (True, TypeError, "bool"),
        (1 << 60, OutOfMemoryError, "Tried to allocate more than 1EB memory"),
        (2 * GiB, OutOfMemoryError, r"Tried to allocate 2\.00 GiB.*total capacity of 1\.00 GiB"),
    ],
)
def test_B4_bad_allocation_sizes_raise_and_change_only_the_oom_counters(shape: Any, error: type, match: str) -> None:
    keep = mtia.zeros(100, dtype=np.uint8)
    zero = mtia.empty(0, dtype=np.uint8)  # size 0: the null handle, no memory
    assert zero.data_ptr() == 0 and zero.nbytes == 0
    mtia_sync.synchronize()
    before, snap_before = get_runtime().devices[0].allocator.stats_and_snapshot()
    with pytest.raises(error, match=match):
        mtia.empty(shape, dtype=np.uint8)
    after, snap_after = checked(get_runtime().devices[0].allocator)
    changed = {k for k in before if before[k] != after[k]}
    if error is OutOfMemoryError and "1EB" not in match:  # a real attempt: one retry, one OOM
        assert changed == {"num_ooms", "num_alloc_retries", "dram"}
        assert after["num_ooms"] == before["num_ooms"] + 1
    else:
        assert changed == set()
    assert snap_after == snap_before
    del keep, zero


@pytest.mark.parametrize(
    ("size", "error", "pattern"),
    [
        (-1, ValueError, "-1"),
        (1.5, TypeError, "float 1.5"),
        ("8", TypeError, "str '8'"),
        (True, TypeError, "bool True"),
        (None, TypeError, "NoneType"),
        (1 << 60, OutOfMemoryError, "Tried to allocate more than 1EB memory"),
        ((1 << 64) + 5, OutOfMemoryError, "Tried to allocate more than 1EB memory"),
    ],
)
def test_B4_allocator_refuses_bad_sizes_without_touching_the_device(size: Any, error: type, pattern: str) -> None:
    alloc = CachingAllocator(0, 1 * GiB)
    s0 = FakeStream(0)
    keep = alloc.malloc(100, s0)
    before = alloc.stats_and_snapshot()
    assert alloc.malloc(0, s0) is None  # the null handle
    assert alloc.stats_and_snapshot() == before
    with pytest.raises(error, match=pattern):
        alloc.malloc(size, s0)
    assert alloc.stats_and_snapshot() == before
    alloc.free(keep)


def test_B4_over_capacity_raises_with_sizes_and_changes_only_the_counters() -> None:
    alloc = CachingAllocator(0, 64 * MiB)
    s0 = FakeStream(0)
    live = alloc.malloc(30 * MiB, s0)
    live.buffer[:] = 42
    before, snap_before = checked(alloc)
    with pytest.raises(OutOfMemoryError) as info:
        alloc.malloc(40 * MiB, s0)
    error = info.value
    message = str(error)
    assert "MTIA out of memory. Tried to allocate 40.00 MiB" in message
    assert "total capacity of 64.00 MiB" in message and "34.00 MiB is free" in message
    assert "30.00 MiB is allocated" in message
    assert isinstance(error, MemoryError)
    assert (error.device, error.requested, error.capacity, error.free, error.allocated, error.reserved) == (
        0,
        40 * MiB,
        64 * MiB,
        34 * MiB,
        30 * MiB,
        30 * MiB,
    )
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == message and clone.free == error.free
    after, snap_after = checked(alloc)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"num_ooms", "num_alloc_retries", "dram"}
    assert after["num_ooms"] == 1 and after["dram"]["num_ooms"] == 1
    assert snap_after == snap_before
    assert (live.buffer == 42).all()


# --- B5 ------------------------------------------------------------------------------------------
def test_B5_double_foreign_and_offset_frees_and_record_stream_on_freed_change_nothing() -> None:
    """At the allocator: a DeviceArray owns its block and frees it exactly once, so the
    public API cannot express these mistakes (``DeviceArray`` has no ``free``)."""
    alloc = CachingAllocator(0, 1 * GiB)
    s0 = FakeStream(0)
    a = alloc.malloc(100, s0)
    keep = alloc.malloc(100, s0)
    pending = alloc.malloc(100, s0)
    alloc.record_stream(pending, FakeStream(9, busy=True))
    alloc.free(pending)  # one block of each state
    alloc.free(a)
    foreign = CachingAllocator(1, 1 * GiB).malloc(100, s0)
    offset = Block(keep.ptr + 512, keep.size - 512, 50, s0, keep._chunk)  # an offset pointer into a live block
    before = checked(alloc)
    for bad in (a, pending, foreign, offset):
        with pytest.raises(ValueError, match="invalid device pointer"):
            alloc.free(bad)
        with pytest.raises(ValueError, match="invalid device pointer"):
            alloc.record_stream(bad, FakeStream(1))
        assert checked(alloc) == before
    with pytest.raises(TypeError, match="invalid device pointer"):
        alloc.free(keep.ptr)
    with pytest.raises(TypeError, match="invalid device pointer"):
        alloc.record_stream(12345, FakeStream(1))
    with pytest.raises(TypeError, match="stream"):
        alloc.record_stream(keep, object())
    assert checked(alloc) == before
    alloc.free(keep)


# --- B6 ------------------------------------------------------------------------------------------
def test_B6_record_stream_on_the_allocation_stream_is_a_noop_and_a_view_protects_its_base() -> None:
    s, side = mtia_sync.Stream(), mtia_sync.Stream()
    with mtia_sync.stream(s):
        a = mtia.empty(MiB // 2, dtype=np.uint8)
    ptr = a.data_ptr()
    a.record_stream(s)  # the allocating stream: a no-op
    del a
    gc.collect()
    assert block_state(ptr)[0] == "inactive"  # freed at once
    assert mtia.memory_stats()["active.all.current"] == 0
    with mtia_sync.stream(s):
        b = mtia.empty(MiB // 2, dtype=np.uint8)
    base = b.data_ptr()
    view = b[4096:]
    assert view.data_ptr() == base + 4096
    gate = threading.Event()
    side.wait_stream(s)
    side.launch(gate.wait, 5)
    view.record_stream(side)  # a view with an offset: protects its whole base block (#27366)
    del b, view
    gc.collect()
    assert block_state(base) == ("active_pending_free", MiB // 2)
    with mtia_sync.stream(s):
        c = mtia.empty(MiB // 2, dtype=np.uint8)
    assert c.data_ptr() != base  # not reused while the side stream may use it
    gate.set()
    side.synchronize()
    assert block_state(base)[0] == "inactive"
    with mtia_sync.stream(s):
        d = mtia.empty(MiB // 2, dtype=np.uint8)
    assert d.data_ptr() == base
    del c, d


def test_B6_allocator_record_stream_on_the_allocating_stream_takes_no_marker() -> None:
    alloc = CachingAllocator(0, 1 * GiB)
    s0 = FakeStream(0)
    a = alloc.malloc(4096, s0)
    alloc.record_stream(a, FakeStream(0))  # same stream_id as the allocating stream
    alloc.free(a)
    assert s0.markers == []
    _, snap = checked(alloc)
    assert [b["state"] for b in snap["segments"][0]["blocks"]] == ["inactive"]


# --- B7 ------------------------------------------------------------------------------------------
def test_B7_configure_names_the_bad_setting_and_value_and_refuses_after_init() -> None:
    """``1.5`` (a float) raises ``TypeError``, not ``ValueError``: a wrong type (the
    message names the setting and the value all the same)."""
    with fresh_runtime():
        config = peek_config()
        for bad, error in ((-1, ValueError), (0, ValueError), (1.5, TypeError), ("lots", ValueError),
                           ("8XB", ValueError), (10**20, ValueError), ("999999TiB", ValueError)):  # fmt: skip
            with pytest.raises(error, match=f"device_memory.*{bad!r}|device_memory={bad!r}"):
                mtia.configure(device_memory=bad)
            assert peek_config() == config  # nothing changed
        with pytest.raises(ValueError, match="device_count=0"):
            mtia.configure(device_count=0)
        with pytest.raises(ValueError, match="workers=1000000"):
            mtia.configure(workers=10**6)
        with pytest.raises(TypeError, match="unknown setting 'bogus'"):
            mtia.configure(bogus=1)
        with pytest.raises(ValueError):
            mtia.configure(device_count=2, workers=-1)  # all or nothing: device_count is not applied
        assert peek_config() == config
        mtia.configure(device_count=3, device_memory="256MiB", workers=1)
        assert mtia.device_count() == 3
        mtia.init()
        assert mtia.get_device_properties(2)["total_memory"] == 256 << 20
        with pytest.raises(RuntimeError, match="before the runtime initialises"):
            mtia.configure(workers=2)
        assert mtia.get_device_properties()["workers"] == 1


def test_B7_fractional_byte_count_is_refused() -> None:
    with fresh_runtime(), pytest.raises(ValueError, match="device_memory='1.5'"):
        mtia.configure(device_memory="1.5")


def test_B7_env_device_memory_values_are_refused_at_init() -> None:
    result = run_python(
        """
        import os
        import mtia_async as mtia
        from mtia_async.testing import reset_runtime
        for value in ("-1", "0", "lots", "8XB", "999999TiB"):
            os.environ["MTIA_ASYNC_DEVICE_MEMORY"] = value
            try:
                mtia.init()
                print(value, "accepted")
            except ValueError as exc:
                print(value, f"MTIA_ASYNC_DEVICE_MEMORY={value!r}" in str(exc), mtia.is_initialized())
            reset_runtime()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == [f"{v} True False" for v in ("-1", "0", "lots", "8XB", "999999TiB")]


# --- B8 ------------------------------------------------------------------------------------------
BAD_ENV = {
    "negative": "'-1'",
    "non-numeric": "'lots'",
    "absurdly-large": "'9' * 40",
    "1MB-string": "'x' * 1_000_000",
}


@pytest.mark.parametrize("kind", list(BAD_ENV))
@pytest.mark.parametrize("var", ["MTIA_ASYNC_DEVICE_COUNT", "MTIA_ASYNC_DEVICE_MEMORY", "MTIA_ASYNC_WORKERS"])
def test_B8_bad_env_var_never_breaks_import_and_init_names_it(var: str, kind: str) -> None:
    """The value is set inside the child: an exec'd environment string is capped at
    128 KiB by the kernel, ``os.environ`` is not."""
    result = run_python(
        f"""
        import os
        os.environ[{var!r}] = value = {BAD_ENV[kind]}
        import mtia_async
        print("imported")
        try:
            mtia_async.init()
        except ValueError as exc:
            message = str(exc)
            print("ValueError", message.startswith({var!r} + "=") and value[:20] in message, len(message) < 500)
        else:
            print("no error")
        print("initialized", mtia_async.is_initialized())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == ["imported", "ValueError True True", "initialized False"]


def test_B8_empty_env_values_mean_the_defaults() -> None:
    result = run_python(
        """
        import os
        import mtia_async as m
        print(m.device_count(), m.get_device_properties()["total_memory"], m.get_device_properties()["workers"])
        print(os.cpu_count(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        """,
        env={"MTIA_ASYNC_DEVICE_COUNT": "", "MTIA_ASYNC_DEVICE_MEMORY": " ", "MTIA_ASYNC_WORKERS": ""},
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split("\n")[:2]
    count, memory, workers = map(int, first.split())
    cores, host = map(int, second.split())
    assert (count, memory, workers) == (1, min(16 << 30, host), max(2, cores))


def test_B8_good_env_values_configure_the_runtime() -> None:
    result = run_python(
        """
        import mtia_async as m
        print(m.device_count(), m.get_device_properties(2)["total_memory"], m.get_device_properties()["workers"])
        """,
        env={"MTIA_ASYNC_DEVICE_COUNT": "3", "MTIA_ASYNC_DEVICE_MEMORY": "512MiB", "MTIA_ASYNC_WORKERS": "3"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", str(512 << 20), "3"]


# --- B9 ------------------------------------------------------------------------------------------
def test_B9_bad_rng_states_and_seeds_are_refused_byte_identically() -> None:
    """``manual_seed(-1)`` is accepted: it wraps to 2**64 - 1, as torch does (choice)."""
    with seeded(9):
        mtia.randn(7)
        good = mtia.get_rng_state()
        before = [s.tobytes() for s in mtia.get_rng_state_all()]
        bad_states: list[tuple[object, type]] = [
            (good.astype(np.float32), TypeError),
            (good.astype(np.float64), TypeError),
            (list(good), TypeError),
            ("x" * 16, TypeError),
            (good.tobytes(), TypeError),
            (good[:15].copy(), ValueError),
            (np.concatenate([good, good[:1]]), ValueError),
            (good.astype(np.int64), ValueError),
        ]
        for bad, error in bad_states:
            with pytest.raises(error):
                mtia.set_rng_state(bad)
            assert [s.tobytes() for s in mtia.get_rng_state_all()] == before
        for seed, error in ((2**64, ValueError), (-(2**63) - 1, ValueError), (1.5, TypeError), ("1", TypeError),
                            (True, TypeError), (None, TypeError)):  # fmt: skip
            for fn in (mtia.manual_seed, mtia.manual_seed_all):
                with pytest.raises(error):
                    fn(seed)
                assert [s.tobytes() for s in mtia.get_rng_state_all()] == before
        mtia.manual_seed(-1)
        assert mtia.initial_seed() == 2**64 - 1
        # Random bytes: any 16 bytes with a non-negative offset are a state (torch's rule).
        rs = np.random.default_rng(9)
        for _ in range(200):
            raw = rs.integers(0, 256, 16, dtype=np.uint8)
            current = mtia.get_rng_state().tobytes()
            if int.from_bytes(raw[8:].tobytes(), "little", signed=True) < 0:
                with pytest.raises(ValueError, match="offset"):
                    mtia.set_rng_state(raw)
                assert mtia.get_rng_state().tobytes() == current
            else:
                mtia.set_rng_state(raw)
                assert mtia.get_rng_state().tobytes() == raw.tobytes()
        # A get -> set round trip reproduces the sequence.
        state = mtia.get_rng_state()
        x = mtia.randn(100).numpy()
        mtia.randn(5)
        mtia.set_rng_state(state)
        np.testing.assert_array_equal(mtia.randn(100).numpy(), x)


def test_B9_state_set_before_init_is_cloned() -> None:
    with fresh_runtime(device_count=1, workers=2):
        state = np.random.default_rng(3).integers(0, 128, 16, dtype=np.uint8)  # offset byte 15 < 128: >= 0
        expected = state.tobytes()
        mtia.set_rng_state(state)
        state[:] = 0  # mutating the caller's buffer after the call has no effect
        assert not mtia.is_initialized()
        assert mtia.get_rng_state().tobytes() == expected


# --- B10 -----------------------------------------------------------------------------------------
async def _coro_kernel() -> None:
    pass


def _gen_kernel():  # type: ignore[no-untyped-def]
    yield 1


async def _agen_kernel():  # type: ignore[no-untyped-def]
    yield 1


class _AsyncCallable:
    async def __call__(self) -> None:
        pass


@pytest.mark.parametrize(
    ("kernel", "match"),
    [
        (None, "kernel must be a callable"),
        (42, "kernel must be a callable"),
        ("np.add", "kernel must be a callable"),
        (_coro_kernel, "async def or generator"),
        (_gen_kernel, "async def or generator"),
        (_agen_kernel, "async def or generator"),
        (_AsyncCallable(), "async def or generator"),
        (functools.partial(_coro_kernel), "async def or generator"),
    ],
    ids=["None", "int", "str", "async-def", "generator", "async-generator", "async-__call__", "partial-of-async"],
)
def test_B10_bad_kernels_raise_type_error_in_the_caller_and_never_reach_a_worker(kernel: object, match: str) -> None:
    s = mtia_sync.Stream()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a RuntimeWarning
        with pytest.raises(TypeError, match=match):
            s.launch(kernel)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=match):
            mtia.launch(kernel)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=match):
            s.launch(kernel, 1, key=2)  # type: ignore[arg-type]
        gc.collect()
    assert s.query() and mtia_sync.default_stream().query()
    s.synchronize()  # nothing failed in a worker
    mtia_sync.synchronize()


# --- B11 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"enabled": "bogus"}, ValueError, "enabled must be 'all', 'state' or None.*'bogus'"),
        ({"max_entries": -1}, ValueError, "max_entries.*-1"),
        ({"max_entries": 1.5}, ValueError, "max_entries.*1.5"),
        ({"max_entries": True}, ValueError, "max_entries.*True"),
        ({"stacks": "cpp"}, ValueError, "stacks.*'cpp'"),
        ({"context": "xyz"}, ValueError, "context.*'xyz'"),
        ({"skip_actions": ["nope"]}, ValueError, r"skip_actions.*\['nope'\]"),
    ],
)
def test_B11_record_memory_history_rejects_bad_arguments_and_changes_nothing(
    kwargs: dict[str, Any], error: type, match: str
) -> None:
    mtia.record_memory_history("all", max_entries=50)
    keep = mtia.zeros(8)
    before = mtia.snapshot()
    levels = [dev.allocator._context for dev in get_runtime().devices]
    with pytest.raises(error, match=match):
        mtia.record_memory_history(**kwargs)
    assert [dev.allocator._context for dev in get_runtime().devices] == levels == [2, 2]
    after = mtia.snapshot()
    assert after["segments"] == before["segments"]
    trace = after["device_traces"][0]
    assert trace[:-1] == before["device_traces"][0]  # only the new "snapshot" entry was added
    assert trace[-1]["action"] == "snapshot"
    del keep


def test_B11_snapshot_before_init_is_empty_and_does_not_initialise() -> None:
    assert not mtia.is_initialized()
    assert mtia.snapshot() == {"segments": [], "device_traces": [[], []]}
    assert not mtia.is_initialized()
    result = run_python(
        """
        import mtia_async as mtia
        print(mtia.snapshot(), mtia.is_initialized())
        """,
        env={"MTIA_ASYNC_DEVICE_COUNT": "3"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'segments': [], 'device_traces': [[], [], []]} False"
