"""Progress on stderr while suites run: per measurement group, with an ETA.

On a terminal (and with rich installed) one live line shows the suite, the measurement
group, its steps (calibration, warm-up, each repetition) as a bar, the group's ETA and
the run's. It is redrawn at those steps only, never by a refresh thread: a suite that
runs in this interpreter must not share the GIL with a display. Elsewhere (a pipe, CI) one line per suite. A suite running in a child
process reports its groups as ``PREFIX {json}`` lines on its stderr (``child_progress``),
which the parent turns back into calls of ``Reporter.step``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any

__all__ = ["PREFIX", "Reporter", "child_progress", "parse_progress", "reporter"]

PREFIX = "mtia-bench-progress "


def child_progress(label: str, done: int, total: int) -> None:
    """A child suite's progress callback: one machine-readable line on stderr."""
    sys.stderr.write(PREFIX + json.dumps([label, done, total]) + "\n")
    sys.stderr.flush()


def parse_progress(line: str) -> tuple[str, int, int] | None:
    """The ``(label, done, total)`` of a ``child_progress`` line (None for other lines)."""
    if not line.startswith(PREFIX):
        return None
    try:
        label, done, total = json.loads(line[len(PREFIX):])
        return str(label), int(done), int(total)
    except (ValueError, TypeError):
        return None


def _seconds(s: float) -> str:
    s = max(0.0, s)
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


class Reporter:
    """Turns suite and group events into progress lines or a live display.

    Args:
        names: the suites, in run order.
        estimates: suite -> expected seconds (for the ETA before a suite has run).
        live: a rich ``Progress`` (a terminal), or None for plain lines.
        lines: print a line per suite when there is no live display.
    """

    def __init__(self, names: Sequence[str], estimates: Mapping[str, float], live: Any = None,
                 lines: bool = True, out: IO[str] | None = None) -> None:
        self.names = list(names)
        self.estimates = dict(estimates)
        self.live = live
        self.lines = lines and live is None
        self.out = out or sys.stderr
        self.task: Any = None if live is None else live.add_task("", total=1, eta="")
        self.done_actual = 0.0
        self.done_estimate = 0.0
        self.index = 0
        self.suite = ""
        self.suite_t0 = time.perf_counter()
        self.group = ""
        self.group_t0 = time.perf_counter()

    def _scale(self) -> float:
        if self.done_estimate <= 0:
            return 1.0
        return min(3.0, max(0.3, self.done_actual / self.done_estimate))

    def run_left(self, group_left: float = 0.0) -> float:
        """Seconds the run still needs: this suite's rest and the suites after it."""
        scale = self._scale()
        current = self.estimates.get(self.suite, 0.0) * scale - (time.perf_counter() - self.suite_t0)
        later = sum(self.estimates.get(n, 0.0) for n in self.names[self.index + 1:]) * scale
        return max(current, group_left) + later

    def start(self, name: str) -> None:
        self.index = self.names.index(name) if name in self.names else self.index
        self.suite = name
        self.suite_t0 = time.perf_counter()
        self.group = ""
        head = f"[{self.index + 1}/{len(self.names)}] {name}"
        if self.live is not None:
            self.live.update(self.task, description=f"{head} (starting)", completed=0, total=1, eta="",
                             refresh=True)
        elif self.lines:
            print(f"bench: {head} ... (about {_seconds(self.run_left())} left in the run)", file=self.out,
                  flush=True)

    def step(self, label: str, done: int, total: int) -> None:
        """A measurement group advanced: ``done`` of its ``total`` steps."""
        now = time.perf_counter()
        if label != self.group or done == 0:
            self.group, self.group_t0 = label, now
        group_left = (now - self.group_t0) / done * (total - done) if done else 0.0
        if self.live is not None:
            eta = f"ETA group {_seconds(group_left)}, run {_seconds(self.run_left(group_left))}" if done else ""
            self.live.update(self.task, description=f"[{self.index + 1}/{len(self.names)}] {label}",
                             completed=done, total=max(total, 1), eta=eta, refresh=True)

    def finish(self, seconds: float) -> None:
        self.done_actual += seconds
        self.done_estimate += self.estimates.get(self.suite, seconds)
        if self.lines:
            print(f"bench: [{self.index + 1}/{len(self.names)}] {self.suite} done in {seconds:.1f} s",
                  file=self.out, flush=True)

    def note(self, text: str) -> None:
        """A message that must not be torn by the live display."""
        if self.live is not None:
            self.live.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.out, flush=True)


@contextmanager
def reporter(names: Sequence[str], estimates: Mapping[str, float], enabled: bool) -> Iterator[Reporter]:
    """A ``Reporter``: live on a terminal with rich, plain lines otherwise (or nothing)."""
    live = None
    if enabled and sys.stderr.isatty():
        try:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:
            live = None
        else:
            live = Progress(TextColumn("{task.description}", style="bold"), BarColumn(bar_width=12),
                            TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[eta]}"),
                            TextColumn("elapsed"), TimeElapsedColumn(), console=Console(stderr=True),
                            transient=True, auto_refresh=False)
    if live is None:
        yield Reporter(names, estimates, None, enabled)
        return
    with live:
        yield Reporter(names, estimates, live, enabled)
