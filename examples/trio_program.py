"""mtia_async under trio: streams awaited from a nursery, events timing them, a cancel scope.

Run it: ``python examples/trio_program.py``. The async facade works in trio as in
asyncio (waits go through anyio); nothing here blocks trio's run loop, which a
heartbeat task checks.

1. A nursery of four tasks, each with its own stream: a task launches a few matmul
   kernels on its stream and awaits the result while the others run (the kernels
   overlap on the device's worker threads).
2. Events time each task's work on the device (``elapsed_time``, ms).
3. ``trio.move_on_after`` cancels a wait on a slow kernel: the wait ends at once, the
   kernel runs on, and the stream stays usable.
"""

from __future__ import annotations

import time

import numpy as np
import trio

import mtia_async as mtia


async def heartbeat(period: float, gaps: list[float], stop: trio.Event) -> None:
    """Wake every ``period`` seconds; record the longest gap between wake-ups (ms)."""
    last = time.perf_counter()
    worst = 0.0
    while not stop.is_set():
        await trio.sleep(period)
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    gaps.append(worst * 1e3)


async def task(i: int, results: dict[int, tuple[float, float]]) -> None:
    """Multiply a 256x256 matrix by itself 5 times on this task's stream; await the result."""
    s = mtia.Stream()
    start, end = mtia.Event(enable_timing=True), mtia.Event(enable_timing=True)
    with s:  # this task's current stream (other tasks are unaffected)
        m = mtia.full((256, 256), 1.0 / 256)
        start.record()
        for _ in range(5):
            m = m @ m
        end.record()
        host = await m.to_host()  # trio keeps running the other tasks meanwhile
    await end  # an Event is awaitable: await end.synchronize()
    results[i] = (float(host[0, 0]), start.elapsed_time(end))


async def main() -> None:
    results: dict[int, tuple[float, float]] = {}
    gaps: list[float] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat, 0.001, gaps, stop)
        async with trio.open_nursery() as workers:
            for i in range(4):
                workers.start_soon(task, i, results)
        stop.set()
    for i, (value, ms) in sorted(results.items()):
        assert abs(value - 1.0 / 256) < 1e-6, value  # (J/256)^k stays J/256
        print(f"task {i}: 5 matmuls in {ms:.2f} ms on the device")
    print(f"trio's loop stayed live: longest heartbeat gap {gaps[0]:.1f} ms")

    # A cancel scope around a wait: the wait ends, the kernel does not.
    s = mtia.Stream()
    s.launch(time.sleep, 0.5)
    t0 = time.perf_counter()
    with trio.move_on_after(0.05) as scope:
        await s.synchronize()
    assert scope.cancelled_caught
    print(f"waited {1e3 * (time.perf_counter() - t0):.0f} ms, then moved on; stream busy: {not s.query()}")
    await s.synchronize()  # the stream stays usable; this waits for the sleeping kernel
    out = np.zeros(1, dtype=np.int64)
    s.launch(np.add, out, 1, out=out)
    await s.synchronize()
    assert out[0] == 1
    print("done")


if __name__ == "__main__":
    trio.run(main)
