"""The caching allocator in isolation: fake streams whose markers the tests complete by hand.

Catalogue rows: B4, B5, B6, L6, M7, M8, M9, M10. These are their allocator-level parts;
through the public API, B4, B6 and M7-M10 are in test_memory_api.py.
"""

from __future__ import annotations

import gc
import itertools
import json
import pickle
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import GiB, KiB, MiB, FakeStream, assert_reset, checked, join_all, seeded, stats_of

import mtia_async._memory.segments
from mtia_async import OutOfMemoryError
from mtia_async._memory import Block, CachingAllocator, dump_snapshot, human_size
from mtia_async._thread_role import mark_worker_thread
from mtia_async.testing import check_invariants

pytestmark = pytest.mark.timeout(120)


# --- sizes, pools, segments (M7) -----------------------------------------------------------------
def test_large_pool_splits_only_above_1mib(alloc: Any, s0: FakeStream) -> None:
    a = alloc.malloc(19 * MiB, s0)  # a 20 MiB segment; remainder 1 MiB: not split
    assert a.size == 20 * MiB
    b = alloc.malloc(9 * MiB, s0)  # a new 20 MiB segment; remainder 11 MiB: split
    assert b.size == 9 * MiB
    _, snap = checked(alloc)
    assert [[blk["size"] for blk in s["blocks"]] for s in snap["segments"]] == [[20 * MiB], [9 * MiB, 11 * MiB]]
    c = alloc.malloc(10 * MiB, s0)  # best fit: the 11 MiB remainder, whose 1 MiB rest is not split off
    assert c.ptr == b.ptr + 9 * MiB and c.size == 11 * MiB
    stats, _ = checked(alloc)
    assert stats["segment.all.current"] == 2 and stats["allocated_bytes.large_pool.current"] == 40 * MiB
    for blk in (a, b, c):
        alloc.free(blk)
    stats, snap = checked(alloc)
    assert [[blk["state"] for blk in s["blocks"]] for s in snap["segments"]] == [["inactive"], ["inactive"]]
    assert stats["inactive_split.all.current"] == 0


def test_small_blocks_split_coalesce_and_reuse_best_fit(alloc: Any, s0: FakeStream) -> None:
    blocks = [alloc.malloc(4 * KiB, s0) for _ in range(4)]
    assert [b.ptr - blocks[0].ptr for b in blocks] == [0, 4 * KiB, 8 * KiB, 12 * KiB]
    alloc.free(blocks[1])
    alloc.free(blocks[2])
    stats, snap = checked(alloc)
    assert [(b["size"], b["state"]) for b in snap["segments"][0]["blocks"]] == [
        (4 * KiB, "active_allocated"),
        (8 * KiB, "inactive"),
        (4 * KiB, "active_allocated"),
        (2 * MiB - 16 * KiB, "inactive"),
    ]
    assert stats["inactive_split.all.current"] == 2
    assert stats["inactive_split_bytes.all.current"] == 2 * MiB - 8 * KiB
    again = alloc.malloc(8 * KiB, s0)  # the coalesced 8 KiB hole is the best fit
    assert again.ptr == blocks[1].ptr
    for b in (blocks[0], blocks[3], again):
        alloc.free(b)
    _, snap = checked(alloc)
    assert [(b["size"], b["state"]) for b in snap["segments"][0]["blocks"]] == [(2 * MiB, "inactive")]


def test_small_pool_splits_down_to_512_bytes(alloc: Any, s0: FakeStream) -> None:
    a = alloc.malloc(1 * MiB, s0)
    b = alloc.malloc(1 * MiB - 512, s0)  # leaves exactly 512 B: still split off
    assert b.size == 1 * MiB - 512
    stats, snap = checked(alloc)
    assert [blk["size"] for blk in snap["segments"][0]["blocks"]] == [1 * MiB, 1 * MiB - 512, 512]
    assert (stats["inactive_split.all.current"], stats["inactive_split_bytes.all.current"]) == (1, 512)
    c = alloc.malloc(300, s0)
    assert c.ptr == b.ptr + b.size and stats_of(alloc)["segment.all.current"] == 1
    for blk in (a, b, c):
        alloc.free(blk)


def test_reuse_is_per_stream(alloc: Any) -> None:
    s1, s2 = FakeStream(1), FakeStream(2)
    a = alloc.malloc(1000, s1)
    ptr = a.ptr
    alloc.free(a)
    b = alloc.malloc(1000, s2)
    assert b.ptr != ptr and b.stream is s2
    stats, snap = checked(alloc)
    assert stats["segment.all.current"] == 2
    assert {s["stream"] for s in snap["segments"]} == {1, 2}
    c = alloc.malloc(1000, s1)
    assert c.ptr == ptr
    assert stats_of(alloc)["segment.all.current"] == 2


def test_block_buffer_is_its_own_host_memory(alloc: Any, s0: FakeStream) -> None:
    a, b = alloc.malloc(1000, s0), alloc.malloc(3000, s0)
    assert a.buffer.dtype == np.uint8 and a.buffer.shape == (1024,) and b.buffer.shape == (3072,)
    a.buffer[:] = 7
    b.buffer[:] = 9
    assert (a.buffer == 7).all() and (b.buffer == 9).all()
    assert "Block" in repr(a) and hex(a.ptr) in repr(a)
    other = CachingAllocator(3, 1 * GiB).malloc(1, s0)
    assert other.ptr >= 4 << 40 and a.ptr < 2 << 40  # per-device address spaces


def test_freed_then_retaken_block_is_a_new_handle(alloc: Any, s0: FakeStream) -> None:
    a = alloc.malloc(256, s0)
    alloc.free(a)
    b = alloc.malloc(256, s0)
    assert b.ptr == a.ptr and b is not a
    with pytest.raises(ValueError, match="invalid device pointer"):
        alloc.free(a)  # the stale handle cannot free the new owner's memory
    alloc.free(b)
    stats = stats_of(alloc)
    assert (stats["allocation.all.allocated"], stats["allocation.all.freed"], stats["allocation.all.current"]) == (
        2,
        2,
        0,
    )
    assert stats["requested_bytes.all.allocated"] == 512 and stats["allocated_bytes.all.peak"] == 512


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


# --- record_stream (B6, C9, M8) ------------------------------------------------------------------
def test_record_stream_defers_reuse_until_the_marker_is_done(alloc: Any, s0: FakeStream) -> None:
    side = FakeStream(7, busy=True)
    a = alloc.malloc(1 * MiB, s0)
    alloc.record_stream(a, side)
    alloc.free(a)
    assert len(side.markers) == 1
    stats, snap = checked(alloc)
    assert [b["state"] for b in snap["segments"][0]["blocks"]] == ["active_pending_free", "inactive"]
    assert stats["allocation.all.current"] == 0 and stats["active.all.current"] == 1
    assert stats["allocated_bytes.all.current"] == 0 and stats["active_bytes.all.current"] == 1 * MiB
    b = alloc.malloc(1 * MiB, s0)  # the pending block is not reused: the remainder is
    assert b.ptr == a.ptr + 1 * MiB
    c = alloc.malloc(1 * MiB, s0)
    assert c.ptr != a.ptr and stats_of(alloc)["segment.all.current"] == 2
    side.finish()  # the side stream's work is done: its callback returns the block
    stats, snap = checked(alloc)
    assert snap["segments"][0]["blocks"][0]["state"] == "inactive"
    assert stats["active.all.current"] == 2
    d = alloc.malloc(1 * MiB, s0)
    assert d.ptr == a.ptr


def test_record_stream_marker_already_done_frees_at_once(alloc: Any, s0: FakeStream) -> None:
    side = FakeStream(3)  # drained: its markers are done when taken
    a = alloc.malloc(4096, s0)
    alloc.record_stream(a, side)
    alloc.record_stream(a, side)
    alloc.free(a)
    assert len(side.markers) == 1
    stats, _ = checked(alloc)
    assert stats["active.all.current"] == 0


def test_record_stream_pattern_repeated_from_a_worker_thread(alloc: Any, s0: FakeStream) -> None:
    for _ in range(100):
        side = FakeStream(9, busy=True)
        a = alloc.malloc(2048, s0)
        alloc.record_stream(a, side)
        alloc.free(a)
        b = alloc.malloc(2048, s0)
        assert b.ptr != a.ptr  # never reused before the side work is done
        worker = threading.Thread(target=side.finish)
        worker.start()
        worker.join(10)
        assert not worker.is_alive()
        c = alloc.malloc(2048, s0)
        assert c.ptr == a.ptr  # reused on its own stream after it is
        alloc.free(b)
        alloc.free(c)
    checked(alloc)


def test_pending_free_of_several_streams_waits_for_all(alloc: Any, s0: FakeStream) -> None:
    s1, s2 = FakeStream(1, busy=True), FakeStream(2, busy=True)
    a = alloc.malloc(512, s0)
    alloc.record_stream(a, s1)
    alloc.record_stream(a, s2)
    alloc.free(a)
    s1.finish()
    assert stats_of(alloc)["active.all.current"] == 1
    s2.finish()
    assert stats_of(alloc)["active.all.current"] == 0


def test_B6_allocator_record_stream_on_the_allocating_stream_takes_no_marker() -> None:
    alloc = CachingAllocator(0, 1 * GiB)
    s0 = FakeStream(0)
    a = alloc.malloc(4096, s0)
    alloc.record_stream(a, FakeStream(0))  # same stream_id as the allocating stream
    alloc.free(a)
    assert s0.markers == []
    _, snap = checked(alloc)
    assert [b["state"] for b in snap["segments"][0]["blocks"]] == ["inactive"]


def test_oom_on_a_worker_thread_does_not_wait() -> None:
    alloc = CachingAllocator(0, 2 * MiB)
    s0, side = FakeStream(0), FakeStream(5, busy=True)
    a, b = alloc.malloc(1 * MiB, s0), alloc.malloc(1 * MiB, s0)  # the device is full
    alloc.record_stream(a, side)
    alloc.free(a)
    errors: list[BaseException] = []

    def work() -> None:
        mark_worker_thread()  # as the device's kernel workers do
        try:
            alloc.malloc(1024, s0)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], OutOfMemoryError)
    assert not side.markers[0].waited
    side.finish()
    assert alloc.malloc(1024, s0).ptr == a.ptr
    alloc.free(b)


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


# --- out of memory (B4, F13) ---------------------------------------------------------------------
def test_observer_sees_the_sizes_and_may_read_the_allocator() -> None:
    alloc = CachingAllocator(2, 32 * MiB)
    s0 = FakeStream(0)
    keep = alloc.malloc(1 * KiB, s0)
    seen: list[tuple[Any, ...]] = []

    def observer(device: int, alloc_size: int, allocated: int, free: int) -> None:
        stats = alloc.memory_stats()  # no deadlock: called without the lock
        snap = alloc.snapshot()
        check_invariants(stats, snap)
        seen.append((device, alloc_size, allocated, free, stats["num_ooms"], len(snap["segments"])))

    alloc.attach_out_of_memory_observer(observer)
    mid = alloc.malloc(5 * MiB, s0)  # a 20 MiB segment: fits
    assert alloc.malloc(11 * MiB, s0).ptr == mid.ptr + 5 * MiB  # best fit in its remainder
    with pytest.raises(OutOfMemoryError):
        alloc.malloc(16 * MiB, s0)  # a 16 MiB segment: 2 + 20 + 16 > 32
    assert seen == [(2, 16 * MiB, 1 * KiB + 16 * MiB, 10 * MiB, 1, 2)]
    alloc.free(keep)


def test_observer_that_raises_does_not_hide_the_oom() -> None:
    alloc = CachingAllocator(0, 4 * MiB)
    calls: list[str] = []

    def bad(*args: int) -> None:
        calls.append("bad")
        raise RuntimeError("observer broke")

    alloc.attach_out_of_memory_observer(bad)
    alloc.attach_out_of_memory_observer(lambda *args: calls.append("good"))
    with pytest.raises(OutOfMemoryError) as info:
        alloc.malloc(8 * MiB, FakeStream(0))
    assert calls == ["bad", "good"]
    assert isinstance(info.value.__context__, RuntimeError) and str(info.value.__context__) == "observer broke"
    assert any("observer broke" in note for note in info.value.__notes__)
    with pytest.raises(TypeError, match="callable"):
        alloc.attach_out_of_memory_observer(42)


def test_oom_retry_releases_the_cache_and_succeeds() -> None:
    alloc = CachingAllocator(0, 21 * MiB)
    s0 = FakeStream(0)
    alloc.free(alloc.malloc(100, s0))  # a cached 2 MiB small segment
    big = alloc.malloc(3 * MiB, s0)  # needs 20 MiB: 2 + 20 > 21 until the cache is released
    stats, snap = checked(alloc)
    assert big.size == 3 * MiB
    assert (stats["num_alloc_retries"], stats["num_ooms"], stats["num_device_free"]) == (1, 0, 1)
    assert [s["segment_type"] for s in snap["segments"]] == ["large"]
    alloc.free(big)
    with pytest.raises(OutOfMemoryError):
        alloc.malloc(22 * MiB, s0)
    alloc.free(alloc.malloc(3 * MiB, s0))  # usable after an OOM


def test_host_memory_failure_is_reported_as_device_oom(
    monkeypatch: pytest.MonkeyPatch, alloc: Any, s0: FakeStream
) -> None:
    def no_memory(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("host exhausted")

    monkeypatch.setattr(mtia_async._memory.segments.np, "empty", no_memory)
    with pytest.raises(OutOfMemoryError, match="host could not back a segment of 2.00 MiB") as info:
        alloc.malloc(10, s0)
    assert isinstance(info.value, MemoryError)
    monkeypatch.undo()
    stats = stats_of(alloc)
    assert stats["reserved_bytes.all.current"] == 0 and stats["num_ooms"] == 1
    assert alloc.malloc(10, s0) is not None


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


# --- bad arguments (B4, B5) ----------------------------------------------------------------------
def test_numpy_integer_sizes_are_accepted(alloc: Any, s0: FakeStream) -> None:
    block = alloc.malloc(np.int64(700), s0)
    assert block.size == 1024 and block.requested_size == 700


def test_bad_stream_is_rejected(alloc: Any) -> None:
    with pytest.raises(TypeError, match="stream"):
        alloc.malloc(8, object())


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


# --- statistics (M9) -----------------------------------------------------------------------------
def test_mem_get_info_and_summary(alloc: Any, s0: FakeStream) -> None:
    a = alloc.malloc(3 * MiB, s0)
    assert alloc.mem_get_info() == (1 * GiB - 20 * MiB, 1 * GiB)
    summary = alloc.memory_summary()
    lines = summary.splitlines()
    assert "MTIA memory summary, device ID 0" in summary
    assert all(len(line) == 77 for line in lines)
    row = next(line for line in lines if line.startswith("| Allocated memory"))
    assert row.split("|")[2].strip() == "3.00 MiB"
    assert "Reserved memory" in summary and "20.00 MiB" in summary
    alloc.free(a)


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 512, 1023, 1024, 2 * MiB, 3 * GiB // 2, 8 << 60, -2048)] == [
        "0 B",
        "512 B",
        "1023 B",
        "1.00 KiB",
        "2.00 MiB",
        "1.50 GiB",
        "8.00 EiB",
        "-2.00 KiB",
    ]


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


# --- seeded fuzz (L6) ----------------------------------------------------------------------------
def holds(buf: np.ndarray, fill: int) -> bool:
    """Whether every byte of ``buf`` is ``fill`` (compared 8 bytes at a time: 8x faster)."""
    n8 = buf.size // 8 * 8
    words = buf[:n8].view(np.uint64)
    return bool((words == np.uint64(fill * 0x0101010101010101)).all() and (buf[n8:] == fill).all())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_L6_allocator_fuzz_100k_ops_no_overlap_and_contents_intact() -> None:
    """10^5 seeded ops, sizes 1 B - 32 MiB (log-uniform), every buffer filled with its id.

    After every op no two live blocks overlap and ``allocation.all.current`` is the model's
    live count; M5/M6 are checked on an atomic ``stats_and_snapshot()`` after each of the
    first 10^4 ops (the former ``test_fuzz_alloc_free_empty_cache``) and every 10th op
    after that (a check costs ~0.7 ms). At every free the buffer still holds its id.
    """
    with seeded(1234) as rng:
        alloc = CachingAllocator(0, 2 << 30)
        streams = [FakeStream(i) for i in range(3)]
        side = FakeStream(50, busy=True)
        live: dict[int, tuple[Any, int]] = {}  # id -> (block, fill byte)
        next_id = 0

        def new_block(size: int, stream: FakeStream) -> None:
            nonlocal next_id
            block = alloc.malloc(size, stream)
            next_id += 1
            block.buffer[:size] = next_id % 251
            live[next_id] = (block, next_id % 251)

        def take(key: int) -> Any:
            block, fill = live.pop(key)
            assert holds(block.buffer[: block.requested_size], fill), f"contents of {block} changed"
            return block

        for step in range(100_000):
            op = rng.random()
            if op < 0.50 and len(live) < 48:
                new_block(int(2 ** rng.uniform(0, 25)), rng.choice(streams))  # 1 B .. 32 MiB, log-uniform
            elif op < 0.85 and live:
                alloc.free(take(rng.choice(list(live))))
            elif op < 0.90 and live:  # free and take the same size back at once
                block = take(rng.choice(list(live)))
                alloc.free(block)
                new_block(block.requested_size, block.stream)
            elif op < 0.95 and live:  # a free that waits for the side stream
                block = take(rng.choice(list(live)))
                alloc.record_stream(block, side)
                alloc.free(block)
            elif op < 0.97:
                side.finish()
            elif op < 0.985:
                alloc.empty_cache()
            else:
                alloc.reset_peak_memory_stats()
            spans = sorted((b.ptr, b.ptr + b.size) for b, _ in live.values())
            assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), f"step {step}: overlap"
            if step < 10_000 or step % 10 == 0:
                stats, snap = alloc.stats_and_snapshot()
                check_invariants(stats, snap)
            else:
                stats = alloc.memory_stats()
            assert stats["allocation.all.current"] == len(live), f"step {step}"
        for key in list(live):
            alloc.free(take(key))
        side.finish()
        alloc.empty_cache()
        stats, snap = checked(alloc)
        assert snap["segments"] == []
        for key in ("allocated_bytes", "active_bytes", "requested_bytes", "reserved_bytes", "segment", "allocation"):
            assert stats[f"{key}.all.current"] == 0
        assert stats["num_device_alloc"] == stats["num_device_free"] > 0
        assert stats["allocation.all.allocated"] > 40_000


# --- threads and re-entrancy ---------------------------------------------------------------------
def test_threads_allocate_while_another_polls_consistent_views() -> None:
    alloc = CachingAllocator(0, 4 * GiB)
    side = FakeStream(99, busy=True)
    stop = threading.Event()
    failures: list[BaseException] = []
    polls = [0]
    handoff: list[Any] = []  # blocks freed by a thread other than their allocator's
    handoff_lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        stream = FakeStream(seed % 2)
        mine: list[Any] = []
        try:
            for _ in range(5000):
                roll = rng.random()
                if roll < 0.5 or not mine:
                    mine.append(alloc.malloc(int(2 ** rng.uniform(0, 22)), stream))
                elif roll < 0.55:
                    block = mine.pop()
                    alloc.record_stream(block, side)
                    alloc.free(block)  # pending until the side stream's "worker" completes it
                elif roll < 0.6:
                    with handoff_lock:
                        handoff.append(mine.pop())
                else:
                    with handoff_lock:
                        theirs = handoff.pop() if handoff else None
                    alloc.free(theirs if theirs is not None else mine.pop(rng.randrange(len(mine))))
            for block in mine:
                alloc.free(block)
        except BaseException as exc:
            failures.append(exc)

    def side_worker() -> None:
        while not stop.is_set():
            side.finish()
            stop.wait(0.001)

    def poller() -> None:
        try:
            while not stop.is_set():
                check_invariants(alloc.memory_stats(), None)
                check_invariants(None, alloc.snapshot())
                check_invariants(*alloc.stats_and_snapshot())
                polls[0] += 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    helpers = [threading.Thread(target=poller), threading.Thread(target=side_worker)]
    for t in [*helpers, *threads]:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    for t in helpers:
        t.join(60)
    assert not any(t.is_alive() for t in [*threads, *helpers]), "a thread is stuck"
    assert failures == []
    assert polls[0] >= 3
    for block in handoff:
        alloc.free(block)
    side.finish()
    stats, _ = checked(alloc)
    assert stats["allocation.all.current"] == 0 and stats["active.all.current"] == 0
    assert stats["allocation.all.allocated"] == stats["allocation.all.freed"] > 10_000


def run_with_timeout(fn: Callable[[], None], seconds: float = 10) -> None:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "deadlock"
    if errors:
        raise errors[0]


def test_free_from_inside_the_lock_is_deferred_not_deadlocked(alloc: Any, s0: FakeStream) -> None:
    a, b, c = alloc.malloc(100, s0), alloc.malloc(5000, s0), alloc.malloc(100, s0)
    side = FakeStream(8)
    alloc.record_stream(b, side)

    def reentrant() -> None:
        with alloc._locked():  # as inside malloc, when GC runs a DeviceArray's __del__
            alloc.free(a)
            alloc.free(b)
            with pytest.raises(ValueError, match="invalid device pointer"):
                alloc.free(a)
            assert alloc._small.count == 3 and side.markers == []  # nothing done yet: the allocator is mid-call
        stats = stats_of(alloc)
        assert stats["allocation.all.current"] == 1 and stats["allocation.all.freed"] == 2
        assert len(side.markers) == 1

    run_with_timeout(reentrant)
    alloc.free(c)


def test_garbage_collection_inside_malloc_frees_safely(alloc: Any, s0: FakeStream) -> None:
    inside: list[bool] = []

    class Holder:
        def __init__(self, block: Any) -> None:
            self.block = block
            self.cycle = self

        def __del__(self) -> None:
            inside.append(alloc._busy)
            alloc.free(self.block)

    def churn() -> None:
        threshold = gc.get_threshold()
        gc.collect()
        gc.set_threshold(1, 1, 1)
        try:
            kept = []
            for i in range(400):
                Holder(alloc.malloc(64 + i % 7 * 512, s0))  # garbage in a cycle: only GC frees it
                kept.append(alloc.malloc(128, s0))
                if len(kept) > 20:
                    alloc.free(kept.pop(0))
            for b in kept:
                alloc.free(b)
        finally:
            gc.set_threshold(*threshold)
        gc.collect()

    run_with_timeout(churn, 60)
    assert len(inside) == 400 and any(inside), "GC never ran inside the allocator"
    stats, _ = checked(alloc)
    assert stats["allocation.all.current"] == 0


# --- history and snapshots (M10) -----------------------------------------------------------------
def test_history_of_pending_frees_and_ooms() -> None:
    alloc = CachingAllocator(0, 2 * MiB)
    s0, side = FakeStream(0), FakeStream(1, busy=True)
    alloc.record_memory_history("all", stacks="all")
    a = alloc.malloc(100, s0)
    alloc.record_stream(a, side)
    alloc.free(a)
    side.finish()
    with pytest.raises(OutOfMemoryError):
        alloc.malloc(3 * MiB, s0)
    trace = alloc.snapshot()["device_traces"][0]
    assert [e["action"] for e in trace] == [
        "segment_alloc",
        "alloc",
        "free_requested",
        "free_completed",
        "segment_free",
        "oom",
        "snapshot",
    ]
    oom = trace[5]
    assert (oom["device_free"], oom["size"]) == (2 * MiB, 3 * MiB) and "addr" not in oom  # torch: free bytes, request


def test_snapshot_pickles_and_round_trips_json(alloc: Any, s0: FakeStream, tmp_path: Path) -> None:
    alloc.record_memory_history("all")
    side = FakeStream(3, busy=True)
    blocks = [alloc.malloc(n, s0) for n in (10, 5 * MiB, 700)]
    alloc.record_stream(blocks[2], side)
    alloc.free(blocks[2])
    snap = alloc.snapshot()
    assert {b["state"] for s in snap["segments"] for b in s["blocks"]} == {
        "active_allocated",
        "active_pending_free",
        "inactive",
    }
    assert set(snap["segments"][0]) == {
        "device",
        "address",
        "total_size",
        "allocated_size",
        "active_size",
        "requested_size",
        "stream",
        "segment_type",
        "segment_pool_id",
        "is_expandable",
        "frames",
        "blocks",
    }
    assert pickle.loads(pickle.dumps(snap, protocol=4)) == snap

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        assert isinstance(value, (int, str, bool, float)) or value is None, type(value)
        return value

    assert json.loads(json.dumps(snap)) == plain(snap)
    dump_snapshot(snap, tmp_path / "snap.pickle")
    dump_snapshot(snap, str(tmp_path / "snap.json"))
    assert pickle.loads((tmp_path / "snap.pickle").read_bytes()) == snap
    assert json.loads((tmp_path / "snap.json").read_text()) == plain(snap)
    with pytest.raises(ValueError, match="snap.txt"):
        dump_snapshot(snap, tmp_path / "snap.txt")
    side.finish()


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


def test_a_snapshot_while_a_worker_free_is_queued_sees_the_block_still_allocated(alloc: Any, s0: FakeStream) -> None:
    """Regression: a free from a worker thread is claimed without the lock and queued; a
    snapshot taken before the queue is drained saw an allocated chunk with no handle and
    crashed rendering it (``'NoneType' object has no attribute 'requested_size'``)."""
    block = alloc.malloc(1000, s0)

    def worker() -> None:
        mark_worker_thread()
        alloc.free(block)  # queued: a worker never takes the allocator's lock for a free

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert alloc._deferred, "the worker's free should be queued"
    seg = next(iter(alloc._segments.values()))
    from mtia_async._memory.snapshot import render_segment

    rendered = render_segment(0, seg)  # what a snapshot does under the lock, before the drain
    live = [b for b in rendered["blocks"] if b["state"] == "active_allocated"]
    assert [b["requested_size"] for b in live] == [1000]
    stats, snap = checked(alloc)  # the drain runs: the block is free
    assert stats["allocation.all.current"] == 0 and stats["allocation.all.freed"] == 1
