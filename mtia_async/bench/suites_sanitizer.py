"""Suite ``sanitizer``: what the stream sanitizer costs per launch, and that history does not change it.

Each operation is timed three ways in every repetition, interleaved (ABBA): with the
sanitizer off, on after a short history (10 prior launches) and on after a long one
(100,000 prior launches; 10,000 under ``--quick``). A history is a small multi-stream
program run with the sanitizer on: three side streams updating arrays of their own,
handing work to each other with events, plus the measured arrays written on one side
stream and handed to the default stream with ``wait_stream``; it is built afresh (the
sanitizer disabled and enabled again, which forgets the old one) and drained before
the timed batch, so the worker is idle when timing starts. The measured operations then
read arrays another stream wrote (the checker's general path, not only its
one-stream fast path).

A timed batch is ``n`` operations on the default stream and one ``synchronize()``,
per operation (as suite ``ops``); ``n`` is calibrated once, with the sanitizer off.
``extra`` rows are paired differences (on - off, per repetition); the goal (14 of the
performance-goals page) is <= 2 us more per launch at either history length.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._goals import Goal
from ._harness import Baseline, Context, Row, calibrate, gc_paused
from ._stats import paired_differences
from .suites_core import noop

__all__ = ["run_sanitizer"]

_ns = time.perf_counter_ns
_EXTRA = Goal("<= 2 us more per launch", "value", "<=", 2.0, None, 14)
SHORT = 10
LONG, LONG_QUICK = 100_000, 10_000
Op = Callable[[], object]


def _touch(a: Any) -> None:
    """A history kernel: reads and writes its array (no work: the launch is what is measured)."""


class _Program:
    """The arrays and streams of the history and of the measured operations."""

    def __init__(self) -> None:
        import numpy as np

        import mtia_async.sync as mtia

        self.mtia = mtia
        self.side = [mtia.Stream() for _ in range(3)]
        self.pools = [[mtia.zeros(16) for _ in range(64)] for _ in self.side]
        self.a, self.b, self.o = mtia.zeros(16), mtia.zeros(16), mtia.empty(16)
        s = mtia.current_stream()
        a, b, o = self.a, self.b, self.o
        exp: Any = np.exp  # typed Any: numpy's stubs do not know DeviceArray's __array_ufunc__
        launch = s.launch
        self.ops: dict[str, tuple[str, Op]] = {
            "launch_noop": ("s.launch(noop)", lambda: launch(noop)),
            "launch_exp_da": ("s.launch(np.exp, A, out=O)", lambda: launch(exp, a, out=o)),
            "add": ("a + b", lambda: a + b),
            "exp": ("np.exp(a)", lambda: exp(a)),
            "sum": ("a.sum()", lambda: a.sum()),
        }
        mtia.synchronize()

    def history(self, n: int) -> None:
        """Turn the sanitizer on afresh and make ``n`` launches it checks (each touches an array); drain them."""
        from mtia_async import sanitizer

        mtia = self.mtia
        sanitizer.disable()
        sanitizer.enable()
        sides, pools = self.side, self.pools
        for i in range(n):
            k = i % 3
            sides[k].launch(_touch, pools[k][(i // 3) % 64])
            if i % 1000 == 999:  # hand-offs: events recorded on one side stream, waited on by the next
                sides[(k + 1) % 3].wait_event(sides[k].record_event())
        mtia.synchronize()

    def hand_over(self) -> None:
        """The measured arrays: written on a side stream, then handed to the default stream (before every batch)."""
        mtia = self.mtia
        first = self.side[0]
        first.wait_stream(mtia.current_stream())
        first.launch(_touch, self.a)
        first.launch(_touch, self.b)
        mtia.current_stream().wait_stream(first)
        mtia.synchronize()

    def timed(self, op: Op, n: int) -> float:
        """Nanoseconds of ``n`` calls of ``op`` and one synchronize() of the default stream."""
        sync = self.mtia.current_stream().synchronize
        t0 = _ns()
        for _ in range(n):
            op()
        sync()
        return _ns() - t0


def run_sanitizer(ctx: Context) -> list[Row]:
    """Per-launch cost with the sanitizer off, on after 10 and after 100,000 prior launches."""
    from mtia_async import sanitizer

    suite = "sanitizer"
    was_on = sanitizer.is_enabled()
    long = ctx.n(LONG, LONG_QUICK)
    try:
        sanitizer.disable()
        p = _Program()
        sizes = {key: calibrate(_batch(p, op), ctx.target_time, 200_000) for key, (_, op) in p.ops.items()}
        samples = _measure(ctx, p, sizes, long)
    finally:
        sanitizer.disable()
        if was_on:
            sanitizer.enable()
    rows: list[Row] = []
    for key, (name, _) in p.ops.items():
        off, short, deep = samples[key]["off"], samples[key]["short"], samples[key]["long"]
        batch = sizes[key]
        rows += [
            Row(f"sanitizer.{key}.off", suite, f"{name}, off", "us", samples=off, batch=batch,
                note="per op: n ops on the default stream + one synchronize(), sanitizer off"),
            Row(f"sanitizer.{key}.on", suite, f"{name}, on, history {SHORT}", "us", samples=short,
                baseline=Baseline("off", off), batch=batch,
                note=f"the same with the sanitizer on after {SHORT} prior launches"),
            Row(f"sanitizer.{key}.extra", suite, f"{name}: extra, history {SHORT}", "us",
                samples=paired_differences(short, off), goal=_EXTRA, batch=batch,
                note="paired per repetition: on - off"),
            Row(f"sanitizer.{key}.extra_long", suite, f"{name}: extra, history {long:,}", "us",
                samples=paired_differences(deep, off), goal=_EXTRA, batch=batch,
                note=f"on after {long:,} prior launches (3 side streams, 192 arrays, event hand-offs) - off"),
        ]
    return rows


def _batch(p: _Program, op: Op) -> Callable[[int], float]:
    return lambda n: p.timed(op, n)


def _measure(ctx: Context, p: _Program, sizes: dict[str, int], long: int) -> dict[str, dict[str, list[float]]]:
    """Every repetition: off, short history and long history, alternating order (ABBA)."""
    from mtia_async import sanitizer

    out: dict[str, dict[str, list[float]]] = {key: {"off": [], "short": [], "long": []} for key in p.ops}
    label = "sanitizer"
    total = 1 + ctx.warmup + ctx.reps
    ctx.progress(label, 1, total)

    def one(variant: str, record: bool) -> None:
        if variant == "off":
            sanitizer.disable()
        elif variant == "long":
            p.history(long - 2)  # one long history for every op (it only grows meanwhile)
        for key, (_, op) in p.ops.items():
            if variant == "short":
                p.history(SHORT - 2)
            p.hand_over()  # two more launches
            with gc_paused():
                t = p.timed(op, sizes[key]) / sizes[key] / 1e3
            if record:
                out[key][variant].append(t)

    order = ["off", "short", "long"]
    with gc_paused():
        for i in range(ctx.warmup):
            for variant in order:
                one(variant, False)
            ctx.progress(label, 2 + i, total)
        for rep in range(ctx.reps):
            for variant in order if rep % 2 == 0 else order[::-1]:
                one(variant, True)
            ctx.progress(label, 1 + ctx.warmup + rep + 1, total)
    return out
