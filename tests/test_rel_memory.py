"""Reliability of memory: catalogue rows M1-M11 (see docs/reliability.md).

M5 and M6 are checked after every step of the state machine in
``test_rel_statemachine.py`` (M6 also under concurrency, ``test_C7_*``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import threading
import time
import weakref
from typing import Any

import numpy as np
import pytest
from _support import (
    GiB,
    KiB,
    MiB,
    FakeStream,
    Payload,
    assert_reset,
    boom,
    checked,
    device_usage,
    join_all,
    no_leaks,
    seeded,
    state_at,
    stats_of,
)

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async._memory import CachingAllocator
from mtia_async._core.runtime import get_runtime
from mtia_async.testing import fresh_runtime, worker_threads


def touch(view: np.ndarray, payload: object) -> None:
    view[:1] = 1


# --- M1 ------------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
async def test_M1_100k_alloc_kernel_free_cycles_return_every_counter_to_baseline() -> None:
    """Also the leak checks after 10^5 cycles: bytes, segments, workers, tasks, kernel arguments."""
    streams = [mtia.Stream(device=0) for _ in range(4)]
    await mtia.synchronize(0)
    tasks_before = len(asyncio.all_tasks())
    refs: list[weakref.ref[Payload]] = []
    with no_leaks() as record:
        for i in range(100_000):
            s = streams[i % 4]
            with mtia.stream(s):
                a = mtia.empty(64 + (i % 13) * 997, dtype=np.uint8)
                payload = Payload()
                if i % 1000 == 0:
                    refs.append(weakref.ref(payload))
                s.launch(touch, a, payload)
            del a, payload
            if i % 5000 == 0:
                await asyncio.gather(*(st.synchronize() for st in streams))
        await mtia.synchronize(0)
        stats = mtia.memory_stats(0)
        assert stats["allocation.all.allocated"] >= 100_000
    assert record["after"] == record["before"]
    after = mtia.memory_stats(0)
    for key in ("allocated_bytes", "active_bytes", "requested_bytes", "reserved_bytes", "segment", "allocation"):
        assert after[f"{key}.all.current"] == 0, key
    assert mtia.snapshot()["segments"] == []
    assert len(asyncio.all_tasks()) == tasks_before
    assert [r() for r in refs] == [None] * len(refs)
    assert len(worker_threads()) <= 2  # the workers of mtia:0, capped, not one per stream or cycle


# --- M2 ------------------------------------------------------------------------------------------
def test_M2_stream_and_event_cycles_and_runtime_restarts_leave_no_threads() -> None:
    """Also: kernels still queued at a shutdown are dropped with their arguments."""
    baseline_names = {t.name for t in threading.enumerate()}
    baseline_count = threading.active_count()
    refs: list[weakref.ref[Payload]] = []
    for _ in range(3):
        with fresh_runtime(device_count=2, workers=2):
            for i in range(1000):
                s = mtia_sync.Stream(device=i % 2)
                e = s.record_event()
                if i % 100 == 0:
                    s.launch(time.sleep, 0.001)
                    e.synchronize()
            keep = mtia.zeros(1000, device=1)
            mtia_sync.synchronize(0)
            mtia_sync.synchronize(1)
            assert len(worker_threads()) <= 4
            del keep
            gate = threading.Event()
            s.launch(gate.wait, 5)
            for _ in range(100):  # queued behind the gate when the runtime shuts down
                payload = Payload()
                refs.append(weakref.ref(payload))
                s.launch(payload, mtia.zeros(10, device=s.device_index))
            del payload, s, e
            releaser = threading.Timer(0.05, gate.set)
            releaser.start()
        join_all([releaser])
        gc.collect()
        assert [r() for r in refs] == [None] * len(refs)
        assert worker_threads() == []
        assert mtia.memory_stats() == {}  # the next runtime starts from nothing
        assert threading.active_count() == baseline_count
    assert {t.name for t in threading.enumerate()} == baseline_names


def test_M2_arrays_that_outlive_their_runtime_free_quietly_and_shutdown_never_deadlocks() -> None:
    """Regression. After ``record_stream``, freeing an array whose runtime was shut down
    asked the dead stream for a marker: ``RuntimeError`` from ``__del__`` (or from the
    next runtime's ``memory_stats()``, for a block a worker dropped); and a shutdown that
    dropped a queued kernel holding such an array's last reference deadlocked (the
    finalizer ran under the stream's lock)."""
    with fresh_runtime(device_count=1, workers=2):
        s, side = mtia_sync.Stream(), mtia_sync.Stream()
        with mtia_sync.stream(s):
            kept = mtia.zeros(1000)  # outlives the runtime
            queued = mtia.zeros(1000)  # its last reference: a kernel still queued at shutdown
            dropped = mtia.zeros(1000)  # its last reference dropped on a worker thread
        for a in (kept, queued, dropped):
            a.record_stream(side)
        s.launch(np.add, dropped, 1, out=dropped)
        gate = threading.Event()
        side.launch(gate.wait, 5)
        side.launch(np.add, queued, 1, out=queued)
        del queued, dropped, a
        s.synchronize()  # the worker dropped `dropped`; nothing has settled it yet
        releaser = threading.Timer(0.2, gate.set)
        releaser.start()
    join_all([releaser])
    mtia.configure(device_count=2, device_memory="1GiB", workers=2)
    del kept
    gc.collect()
    assert mtia.memory_stats() == {}  # settles the old runtime's blocks without raising
    mtia.init()
    assert mtia.memory_stats()["allocation.all.current"] == 0


# --- M3 ------------------------------------------------------------------------------------------
def test_M3_drained_streams_and_a_closed_loop_leave_no_task_and_no_asyncio_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> tuple[int, int]:
        baseline = len(asyncio.all_tasks())
        streams = [mtia.Stream() for _ in range(8)]

        async def worker(k: int) -> None:
            s = streams[k % 8]
            s.launch(time.sleep, 0.001 * (k % 3))
            if k % 10 == 0:
                s.launch(boom)
                with pytest.raises(mtia.KernelError):
                    await s.synchronize()
            await s.record_event()
            await (mtia.zeros(16) + k).to_host()

        async def sleeper() -> None:
            s = streams[0]
            s.launch(time.sleep, 0.05)
            await s.synchronize()

        doomed = [asyncio.create_task(sleeper()) for _ in range(10)]
        await asyncio.sleep(0.01)
        for t in doomed:
            t.cancel()
        await asyncio.gather(*(worker(k) for k in range(100)), *doomed, return_exceptions=True)
        await mtia.synchronize()
        await mtia.synchronize(1)
        return baseline, len(asyncio.all_tasks())

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        baseline, after = asyncio.run(main())
        gc.collect()
    assert after == baseline == 1  # just main()
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert not [m for m in messages if "Task was destroyed but it is pending" in m], messages
    assert not [m for m in messages if "Task exception was never retrieved" in m], messages
    assert not [m for m in messages if "Exception in callback" in m], messages


# --- M4 ------------------------------------------------------------------------------------------
def _closure_calling(target: Payload) -> Any:
    return lambda: target()


def test_M4_kernel_arguments_arrays_closures_and_events_die_after_completion() -> None:
    s = mtia_sync.Stream()
    arr = np.ones(10)
    dev = mtia.zeros(10)
    kernel = Payload()
    closure_target = Payload()
    e = mtia_sync.Event()
    ae = mtia.Event()
    refs = [weakref.ref(x) for x in (arr, dev, kernel, closure_target, e, ae)]
    s.launch(kernel, arr, dev, key=arr)
    s.launch(_closure_calling(closure_target))
    e.record(s)
    ae.record(s)
    s.launch(time.sleep, 0.01)
    s.wait_event(e)
    e.synchronize()
    s.synchronize()
    del arr, dev, kernel, closure_target, e, ae
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)


def test_M4_failed_kernel_arguments_die_once_reported() -> None:
    s = mtia_sync.Stream()
    arr = np.ones(10)
    ref = weakref.ref(arr)
    s.launch(boom, arr)
    del arr
    with pytest.raises(mtia_sync.KernelError):
        s.synchronize()
    mtia_sync.synchronize()
    s.synchronize()
    gc.collect()
    # The failure keeps the traceback (and so the frame's arguments) until it is
    # reported; once reported and the error object dropped, nothing holds it.
    assert ref() is None


def test_M4_tasks_and_the_loop_are_collectable_after_asyncio_run() -> None:
    loop_ref: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    task_refs: list[weakref.ref[asyncio.Task[None]]] = []

    async def main() -> int:
        loop_ref.append(weakref.ref(asyncio.get_running_loop()))
        s = mtia.Stream()
        for i in range(100):
            s.launch(np.add, 1, i)

        async def wait() -> None:
            await s.record_event()

        tasks = [asyncio.create_task(wait()) for _ in range(10)]
        task_refs.extend(weakref.ref(t) for t in tasks)
        await s.synchronize()
        await asyncio.gather(*tasks)
        return len(asyncio.all_tasks())

    assert asyncio.run(main()) == 1
    gc.collect()
    assert loop_ref[0]() is None
    assert [r() for r in task_refs] == [None] * 10


# --- M7 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "count", "allocated", "segments"),
    [
        (1, 1, 512, [("small", 2 * MiB)]),
        (512, 1, 512, [("small", 2 * MiB)]),
        (513, 1, 1024, [("small", 2 * MiB)]),
        (1 * MiB, 2, 2 * MiB, [("small", 2 * MiB)]),
        (1 * MiB, 3, 3 * MiB, [("small", 2 * MiB), ("small", 2 * MiB)]),
        (1 * MiB + 1, 1, 1 * MiB + 512, [("large", 20 * MiB)]),
        (10 * MiB - 1, 1, 10 * MiB, [("large", 20 * MiB)]),
        (10 * MiB + 512, 1, 10 * MiB + 512, [("large", 12 * MiB)]),
    ],
)
def test_M7_boundary_sizes_give_torch_segments(
    size: int, count: int, allocated: int, segments: list[tuple[str, int]]
) -> None:
    alloc = CachingAllocator(0, 1 * GiB)
    s0 = FakeStream(0)
    blocks = [alloc.malloc(size, s0) for _ in range(count)]
    stats, snap = checked(alloc)
    assert stats["allocated_bytes.all.current"] == allocated
    assert stats["requested_bytes.all.current"] == size * count
    assert stats["reserved_bytes.all.current"] == sum(n for _, n in segments)
    assert stats["segment.all.current"] == len(segments)
    assert [(s["segment_type"], s["total_size"]) for s in snap["segments"]] == segments
    assert all(b.size % 512 == 0 and b.requested_size == size for b in blocks)


def test_M7_one_byte_moves_exactly_512_bytes_and_one_2mib_segment() -> None:
    alloc = CachingAllocator(0, 1 * GiB)
    s0 = FakeStream(0)
    before = stats_of(alloc)
    block = alloc.malloc(1, s0)
    after = stats_of(alloc)
    changed = {k: (before[k], after[k]) for k in before if k != "dram" and before[k] != after[k]}
    moved = {
        "allocation": 1,
        "active": 1,
        "allocated_bytes": 512,
        "active_bytes": 512,
        "requested_bytes": 1,
        "segment": 1,
        "reserved_bytes": 2 * MiB,
        "inactive_split": 1,
        "inactive_split_bytes": 2 * MiB - 512,
    }
    assert changed == {
        **{
            f"{name}.{pool}.{field}": (0, delta)
            for name, delta in moved.items()
            for pool in ("all", "small_pool")
            for field in ("current", "peak", "allocated")
        },
        "num_device_alloc": (0, 1),
    }
    assert after["dram"] == {
        "allocated_bytes": 512,
        "peak_bytes": 512,
        "reserved_bytes": 2 * MiB,
        "peak_reserved_bytes": 2 * MiB,
        "num_allocs": 1,
        "num_frees": 0,
        "num_ooms": 0,
    }
    assert after["max_split_size"] == -1
    assert [k for k in after if k != "dram"] == sorted(k for k in after if k != "dram")
    alloc.free(block)
    stats = stats_of(alloc)
    assert stats["allocated_bytes.all.current"] == 0 and stats["allocated_bytes.all.freed"] == 512
    assert stats["inactive_split.all.current"] == 0  # merged back into one whole-segment block
    assert stats["reserved_bytes.all.current"] == 2 * MiB  # cached, not released


def test_M7_device_arrays_follow_the_boundary_table() -> None:
    for nbytes, segments in ((1, [2 * MiB]), (MiB + 1, [20 * MiB]), (10 * MiB - 1, [20 * MiB]), (10 * MiB + 512, [12 * MiB])):
        a = mtia.empty(nbytes, dtype=np.uint8)
        assert [s["total_size"] for s in mtia.snapshot()["segments"]] == segments, nbytes
        assert mtia.memory_stats()["requested_bytes.all.current"] == nbytes
        del a
        gc.collect()
        mtia.empty_cache()


# --- M8 ------------------------------------------------------------------------------------------
def test_M8_pending_cross_stream_free_under_pressure_succeeds_on_the_first_call() -> None:
    """torch's ``test_caching_allocator_record_stream_oom`` (#189504) on real streams.

    The catalogue's ``active_awaiting_free`` is torch's ``active_pending_free`` (the name
    its snapshots use). ``empty_cache()`` never waits (the contract): it leaves a pending
    block's segment and releases it once the stream is done; an OOM retry does wait.
    """
    with fresh_runtime(device_count=1, device_memory="24MiB", workers=2):
        s, side = mtia_sync.Stream(), mtia_sync.Stream()
        with mtia_sync.stream(s):
            a = mtia.empty(16 * MiB, dtype=np.uint8)
        gate = threading.Event()
        side.wait_stream(s)
        side.launch(gate.wait, 5)
        a.record_stream(side)
        ptr = a.data_ptr()
        del a
        gc.collect()
        assert state_at(ptr) == "active_pending_free"
        t0 = time.perf_counter()
        mtia.empty_cache()  # never waits: the pending block's segment stays
        assert time.perf_counter() - t0 < 0.5
        assert state_at(ptr) == "active_pending_free"
        releaser = threading.Timer(0.1, gate.set)
        releaser.start()
        with mtia_sync.stream(s):
            b = mtia.empty(16 * MiB, dtype=np.uint8)  # 16 + 16 > 24 MiB: the retry waits for side
        join_all([releaser])
        assert b.data_ptr() == ptr
        stats = mtia.memory_stats()
        assert (stats["num_alloc_retries"], stats["num_sync_all_streams"], stats["num_ooms"]) == (1, 1, 0)
        # Then a pending free becomes inactive once the side stream's work is done...
        gate2 = threading.Event()
        side.wait_stream(s)
        side.launch(gate2.wait, 5)
        b.record_stream(side)
        del b
        gc.collect()
        assert state_at(ptr) == "active_pending_free"
        gate2.set()
        side.synchronize()
        assert state_at(ptr) == "inactive"
        # ...and a pending block asked to be released by empty_cache() goes once it is done.
        with mtia_sync.stream(s):
            c = mtia.empty(16 * MiB, dtype=np.uint8)
        gate3 = threading.Event()
        side.launch(gate3.wait, 5)
        c.record_stream(side)
        del c
        gc.collect()
        mtia.empty_cache()
        assert state_at(ptr) == "active_pending_free"
        gate3.set()
        side.synchronize()
        assert state_at(ptr) == "released" and mtia.memory_reserved() == 0


def test_M8_allocator_oom_retry_waits_for_a_pending_free_and_succeeds_first_call() -> None:
    alloc = CachingAllocator(0, 2 * MiB)
    s0, side = FakeStream(0), FakeStream(5, busy=True)
    a = alloc.malloc(1 * MiB, s0)
    b = alloc.malloc(1 * MiB, s0)
    alloc.record_stream(a, side)
    alloc.free(a)
    c = alloc.malloc(1 * MiB, s0)  # the device is full; waiting for the side stream frees a
    assert c.ptr == a.ptr and side.markers[0].waited
    stats, _ = checked(alloc)
    assert (stats["num_alloc_retries"], stats["num_sync_all_streams"], stats["num_ooms"]) == (1, 1, 0)
    alloc.free(b)
    alloc.free(c)


def test_M8_allocator_empty_cache_never_waits_and_releases_after_the_marker() -> None:
    alloc = CachingAllocator(0, 1 * GiB)
    s0, side = FakeStream(0), FakeStream(4, busy=True)
    keep = alloc.malloc(100, FakeStream(1))
    a = alloc.malloc(100, s0)
    alloc.record_stream(a, side)
    alloc.free(a)
    alloc.empty_cache()  # returns at once; the pending block's segment stays
    stats = stats_of(alloc)
    assert stats["segment.all.current"] == 2 and not side.markers[0].waited
    finisher = threading.Thread(target=side.finish)
    finisher.start()
    join_all([finisher])
    stats, snap = checked(alloc)
    assert stats["segment.all.current"] == 1 and [s["stream"] for s in snap["segments"]] == [1]
    assert stats["num_device_free"] == 1
    alloc.free(keep)


# --- M9 ------------------------------------------------------------------------------------------
def test_M9_reset_peak_memory_stats_sets_every_peak_to_current_and_nothing_else() -> None:
    alloc = CachingAllocator(0, 1 * GiB)
    s0 = FakeStream(0)
    blocks = [alloc.malloc(n, s0) for n in (100, 5 * MiB, 2000, 30 * MiB)]
    for b in blocks[1:]:
        alloc.free(b)
    alloc.empty_cache()
    before = stats_of(alloc)
    assert before["allocated_bytes.all.peak"] > before["allocated_bytes.all.current"]
    alloc.reset_peak_memory_stats()
    assert_reset(before, stats_of(alloc))
    assert stats_of(alloc)["dram"]["peak_bytes"] == stats_of(alloc)["dram"]["allocated_bytes"] == 512
    alloc.malloc(4 * KiB, s0)
    assert stats_of(alloc)["allocated_bytes.all.peak"] == 512 + 4 * KiB


def test_M9_public_reset_peak_memory_stats_per_device() -> None:
    keep = [mtia.zeros(n, dtype=np.uint8, device=d) for d in (0, 1) for n in (100, 3 * MiB)]
    big = [mtia.zeros(30 * MiB, dtype=np.uint8, device=d) for d in (0, 1)]
    mtia_sync.synchronize(0)
    mtia_sync.synchronize(1)
    del big
    gc.collect()
    mtia.empty_cache()
    for d in (0, 1):
        before = mtia.memory_stats(d)
        assert mtia.max_memory_allocated(d) > mtia.memory_allocated(d)
        mtia.reset_peak_memory_stats(d)
        assert_reset(before, mtia.memory_stats(d))
        assert mtia.max_memory_allocated(d) == mtia.memory_allocated(d)
        assert mtia.max_memory_reserved(d) == mtia.memory_reserved(d)
    del keep


# --- M10 -----------------------------------------------------------------------------------------
def test_M10_history_actions_addresses_and_disabling() -> None:
    alloc = CachingAllocator(0, 1 * GiB)
    s0 = FakeStream(0)
    alloc.record_memory_history("all")
    block = alloc.malloc(100, s0)
    snap = alloc.snapshot()
    [seg] = snap["segments"]
    assert seg["blocks"][0]["address"] == block.ptr and seg["address"] == block.ptr
    frames = seg["blocks"][0]["frames"]
    assert frames[0]["name"] == "test_M10_history_actions_addresses_and_disabling"
    assert frames[0]["filename"] == __file__
    assert all("mtia_async" not in f["filename"] for f in frames)
    alloc.free(block)
    alloc.empty_cache()
    trace = alloc.snapshot()["device_traces"][0]
    assert [e["action"] for e in trace] == [
        "segment_alloc",
        "alloc",
        "snapshot",
        "free_requested",
        "free_completed",
        "segment_free",
        "snapshot",
    ]
    assert [e["addr"] for e in trace if e["action"] != "snapshot"] == [block.ptr] * 5
    assert [e["size"] for e in trace[:2]] == [2 * MiB, 100]
    assert all(e["stream"] == 0 and isinstance(e["time_us"], int) for e in trace)
    alloc.record_memory_history(None)
    assert alloc.snapshot()["device_traces"] == [[]]


@pytest.mark.timeout(300)
def test_M10_trace_never_exceeds_max_entries_over_100k_ops() -> None:
    n = 100
    mtia.record_memory_history("all", max_entries=n)
    traces = [dev.allocator._trace for dev in get_runtime().devices]
    with seeded(10) as rng:
        live: list[Any] = []
        for i in range(100_000):
            if rng.random() < 0.5 or not live:
                live.append(mtia.empty(rng.randrange(1, 3 * MiB), dtype=np.uint8, device=i % 2))
            else:
                del live[rng.randrange(len(live))]
            if i % 97 == 0:
                mtia.empty_cache()
            assert len(traces[0]) <= n and len(traces[1]) <= n
        snap = mtia.snapshot()
        assert [len(t) for t in snap["device_traces"]] == [n, n]
        a = mtia.empty(100, dtype=np.uint8)
        last = [e for e in mtia.snapshot()["device_traces"][0] if e["action"] == "alloc"][-1]
        assert last["addr"] == a.data_ptr()  # the block address is the handle
        del a, live
    mtia.record_memory_history(None)  # disabling clears the trace
    assert mtia.snapshot()["device_traces"] == [[], []]
    gc.collect()
    mtia.empty_cache()
    assert mtia.snapshot() == {"segments": [], "device_traces": [[], []]}


def test_M10_ring_buffer_and_state_mode_at_the_allocator() -> None:
    alloc = CachingAllocator(0, 1 * GiB)
    s0 = FakeStream(0)
    alloc.record_memory_history("all", max_entries=10)
    rng = random.Random(5)
    live: list[Any] = []
    for _ in range(500):
        if rng.random() < 0.5 or not live:
            live.append(alloc.malloc(rng.randrange(1, 3 * MiB), s0))
        else:
            alloc.free(live.pop(rng.randrange(len(live))))
        assert len(alloc._trace) <= 10
    assert len(alloc.snapshot()["device_traces"][0]) == 10
    alloc.record_memory_history("state")
    block = alloc.malloc(100, s0)
    snap = alloc.snapshot()
    assert snap["device_traces"] == [[]]
    mine = [b for s in snap["segments"] for b in s["blocks"] if b["address"] == block.ptr]
    assert mine[0]["frames"][0]["name"] == "test_M10_ring_buffer_and_state_mode_at_the_allocator"


# --- M11 -----------------------------------------------------------------------------------------
def test_M11_leak_check_fails_a_deliberate_leak_with_the_byte_count() -> None:
    kept: list[Any] = []
    with pytest.raises(AssertionError, match=r"leaked 4096 bytes on mtia:1 \(allocated_bytes.all.current 0 -> 4,096"):
        with no_leaks():
            kept.append(mtia.empty(4096, dtype=np.uint8, device=1))
            mtia.empty(100, dtype=np.uint8)  # freed: not a leak
    assert device_usage()[1]["allocated_bytes.all.current"] == 4096
    kept.clear()
    with no_leaks():  # balanced: passes, and says what it compared
        a = mtia.zeros(1000)
        del a


def test_M11_leak_check_flags_a_leaked_thread() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="leaky-thread")
    try:
        with pytest.raises(AssertionError, match="leaked threads: \\['leaky-thread'\\]"):
            with no_leaks():
                t.start()
    finally:
        stop.set()
        join_all([t])


def test_M11_exception_inside_the_checked_region_propagates_unchanged() -> None:
    kept: list[Any] = []
    error = ValueError("the test's own failure")
    with pytest.raises(ValueError) as info:
        with no_leaks():
            kept.append(mtia.empty(4096, dtype=np.uint8))  # leaked as well, but not reported
            raise error
    assert info.value is error
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert str(info.value) == "the test's own failure"
    kept.clear()
