"""Suite ``profiler``: what the profiler costs per kernel, on and off, and per record kept.

Each repetition runs the same loop (N launches, then ``synchronize()``) with no profile
and with one recording, interleaved, so ``profiler.extra`` is a paired difference
measured in the same run. Off, nothing of the profiler runs: the hot paths read the
instruments flag whether or not the profiler exists, so ``profiler.off`` is the launch
suite's ``launch.end_to_end`` (in a process that has used the profiler).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

from ._goals import Goal
from ._harness import Baseline, Context, Row
from .suites_core import noop

__all__ = ["run_profiler"]

_ns = time.perf_counter_ns
_EXTRA = Goal("<= 1 us more per kernel", "value", "<=", 1.0, None, 14)


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
    """No-op and DeviceArray launch + drain with and without a profile; bytes per kept record."""
    import numpy as np

    import mtia_async.sync as mtia
    from mtia_async.profiler import profile

    suite = "profiler"
    busy = _busy_profile()
    if busy is not None:
        return [Row("profiler.extra", suite, "extra per no-op kernel, profiling", "us", skipped=busy, goal=_EXTRA)]
    s = mtia.Stream()
    x, y = mtia.ones(16), mtia.empty(16)
    exp = np.exp

    def loop(n: int, da: bool) -> float:
        launch = s.launch
        t0 = _ns()
        if da:
            for _ in range(n):
                launch(exp, x, out=y)
        else:
            for _ in range(n):
                launch(noop)
        s.synchronize()
        return _ns() - t0

    def off(da: bool) -> Any:
        return lambda n: loop(n, da)

    def on(da: bool) -> Any:
        def timed(n: int) -> float:
            p = profile(max_events=n + 16)
            p.start()
            try:
                return loop(n, da)
            finally:
                p.stop()

        return timed

    samples = ctx.per_op("profiler", {"off": off(False), "on": on(False), "da_off": off(True), "da_on": on(True)},
                         max_n=300_000)  # fmt: skip
    extra = [a - b for a, b in zip(samples["on"], samples["off"])]
    extra_da = [a - b for a, b in zip(samples["da_on"], samples["da_off"])]
    per_record = _bytes_per_record(s, profile, ctx.n(20_000, 5_000))

    def batch(name: str) -> int | None:
        return ctx.batch("profiler", name)

    return [
        Row("profiler.off", suite, "no-op launch + drain, profiler off", "us", samples=samples["off"],
            batch=batch("off"), note="N s.launch(noop) then synchronize(), per kernel; the instruments flag "
            "is the one read on the hot path, profiler or not"),
        Row("profiler.on", suite, "no-op launch + drain, profiling", "us", samples=samples["on"],
            baseline=Baseline("off", samples["off"]), batch=batch("on"),
            note="the same loop while a profile() records (started and stopped outside the timed region)"),
        Row("profiler.extra", suite, "extra per no-op kernel, profiling", "us", samples=extra, goal=_EXTRA,
            note="paired per repetition: on - off; the instruments' launch record, the profiler's record "
            "and the worker-side timing of each kernel"),
        Row("profiler.extra_da", suite, "extra per launch(np.exp, X, out=Y)", "us", samples=extra_da,
            note="the same with two 16-float32 DeviceArray arguments (a launch runner binds them)"),
        Row("profiler.record_bytes", suite, "memory kept per kernel record", "B", samples=per_record,
            note="tracemalloc: bytes a stopped profile holds per no-op kernel; the ring keeps at most "
            "max_events records (default 200,000)"),
    ]


def _bytes_per_record(s: Any, profile: Any, n: int) -> list[float]:
    """Bytes a profile holds per kernel record, measured with tracemalloc (one sample)."""
    def noop_kernel() -> None:
        pass

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        p = profile(max_events=n + 16)
        p.start()
        for _ in range(n):
            s.launch(noop_kernel)
        s.synchronize()
        p.stop()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del p
    return [held / n]
