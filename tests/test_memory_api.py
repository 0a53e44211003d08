"""The memory API of both facades: statistics, history, snapshots, observers, before init,
``record_stream``, and allocation from many threads and tasks at once.

Catalogue rows: B4, B6, B11, C6, C7, C9, F4, F13, M1, M7, M8, M9, M10. The
allocator-level parts of B4-B6 and M7-M10 are in test_allocator.py.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import pickle
import random
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import (
    GiB,
    MiB,
    Payload,
    assert_reset,
    block_state,
    checked,
    join_all,
    no_leaks,
    run_python,
    seeded,
    state_at,
    wait_until,
)

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async import OutOfMemoryError
from mtia_async._core.runtime import get_runtime
from mtia_async.testing import check_invariants, fresh_runtime, worker_threads


MEMORY_API = [
    "memory_stats", "memory_allocated", "max_memory_allocated", "memory_reserved", "max_memory_reserved",
    "reset_peak_memory_stats", "mem_get_info", "memory_summary", "empty_cache", "record_memory_history",
    "snapshot", "attach_out_of_memory_observer", "dump_snapshot",
]  # fmt: skip


def _state(snap: dict[str, Any]) -> tuple[Any, Any]:
    """A snapshot's segments and traces (its ``allocator_settings`` never change)."""
    return snap["segments"], snap["device_traces"]


def test_both_facades_export_the_same_memory_functions() -> None:
    for name in MEMORY_API + ["DeviceArray", "asarray", "empty", "zeros", "ones", "full"]:
        assert getattr(mtia, name) is getattr(mtia_sync, name), name
        assert name in mtia.__all__ and name in mtia_sync.__all__


def test_before_init_counters_are_zero_without_initialising() -> None:
    assert not mtia.is_initialized()
    assert mtia.memory_stats() == {}
    assert mtia_sync.memory_stats(1) == {}
    for fn in (mtia.memory_allocated, mtia.max_memory_allocated, mtia.memory_reserved, mtia.max_memory_reserved):
        assert fn() == 0
        assert fn("mtia:1") == 0
    mtia.reset_peak_memory_stats()
    mtia.empty_cache()
    assert _state(mtia.snapshot()) == ([], [[], []])
    with pytest.raises(ValueError, match=r"device 5 is out of index range: expected 0..1"):
        mtia.memory_allocated(5)
    with pytest.raises(ValueError, match="Invalid device string: 'mtia:x'"):
        mtia.memory_stats("mtia:x")
    assert not mtia.is_initialized()


def test_before_init_in_a_fresh_process() -> None:
    result = run_python(
        """
        import mtia_async as mtia
        assert mtia.memory_stats() == {} and mtia.memory_allocated() == 0 and mtia.max_memory_reserved() == 0
        assert not mtia.is_initialized()
        mtia.record_memory_history(max_entries=10)
        assert mtia.is_initialized()
        print("ok")
        """,
        env={"MTIA_ASYNC_DEVICE_COUNT": "1", "MTIA_ASYNC_WORKERS": "2"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_observer_attachment_initialises() -> None:
    assert not mtia.is_initialized()
    mtia.attach_out_of_memory_observer(lambda *args: None)
    assert mtia.is_initialized()
    with pytest.raises(TypeError, match="observer must be callable, got int 3"):
        mtia.attach_out_of_memory_observer(3)  # type: ignore[arg-type]


def test_counters_follow_arrays() -> None:
    a = mtia.empty(1000, dtype=np.uint8)  # 1024 bytes after rounding, in a 2 MiB segment
    assert mtia.memory_allocated() == 1024
    assert mtia.memory_reserved() == 2 * MiB
    b = mtia.empty(3 * MiB // 4, dtype=np.float32)  # 3 MiB: a 20 MiB large segment
    assert mtia.memory_allocated() == 1024 + 3 * MiB
    assert mtia.memory_reserved() == 22 * MiB
    assert mtia.memory_allocated(1) == 0
    c = mtia.empty(10, device=1)
    assert mtia.memory_allocated(1) == 512 and mtia.memory_allocated(0) == 1024 + 3 * MiB
    stats = mtia.memory_stats()
    assert stats["allocation.all.current"] == 2
    assert stats["allocated_bytes.large_pool.current"] == 3 * MiB
    assert stats["dram"]["allocated_bytes"] == 1024 + 3 * MiB
    del b
    gc.collect()
    assert mtia.memory_allocated() == 1024
    assert mtia.max_memory_allocated() == 1024 + 3 * MiB
    assert mtia.max_memory_reserved() == 22 * MiB
    mtia.reset_peak_memory_stats()
    assert mtia.max_memory_allocated() == 1024
    assert mtia.max_memory_allocated(1) == 512
    assert mtia.mem_get_info() == (1024 * MiB - 22 * MiB, 1024 * MiB)
    mtia.empty_cache()
    assert mtia.memory_reserved() == 2 * MiB  # the large segment is released, the small one is in use
    assert mtia.mem_get_info() == (1022 * MiB, 1024 * MiB)
    del a, c


def test_memory_summary_is_the_torch_table() -> None:
    x = mtia.empty(100, device=1)
    text = mtia.memory_summary(1)
    assert "MTIA memory summary, device ID 1" in text
    assert "Allocated memory" in text and "Reserved memory" in text
    assert isinstance(mtia_sync.memory_summary(), str)
    short = mtia.memory_summary(device=1, abbreviated=True)
    assert "Allocated memory" in short and "from large pool" not in short and "from large pool" in text
    assert len(short.splitlines()) == len(text.splitlines()) - 2 * 9  # two pool rows less per metric
    with pytest.raises(TypeError, match="abbreviated must be a bool"):
        mtia.memory_summary(abbreviated="yes")  # type: ignore[arg-type]
    del x


def test_snapshot_covers_every_device_with_one_trace_each(tmp_path: Path) -> None:
    mtia.record_memory_history("all", max_entries=100)
    a = mtia.empty(256, dtype=np.float32)
    b = mtia.empty(256, dtype=np.float32, device=1)
    del a
    gc.collect()
    snap = mtia.snapshot()
    assert len(snap["device_traces"]) == 2
    assert [seg["device"] for seg in snap["segments"]] == [0, 1]
    seg1 = snap["segments"][1]
    live = [blk for blk in seg1["blocks"] if blk["state"] == "active_allocated"]
    assert [blk["address"] for blk in live] == [b.data_ptr()]
    actions0 = [e["action"] for e in snap["device_traces"][0]]
    assert actions0[:4] == ["segment_alloc", "alloc", "free_requested", "free_completed"]
    assert [e["action"] for e in snap["device_traces"][1]][:2] == ["segment_alloc", "alloc"]
    path = tmp_path / "snap.pickle"
    mtia.dump_snapshot(path)
    with open(path, "rb") as f:
        loaded = pickle.load(f)
    assert [seg["address"] for seg in loaded["segments"]] == [seg["address"] for seg in snap["segments"]]
    mtia.record_memory_history(None)
    assert mtia.snapshot()["device_traces"] == [[], []]
    with pytest.raises(ValueError, match="enabled must be 'all', 'state' or None.*got 'bogus'"):
        mtia.record_memory_history("bogus")
    with pytest.raises(ValueError, match="max_entries"):
        mtia.record_memory_history(max_entries=-1)


def test_observer_runs_on_an_array_oom() -> None:
    with fresh_runtime(device_count=1, device_memory="8MiB", workers=2):
        seen: list[tuple[int, int, int, int]] = []
        mtia_sync.attach_out_of_memory_observer(lambda *args: seen.append(args))
        keep = mtia.empty(MiB, dtype=np.uint8)
        with pytest.raises(mtia.OutOfMemoryError, match="Tried to allocate 20.00 MiB"):
            mtia.zeros(4 * MiB, dtype=np.uint8)
        assert seen == [(0, 20 * MiB, MiB, 6 * MiB)]
        assert mtia.memory_stats()["num_ooms"] == 1
        assert mtia.memory_allocated() == MiB
        del keep


def test_record_memory_history_context_and_skip_actions() -> None:
    import mtia_async.sync as mtia

    for bad in ({"enabled": "bogus"}, {"max_entries": -1}, {"context": "xyz"}, {"skip_actions": ["nope"]}):
        with pytest.raises(ValueError):
            mtia.record_memory_history(**bad)  # type: ignore[arg-type]
    mtia.record_memory_history(enabled="all", skip_actions=["free_requested"], context=None)
    a = mtia.zeros(10)
    del a
    mtia.synchronize()
    trace = mtia.snapshot()["device_traces"][0]
    actions = [e["action"] for e in trace]
    assert "alloc" in actions and "free_completed" in actions and "free_requested" not in actions
    assert all(e["frames"] == [] for e in trace)
    mtia.record_memory_history(enabled=None)


# --- allocation sizes (B4) -----------------------------------------------------------------------
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


# --- record_stream (B6, C9) ----------------------------------------------------------------------
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


@pytest.mark.timeout(120)
def test_C9_record_stream_block_is_not_reused_before_the_side_kernel_finishes_100x() -> None:
    """torch's ``test_record_stream``: the side stream writes through a numpy view it got
    from an earlier kernel (not through the DeviceArray, which would keep the block
    alive by itself), so only ``record_stream`` protects the block."""
    s0, side = mtia_sync.Stream(), mtia_sync.Stream()
    n = 64 * 1024
    for i in range(100):
        with mtia_sync.stream(s0):
            a = mtia.zeros(n, dtype=np.uint8)
        views: list[np.ndarray] = []
        s0.launch(views.append, a)  # the kernel receives a's memory as a numpy view
        side.wait_stream(s0)
        side.launch(time.sleep, 0.05)
        side.launch(lambda: views[0].fill(7))  # written 50 ms later, on the side stream
        a.record_stream(side)
        ptr = a.data_ptr()
        del a  # freed by reference counting: by the next allocation at the latest
        with mtia_sync.stream(s0):
            b = mtia.zeros(n, dtype=np.uint8)  # while the side kernel may still write a's memory
        assert b.data_ptr() != ptr, f"iteration {i}: reused before the side stream was done"
        side.synchronize()
        with mtia_sync.stream(s0):
            assert not b.numpy().any(), f"iteration {i}: the side kernel wrote into a reused block"
            c = mtia.empty(n, dtype=np.uint8)
        assert c.data_ptr() == ptr, f"iteration {i}: not reused on its own stream after the side work"
        del b, c


# --- every counter back to baseline (M1) ---------------------------------------------------------
def touch(view: np.ndarray, payload: object) -> None:
    view[:1] = 1


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


# --- segments (M7) -------------------------------------------------------------------------------
def test_M7_device_arrays_follow_the_boundary_table() -> None:
    for nbytes, segments in ((1, [2 * MiB]), (MiB + 1, [20 * MiB]), (10 * MiB - 1, [20 * MiB]), (10 * MiB + 512, [12 * MiB])):
        a = mtia.empty(nbytes, dtype=np.uint8)
        assert [s["total_size"] for s in mtia.snapshot()["segments"]] == segments, nbytes
        assert mtia.memory_stats()["requested_bytes.all.current"] == nbytes
        del a
        gc.collect()
        mtia.empty_cache()


# --- a pending free under memory pressure (M8) ---------------------------------------------------
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


# --- peaks (M9) ----------------------------------------------------------------------------------
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


# --- history (M10, B11) --------------------------------------------------------------------------
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
    assert _state(mtia.snapshot()) == ([], [[], []])


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
    assert _state(mtia.snapshot()) == ([], [[], []])
    assert not mtia.is_initialized()
    result = run_python(
        """
        import mtia_async as mtia
        snap = mtia.snapshot()
        print(snap["segments"], snap["device_traces"], sorted(snap), mtia.is_initialized())
        """,
        env={"MTIA_ASYNC_DEVICE_COUNT": "3"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] [[], [], []] ['allocator_settings', 'device_traces', 'segments'] False"


# --- out of memory, and cancelled allocations (F13, F4) ------------------------------------------
def test_F13_oom_observers_run_outside_the_lock_and_the_device_is_usable_after() -> None:
    with fresh_runtime(device_count=1, device_memory="64MiB", workers=2):
        alloc = get_runtime().devices[0].allocator
        seen: list[tuple[int, int]] = []

        def reading_observer(device: int, size: int, allocated: int, free: int) -> None:
            stats = mtia.memory_stats()
            snap = mtia.snapshot()
            check_invariants(stats, snap)
            result: list[bool] = []
            other = threading.Thread(target=lambda: result.append(alloc.stats_and_snapshot() is not None))
            other.start()
            join_all([other], timeout=5)  # another thread gets the lock: the observer does not hold it
            assert result == [True], "the allocator lock is held while observers run"
            seen.append((stats["num_ooms"], len(snap["segments"])))

        def raising_observer(*args: int) -> None:
            raise RuntimeError("observer broke")

        mtia.attach_out_of_memory_observer(raising_observer)
        mtia.attach_out_of_memory_observer(reading_observer)
        host = np.arange(MiB, dtype=np.float32)
        x = mtia.asarray(host)  # 4 MiB in a 20 MiB segment
        hold = mtia.empty(30 * MiB, dtype=np.uint8)  # a 30 MiB segment: 50 of 64 MiB reserved
        mtia_sync.synchronize()
        before = mtia.memory_stats()
        with pytest.raises(mtia.OutOfMemoryError, match="Tried to allocate 40.00 MiB") as info:
            mtia.empty(40 * MiB, dtype=np.uint8)
        assert "total capacity of 64.00 MiB" in str(info.value)
        assert any("observer broke" in note for note in info.value.__notes__)
        assert seen == [(before["num_ooms"] + 1, 2)]  # ran once, after num_ooms was counted
        after = mtia.memory_stats()
        assert after["num_ooms"] == before["num_ooms"] + 1
        y = x * 2  # a kernel on a buffer made before the OOM
        np.testing.assert_array_equal(y.numpy(), host * 2)
        del hold
        gc.collect()
        again = mtia.empty(40 * MiB, dtype=np.uint8)  # the same request succeeds after freeing
        assert again.nbytes == 40 * MiB
        assert mtia.memory_stats()["num_ooms"] == before["num_ooms"] + 1
        del again, x, y


def _usage(device: int = 0) -> tuple[int, int]:
    stats = mtia.memory_stats(device)
    return stats["allocated_bytes.all.current"], stats["active_bytes.all.current"]


async def test_F4_cancel_while_blocked_on_a_cross_stream_event_leaks_nothing() -> None:
    producer, consumer = mtia.Stream(), mtia.Stream()
    await mtia.synchronize()
    baseline = _usage()
    gate = threading.Event()
    producer.launch(gate.wait, 5)
    consumer.wait_event(producer.record_event())

    async def work() -> np.ndarray:
        with mtia.stream(consumer):
            a = mtia.zeros(MiB, dtype=np.uint8)
            b = a + 1
            return await b.to_host()  # blocked behind the producer's event

    task = asyncio.create_task(work())
    await asyncio.sleep(0.05)
    assert _usage() > baseline  # the task's buffers exist
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    await consumer.synchronize()
    del task
    gc.collect()
    mtia.empty_cache()
    assert _usage() == baseline


async def test_F4_cancel_during_an_oom_retry_leaks_nothing() -> None:
    """The allocation waits in a thread (``asyncio.to_thread``): the task is cancelled at
    once, the abandoned allocation still completes, and its buffer is freed when dropped."""
    with fresh_runtime(device_count=1, device_memory="2MiB", workers=2):
        s, side = mtia.Stream(), mtia.Stream()
        with mtia.stream(s):
            a = mtia.empty(MiB, dtype=np.uint8)
            b = mtia.empty(MiB, dtype=np.uint8)  # the device (one 2 MiB segment) is full
        gate = threading.Event()
        side.wait_stream(s)
        side.launch(gate.wait, 5)
        a.record_stream(side)
        del a  # a pending free: it waits for the side stream
        baseline = _usage()

        def allocate() -> Any:
            with mtia.stream(s):
                return mtia.empty(MiB, dtype=np.uint8)  # OOM retry: waits for the pending free

        task = asyncio.create_task(asyncio.to_thread(allocate))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.perf_counter() - t0 < 0.1
        gate.set()
        await side.synchronize()
        del task

        def settled() -> bool:
            gc.collect()
            return mtia.memory_stats()["num_alloc_retries"] == 1 and _usage() == (MiB, MiB)

        await asyncio.to_thread(wait_until, settled, 10.0, "the abandoned allocation being freed")
        assert baseline == (MiB, 2 * MiB)  # b, and a pending
        assert mtia.memory_stats()["num_ooms"] == 0
        del b
        gc.collect()
        assert _usage() == (0, 0)


# --- 8 threads and 8 tasks allocating at once (C6, C7) -------------------------------------------
class LiveSpans:
    """The ``[addr, addr + size)`` of every live handle, checked for overlap on insertion."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: list[int] = []
        self.ends: dict[int, int] = {}
        self.inserted = 0

    def add(self, addr: int, size: int) -> None:
        with self.lock:
            if addr in self.ends:
                raise AssertionError(f"two live handles at {addr:#x}")
            i = bisect.bisect(self.starts, addr)
            if i and self.ends[self.starts[i - 1]] > addr:
                raise AssertionError(f"{addr:#x} overlaps the live block at {self.starts[i - 1]:#x}")
            if i < len(self.starts) and self.starts[i] < addr + size:
                raise AssertionError(f"{addr:#x}+{size} overlaps the live block at {self.starts[i]:#x}")
            self.starts.insert(i, addr)
            self.ends[addr] = addr + size
            self.inserted += 1

    def remove(self, addr: int) -> None:
        with self.lock:
            del self.ends[addr]
            self.starts.remove(addr)


def _alloc_step(rng: random.Random, live: list[Any], spans: LiveSpans) -> None:
    """One random allocation or free; a handle leaves ``spans`` before its memory is freed."""
    if live and (rng.random() < 0.45 or len(live) >= 32):
        a = live.pop(rng.randrange(len(live)))
        if a.data_ptr():
            spans.remove(a.data_ptr())
        del a
    else:
        nbytes = 0 if rng.random() < 0.02 else int(2 ** rng.uniform(0, 21))  # 0, 1 B .. 2 MiB
        a = mtia.empty(nbytes, dtype=np.uint8, device=rng.randrange(2))
        if a.data_ptr():
            spans.add(a.data_ptr(), nbytes)
        live.append(a)


def _hammer(iterations: int, spans: LiveSpans, stop_polling: threading.Event | None = None) -> list[list[Any]]:
    """8 threads and 8 tasks (in one event loop thread), each ``iterations`` random ops.

    Returns every actor's live handles (still allocated).
    """
    results: dict[str, list[Any]] = {}
    errors: list[BaseException] = []

    def thread_actor(k: int) -> None:
        try:
            rng = random.Random(1000 + k)
            live: list[Any] = []
            for _ in range(iterations):
                _alloc_step(rng, live, spans)
            results[f"thread{k}"] = live
        except BaseException as exc:
            errors.append(exc)

    async def task_actor(k: int) -> None:
        rng = random.Random(2000 + k)
        live: list[Any] = []
        for i in range(iterations):
            _alloc_step(rng, live, spans)
            if i % 8 == 0:
                await asyncio.sleep(0)
        results[f"task{k}"] = live

    def loop_thread() -> None:
        async def main() -> None:
            await asyncio.gather(*(task_actor(k) for k in range(8)))

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread_actor, args=(k,)) for k in range(8)]
    threads.append(threading.Thread(target=loop_thread))
    for t in threads:
        t.start()
    join_all(threads, timeout=150)
    if stop_polling is not None:
        stop_polling.set()
    assert errors == []
    assert len(results) == 16
    return list(results.values())


@pytest.mark.timeout(180)
def test_C6_8_threads_and_8_tasks_allocate_without_overlap_and_stats_match_the_live_count() -> None:
    spans = LiveSpans()
    lives = _hammer(10_000, spans)
    assert spans.inserted > 50_000
    handles = [a for live in lives for a in live]
    for d in range(2):
        stats, snap = get_runtime().devices[d].allocator.stats_and_snapshot()
        check_invariants(stats, snap)
        mine = [a for a in handles if a.device == d and a.data_ptr()]
        assert stats["allocation.all.current"] == len(mine)
        assert stats["requested_bytes.all.current"] == sum(a.nbytes for a in mine)
    del handles, lives, mine
    gc.collect()
    mtia.empty_cache()
    for d in range(2):
        stats = mtia.memory_stats(d)
        assert stats["allocation.all.current"] == 0 and stats["reserved_bytes.all.current"] == 0


@pytest.mark.timeout(180)
def test_C7_snapshots_polled_from_another_thread_are_internally_consistent() -> None:
    stop = threading.Event()
    polls = [0]
    failures: list[BaseException] = []

    def poller() -> None:
        try:
            while not stop.is_set():
                for d in range(2):
                    check_invariants(mtia.memory_stats(d), None)  # M5 on its own
                    check_invariants(*get_runtime().devices[d].allocator.stats_and_snapshot())  # M5 + M6, atomic
                check_invariants(None, mtia.snapshot())  # M6 on every device's segments
                polls[0] += 1
        except BaseException as exc:
            failures.append(exc)

    mtia.init()
    watcher = threading.Thread(target=poller)
    watcher.start()
    try:
        lives = _hammer(2_000, LiveSpans(), stop)
    finally:
        stop.set()
        join_all([watcher])
    assert failures == []
    assert polls[0] >= 5
    del lives


# Regression (issue 15, defect 8).
async def test_an_allocation_on_the_loop_never_waits_for_a_pending_free() -> None:
    with fresh_runtime(device_count=1, device_memory="24MiB", workers=2):
        side = mtia.Stream()
        big = mtia.empty(12 << 20, dtype=np.uint8)  # a 12 MiB large segment
        side.launch(time.sleep, 1.0)
        big.record_stream(side)
        del big  # its free waits for the side stream's 1 s kernel
        gc.collect()
        t0 = time.perf_counter()
        with pytest.raises(mtia.OutOfMemoryError, match="pending"):
            mtia.empty(20 << 20, dtype=np.uint8)
        assert time.perf_counter() - t0 < 0.5
        await side.synchronize()
        mtia.empty(20 << 20, dtype=np.uint8)  # fits once the free completed


# Regression (issue 15, defect 12).
def test_record_memory_history_refuses_huge_max_entries_and_changes_nothing() -> None:
    mtia_sync.record_memory_history("all", max_entries=10)
    x = mtia_sync.empty(16)
    before = mtia_sync.snapshot()["device_traces"]
    with pytest.raises(ValueError, match="max_entries"):
        mtia_sync.record_memory_history("state", max_entries=2**63)
    del x
    gc.collect()
    traces = mtia_sync.snapshot()["device_traces"]
    assert len(traces[0]) >= len(before[0])  # still recording the trace: "all" was kept
    assert any(e["action"] == "free_requested" for e in traces[0])
    mtia_sync.record_memory_history(None)
