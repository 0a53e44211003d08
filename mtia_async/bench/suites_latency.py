"""Suite ``responsiveness``: does an asyncio loop stay live while streams work?

A heartbeat task sleeps 1 ms in a loop and records the longest gap between two of its
wake-ups while (a) one stream drains 10^6 no-op kernels launched from the loop thread
in chunks of 1,000 (with ``await asyncio.sleep(0)`` between chunks, then awaited) and
(b) 8 streams each run one 200 ms ``time.sleep`` kernel. The baseline is the same
heartbeat on an idle loop. A chunk of 1,000 launches costs the loop well under 1 ms,
so the figure is the runtime's, not the chunking's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ._harness import Baseline, Context, Row
from .suites_core import noop

__all__ = ["heartbeat_gap", "run_responsiveness"]

_ns = time.perf_counter_ns
CHUNK = 1_000


async def _heartbeat(stop: asyncio.Event, period_s: float) -> float:
    worst = 0
    last = _ns()
    while not stop.is_set():
        await asyncio.sleep(period_s)
        now = _ns()
        worst = max(worst, now - last)
        last = now
    return worst / 1e6


async def heartbeat_gap(work: Callable[[], Awaitable[object]], period_s: float = 0.001) -> float:
    """Run ``work()`` with a heartbeat task beside it; return the longest gap in ms."""
    stop = asyncio.Event()
    beat = asyncio.create_task(_heartbeat(stop, period_s))
    await asyncio.sleep(0.003)  # the heartbeat is running before the work starts
    try:
        await work()
    finally:
        stop.set()
    return await beat


def _pow10(n: int) -> str:
    """``1_000_000`` -> ``"10^6"``, ``200_000`` -> ``"2x10^5"``."""
    digits = str(n).rstrip("0")
    power = len(str(n)) - len(digits)
    return f"10^{power}" if digits == "1" else f"{digits}x10^{power}"


def run_responsiveness(ctx: Context) -> list[Row]:
    """The heartbeat's longest gap under a no-op drain and under 8 sleeping streams."""
    return asyncio.run(_main(ctx))


async def _main(ctx: Context) -> list[Row]:
    import mtia_async as mtia

    total = ctx.n(1_000_000, 200_000)
    s = mtia.Stream()
    sleepers = [mtia.Stream() for _ in range(8)]
    rates: list[float] = []

    async def drain() -> None:
        launch = s.launch
        t0 = _ns()
        for _ in range(total // CHUNK):
            for _ in range(CHUNK):
                launch(noop)
            await asyncio.sleep(0)
        await s.synchronize()
        rates.append(total / (_ns() - t0) * 1e3)

    async def sleep_kernels() -> None:
        for stream in sleepers:
            stream.launch(time.sleep, 0.2)
        for stream in sleepers:
            await stream.synchronize()

    async def idle() -> None:
        await asyncio.sleep(0.2)

    samples = await ctx.measure_async("responsiveness", {
        "drain": lambda: heartbeat_gap(drain),
        "sleep": lambda: heartbeat_gap(sleep_kernels),
        "idle": lambda: heartbeat_gap(idle),
    })
    idle_base = Baseline("idle", samples["idle"])
    suite = "responsiveness"
    return [
        Row("responsiveness.drain", suite, f"gap, draining {_pow10(total)} no-ops", "ms",
            samples=samples["drain"], baseline=idle_base,
            note=f"1 ms heartbeat's longest gap; no-ops launched from the loop in chunks of {CHUNK:,}, "
                 "sleep(0) between, then awaited; baseline: the heartbeat on an idle loop"),
        Row("responsiveness.sleep", suite, "gap, 8 streams sleeping", "ms",
            samples=samples["sleep"], baseline=idle_base, note="8 streams each run one 200 ms time.sleep kernel"),
        Row("responsiveness.drain_rate", suite, "no-op rate during the drain", "M/s",
            "higher", samples=rates[-ctx.reps:]),
    ]
