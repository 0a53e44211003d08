"""Events: torch.Event semantics and every edge case, with its exception type."""

from __future__ import annotations

import threading
import time

import pytest

import mtia_async as mtia
import mtia_async.sync as mtia_sync


async def test_awaitable_and_query() -> None:
    s = mtia.Stream()
    gate = threading.Event()
    s.launch(gate.wait, 5)
    e = s.record_event()
    assert isinstance(e, mtia.Event)
    assert not e.query()
    gate.set()
    await e
    assert e.query()
    assert s.query()


def test_rerecord_captures_work_up_to_the_new_call() -> None:
    s = mtia_sync.Stream()
    e = mtia_sync.Event()
    e.record(s)
    e.synchronize()
    gate = threading.Event()
    s.launch(gate.wait, 5)
    assert e.query() is True  # still the first record
    e.record(s)
    assert e.query() is False  # now captures the pending kernel
    gate.set()
    e.synchronize()
    assert e.query()


def test_elapsed_time_measures_when_the_stream_reaches_the_marker() -> None:
    s = mtia_sync.Stream()
    gate = threading.Event()
    s.launch(gate.wait, 5)
    start = s.record_event(mtia_sync.Event(enable_timing=True))
    s.launch(time.sleep, 0.1)
    end = s.record_event(mtia_sync.Event(enable_timing=True))
    time.sleep(0.2)  # enqueue-to-run delay must not count
    gate.set()
    end.synchronize()
    ms = start.elapsed_time(end)
    assert 95 <= ms < 190, ms
    assert end.elapsed_time(start) == pytest.approx(-ms)


def test_event_wait_never_blocks_and_orders_the_stream() -> None:
    a, b = mtia_sync.Stream(), mtia_sync.Stream()
    gate = threading.Event()
    log: list[str] = []
    a.launch(gate.wait, 5)
    a.launch(log.append, "a")
    e = a.record_event()
    t0 = time.perf_counter()
    e.wait(b)
    assert time.perf_counter() - t0 < 0.5
    b.launch(log.append, "b")
    assert not b.query()
    gate.set()
    b.synchronize()
    assert log == ["a", "b"]


