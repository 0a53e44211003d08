"""Streams: FIFO order, cross-stream ordering, concurrency, priorities, current stream."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from _support import join_all

import mtia_async as mtia
import mtia_async.sync as mtia_sync


async def test_fifo_over_thousands_of_launches() -> None:
    s = mtia.Stream()
    out: list[int] = []
    for i in range(5000):
        s.launch(out.append, i)
    await s.synchronize()
    assert out == list(range(5000))
    assert s.query()


def test_fifo_from_many_threads_keeps_each_threads_order() -> None:
    s = mtia_sync.Stream()
    out: list[tuple[int, int]] = []

    def producer(k: int) -> None:
        for i in range(2000):
            s.launch(out.append, (k, i))

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    join_all(threads)
    s.synchronize()
    assert len(out) == 8000
    for k in range(4):
        assert [i for kk, i in out if kk == k] == list(range(2000))


async def test_launch_passes_args_and_kwargs() -> None:
    s = mtia.Stream()
    got: list[object] = []
    s.launch(lambda a, b, *, c: got.append((a, b, c)), 1, 2, c=3)
    await s.synchronize()
    assert got == [(1, 2, 3)]


def test_two_sleeping_streams_overlap() -> None:
    s1, s2 = mtia_sync.Stream(), mtia_sync.Stream()
    t0 = time.perf_counter()
    s1.launch(time.sleep, 0.3)
    s2.launch(time.sleep, 0.3)
    s1.synchronize()
    s2.synchronize()
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.55, f"two 0.3 s kernels on two streams took {elapsed:.3f} s: they did not overlap"


def test_wait_event_orders_across_streams() -> None:
    producer, consumer = mtia_sync.Stream(), mtia_sync.Stream()
    log: list[str] = []
    producer.launch(time.sleep, 0.1)
    producer.launch(log.append, "produced")
    e = producer.record_event()
    consumer.wait_event(e)
    consumer.launch(log.append, "consumed")
    consumer.synchronize()
    assert log == ["produced", "consumed"]
    assert e.query()


def test_wait_stream_orders_across_streams() -> None:
    a, b = mtia_sync.Stream(), mtia_sync.Stream()
    log: list[str] = []
    a.launch(time.sleep, 0.1)
    a.launch(log.append, "a")
    b.wait_stream(a)
    b.launch(log.append, "b")
    b.synchronize()
    assert log == ["a", "b"]


def test_wait_stream_on_itself_and_on_a_drained_stream_is_a_no_op() -> None:
    a, b = mtia_sync.Stream(), mtia_sync.Stream()
    a.wait_stream(a)
    b.wait_stream(a)
    out: list[int] = []
    a.launch(out.append, 1)
    a.synchronize()
    assert out == [1] and a.query() and b.query()


def test_wait_event_across_devices() -> None:
    s0 = mtia_sync.Stream(device=0)
    s1 = mtia_sync.Stream(device=1)
    log: list[int] = []
    s0.launch(time.sleep, 0.05)
    s0.launch(log.append, 0)
    s1.wait_event(s0.record_event())
    s1.launch(log.append, 1)
    s1.synchronize()
    assert log == [0, 1]


def test_query_false_while_running_true_after() -> None:
    s = mtia_sync.Stream()
    gate = threading.Event()
    s.launch(gate.wait, 5)
    assert not s.query()
    gate.set()
    s.synchronize()
    assert s.query()


def test_priority_streams_go_first_when_workers_are_contended() -> None:
    # 2 workers: block both, queue low then high priority work, release: high runs first.
    gates = [threading.Event(), threading.Event()]
    blockers = [mtia_sync.Stream(), mtia_sync.Stream()]
    started = threading.Barrier(3, timeout=5)
    for b, g in zip(blockers, gates):
        b.launch(lambda g=g: (started.wait(), g.wait(5)))
    started.wait()
    order: list[str] = []
    low = mtia_sync.Stream(priority=0)
    high = mtia_sync.Stream(priority=-3)
    low.launch(order.append, "low")
    high.launch(order.append, "high")
    gates[0].set()
    low.synchronize()
    high.synchronize()
    gates[1].set()
    assert order == ["high", "low"]


def test_priority_is_clamped_like_torch_and_validated() -> None:
    assert mtia_sync.Stream(priority=-100).priority == -3
    assert mtia_sync.Stream(priority=7).priority == 0
    with pytest.raises(TypeError, match="priority"):
        mtia_sync.Stream(priority=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="priority"):
        mtia_sync.Stream(priority=True)


def test_stream_attributes_and_equality_across_facades() -> None:
    s = mtia.Stream(device="mtia:1", priority=-1)
    assert (s.device_index, s.device_type, s.priority) == (1, "mtia", -1)
    twin = mtia_sync.current_stream(1)
    assert twin != s
    with mtia.stream(s):
        same = mtia_sync.current_stream()
    assert same == s and hash(same) == hash(s)
    assert isinstance(same, mtia_sync.Stream)
    assert mtia.default_stream(0).stream_id == 0
    assert mtia.default_stream(0) == mtia_sync.default_stream("mtia:0")
    assert "stream_id=" in repr(s)


def test_numpy_functions_and_builtins_are_kernels() -> None:
    s = mtia_sync.Stream()
    a = np.ones(1000, dtype=np.float32)
    out = np.empty_like(a)
    s.launch(np.exp, a, out=out)
    s.launch(np.add, out, 1.0, out)
    s.synchronize()
    np.testing.assert_allclose(out, np.e + 1.0, rtol=1e-6)


def test_module_launch_uses_the_current_stream() -> None:
    s = mtia_sync.Stream()
    gate = threading.Event()
    out: list[int] = []
    with mtia_sync.stream(s):
        mtia_sync.launch(gate.wait, 5)
        mtia_sync.launch(out.append, 1)
    assert not s.query()
    assert mtia_sync.default_stream().query()
    gate.set()
    s.synchronize()
    assert out == [1]


