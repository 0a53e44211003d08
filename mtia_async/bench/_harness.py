"""The measuring method: goals, rows, timers, calibrated batches, interleaved repetitions.

Method (docs/performance.md explains it at length):

* every figure is a batch of ``n`` operations timed with ``time.perf_counter_ns`` and
  divided by ``n``; one batch is one *sample*. Where ``n`` is free (per-operation
  costs), it is *calibrated* first, as ``timeit.autorange`` and pyperf do: grown until
  one batch lasts ``Context.min_time`` (0.1 s; 0.01 s under ``--quick``);
* each measurement group runs ``warmup`` untimed batches of every variant, then
  ``reps`` timed repetitions in which the variants alternate order (ABBA...) so drift
  on a noisy machine hits the measured variant and its baseline alike;
* the garbage collector is collected, then disabled, around every batch;
* a row reports the median with its interquartile range, and a ratio against a
  baseline measured in the same run: the median of the per-repetition ratios.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from ._goals import GOALS, Goal
from ._stats import Stats, paired_ratios

__all__ = [
    "GOALS",
    "Baseline",
    "Context",
    "Goal",
    "Row",
    "Stats",
    "calibrate",
    "gc_paused",
    "interleave",
    "interleave_async",
    "per_call",
]

Better = Literal["lower", "higher"]
Status = Literal["met", "MISSED", "n/a"]
Clock = Callable[[], int]
Progress = Callable[[str, int, int], None]


# --- rows ------------------------------------------------------------------------------
@dataclass
class Baseline:
    """What a row is compared with, measured in the same run (same unit as the row)."""

    name: str
    samples: list[float]

    @property
    def stats(self) -> Stats:
        return Stats.of(self.samples)


@dataclass
class Row:
    """One result line: samples of one figure, an optional baseline and goal.

    ``ratio`` is always ``value / baseline`` in the row's unit, so for a rate (higher
    is better) it is a speed-up and for a time (lower is better) a slow-down.
    ``skipped`` means the row could not be measured at all; ``baseline_skipped`` that
    the row was measured but its baseline could not be (e.g. torch is not installed).
    ``batch`` is the number of operations in one sample, when it was calibrated.
    """

    key: str
    suite: str
    name: str
    unit: str
    better: Better = "lower"
    samples: list[float] = field(default_factory=list)
    baseline: Baseline | None = None
    goal: Goal | None = None
    note: str = ""
    skipped: str | None = None
    error: str | None = None
    batch: int | None = None
    baseline_skipped: str | None = None

    def __post_init__(self) -> None:
        if self.goal is None:
            self.goal = GOALS.get(self.key)

    @property
    def stats(self) -> Stats | None:
        """Median, quartiles, min and max of the samples (None for a skipped row)."""
        return Stats.of(self.samples) if self.samples else None

    @property
    def ratio(self) -> Stats | None:
        """The same summary of the paired ratios against the baseline, if any."""
        if self.baseline is None or not self.samples or not self.baseline.samples:
            return None
        ratios = paired_ratios(self.samples, self.baseline.samples)
        return Stats.of(ratios) if ratios else None

    def _goal_input(self) -> float | None:
        goal = self.goal
        if goal is None or self.skipped is not None or self.error is not None:
            return None
        stats = self.ratio if goal.on == "ratio" else self.stats
        return None if stats is None else stats.median

    @property
    def status(self) -> Status:
        """``"met"`` / ``"MISSED"`` against the goal, ``"n/a"`` without goal or data."""
        x = self._goal_input()
        if x is None or self.goal is None or math.isnan(x):
            return "n/a"
        return "met" if self.goal.check(x) else "MISSED"

    @property
    def stretch_met(self) -> bool | None:
        """Whether the stretch goal is met (None when there is none or no data)."""
        x = self._goal_input()
        if x is None or self.goal is None or self.goal.stretch is None or math.isnan(x):
            return None
        return self.goal.check(x, self.goal.stretch)

    def to_dict(self) -> dict[str, Any]:
        """The row as stored in the JSON document (schema in docs/performance.md)."""
        stats, ratio, goal = self.stats, self.ratio, self.goal

        def summary(s: Stats | None) -> dict[str, float] | None:
            return None if s is None else {"median": s.median, "q1": s.q1, "q3": s.q3, "min": s.min, "max": s.max}

        return {
            "key": self.key,
            "suite": self.suite,
            "name": self.name,
            "unit": self.unit,
            "better": self.better,
            "median": None if stats is None else stats.median,
            "q1": None if stats is None else stats.q1,
            "q3": None if stats is None else stats.q3,
            "min": None if stats is None else stats.min,
            "max": None if stats is None else stats.max,
            "unstable": None if stats is None else stats.unstable,
            "reps": len(self.samples),
            "batch": self.batch,
            "samples": list(self.samples),
            "baseline": None if self.baseline is None else {
                "name": self.baseline.name,
                "median": self.baseline.stats.median if self.baseline.samples else None,
                "samples": list(self.baseline.samples),
            },
            "baseline_skipped": self.baseline_skipped,
            "ratio": summary(ratio),
            "goal": None if goal is None else {
                "text": goal.text, "on": goal.on, "op": goal.op, "limit": goal.limit,
                "stretch": goal.stretch, "ref": goal.ref,
            },
            "status": self.status,
            "stretch_met": self.stretch_met,
            "note": self.note,
            "skipped": self.skipped,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Row:
        """Rebuild a row from its JSON form (the inverse of ``to_dict``; schema 1 too).

        Raises:
            ValueError: a field is missing or has the wrong type.
        """
        try:
            base = d.get("baseline")
            goal = d.get("goal")
            return cls(
                key=str(d["key"]),
                suite=str(d["suite"]),
                name=str(d["name"]),
                unit=str(d["unit"]),
                better="higher" if d.get("better") == "higher" else "lower",
                samples=[float(x) for x in d.get("samples") or []],
                baseline=None if base is None else Baseline(
                    str(base["name"]), [float(x) for x in base.get("samples") or []]),
                goal=None if goal is None else Goal(
                    str(goal["text"]), goal["on"], goal["op"], float(goal["limit"]),
                    None if goal.get("stretch") is None else float(goal["stretch"]), int(goal.get("ref", 0))),
                note=str(d.get("note") or ""),
                skipped=d.get("skipped"),
                error=d.get("error"),
                batch=d.get("batch"),
                baseline_skipped=d.get("baseline_skipped"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"bad row {d.get('key', '?') if isinstance(d, Mapping) else d!r}: "
                             f"{type(exc).__name__}: {exc}") from exc


# --- timing ----------------------------------------------------------------------------
@contextmanager
def gc_paused() -> Iterator[None]:
    """Keep the garbage collector off for the block (its state is restored in finally).

    The outermost block makes a full collection first; a nested block only collects
    the youngest generation. A full pass costs ~0.1 s once PyTorch is imported (175,000
    objects), more than a quick batch: measurement groups pause once around all their
    batches, and each batch starts from a young-generation collection.
    """
    if not gc.isenabled():
        gc.collect(0)
        yield
        return
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def per_call(fn: Callable[[], object], n: int, clock: Clock = time.perf_counter_ns) -> float:
    """Seconds per call of ``fn()`` over a batch of ``n`` calls (loop overhead included).

    Args:
        fn: the operation.
        n: calls in the batch (>= 1).
        clock: an integer nanosecond clock (injectable for tests).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    t0 = clock()
    for _ in range(n):
        fn()
    return (clock() - t0) / n / 1e9


def _next_size(n: int, elapsed: float, target: float, max_n: int, i: int) -> int | None:
    """The next trial batch size of a calibration, or None when ``n`` will do.

    Grow n = 1, 2, 5, 10, 20, 50, ... until a batch lasts a tenth of the target, then
    scale by target / elapsed, until a batch lasts at least half the target (a fixed
    cost per batch, e.g. a final synchronize, makes one scaling step fall short).
    """
    if n >= max_n or elapsed >= target / 2:
        return None
    if elapsed < target / 10:
        return min(max_n, int(n * (2.5 if i % 3 == 1 else 2)))
    return max(n + 1, min(max_n, math.ceil(n * target / max(elapsed, 1.0))))


def calibrate(timed: Callable[[int], float], min_time: float, max_n: int = 10_000_000) -> int:
    """The batch size ``n`` for which ``timed(n)`` (nanoseconds) lasts about ``min_time`` seconds.

    Like ``timeit.autorange`` (see ``_next_size``); every trial runs with the garbage
    collector paused, and the trials double as warm-up.

    Raises:
        ValueError: ``min_time`` is not positive or ``max_n`` < 1.
    """
    if not min_time > 0 or max_n < 1:
        raise ValueError(f"calibrate needs min_time > 0 and max_n >= 1, got {min_time!r}, {max_n!r}")
    target = min_time * 1e9
    n, i = 1, 0
    with gc_paused():
        timed(1)  # a cold first call (lazy set-up, first touch of memory) must not set n
        while True:
            with gc_paused():
                elapsed = float(timed(n))
            nxt = _next_size(n, elapsed, target, max_n, i)
            if nxt is None:
                return n
            n, i = nxt, i + 1


def _order(names: list[str], rep: int) -> list[str]:
    """Forward on even repetitions, reversed on odd ones (ABBA), to cancel drift."""
    return list(names) if rep % 2 == 0 else list(reversed(names))


def interleave(
    variants: Mapping[str, Callable[[], float]],
    reps: int,
    warmup: int = 1,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Run every variant ``warmup`` times untimed, then ``reps`` times interleaved.

    Each call returns one sample (the batch's figure, in the row's unit) and runs with
    the garbage collector paused. ``on_step(i)`` is called after the warm-up (``i = 0``)
    and after each repetition (``i = 1 .. reps``).

    Returns:
        variant name -> its ``reps`` samples, in repetition order (so samples of the
        same index are paired).
    """
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    with gc_paused():
        for _ in range(warmup):
            for name in names:
                with gc_paused():
                    variants[name]()
        if on_step is not None:
            on_step(0)
        for rep in range(reps):
            for name in _order(names, rep):
                with gc_paused():
                    samples[name].append(float(variants[name]()))
            if on_step is not None:
                on_step(rep + 1)
    return samples


async def interleave_async(
    variants: Mapping[str, Callable[[], Awaitable[float]]],
    reps: int,
    warmup: int = 1,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """``interleave`` for coroutine functions, run in the current event loop."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    with gc_paused():
        for _ in range(warmup):
            for name in names:
                with gc_paused():
                    await variants[name]()
        if on_step is not None:
            on_step(0)
        for rep in range(reps):
            for name in _order(names, rep):
                with gc_paused():
                    samples[name].append(float(await variants[name]()))
            if on_step is not None:
                on_step(rep + 1)
    return samples


def _no_progress(label: str, done: int, total: int) -> None:
    """The default progress callback: report nothing."""


# --- suite context ---------------------------------------------------------------------
@dataclass
class Context:
    """What a suite gets: the repetition plan, batch calibration and progress.

    Args:
        quick: smaller batches and fewer repetitions (a smoke run, not for goals).
        reps: timed repetitions per measurement group.
        warmup: untimed batches per variant before timing.
        min_time: seconds one calibrated batch should last (None: 0.1, quick 0.01).
        progress: called as ``progress(group, steps_done, steps_total)``; a group's
            steps are its calibration (when calibrated), its warm-up and each
            repetition.
    """

    quick: bool = False
    reps: int = 9
    warmup: int = 1
    min_time: float | None = None
    progress: Progress = _no_progress
    batches: dict[str, int] = field(default_factory=dict)

    @property
    def target_time(self) -> float:
        """Seconds per calibrated batch."""
        if self.min_time is not None:
            return self.min_time
        return 0.01 if self.quick else 0.1

    def n(self, full: int, quick: int) -> int:
        """A fixed batch size: ``full`` normally, ``quick`` under ``--quick``."""
        return quick if self.quick else full

    def measure(self, label: str, variants: Mapping[str, Callable[[], float]],
                extra_steps: int = 0) -> dict[str, list[float]]:
        """``interleave`` the variants under this context's plan, reporting progress."""
        total = extra_steps + 1 + self.reps
        self.progress(label, extra_steps, total)
        return interleave(variants, self.reps, self.warmup,
                          lambda i: self.progress(label, extra_steps + 1 + i, total))

    async def measure_async(self, label: str, variants: Mapping[str, Callable[[], Awaitable[float]]],
                            extra_steps: int = 0) -> dict[str, list[float]]:
        """``interleave_async`` the variants under this context's plan."""
        total = extra_steps + 1 + self.reps
        self.progress(label, extra_steps, total)
        return await interleave_async(variants, self.reps, self.warmup,
                                      lambda i: self.progress(label, extra_steps + 1 + i, total))

    def per_op(self, label: str, variants: Mapping[str, Callable[[int], float]],
               max_n: int = 10_000_000) -> dict[str, list[float]]:
        """Microseconds per operation of each variant, with calibrated batch sizes.

        Args:
            variants: name -> ``timed(n)``, which runs ``n`` operations and returns the
                nanoseconds they took (the timed region is the variant's to choose).
            max_n: the largest batch (memory: a held stream keeps every launch).

        The batch sizes chosen are kept in ``batches`` as ``"label/name" -> n``.
        """
        self.progress(label, 0, 2 + self.reps)
        with gc_paused():  # one full collection for the whole group
            sizes = {name: calibrate(timed, self.target_time, max_n) for name, timed in variants.items()}
            self.batches.update({f"{label}/{name}": n for name, n in sizes.items()})
            wrapped = {name: (lambda timed=timed, n=sizes[name]: timed(n) / n / 1e3)
                       for name, timed in variants.items()}
            return self.measure(label, wrapped, extra_steps=1)

    async def per_op_async(self, label: str, variants: Mapping[str, Callable[[int], Awaitable[float]]],
                           max_n: int = 10_000_000) -> dict[str, list[float]]:
        """``per_op`` for coroutine functions, run in the current event loop."""
        self.progress(label, 0, 2 + self.reps)

        def wrap(timed: Callable[[int], Awaitable[float]], n: int) -> Callable[[], Awaitable[float]]:
            async def run() -> float:
                return await timed(n) / n / 1e3
            return run

        with gc_paused():  # one full collection for the whole group
            sizes: dict[str, int] = {}
            for name, timed in variants.items():
                sizes[name] = await _calibrate_async(timed, self.target_time, max_n)
            self.batches.update({f"{label}/{name}": n for name, n in sizes.items()})
            wrapped = {name: wrap(timed, sizes[name]) for name, timed in variants.items()}
            return await self.measure_async(label, wrapped, extra_steps=1)

    def batch(self, label: str, name: str) -> int | None:
        """The calibrated batch size of ``name`` in group ``label`` (None if not calibrated)."""
        return self.batches.get(f"{label}/{name}")


async def _calibrate_async(timed: Callable[[int], Awaitable[float]], min_time: float, max_n: int) -> int:
    """``calibrate`` for a coroutine function (the same trial sizes)."""
    target = min_time * 1e9
    n, i = 1, 0
    with gc_paused():
        await timed(1)
        while True:
            with gc_paused():
                elapsed = float(await timed(n))
            nxt = _next_size(n, elapsed, target, max_n, i)
            if nxt is None:
                return n
            n, i = nxt, i + 1
