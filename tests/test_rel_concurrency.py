"""Reliability under concurrency: catalogue rows C1-C9 (see docs/reliability.md)."""

from __future__ import annotations

import asyncio
import bisect
import gc
import queue
import random
import threading
import time
from typing import Any

import anyio
import anyio.from_thread
import numpy as np
import pytest
from _support import join_all

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async.testing import check_invariants
from mtia_async._core.runtime import get_runtime


# --- C1 ------------------------------------------------------------------------------------------
def _blocking_calls(s: mtia_sync.Stream, e: mtia_sync.Event, a: Any) -> dict[str, Any]:
    return {
        "Stream.synchronize": s.synchronize,
        "Event.synchronize": e.synchronize,
        "synchronize": mtia_sync.synchronize,
        "DeviceArray.numpy": a.numpy,
    }


def test_C1_blocking_wrappers_on_the_event_loop_thread_raise_at_once() -> None:
    gate = threading.Event()
    s = mtia_sync.Stream()
    a = mtia.zeros(8)
    s.launch(gate.wait, 10)  # pending work: a blocking wait here would deadlock the loop
    e = s.record_event()

    async def main() -> None:
        for name, call in _blocking_calls(s, e, a).items():
            t0 = time.perf_counter()
            with pytest.raises(RuntimeError, match="cannot be called from the event loop thread"):
                call()
            assert time.perf_counter() - t0 < 0.1, name
        done = mtia_sync.Stream()  # refused even when it would not block
        with pytest.raises(RuntimeError, match="event loop thread"):
            done.synchronize()

    try:
        asyncio.run(main())

        async def in_trio() -> None:
            for call in _blocking_calls(s, e, a).values():
                with pytest.raises(RuntimeError, match="trio task"):
                    call()

        anyio.run(in_trio, backend="trio")
    finally:
        gate.set()
    s.synchronize()


def test_C1_blocking_wrappers_inside_a_kernel_raise_instead_of_deadlocking() -> None:
    s = mtia_sync.Stream()
    other = mtia_sync.Stream()
    a = mtia.zeros(8)
    e = other.record_event()
    seen: list[str] = []

    def kernel() -> None:
        for name, call in _blocking_calls(s, e, a).items():
            try:
                call()
            except RuntimeError as exc:
                seen.append(name if "inside a kernel" in str(exc) else repr(exc))

    s.launch(kernel)
    s.synchronize()
    assert seen == list(_blocking_calls(s, e, a))


# --- C2 ------------------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_C2_16_threads_hammer_the_blocking_wrappers_with_bounces_into_async_and_back() -> None:
    """Each of 16 threads: 1,000 iterations of launch + a blocking wait; every 4th one
    bounces into an event loop (a portal), which awaits and then calls back into a worker
    thread that blocks again (trio's ``test_reentry_doesnt_deadlock``)."""
    errors: list[BaseException] = []

    def blocking_leg(s: mtia_sync.Stream, i: int) -> int:
        s.record_event().synchronize()
        return i

    async def bounce(e: mtia.Event, s: mtia_sync.Stream, i: int) -> int:
        await e
        return await anyio.to_thread.run_sync(blocking_leg, s, i)

    with anyio.from_thread.start_blocking_portal() as portal:

        def worker(k: int) -> None:
            try:
                s = mtia_sync.Stream(device=k % 2)
                out: list[int] = []
                with mtia_sync.stream(s):
                    counter = mtia.zeros(1, dtype=np.int64)
                    for i in range(1000):
                        s.launch(out.append, i)
                        counter += 1
                        step = i % 4
                        if step == 0:
                            s.synchronize()
                        elif step == 1:
                            s.record_event().synchronize()
                        elif step == 2:
                            e = mtia.Event()
                            e.record(s)
                            assert portal.call(bounce, e, s, i) == i
                        elif i % 100 == 3:
                            mtia_sync.synchronize(k % 2)
                    assert int(counter.numpy()[0]) == 1000
                s.synchronize()
                assert out == list(range(1000))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,), name=f"C2-{k}") for k in range(16)]
        for t in threads:
            t.start()
        join_all(threads, timeout=150)
    assert errors == []


# --- C3 ------------------------------------------------------------------------------------------
def test_C3_event_recorded_in_loop_a_wakes_loop_b() -> None:
    handoff: queue.Queue[mtia.Event] = queue.Queue()
    results: dict[str, Any] = {}

    def loop_a() -> None:
        async def main() -> None:
            s = mtia.Stream()
            s.launch(time.sleep, 0.2)
            e = s.record_event()
            handoff.put(e)
            await e
            results["a"] = e.query()

        asyncio.run(main())

    def loop_b() -> None:
        async def main() -> None:
            e = await asyncio.to_thread(handoff.get, True, 5)
            results["b_pending"] = not e.query()
            await e  # woken through call_soon_threadsafe on this loop
            results["b"] = e.query()
            t0 = time.perf_counter()
            await e  # complete: returns at once
            results["b_again"] = time.perf_counter() - t0

        asyncio.run(main())

    threads = [threading.Thread(target=loop_a), threading.Thread(target=loop_b)]
    for t in threads:
        t.start()
    join_all(threads)
    assert results["a"] and results["b_pending"] and results["b"]
    assert results["b_again"] < 0.05


def test_C3_several_event_loops_in_threads_await_one_event() -> None:
    s = mtia_sync.Stream()
    s.launch(time.sleep, 0.1)
    e = mtia.Event()
    e.record(s)  # an async-facade event on a sync-facade stream: one core
    results: list[str] = []

    def loop_thread(name: str) -> None:
        async def main() -> None:
            own = mtia.Stream()
            out: list[int] = []
            for i in range(100):
                own.launch(out.append, i)
            await own.synchronize()
            await e  # an event recorded elsewhere wakes this loop
            assert out == list(range(100))
            results.append(name)

        asyncio.run(main())

    threads = [threading.Thread(target=loop_thread, args=(f"loop{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    join_all(threads)
    assert sorted(results) == ["loop0", "loop1", "loop2", "loop3"]

    async def completed() -> float:
        t0 = time.perf_counter()
        await e
        return time.perf_counter() - t0

    assert asyncio.run(completed()) < 0.05  # a completed event returns at once in a new loop too


# --- C4 ------------------------------------------------------------------------------------------
def test_C4_async_api_under_trio_with_cancel_scopes() -> None:
    async def main() -> None:
        s = mtia.Stream()
        out: list[int] = []
        for i in range(50):
            s.launch(out.append, i)
        await s.synchronize()
        assert out == list(range(50))
        s.launch(time.sleep, 0.05)
        await s.record_event()
        await mtia.synchronize()
        # CancelScope cancellation behaves as in asyncio (F3): at once, the kernel still runs.
        done = threading.Event()
        s.launch(time.sleep, 0.3)
        s.launch(done.set)
        e = s.record_event()
        t0 = time.perf_counter()
        with anyio.move_on_after(0.02) as scope:
            await e
        assert scope.cancelled_caught and not done.is_set()
        assert time.perf_counter() - t0 < 0.2
        assert e._mark is not None and not e._mark._waiters
        await s.synchronize()
        assert done.is_set() and e.query()
        host = await (mtia.zeros(4) + 1).to_host()
        assert host.tolist() == [1, 1, 1, 1]
        with pytest.raises(RuntimeError, match="trio task"):
            mtia_sync.Stream._wrap(s._impl).synchronize()

    anyio.run(main, backend="trio")


def test_C4_blocking_portal_calls_from_worker_threads() -> None:
    async def wait_on(s: mtia.Stream, k: int) -> int:
        await s.synchronize()
        return k

    async def main() -> None:
        streams = [mtia.Stream() for _ in range(8)]
        for s in streams:
            s.launch(time.sleep, 0.05)
        async with anyio.from_thread.BlockingPortal() as portal:
            async with anyio.create_task_group() as tg:
                results: list[int] = []

                async def call(k: int) -> None:
                    results.append(await anyio.to_thread.run_sync(lambda: portal.call(wait_on, streams[k], k)))

                for k in range(8):
                    tg.start_soon(call, k)
        assert sorted(results) == list(range(8))

    anyio.run(main)


# --- C5 ------------------------------------------------------------------------------------------
async def test_C5_stream_context_in_one_task_never_changes_another_tasks() -> None:
    s1, s2 = mtia.Stream(), mtia.Stream()
    inside = asyncio.Event()
    release = asyncio.Event()
    seen: dict[str, mtia.Stream] = {}

    async def a() -> None:
        with pytest.raises(KeyError):
            with mtia.stream(s1):
                inside.set()
                await release.wait()
                seen["a"] = mtia.current_stream()
                raise KeyError("boom")
        seen["a_after"] = mtia.current_stream()

    async def b() -> None:
        await inside.wait()
        seen["b"] = mtia.current_stream()
        with mtia.stream(s2):
            seen["b_inner"] = mtia.current_stream()
            release.set()
            await asyncio.sleep(0)
        seen["b_after"] = mtia.current_stream()

    await asyncio.gather(a(), b())
    assert seen["a"] == s1
    assert seen["b"] == mtia.default_stream()
    assert seen["b_inner"] == s2
    assert seen["a_after"] == seen["b_after"] == mtia.default_stream()


def test_C5_stream_and_device_contexts_in_one_thread_never_leak_into_another() -> None:
    s = mtia_sync.Stream(device=1)
    entered = threading.Barrier(2, timeout=5)
    read = threading.Barrier(2, timeout=5)
    seen: dict[str, Any] = {}

    def thread_a() -> None:
        try:
            with mtia_sync.device(1), mtia_sync.stream(s):
                entered.wait()
                read.wait()
                seen["a_inside"] = (mtia_sync.current_device(), mtia_sync.current_stream())
                raise KeyError("boom")
        except KeyError:
            seen["a_after"] = (mtia_sync.current_device(), mtia_sync.current_stream(), mtia_sync.current_stream(1))

    def thread_b() -> None:
        entered.wait()  # A is inside its contexts now
        seen["b"] = (mtia_sync.current_device(), mtia_sync.current_stream(), mtia_sync.current_stream(1))
        read.wait()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    join_all(threads)
    defaults = (0, mtia_sync.default_stream(0), mtia_sync.default_stream(1))
    assert seen["b"] == defaults
    assert seen["a_inside"] == (1, s)
    assert seen["a_after"] == defaults


def test_C5_new_threads_start_from_the_defaults() -> None:
    s = mtia_sync.Stream(device=1)
    seen: dict[str, object] = {}
    mtia_sync.set_device(1)
    mtia_sync.set_stream(s)

    def other() -> None:
        seen["device"] = mtia_sync.current_device()
        seen["stream"] = mtia_sync.current_stream()

    t = threading.Thread(target=other)
    t.start()
    join_all([t])
    assert seen == {"device": 0, "stream": mtia_sync.default_stream(0)}
    assert mtia_sync.current_device() == 1
    assert mtia_sync.current_stream() == s


def test_C5_stream_context_restores_after_an_exception_and_selects_the_device() -> None:
    s = mtia_sync.Stream(device=1)
    with pytest.raises(KeyError):
        with mtia_sync.stream(s) as entered:
            assert entered is s
            assert mtia_sync.current_device() == 1
            assert mtia_sync.current_stream() == s
            raise KeyError("boom")
    assert mtia_sync.current_device() == 0
    assert mtia_sync.current_stream(1) == mtia_sync.default_stream(1)
    with mtia_sync.stream(None):
        assert mtia_sync.current_stream() == mtia_sync.default_stream()
    ctx = mtia_sync.StreamContext(s)
    with ctx:
        with ctx:
            assert mtia_sync.current_stream() == s
        assert mtia_sync.current_stream() == s
    assert mtia_sync.current_stream() == mtia_sync.default_stream()
    with pytest.raises(ZeroDivisionError):
        with mtia_sync.device(1):
            1 / 0
    assert mtia_sync.current_device() == 0


# --- C6 and C7 -----------------------------------------------------------------------------------
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


# --- C8 ------------------------------------------------------------------------------------------
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


# --- C9 ------------------------------------------------------------------------------------------
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
