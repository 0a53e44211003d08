"""Graphs (docs/graphs.md): memory pools, addresses, and the memory a pending replay uses.

Results of replays are in ``test_graphs.py``; what a capture refuses in ``test_graphs_capture.py``.
"""

from __future__ import annotations

import gc
import textwrap
import threading
from typing import Any

import numpy as np
import pytest
from _support import run_python

import mtia_async.sync as mtia
from mtia_async._core.instrument import instruments
from mtia_async.testing import check_invariants

def _pool_segments(pool: tuple[int, int]) -> list[dict[str, Any]]:
    return [s for s in mtia.snapshot()["segments"] if s["segment_pool_id"] == pool]


def test_a_private_pool_holds_the_capture_memory_until_reset() -> None:
    x = mtia.ones(1024)
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        y = x * 2.0
        z = y + 1.0
    pool = g.pool()
    assert pool[0] > 0 and pool[1] == 0
    (seg,) = _pool_segments(pool)
    addresses = {b["address"] for b in seg["blocks"] if b["state"] == "active_allocated"}
    assert {y.data_ptr(), z.data_ptr()} <= addresses
    assert all(s["segment_pool_id"] == (0, 0) for s in mtia.snapshot()["segments"] if s["address"] != seg["address"])
    stats, snap = mtia.memory_stats(), mtia.snapshot()
    check_invariants(stats, snap)
    del y, z
    mtia.empty_cache()
    assert len(_pool_segments(pool)) == 1  # the graph replays into it: empty_cache keeps it
    g.replay()
    mtia.synchronize()
    stats = mtia.memory_stats()
    g.reset()
    assert _pool_segments(pool) == []  # released by reset(): no other graph uses it
    after = mtia.memory_stats()  # the stats counted the pool's segment, and count it no more
    assert after["reserved_bytes.all.current"] == stats["reserved_bytes.all.current"] - seg["total_size"]
    assert after["segment.all.current"] == stats["segment.all.current"] - 1
    assert after["num_device_free"] == stats["num_device_free"] + 1
    check_invariants(mtia.memory_stats(), mtia.snapshot())


def test_outputs_outlive_reset_and_the_pool_goes_with_them() -> None:
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        out = mtia.ones(8) * 3.0
    g.replay()
    mtia.synchronize()
    pool = g.pool()
    g.reset()
    np.testing.assert_array_equal(out.numpy(), np.full(8, 3.0))  # still valid after reset()
    assert len(_pool_segments(pool)) == 1
    del out
    mtia.empty_cache()
    assert _pool_segments(pool) == []


def test_a_graph_dropped_without_reset_leaves_its_pool_to_the_next_empty_cache() -> None:
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        y = mtia.ones(8) + 1.0
    g.replay()
    mtia.synchronize()
    pool = g.pool()
    del g, y
    assert len(_pool_segments(pool)) == 1  # nothing is released by a finalizer
    mtia.empty_cache()
    assert _pool_segments(pool) == []


def test_graphs_sharing_a_pool_allocate_from_the_same_segments() -> None:
    pool = mtia.graph_pool_handle()
    assert pool[0] == 0 and pool[1] > 0 and mtia.graph_pool_handle() != pool
    x = mtia.ones(16)
    g1, g2, g3 = mtia.MTIAGraph(), mtia.MTIAGraph(), mtia.MTIAGraph()
    with mtia.graph(g1, pool=pool):
        a = x + 1.0
    with mtia.graph(g2, pool=g1.pool()):
        b = a * 2.0
    (seg,) = _pool_segments(pool)
    ptrs = {blk["address"] for blk in seg["blocks"] if blk["state"] == "active_allocated"}
    assert {a.data_ptr(), b.data_ptr()} <= ptrs and g2.pool() == pool
    g1.replay()
    g2.replay()
    mtia.synchronize()
    np.testing.assert_array_equal(b.numpy(), np.full(16, 4.0))
    del a
    g1.reset()  # g2 still uses the pool: it stays
    mtia.empty_cache()
    assert len(_pool_segments(pool)) == 1
    with mtia.graph(g3, pool=pool):  # reuses what g1 freed, in the same segment
        c = b + 1.0
    assert _pool_segments(pool)[0]["address"] == seg["address"]
    g3.replay()
    mtia.synchronize()
    np.testing.assert_array_equal(c.numpy(), np.full(16, 5.0))
    del b, c
    g2.reset()
    assert len(_pool_segments(pool)) == 1  # g3 still uses it
    g3.reset()
    assert _pool_segments(pool) == []


def test_a_pool_belongs_to_one_device_while_graphs_use_it() -> None:
    pool = mtia.graph_pool_handle()
    g0, g1 = mtia.MTIAGraph(), mtia.MTIAGraph()
    with mtia.graph(g0, pool=pool):
        mtia.zeros(4)
    with mtia.device(1), pytest.raises(RuntimeError, match=r"pool \(0, \d+\) is used by graphs of mtia:0.*mtia:1"):
        with mtia.graph(g1, pool=pool):
            pass
    assert not mtia.is_current_stream_capturing()
    g0.reset()
    with mtia.device(1), mtia.graph(g1, pool=pool):  # free again: mtia:1 may take it
        y = mtia.zeros(4)
    assert y.device == 1 and _pool_segments(pool)[0]["device"] == 1


def test_memory_freed_outside_a_capture_is_not_taken_by_it_nor_the_reverse() -> None:
    s = mtia.Stream()
    g = mtia.MTIAGraph()
    with mtia.stream(s):
        before = mtia.empty(64)
        ptr = before.data_ptr()
        del before  # the allocator's last free, kept ready for a same-size allocation on s
        g.capture_begin()
        inside = mtia.empty(64)
        g.capture_end()
        assert inside.data_ptr() != ptr
        pool = g.pool()
        assert any(inside.data_ptr() == b["address"] for seg in _pool_segments(pool) for b in seg["blocks"])
        ptr = inside.data_ptr()
        del inside
        g.reset()  # pool released; what it held was freed
        after = mtia.empty(64)
        assert after.data_ptr() != ptr and _pool_segments(pool) == []
    assert not instruments.active and instruments.observers == ()  # nothing left on: the hot paths are free


def test_a_graph_dropped_while_capturing_stops_capturing() -> None:
    g = mtia.MTIAGraph()
    s = mtia.Stream()
    with mtia.stream(s):
        g.capture_begin()
        assert mtia.is_current_stream_capturing()
        del g
        assert not mtia.is_current_stream_capturing()
        ran: list[int] = []
        mtia.launch(ran.append, 1)
        s.synchronize()
    assert ran == [1]


def test_a_graph_collected_inside_a_capture_hook_does_not_deadlock() -> None:
    code = """
        import gc
        import mtia_async.sync as mtia
        from mtia_async._graphs import capture

        hook = capture.GraphCapture._node

        def collecting(self, stream, *after):
            gc.collect()  # as if an allocation in the hook ran the collector, under the capture's lock
            return hook(self, stream, *after)

        capture.GraphCapture._node = collecting
        s, x = mtia.Stream(), mtia.ones(4)
        with mtia.stream(s):
            g = mtia.MTIAGraph()
            g.capture_begin()
            g.cycle = g  # only the collector frees it
            del g
            x + 1.0  # the collector finds the capturing graph inside this launch's hook
            capture.GraphCapture._node = hook
            for _ in range(1000):
                if not mtia.is_current_stream_capturing():
                    break
                threading.Event().wait(0.01)
            y = x + 1.0  # not capturing any more: runs
            print(mtia.is_current_stream_capturing(), y.numpy().tolist())
    """
    result = run_python("import threading\n" + textwrap.dedent(code), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False [2.0, 2.0, 2.0, 2.0]"


@pytest.mark.parametrize("how", ["dropped", "reset"])
def test_a_graph_dropped_or_reset_while_a_replay_is_pending_keeps_the_memory_the_replay_uses(how: str) -> None:
    seen: list[np.ndarray[Any, Any]] = []
    x = mtia.full(1024, 1.0)
    s = mtia.Stream()
    g = mtia.MTIAGraph()
    with mtia.graph(g, stream=s):
        y = x * 2.0
        z = y + 1.0
        mtia.launch(lambda a: seen.append(a.copy()), z, reads=[z], writes=[])
    pool = g.pool()
    used = {x.data_ptr(), y.data_ptr(), z.data_ptr()}
    gate = threading.Event()
    mtia.launch(lambda: gate.wait(10))
    g.replay()  # queued behind the gate
    if how == "reset":
        g.reset()
    del g, x, y, z
    gc.collect()
    mtia.empty_cache()
    assert len(_pool_segments(pool)) == 1  # the pending replay still uses it
    fresh = [mtia.full(1024, 99.0) for _ in range(8)]  # eager memory on the replay's stream,
    with mtia.stream(s):
        fresh += [mtia.full(1024, 99.0) for _ in range(8)]  # on the capture's stream,
        h = mtia.MTIAGraph()
        h.capture_begin(pool=pool)
        fresh += [mtia.full(1024, 77.0) for _ in range(8)]  # and captured into the same pool
        h.capture_end()
    assert used.isdisjoint(a.data_ptr() for a in fresh)  # none of it lands where the replay reads or writes
    h.replay()
    gate.set()
    mtia.synchronize()
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], np.full(1024, 3.0))
    del fresh
    h.reset()
    gc.collect()
    mtia.empty_cache()
    assert _pool_segments(pool) == []  # the replay done, its memory went with the graph
    check_invariants(mtia.memory_stats(), mtia.snapshot())
