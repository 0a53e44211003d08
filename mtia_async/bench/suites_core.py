"""Suites ``launch``, ``sync`` and ``await``: the runtime's own overheads, with no-op kernels."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._harness import Baseline, Context, Row

__all__ = ["held", "noop", "run_await", "run_launch", "run_sync"]

_ns = time.perf_counter_ns


def noop() -> None:
    """The no-op kernel."""


@contextmanager
def held(stream: Any) -> Iterator[Callable[[], None]]:
    """Hold ``stream``: its work waits on an event that is not done until released.

    A gate kernel on a second stream blocks (without the GIL) on a ``threading.Event``;
    ``stream`` waits on an event recorded after it, so its worker parks and launches
    only append to the FIFO. Yields the release function; leaving the block releases.
    """
    import mtia_async.sync as mtia

    gate = threading.Event()
    gate_stream = mtia.Stream(stream.device_index)
    gate_stream.launch(gate.wait)
    stream.wait_event(gate_stream.record_event())
    time.sleep(0.002)  # let the worker reach the wait and park the stream
    try:
        yield gate.set
    finally:
        gate.set()


# --- launch ----------------------------------------------------------------------------
def run_launch(ctx: Context) -> list[Row]:
    """Launch cost on the caller (held and live), end-to-end launch+drain, throughput."""
    import mtia_async.sync as mtia

    n = ctx.n(200_000, 40_000)
    s = mtia.Stream()
    s2 = mtia.Stream()
    drain: list[float] = []
    live_caller: list[float] = []

    def caller_held() -> float:
        launch = s.launch
        with held(s) as release:
            t0 = _ns()
            for _ in range(n):
                launch(noop)
            t1 = _ns()
            release()
            s.synchronize()  # the stream was held: this times the worker's drain alone
            t2 = _ns()
        drain.append(n / (t2 - t1) * 1e3)  # M/s
        return (t1 - t0) / n / 1e3  # us

    def end_to_end() -> float:
        launch = s.launch
        t0 = _ns()
        for _ in range(n):
            launch(noop)
        t1 = _ns()
        s.synchronize()
        t2 = _ns()
        live_caller.append((t1 - t0) / n / 1e3)
        return (t2 - t0) / n / 1e3  # us per kernel, caller and worker overlapped

    def two_streams() -> float:
        launch1, launch2 = s.launch, s2.launch
        half = n // 2
        t0 = _ns()
        for _ in range(half):
            launch1(noop)
            launch2(noop)
        s.synchronize()
        s2.synchronize()
        return half / (_ns() - t0) * 1e3  # M/s per stream

    samples = ctx.measure("launch", {"held": caller_held, "e2e": end_to_end, "two": two_streams})
    e2e = samples["e2e"]
    drain, live_caller = drain[-ctx.reps:], live_caller[-ctx.reps:]  # drop the warm-up batches
    suite = "launch"
    return [
        Row("launch.caller", suite, "no-op launch, caller side (stream held)", "us", samples=samples["held"],
            note=f"{n:,} launches per batch; the stream waits on an unfinished event so the worker is parked"),
        Row("launch.caller_live", suite, "no-op launch, caller side (worker draining)", "us", samples=live_caller,
            note="the same loop while the worker drains concurrently (GIL contention)"),
        Row("launch.end_to_end", suite, "launch N no-ops then synchronize, per kernel", "us", samples=e2e),
        Row("launch.throughput", suite, "no-op kernels/s, one stream (launch N, synchronize)", "M/s", "higher",
            samples=[1.0 / x for x in e2e]),
        Row("launch.drain", suite, "worker drain rate of a pre-filled FIFO", "M/s", "higher", samples=drain,
            note="time from releasing a held stream of N no-ops to its synchronize() returning"),
        Row("launch.two_streams", suite, "no-op kernels/s per stream, two streams", "M/s", "higher",
            samples=samples["two"], note="one caller alternating launches on two streams"),
    ]


# --- sync ------------------------------------------------------------------------------
def _ping_pong(rounds: int) -> float:
    """Microseconds per round trip of two threads handing two locks to each other."""
    ping, pong = threading.Lock(), threading.Lock()
    ping.acquire()
    pong.acquire()
    started = threading.Event()

    def other() -> None:
        started.set()
        for _ in range(rounds + 1):
            ping.acquire()
            pong.release()

    thread = threading.Thread(target=other, name="bench-ping-pong", daemon=True)
    thread.start()
    started.wait()
    ping.release()  # one untimed round: the other thread is running
    pong.acquire()
    t0 = _ns()
    for _ in range(rounds):
        ping.release()
        pong.acquire()
    elapsed = _ns() - t0
    thread.join()
    return elapsed / rounds / 1e3


def run_sync(ctx: Context) -> list[Row]:
    """Drained and pending ``synchronize()``, event query/record, timestamp resolution."""
    import mtia_async.sync as mtia

    n_fast = ctx.n(200_000, 40_000)
    n_pending = ctx.n(4_000, 1_000)
    n_pairs = ctx.n(2_000, 500)
    s = mtia.Stream()
    done_event = s.record_event()
    s.synchronize()
    timing = [mtia.Event(enable_timing=True) for _ in range(2 * n_pairs)]

    def drained() -> float:
        sync = s.synchronize
        t0 = _ns()
        for _ in range(n_fast):
            sync()
        return (_ns() - t0) / n_fast / 1e3

    def pending() -> float:
        launch, sync = s.launch, s.synchronize
        t0 = _ns()
        for _ in range(n_pending):
            launch(noop)
            sync()
        return (_ns() - t0) / n_pending / 1e3

    def query() -> float:
        q = done_event.query
        t0 = _ns()
        for _ in range(n_fast):
            q()
        return (_ns() - t0) / n_fast / 1e3

    def record() -> float:
        event = mtia.Event()
        rec = event.record
        n = n_fast // 4
        with held(s):
            t0 = _ns()
            for _ in range(n):
                rec(s)
            t1 = _ns()
        s.synchronize()
        return (t1 - t0) / n / 1e3

    def resolution() -> float:
        with held(s):  # every mark is queued before the worker stamps them back to back
            for i in range(0, len(timing), 2):
                timing[i].record(s)
                timing[i + 1].record(s)
        s.synchronize()
        gaps = [timing[i].elapsed_time(timing[i + 1]) for i in range(0, len(timing), 2)]
        nonzero = [g for g in gaps if g > 0]
        return min(nonzero) * 1e3 if nonzero else float("nan")  # us

    samples = ctx.measure("sync", {
        "drained": drained, "pending": pending, "pingpong": lambda: _ping_pong(n_pending),
        "query": query, "record": record, "resolution": resolution,
    })
    suite = "sync"
    return [
        Row("sync.drained", suite, "sync.Stream.synchronize(), drained stream", "us", samples=samples["drained"]),
        Row("sync.pending", suite, "launch one no-op + synchronize()", "us", samples=samples["pending"],
            baseline=Baseline("ping-pong", samples["pingpong"]),
            note="ping-pong: two threads handing two threading.Locks back and forth, per round trip"),
        Row("sync.event_query", suite, "Event.query(), completed event", "us", samples=samples["query"]),
        Row("sync.event_record", suite, "Event.record(s), caller side (stream held)", "us",
            samples=samples["record"]),
        Row("sync.timestamp_resolution", suite, "smallest nonzero elapsed_time, back-to-back records", "us",
            samples=samples["resolution"], note=f"min over {n_pairs:,} pairs per batch"),
    ]


# --- await -----------------------------------------------------------------------------
def run_await(ctx: Context) -> list[Row]:
    """``s.launch(noop); await s.synchronize()`` against the usual thread hops of asyncio."""
    return asyncio.run(_await_main(ctx))


async def _await_main(ctx: Context) -> list[Row]:
    import anyio.to_thread

    import mtia_async as mtia

    n = ctx.n(2_000, 400)
    s = mtia.Stream()
    loop = asyncio.get_running_loop()

    async def launch_await() -> float:
        launch, sync = s.launch, s.synchronize
        t0 = _ns()
        for _ in range(n):
            launch(noop)
            await sync()
        return (_ns() - t0) / n / 1e3

    async def to_thread() -> float:
        t0 = _ns()
        for _ in range(n):
            await asyncio.to_thread(noop)
        return (_ns() - t0) / n / 1e3

    async def executor() -> float:
        run = loop.run_in_executor
        t0 = _ns()
        for _ in range(n):
            await run(None, noop)
        return (_ns() - t0) / n / 1e3

    async def anyio_thread() -> float:
        run = anyio.to_thread.run_sync
        t0 = _ns()
        for _ in range(n):
            await run(noop)
        return (_ns() - t0) / n / 1e3

    samples = await ctx.measure_async("await", {
        "mtia": launch_await, "to_thread": to_thread, "executor": executor, "anyio": anyio_thread,
    })
    mine = samples["mtia"]
    name = "launch + await s.synchronize()"
    suite = "await"
    return [
        Row("await.to_thread", suite, f"{name} vs asyncio.to_thread", "us", samples=mine,
            baseline=Baseline("to_thread", samples["to_thread"])),
        Row("await.executor", suite, f"{name} vs run_in_executor", "us", samples=mine,
            baseline=Baseline("run_in_executor", samples["executor"])),
        Row("await.anyio", suite, f"{name} vs anyio.to_thread", "us", samples=mine,
            baseline=Baseline("anyio", samples["anyio"])),
    ]
