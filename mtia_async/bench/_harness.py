"""The measuring method: timers, interleaved repetitions, statistics, rows, goals, JSON.

Method (docs/performance.md explains it at length):

* every figure is a batch of ``n`` operations timed with ``time.perf_counter_ns`` and
  divided by ``n``; one batch is one *sample*;
* each measurement group runs ``warmup`` untimed batches of every variant, then
  ``reps`` timed repetitions in which the variants alternate order (ABBA...) so drift
  on a noisy machine hits the measured variant and its baseline alike;
* the garbage collector is collected, then disabled, around every batch;
* a row reports the median sample with min and max, and a ratio against a baseline
  measured in the same run: the median of the per-repetition ratios (paired samples).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "GOALS",
    "Baseline",
    "Context",
    "Goal",
    "Row",
    "Stats",
    "gc_paused",
    "interleave",
    "interleave_async",
    "per_call",
]

Better = Literal["lower", "higher"]
Status = Literal["met", "MISSED", "n/a"]
Clock = Callable[[], int]


# --- statistics ----------------------------------------------------------------------
@dataclass(frozen=True)
class Stats:
    """Median, min and max of a list of samples."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        """Summarise ``samples``.

        Raises:
            ValueError: ``samples`` is empty.
        """
        if not samples:
            raise ValueError("no samples to summarise")
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))


def paired_ratios(values: Sequence[float], baselines: Sequence[float]) -> list[float]:
    """Per-repetition ratios ``value / baseline`` of two equally long sample lists.

    When the lists differ in length (they should not) the ratio of the medians is
    returned as the only sample.
    """
    if len(values) == len(baselines) and all(b != 0 for b in baselines):
        return [v / b for v, b in zip(values, baselines)]
    base = statistics.median(baselines)
    return [statistics.median(values) / base] if base else []


# --- goals -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Goal:
    """A speed goal of docs/performance-goals.md, checked against a row's median.

    Args:
        text: how the goal reads in tables (``"<= 0.5 us"``).
        on: ``"value"`` (the row's median) or ``"ratio"`` (the median paired ratio).
        op: ``"<="``, ``">="`` or ``"<"``.
        limit: the goal.
        stretch: the stretch goal, if any (same ``on`` and ``op``).
        ref: the goal's number in performance-goals.md.
    """

    text: str
    on: Literal["value", "ratio"]
    op: Literal["<=", ">=", "<"]
    limit: float
    stretch: float | None = None
    ref: int = 0

    def check(self, x: float, limit: float | None = None) -> bool:
        """True when ``x`` meets the goal (or ``limit``, e.g. the stretch goal)."""
        bound = self.limit if limit is None else limit
        if self.op == "<=":
            return x <= bound
        if self.op == ">=":
            return x >= bound
        return x < bound


def _g(text: str, on: Literal["value", "ratio"], op: Literal["<=", ">=", "<"], limit: float,
       stretch: float | None, ref: int) -> Goal:
    return Goal(text, on, op, limit, stretch, ref)


#: Row key -> goal, from /work/shared/spec/performance-goals.md (that page wins).
GOALS: dict[str, Goal] = {
    "launch.caller": _g("<= 0.5 us (stretch 0.15)", "value", "<=", 0.5, 0.15, 1),
    "launch.throughput": _g(">= 2 M/s (stretch 8)", "value", ">=", 2.0, 8.0, 2),
    "sync.drained": _g("<= 0.5 us (stretch 0.2)", "value", "<=", 0.5, 0.2, 3),
    "sync.event_query": _g("<= 0.5 us (stretch 0.2)", "value", "<=", 0.5, 0.2, 3),
    "sync.pending": _g("<= 1.25x ping-pong (stretch 1.0)", "ratio", "<=", 1.25, 1.0, 4),
    "await.to_thread": _g("<= 1.0x to_thread (stretch 0.8)", "ratio", "<=", 1.0, 0.8, 5),
    "overlap.compute.2.speedup": _g(">= 1.6x (stretch 1.8)", "ratio", ">=", 1.6, 1.8, 6),
    "overlap.compute.2.threads": _g(">= 0.95x bare threads", "ratio", ">=", 0.95, None, 6),
    "kernels.medium": _g("<= 1.03x numpy (stretch 1.01)", "ratio", "<=", 1.03, 1.01, 7),
    "memory.alloc_free": _g("<= 3 us (stretch 1)", "value", "<=", 3.0, 1.0, 8),
    "dispatch.add.16.torch": _g("<= 3.0x torch (stretch 2.0)", "ratio", "<=", 3.0, 2.0, 9),
    "rng.randn": _g("<= 1.1x numpy Philox", "ratio", "<=", 1.1, None, 10),
    "responsiveness.drain": _g("< 20 ms (stretch 5)", "value", "<", 20.0, 5.0, 11),
    "responsiveness.sleep": _g("< 20 ms (stretch 5)", "value", "<", 20.0, 5.0, 11),
}


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

    def __post_init__(self) -> None:
        if self.goal is None:
            self.goal = GOALS.get(self.key)

    @property
    def stats(self) -> Stats | None:
        """Median/min/max of the samples (None for a skipped row)."""
        return Stats.of(self.samples) if self.samples else None

    @property
    def ratio(self) -> Stats | None:
        """Median/min/max of the paired ratios against the baseline, if any."""
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
        if x is None or self.goal is None:
            return "n/a"
        return "met" if self.goal.check(x) else "MISSED"

    @property
    def stretch_met(self) -> bool | None:
        """Whether the stretch goal is met (None when there is none or no data)."""
        x = self._goal_input()
        if x is None or self.goal is None or self.goal.stretch is None:
            return None
        return self.goal.check(x, self.goal.stretch)

    def to_dict(self) -> dict[str, Any]:
        """The row as stored in the JSON document (schema in docs/performance.md)."""
        stats, ratio, goal = self.stats, self.ratio, self.goal
        return {
            "key": self.key,
            "suite": self.suite,
            "name": self.name,
            "unit": self.unit,
            "better": self.better,
            "median": None if stats is None else stats.median,
            "min": None if stats is None else stats.min,
            "max": None if stats is None else stats.max,
            "reps": len(self.samples),
            "samples": list(self.samples),
            "baseline": None if self.baseline is None else {
                "name": self.baseline.name,
                "median": statistics.median(self.baseline.samples) if self.baseline.samples else None,
                "samples": list(self.baseline.samples),
            },
            "ratio": None if ratio is None else {"median": ratio.median, "min": ratio.min, "max": ratio.max},
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
        """Rebuild a row from its JSON form (the inverse of ``to_dict``)."""
        base = d.get("baseline")
        goal = d.get("goal")
        return cls(
            key=d["key"],
            suite=d["suite"],
            name=d["name"],
            unit=d["unit"],
            better=d.get("better", "lower"),
            samples=[float(x) for x in d.get("samples", [])],
            baseline=None if base is None else Baseline(base["name"], [float(x) for x in base.get("samples", [])]),
            goal=None if goal is None else Goal(
                goal["text"], goal["on"], goal["op"], float(goal["limit"]), goal.get("stretch"), goal.get("ref", 0)
            ),
            note=d.get("note", ""),
            skipped=d.get("skipped"),
            error=d.get("error"),
        )


# --- timing ----------------------------------------------------------------------------
@contextmanager
def gc_paused() -> Iterator[None]:
    """Collect, then keep the garbage collector off for the block (restored in finally)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
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


def _order(names: Sequence[str], rep: int) -> list[str]:
    """Forward on even repetitions, reversed on odd ones (ABBA), to cancel drift."""
    return list(names) if rep % 2 == 0 else list(reversed(names))


def interleave(
    variants: Mapping[str, Callable[[], float]],
    reps: int,
    warmup: int = 1,
    on_rep: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Run every variant ``warmup`` times untimed, then ``reps`` times interleaved.

    Each call returns one sample (the batch's figure, in the row's unit) and runs with
    the garbage collector paused.

    Returns:
        variant name -> its ``reps`` samples, in repetition order (so samples of the
        same index are paired).
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            with gc_paused():
                variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in _order(names, rep):
            with gc_paused():
                samples[name].append(float(variants[name]()))
        if on_rep is not None:
            on_rep(rep)
    return samples


async def interleave_async(
    variants: Mapping[str, Callable[[], Awaitable[float]]],
    reps: int,
    warmup: int = 1,
    on_rep: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """``interleave`` for coroutine functions, run in the current event loop."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            with gc_paused():
                await variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in _order(names, rep):
            with gc_paused():
                samples[name].append(float(await variants[name]()))
        if on_rep is not None:
            on_rep(rep)
    return samples


# --- suite context ---------------------------------------------------------------------
@dataclass
class Context:
    """What a suite gets: the repetition plan and a progress callback.

    Args:
        quick: smaller batches and fewer repetitions (a smoke run, not for goals).
        reps: timed repetitions per measurement group.
        warmup: untimed batches per variant before timing.
        progress: called with a short description as work advances.
    """

    quick: bool = False
    reps: int = 9
    warmup: int = 1
    progress: Callable[[str], None] = lambda text: None

    def n(self, full: int, quick: int) -> int:
        """The batch size: ``full`` normally, ``quick`` under ``--quick``."""
        return quick if self.quick else full

    def measure(self, label: str, variants: Mapping[str, Callable[[], float]]) -> dict[str, list[float]]:
        """``interleave`` the variants under this context's plan, reporting progress."""
        self.progress(f"{label}: warm-up")
        return interleave(variants, self.reps, self.warmup, lambda r: self.progress(f"{label}: {r + 1}/{self.reps}"))

    async def measure_async(
        self, label: str, variants: Mapping[str, Callable[[], Awaitable[float]]]
    ) -> dict[str, list[float]]:
        """``interleave_async`` the variants under this context's plan."""
        self.progress(f"{label}: warm-up")
        return await interleave_async(
            variants, self.reps, self.warmup, lambda r: self.progress(f"{label}: {r + 1}/{self.reps}")
        )
