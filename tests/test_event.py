"""Events: torch.Event semantics and every edge case, with its exception type.

Catalogue rows: B2, C8, L2.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest
from _support import join_all

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


# --- bad arguments, unrecorded events, elapsed_time (B2) -----------------------------------------
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


# --- completion is monotone (L2) -----------------------------------------------------------------
def test_L2_event_completion_is_monotone_per_stream_over_10k_events() -> None:
    streams = [mtia_sync.Stream(device=k % 2) for k in range(64)]
    events: list[list[mtia_sync.Event]] = [[] for _ in streams]
    gate = threading.Event()
    for s in streams[:2]:
        s.launch(gate.wait, 10)  # held until sampling has begun: some events are surely pending
    for i in range(10_000):
        k = i % 64
        if i % 50 == 0:
            streams[k].launch(time.sleep, 0.001)  # widen the window in which some events are pending
        events[k].append(streams[k].record_event(mtia_sync.Event(enable_timing=True)))
    samples = 0
    while not all(s.query() for s in streams):
        for mine in events:
            # Sample from the newest to the oldest: if e_i was complete when read, every
            # e_j (j < i) completed before it, so it must read complete afterwards too.
            states = [e.query() for e in reversed(mine)]
            assert states == sorted(states), "a later event completed before an earlier one"
            samples += 1
        gate.set()
    assert samples >= 64
    mtia_sync.synchronize(0)
    mtia_sync.synchronize(1)
    for mine in events:
        assert all(e.query() for e in mine)
        assert all(a.elapsed_time(b) >= 0 for a, b in itertools.pairwise(mine))


# --- a thousand waiters (C8) ---------------------------------------------------------------------
async def test_C8_thousand_waiters_on_one_event_half_cancelled() -> None:
    s = mtia.Stream()
    gate = threading.Event()
    s.launch(gate.wait, 5)
    e = s.record_event()
    woke: dict[int, int] = {}

    async def waiter(k: int) -> None:
        await e
        woke[k] = woke.get(k, 0) + 1

    tasks = [asyncio.create_task(waiter(k)) for k in range(1000)]
    await asyncio.sleep(0.01)
    for t in tasks[::2]:
        t.cancel()
    await asyncio.sleep(0.01)
    assert e._mark is not None and len(e._mark._waiters or []) == 500
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[::2])
    assert all(r is None for r in results[1::2])
    assert woke == {k: 1 for k in range(1, 1000, 2)}  # each remaining waiter woke exactly once
    assert e._mark._waiters is None
