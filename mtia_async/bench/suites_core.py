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

    s = mtia.Stream()
    s2 = mtia.Stream()
    live_caller: list[float] = []

    def caller_held(n: int) -> float:
        launch = s.launch
        with held(s) as release:
            t0 = _ns()
            for _ in range(n):
                launch(noop)
            t1 = _ns()
            release()
            s.synchronize()
        return t1 - t0

    def drain(n: int) -> float:
        launch = s.launch
        with held(s) as release:
            for _ in range(n):
                launch(noop)
            t0 = _ns()
            release()
            s.synchronize()  # the stream was held: this times the worker's drain alone
            return _ns() - t0

    def end_to_end(n: int) -> float:
        launch = s.launch
        t0 = _ns()
        for _ in range(n):
            launch(noop)
        t1 = _ns()
        s.synchronize()
        t2 = _ns()
        live_caller.append((t1 - t0) / n / 1e3)
        return t2 - t0  # caller and worker overlapped

    def two_streams(n: int) -> float:
        launch1, launch2 = s.launch, s2.launch
        half = max(1, n // 2)
        t0 = _ns()
        for _ in range(half):
            launch1(noop)
            launch2(noop)
        s.synchronize()
        s2.synchronize()
        return (_ns() - t0) * n / (2 * half)

    samples = ctx.per_op("launch", {"held": caller_held, "drain": drain, "e2e": end_to_end, "two": two_streams},
                         max_n=2_000_000)
    e2e = samples["e2e"]
    live = live_caller[-ctx.reps:]  # the timed repetitions: calibration and warm-up came first
    suite = "launch"

    def batch(name: str) -> int | None:
        return ctx.batch("launch", name)

    return [
        Row("launch.caller", suite, "no-op launch, stream held", "us", samples=samples["held"], batch=batch("held"),
            note="caller side; the stream waits on an unfinished event so its worker is parked"),
        Row("launch.caller_live", suite, "no-op launch, worker draining", "us", samples=live, batch=batch("e2e"),
            note="the same loop while the worker drains concurrently (GIL contention)"),
        Row("launch.end_to_end", suite, "launch N + synchronize", "us", samples=e2e, batch=batch("e2e"),
            note="per kernel: N no-op launches on an idle stream, then synchronize()"),
        Row("launch.throughput", suite, "no-op kernels/s, one stream", "M/s", "higher",
            samples=[1.0 / x for x in e2e], batch=batch("e2e")),
        Row("launch.drain", suite, "worker drain, pre-filled FIFO", "M/s", "higher",
            samples=[1.0 / x for x in samples["drain"]], batch=batch("drain"),
            note="time from releasing a held stream of N no-ops to its synchronize() returning"),
        Row("launch.two_streams", suite, "kernels/s per stream, two", "M/s", "higher",
            samples=[0.5 / x for x in samples["two"]], batch=batch("two"),
            note="one caller alternating launches on two streams"),
    ]


# --- sync ------------------------------------------------------------------------------
def _ping_pong(rounds: int) -> float:
    """Nanoseconds for ``rounds`` round trips of two threads handing two locks to each other."""
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
    return elapsed


def run_sync(ctx: Context) -> list[Row]:
    """Drained and pending ``synchronize()``, event query/record, timestamp resolution."""
    import mtia_async.sync as mtia

    n_pairs = ctx.n(2_000, 500)
    s = mtia.Stream()
    done_event = s.record_event()
    s.synchronize()
    timing = [mtia.Event(enable_timing=True) for _ in range(2 * n_pairs)]

    def drained(n: int) -> float:
        sync = s.synchronize
        t0 = _ns()
        for _ in range(n):
            sync()
        return _ns() - t0

    def pending(n: int) -> float:
        launch, sync = s.launch, s.synchronize
        t0 = _ns()
        for _ in range(n):
            launch(noop)
            sync()
        return _ns() - t0

    def query(n: int) -> float:
        q = done_event.query
        t0 = _ns()
        for _ in range(n):
            q()
        return _ns() - t0

    def record(n: int) -> float:
        event = mtia.Event()
        rec = event.record
        with held(s):
            t0 = _ns()
            for _ in range(n):
                rec(s)
            t1 = _ns()
        s.synchronize()
        return t1 - t0

    def resolution() -> float:
        with held(s):  # every mark is queued before the worker stamps them back to back
            for i in range(0, len(timing), 2):
                timing[i].record(s)
                timing[i + 1].record(s)
        s.synchronize()
        gaps = [timing[i].elapsed_time(timing[i + 1]) for i in range(0, len(timing), 2)]
        nonzero = [g for g in gaps if g > 0]
        return min(nonzero) * 1e3 if nonzero else float("nan")  # us

    samples = ctx.per_op("sync", {"drained": drained, "pending": pending, "pingpong": _ping_pong,
                                  "query": query, "record": record}, max_n=2_000_000)
    resolution_samples = ctx.measure("sync timestamps", {"resolution": resolution})["resolution"]
    suite = "sync"

    def batch(name: str) -> int | None:
        return ctx.batch("sync", name)

    return [
        Row("sync.drained", suite, "synchronize(), drained stream", "us", samples=samples["drained"],
            batch=batch("drained")),
        Row("sync.pending", suite, "launch+sync vs ping-pong", "us", samples=samples["pending"],
            baseline=Baseline("ping-pong", samples["pingpong"]), batch=batch("pending"),
            note="per iteration launch(noop) then synchronize(); ping-pong: two threads handing two "
                 "threading.Locks back and forth, per round trip"),
        Row("sync.event_query", suite, "Event.query(), completed", "us", samples=samples["query"],
            batch=batch("query")),
        Row("sync.event_record", suite, "Event.record(s), stream held", "us", samples=samples["record"],
            batch=batch("record")),
        Row("sync.timestamp_resolution", suite, "elapsed_time resolution", "us", samples=resolution_samples,
            note=f"smallest nonzero elapsed_time of {n_pairs:,} back-to-back record pairs per batch"),
    ]


# --- await -----------------------------------------------------------------------------
def run_await(ctx: Context) -> list[Row]:
    """``s.launch(noop); await s.synchronize()`` against the usual thread hops of asyncio."""
    return asyncio.run(_await_main(ctx))


async def _await_main(ctx: Context) -> list[Row]:
    import anyio.to_thread

    import mtia_async as mtia

    s = mtia.Stream()
    loop = asyncio.get_running_loop()

    async def launch_await(n: int) -> float:
        launch, sync = s.launch, s.synchronize
        t0 = _ns()
        for _ in range(n):
            launch(noop)
            await sync()
        return _ns() - t0

    async def to_thread(n: int) -> float:
        t0 = _ns()
        for _ in range(n):
            await asyncio.to_thread(noop)
        return _ns() - t0

    async def executor(n: int) -> float:
        run = loop.run_in_executor
        t0 = _ns()
        for _ in range(n):
            await run(None, noop)
        return _ns() - t0

    async def anyio_thread(n: int) -> float:
        run = anyio.to_thread.run_sync
        t0 = _ns()
        for _ in range(n):
            await run(noop)
        return _ns() - t0

    samples = await ctx.per_op_async("await", {
        "mtia": launch_await, "to_thread": to_thread, "executor": executor, "anyio": anyio_thread,
    }, max_n=100_000)
    mine = samples["mtia"]
    suite = "await"
    batch = ctx.batch("await", "mtia")
    note = "in one asyncio loop, one kernel at a time: s.launch(noop); await s.synchronize()"
    return [
        Row("await.to_thread", suite, "launch+await vs to_thread", "us", samples=mine, batch=batch,
            baseline=Baseline("to_thread", samples["to_thread"]), note=note),
        Row("await.executor", suite, "launch+await vs executor", "us", samples=mine, batch=batch,
            baseline=Baseline("executor", samples["executor"]), note=note + "; loop.run_in_executor(None, noop)"),
        Row("await.anyio", suite, "launch+await vs anyio", "us", samples=mine, batch=batch,
            baseline=Baseline("anyio", samples["anyio"]), note=note + "; anyio.to_thread.run_sync(noop)"),
    ]
