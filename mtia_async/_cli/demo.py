"""The main job's demo: what the device is, streams overlapping, an async service loop, numpy on the device.

``python -m mtia_async`` runs :func:`describe` then :func:`run_demo`, then a quick
benchmark summary. Everything here uses the public API only.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import mtia_async as mtia

__all__ = ["describe", "run_demo"]

Print = Callable[[str], None]


def _gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.1f} GiB"


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS unknown (threadpoolctl not installed)"
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    if not infos:
        return "no BLAS found"
    i = infos[0]
    return f"{i.get('internal_api')} {i.get('version')}, {i.get('num_threads')} threads"


def describe(out: Print = print) -> None:
    """Initialise the runtime and print the devices, memory, workers and capability."""
    mtia.init()
    count = mtia.device_count()
    out(f"mtia_async {mtia.__version__}: torch.mtia emulated in software (numpy), async-first")
    out(f"devices: {count} (current: mtia:{mtia.current_device()}), initialized: {mtia.is_initialized()}")
    mem_get_info = getattr(mtia, "mem_get_info", None)
    for index in range(count):
        props = mtia.get_device_properties(index)
        major, minor = mtia.get_device_capability(index)
        memory = f"memory {_gib(props['total_memory'])}"
        if callable(mem_get_info):
            free, total = mem_get_info(index)
            memory = f"memory {_gib(total)} ({_gib(free)} free)"
        out(f"  mtia:{index}  {props['name']}  capability {major}.{minor}  "
            f"bf16 {'yes' if mtia.is_bf16_supported() else 'no'}")
        out(f"          {memory}  workers {props['workers']}")
    out(
        f"host: Python {platform.python_version()}, numpy {np.__version__} ({_blas()}), "
        f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}"
    )


# --- part 1: streams overlapping, timed with events --------------------------------------
async def _overlap(out: Print, n_streams: int = 3, rounds: int = 8) -> None:
    rng = np.random.default_rng(0)
    # Streams spread over the devices (one device unless configured; on a cluster, its workers' devices).
    streams = [mtia.Stream(i % mtia.device_count()) for i in range(n_streams)]
    buffers = []
    for s in streams:
        with mtia.stream(s):  # the inputs are copied in on the stream that uses them
            buffers.append((mtia.asarray(rng.random(1 << 19, dtype=np.float32)), mtia.empty(1 << 19)))
    events = []
    t0 = time.perf_counter()
    for s, (x, y) in zip(streams, buffers):
        start, end = mtia.Event(enable_timing=True), mtia.Event(enable_timing=True)
        start.record(s)
        for _ in range(rounds):  # a little pipeline: y = sqrt(exp(x) * 0.5)
            s.launch(np.exp, x, out=y)
            s.launch(np.multiply, y, 0.5, out=y)
            s.launch(np.sqrt, y, out=y)
        end.record(s)
        events.append((start, end))
    for _, end in events:
        await end  # `await event`: no thread blocks while the streams work
    wall_ms = (time.perf_counter() - t0) * 1e3
    busy = [start.elapsed_time(end) for start, end in events]
    for s, ms in zip(streams, busy):
        out(f"  stream {s.stream_id}: {3 * rounds} kernels (exp, multiply, sqrt on 512K float32) in {ms:.1f} ms")
    out(f"  {n_streams} streams: wall {wall_ms:.1f} ms, sum of stream times {sum(busy):.1f} ms "
        f"-> {sum(busy) / wall_ms:.2f}x overlap")


# --- part 2: an async service loop ----------------------------------------------------------
async def _heartbeat(stop: asyncio.Event, ticks: list[float]) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.005)
        ticks.append(time.perf_counter())


async def _service(out: Print, n_requests: int = 24) -> None:
    rng = np.random.default_rng(1)
    pool = [mtia.Stream(i % mtia.device_count()) for i in range(2)]
    weights: dict[mtia.Stream, mtia.DeviceArray] = {}
    host_weights = rng.standard_normal((256, 128), dtype=np.float32) / 16
    for s in pool:
        with mtia.stream(s):
            weights[s] = mtia.asarray(host_weights)  # each stream's device holds the model
    latencies: list[float] = []
    checks: list[float] = []

    async def handle(i: int) -> None:
        t0 = time.perf_counter()
        s = pool[i % len(pool)]
        with mtia.stream(s):
            batch = mtia.asarray(rng.random((64, 256), dtype=np.float32))  # the request, copied in
            hidden = mtia.empty((64, 128))
            s.launch(np.subtract, batch, 0.5, out=batch)  # preprocess
            s.launch(np.dot, batch, weights[s], out=hidden)  # "model"
            s.launch(np.tanh, hidden, out=hidden)
            await s.record_event()  # the result is ready
            result = await hidden.to_host()  # read it on the host
        checks.append(float(np.abs(result).mean()))
        latencies.append((time.perf_counter() - t0) * 1e3)

    stop = asyncio.Event()
    ticks: list[float] = [time.perf_counter()]
    beat = asyncio.create_task(_heartbeat(stop, ticks))
    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for i in range(n_requests):
            tg.create_task(handle(i))
            await asyncio.sleep(0.002)  # requests arrive over time
    for s in pool:
        await s.synchronize()  # drain before shutting the service down
    elapsed = time.perf_counter() - t0
    stop.set()
    await beat
    gaps = [(b - a) * 1e3 for a, b in itertools.pairwise(ticks)]
    out(f"  served {len(latencies)} requests in {elapsed * 1e3:.0f} ms on {len(pool)} streams: "
        f"latency p50 {statistics.median(latencies):.2f} ms, max {max(latencies):.2f} ms")
    out(f"  results read on the host after each await: mean |tanh| {statistics.fmean(checks):.3f}")
    out(f"  heartbeat (5 ms) kept running: {len(gaps)} ticks, longest gap {max(gaps):.1f} ms")


async def _numpy(out: Print) -> None:
    """numpy's functions on DeviceArrays: kernels at once, and the waits that data-sized results need."""
    npx: Any = np  # numpy's stubs type its functions for host arrays only (docs/arrays.md, "Typing")
    rng = np.random.default_rng(2)
    host = rng.standard_normal((4, 1000), dtype=np.float32)
    x = mtia.asarray(host)
    clipped = npx.clip(x, -2.0, 2.0)  # each call: one kernel on the current stream, a DeviceArray back
    joined = npx.concatenate([clipped, npx.where(clipped > 0, clipped, 0.0)], axis=1)
    top = npx.sort(joined, axis=1)[:, -3:]  # a view of the sorted copy
    ranks = npx.argsort(npx.median(x, axis=1))
    out(f"  launched clip, where, concatenate, sort, median, argsort: {joined.shape} -> {top.shape}, no wait yet")
    labels = await mtia.unique(x > 1.5)  # sized by the data: awaited (np.unique would block)
    biggest = await top[0, -1].item()  # await a.item() on an event loop
    expected = float(np.sort(np.clip(host[0], -2, 2))[-1])
    out(f"  awaited unique(x > 1.5) -> {(await labels.to_host()).tolist()}; top value {biggest:.3f} "
        f"(numpy on the host: {expected:.3f})")
    out(f"  rows ordered by their median: {(await ranks.to_host()).tolist()}")


async def _demo(out: Print) -> None:
    out("demo 1: streams overlap numpy work; events time each stream (elapsed_time)")
    await _overlap(out)
    out("demo 2: an async service awaits results (await event, await s.synchronize()); a heartbeat runs")
    await _service(out)
    out("demo 3: numpy's functions run on the device (docs/arrays.md); data-sized results are awaited")
    await _numpy(out)
    await mtia.synchronize()


def run_demo(out: Print = print) -> None:
    """Run the three demos in a fresh asyncio loop, printing what they do."""
    asyncio.run(_demo(out))


def main() -> int:
    """Describe the devices and run the demo only (``python -m mtia_async demo``)."""
    describe()
    run_demo()
    return 0

