"""Suite ``profiler``: what the profiler costs per kernel, on and off, and the memory it keeps.

Each repetition runs the same loop (launches in chunks of 10,000, each then ``synchronize()``) with no profile
and with one recording, interleaved, so ``profiler.extra`` is a paired difference
measured in the same run. Off, nothing of the profiler runs: the hot paths read the
instruments flag whether or not the profiler exists. ``profiler.off`` is the launch
suite's ``launch.end_to_end`` loop in a process that has profiled (compare the two rows
of one run), against the same loop measured first, before any profile started here
(``never profiled``: the process as the launch suite sees it). Memory: bytes a stopped
profile holds per kernel record, and what a ring of 2,000 records holds after 10x as
many kernels, against the same ring after 2,000 (bounded: the ratio stays ~1).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from ._goals import Goal
from ._harness import Baseline, Context, Row
from .suites_core import noop

__all__ = ["run_profiler"]

_ns = time.perf_counter_ns
_cpu = time.process_time_ns
_EXTRA = Goal("<= 1 us more per kernel", "value", "<=", 1.0, None, 14)
_BOUNDED = Goal("bounded: 10x the ring's kernels hold <= 1.1x its memory", "ratio", "<=", 1.1, None, 14)
_RING = 2_000  # the ring of the bounded-memory rows
_CHUNK = 10_000  # launches between two synchronize() calls in the timed loops


def _busy_profile() -> str | None:
    """Why the profile cannot be measured here (another one records: ``bench --trace``), or None."""
    from mtia_async.profiler import profile

    probe = profile(max_events=1)
    try:
        probe.start()
    except RuntimeError as exc:
        return f"cannot measure the profiler while it traces the run (bench --trace): {exc}"
    probe.stop()
    return None


def run_profiler(ctx: Context) -> list[Row]:
    """No-op and DeviceArray launch + drain with and without a profile; bytes per kept record; a bounded ring."""
    import numpy as np

    import mtia_async.sync as mtia
    from mtia_async.profiler import profile

    suite = "profiler"
    s = mtia.Stream()
    x, y = mtia.ones(16), mtia.empty(16)
    exp = np.exp

    def loop(n: int, da: bool, clock: Callable[[], int] = _ns) -> float:
        # chunks of _CHUNK launches, each then synchronized: every variant queues as deep,
        # whatever batch its calibration chose (the per-kernel cost depends on the depth)
        launch = s.launch
        t0 = clock()
        left = n
        while left > 0:
            k = min(left, _CHUNK)
            if da:
                for _ in range(k):
                    launch(exp, x, out=y)
            else:
                for _ in range(k):
                    launch(noop)
            s.synchronize()
            left -= k
        return clock() - t0

    def off(da: bool, clock: Callable[[], int] = _ns) -> Any:
        return lambda n: loop(n, da, clock)

    def on(da: bool, clock: Callable[[], int] = _ns) -> Any:
        def timed(n: int) -> float:
            p = profile(max_events=n + 16)
            p.start()
            try:
                return loop(n, da, clock)
            finally:
                p.stop()

        return timed

    # before anything here starts a profile (the busy check does): the process as the launch suite sees it
    never = ctx.per_op("profiler-never", {"never": off(False)}, max_n=300_000)["never"]
    busy = _busy_profile()
    if busy is not None:
        return [Row("profiler.extra", suite, "extra per no-op kernel, profiling", "us", skipped=busy, goal=_EXTRA)]
    samples = ctx.per_op("profiler", {"off": off(False), "on": on(False), "da_off": off(True), "da_on": on(True)},
                         max_n=300_000)  # fmt: skip
    extra = [a - b for a, b in zip(samples["on"], samples["off"])]
    extra_da = [a - b for a, b in zip(samples["da_on"], samples["da_off"])]
    cpu = ctx.per_op("profiler-cpu", {"off": off(False, _cpu), "on": on(False, _cpu)}, max_n=300_000)
    extra_cpu = [a - b for a, b in zip(cpu["on"], cpu["off"])]
    n_bytes = ctx.n(20_000, 5_000)
    per_record = [_held_bytes(s, profile, n_bytes + 16, n_bytes) / n_bytes]
    ring_full: list[float] = []
    ring_10x: list[float] = []
    for _ in range(ctx.n(5, 3)):  # interleaved: the ring after its size in kernels, then after 10x
        ring_full.append(_held_bytes(s, profile, _RING, _RING) / 1e3)
        ring_10x.append(_held_bytes(s, profile, _RING, 10 * _RING) / 1e3)

    def batch(name: str) -> int | None:
        return ctx.batch("profiler", name)

    return [
        Row("profiler.off", suite, "no-op launch + drain, profiler off", "us", samples=samples["off"],
            baseline=Baseline("never profiled", never), batch=batch("off"),
            note="s.launch(noop) in chunks of 10,000, each then synchronize(), per kernel (launch.end_to_end's "
            "loop, chunked), between profiled runs; the baseline is the same loop measured first, before any "
            "profile started in this process (not interleaved: compare within the noise); the instruments "
            "flag is the one read on the hot path, profiler or not"),
        Row("profiler.on", suite, "no-op launch + drain, profiling", "us", samples=samples["on"],
            baseline=Baseline("off", samples["off"]), batch=batch("on"),
            note="the same loop while a profile() records (started and stopped outside the timed region)"),
        Row("profiler.extra", suite, "extra per no-op kernel, profiling", "us", samples=extra, goal=_EXTRA,
            note="paired per repetition: on - off; the instruments' launch record, the profiler's record "
            "and the worker-side timing of each kernel"),
        Row("profiler.extra_cpu", suite, "extra CPU per no-op kernel, profiling", "us", samples=extra_cpu,
            note="the same pair timed by time.process_time_ns() (CPU time of every thread of the process: "
            "the launching thread and the workers), which other processes on a busy machine do not inflate "
            "as they do the wall clock"),
        Row("profiler.extra_da", suite, "extra per launch(np.exp, X, out=Y)", "us", samples=extra_da,
            note="the same with two 16-float32 DeviceArray arguments (a launch runner binds them)"),
        Row("profiler.record_bytes", suite, "memory kept per kernel record", "B", samples=per_record,
            note="tracemalloc: bytes a stopped profile holds per no-op kernel; the ring keeps at most "
            "max_events records (default 200,000)"),
        Row("profiler.bounded", suite, f"ring of {_RING:,}: memory after 10x its kernels", "kB", samples=ring_10x,
            baseline=Baseline(f"after {_RING:,}", ring_full), goal=_BOUNDED,
            note=f"tracemalloc: kB a stopped profile(max_events={_RING}) holds after {10 * _RING:,} no-op "
            f"kernels, against the same after {_RING:,} (the oldest records dropped, memory flat)"),
    ]


def _held_bytes(s: Any, profile: Any, max_events: int, kernels: int) -> float:
    """Bytes a stopped ``profile(max_events=max_events)`` holds after ``kernels`` no-op launches (tracemalloc)."""
    def noop_kernel() -> None:
        pass

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        p = profile(max_events=max_events)
        p.start()
        for _ in range(kernels):
            s.launch(noop_kernel)
        s.synchronize()
        p.stop()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del p
    return float(held)
