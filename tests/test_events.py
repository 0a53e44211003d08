"""Events: torch.Event semantics and every edge case, with its exception type."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import mtia_async as mtia
import mtia_async.sync as mtia_sync


async def test_unrecorded_event_is_complete_and_waits_return_at_once() -> None:
    e = mtia.Event()
    assert e.query()
    await e.synchronize()
    await e
    s = mtia.Stream()
    e.wait(s)
    s.wait_event(e)
    assert s.query()


def test_unrecorded_event_blocking_wait_returns_at_once() -> None:
    mtia_sync.Event().synchronize()


def test_event_bad_arguments() -> None:
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


def test_elapsed_time_errors() -> None:
    s = mtia_sync.Stream()
    timed = mtia_sync.Event(enable_timing=True)
    untimed = mtia_sync.Event()
    timed.record(s)
    untimed.record(s)
    s.synchronize()
    with pytest.raises(ValueError, match="enable_timing=True"):
        timed.elapsed_time(untimed)
    with pytest.raises(ValueError, match="enable_timing=True"):
        untimed.elapsed_time(timed)
    never = mtia_sync.Event(enable_timing=True)
    with pytest.raises(ValueError, match="must be recorded"):
        timed.elapsed_time(never)
    with pytest.raises(ValueError, match="must be recorded"):
        never.elapsed_time(timed)
    gate = threading.Event()
    s.launch(gate.wait, 5)
    pending = s.record_event(mtia_sync.Event(enable_timing=True))
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="completed"):
        timed.elapsed_time(pending)
    assert time.perf_counter() - t0 < 0.5  # never blocks
    gate.set()
    pending.synchronize()
    assert timed.elapsed_time(pending) >= 0
    other = mtia_sync.Stream(device=1).record_event(mtia_sync.Event(enable_timing=True))
    other.synchronize()
    with pytest.raises(RuntimeError, match="same device"):
        timed.elapsed_time(other)


def test_recording_on_another_device_is_refused() -> None:
    e = mtia_sync.Event()
    e.record(mtia_sync.Stream(device=0))
    with pytest.raises(ValueError, match="mtia:0"):
        e.record(mtia_sync.Stream(device=1))


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


def test_completion_is_monotone_on_one_stream() -> None:
    streams = [mtia_sync.Stream() for _ in range(8)]
    events = []
    for i in range(2000):
        s = streams[i % 8]
        if i % 50 == 0:
            s.launch(time.sleep, 0.001)
        events.append((i % 8, s.record_event(mtia_sync.Event(enable_timing=True))))
    for k in range(8):
        mine = [e for kk, e in events if kk == k]
        for _ in range(20):
            states = [e.query() for e in mine]
            # once an event is complete, all earlier ones on its stream are too
            assert states == sorted(states, reverse=True)
    mtia_sync.synchronize()
    for k in range(8):
        mine = [e for kk, e in events if kk == k]
        assert all(x.elapsed_time(y) >= 0 for x, y in zip(mine, mine[1:]))


async def test_thousand_waiters_on_one_event_half_cancelled() -> None:
    s = mtia.Stream()
    gate = threading.Event()
    s.launch(gate.wait, 5)
    e = s.record_event()
    woke = 0

    async def waiter() -> None:
        nonlocal woke
        await e
        woke += 1

    tasks = [asyncio.create_task(waiter()) for _ in range(1000)]
    await asyncio.sleep(0.01)
    for t in tasks[::2]:
        t.cancel()
    await asyncio.sleep(0.01)
    assert e._mark is not None and len(e._mark._waiters or []) == 500
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 500
    assert woke == 500
    assert e._mark._waiters is None
