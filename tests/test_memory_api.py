"""The memory API of both facades: statistics, history, snapshots, observers, before init."""

from __future__ import annotations

import gc
import pickle
from pathlib import Path

import numpy as np
import pytest
from _support import MiB, run_python

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async.testing import fresh_runtime

MEMORY_API = [
    "memory_stats", "memory_allocated", "max_memory_allocated", "memory_reserved", "max_memory_reserved",
    "reset_peak_memory_stats", "mem_get_info", "memory_summary", "empty_cache", "record_memory_history",
    "snapshot", "attach_out_of_memory_observer", "dump_snapshot",
]  # fmt: skip


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
    assert mtia.snapshot() == {"segments": [], "device_traces": [[], []]}
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
