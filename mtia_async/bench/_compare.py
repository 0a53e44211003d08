"""``--compare``: how each row moved between two runs, and whether the move is real.

A row counts as ``better`` or ``worse`` only when both hold:

* its median moved by more than ``threshold`` (5 % by default), and
* the move is statistically significant: the Mann-Whitney U test on the two runs'
  per-repetition samples gives p < ``alpha`` (0.05), as asv does (pyperf uses a t-test).

Otherwise it is ``not significant``. Rows of suites the new run did not run are left
out (a subset run does not list every other row as gone); ``gone`` is a row of a suite
that ran but no longer has it.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from ._results import rows_from_document
from ._stats import mann_whitney_u, min_p_value
from ._table import NAME_WIDTH, Layout, Section, fold, num, print_layouts, terminal_width

__all__ = ["CompareLine", "Comparison", "compare", "regressions", "render_compare"]


@dataclass(frozen=True)
class CompareLine:
    """How one row changed between two runs."""

    key: str
    suite: str
    name: str
    unit: str
    better: str
    old: float | None
    new: float | None
    change: float | None  # relative change of the median, (new - old) / old
    p: float | None  # two-sided p-value of the U test on the samples
    verdict: str  # "better", "worse", "not significant", "new", "gone", "skipped"
    old_status: str
    new_status: str

    @property
    def loss(self) -> float:
        """How much worse the new median is, as a share of the old (0 when not worse)."""
        if self.change is None:
            return 0.0
        return max(0.0, self.change if self.better == "lower" else -self.change)


@dataclass
class Comparison:
    """The lines of a comparison and what to say about it."""

    lines: list[CompareLine]
    threshold: float
    alpha: float
    warnings: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # suites of the old run left out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.lines:
            out[line.verdict] = out.get(line.verdict, 0) + 1
        return out


def _method(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    method = doc.get("method")
    return method if isinstance(method, Mapping) else {}


def _warnings(old: Mapping[str, Any], new: Mapping[str, Any], lines: Sequence[CompareLine],
              sizes: Sequence[tuple[int, int]], alpha: float) -> list[str]:
    out = []
    q_old, q_new = _method(old).get("quick"), _method(new).get("quick")
    if q_old is not None and q_new is not None and q_old != q_new:
        kinds = {True: "a quick run", False: "a full run"}
        out.append(f"comparing {kinds[bool(q_new)]} with {kinds[bool(q_old)]}: batch sizes and repetitions "
                   "differ, so a difference may be the method's, not the code's")
    if sizes:
        smallest = min(min_p_value(a, b) for a, b in sizes)
        if smallest >= alpha:
            a, b = min(sizes)
            out.append(f"with {a} and {b} repetitions no difference can be significant (the smallest "
                       f"p-value possible is {smallest:.2f}): use --reps 5 or more on both runs")
    m_old, m_new = old.get("machine"), new.get("machine")
    if isinstance(m_old, Mapping) and isinstance(m_new, Mapping):
        differ = [k for k in ("cpu_model", "cpu_count", "python", "numpy") if m_old.get(k) != m_new.get(k)]
        if differ:
            out.append("the runs come from different machines or versions (" + ", ".join(differ)
                       + "): absolute figures may differ for that reason alone")
    return out


def compare(old: Mapping[str, Any], new: Mapping[str, Any], threshold: float = 0.05,
            alpha: float = 0.05) -> Comparison:
    """Match rows of two results documents by key and say how each moved.

    Args:
        old, new: documents as written by ``--json``.
        threshold: a relative change of the median below this is never a difference.
        alpha: the significance level of the U test.

    Raises:
        ValueError: ``threshold`` is negative or ``alpha`` is not in (0, 1).
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    old_rows = {r.key: r for r in rows_from_document(old)}
    new_rows = rows_from_document(new)
    ran = set(new.get("suites") or [r.suite for r in new_rows])
    lines: list[CompareLine] = []
    sizes: list[tuple[int, int]] = []
    for row in new_rows:
        before = old_rows.pop(row.key, None)
        a = before.stats.median if before is not None and before.stats is not None else None
        b = row.stats.median if row.stats is not None else None
        change = p = None
        if before is None:
            verdict = "new"
        elif a is None or b is None:
            verdict = "skipped"
        else:
            change = (b - a) / a if a else None
            _, p = mann_whitney_u(before.samples, row.samples)
            sizes.append((len(before.samples), len(row.samples)))
            if change is None or abs(change) <= threshold or p >= alpha:
                verdict = "not significant"
            else:
                verdict = "better" if (change < 0) == (row.better == "lower") else "worse"
        lines.append(CompareLine(row.key, row.suite, row.name, row.unit, row.better, a, b, change, p, verdict,
                                 before.status if before is not None else "-", row.status))
    not_run: list[str] = []
    for key, gone in old_rows.items():
        if gone.suite not in ran:
            if gone.suite not in not_run:
                not_run.append(gone.suite)
            continue
        a = gone.stats.median if gone.stats is not None else None
        lines.append(CompareLine(key, gone.suite, gone.name, gone.unit, gone.better, a, None, None, None, "gone",
                                 gone.status, "-"))
    return Comparison(lines, threshold, alpha, _warnings(old, new, lines, sizes, alpha), not_run)


def regressions(comparison: Comparison, pct: float) -> list[CompareLine]:
    """Rows significantly worse by more than ``pct`` percent (what ``--fail-on-regression`` fails on)."""
    return [line for line in comparison.lines if line.verdict == "worse" and line.loss * 100 > pct]


def _p_cell(p: float | None) -> str:
    if p is None:
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def _layouts(comparison: Comparison) -> Iterator[Layout]:
    headers_all = ("row", "unit", "old", "new", "change", "p", "verdict")
    counts = comparison.counts()
    order = ("better", "worse", "not significant", "new", "gone", "skipped")
    tally = ", ".join(f"{counts[v]} {v}" for v in order if counts.get(v))
    notes = [f"verdict: better/worse only when the median moved by more than {comparison.threshold:.0%} and "
             f"the Mann-Whitney U test on the per-repetition samples gives p < {comparison.alpha:g}; "
             "otherwise not significant.",
             f"compare: {tally or 'no rows'}."]
    changed = [f"{line.key} {line.old_status} -> {line.new_status}" for line in comparison.lines
               if line.old_status != line.new_status and "-" not in (line.old_status, line.new_status)]
    if changed:
        notes.append("goal status changed: " + "; ".join(changed) + ".")
    if comparison.not_run:
        notes.append("not compared (suites not run this time): " + ", ".join(comparison.not_run) + ".")
    for width, dropped in ((None, ()), (NAME_WIDTH, ()), (NAME_WIDTH, ("p",)), (NAME_WIDTH, ("p", "unit"))):
        keep = [i for i, h in enumerate(headers_all) if h not in dropped]
        body: list[Section | tuple[str, ...]] = []
        suite = None
        for line in comparison.lines:
            if line.suite != suite:
                suite = line.suite
                body.append(Section(suite))
            change = "" if line.change is None else f"{line.change * 100:+.1f}%"
            cells = (fold(f"  {line.name}", width), line.unit, num(line.old), num(line.new), change,
                     _p_cell(line.p), line.verdict)
            body.append(tuple(cells[i] for i in keep))
        headers = tuple(headers_all[i] for i in keep)
        right = frozenset(i for i, h in enumerate(headers) if h in ("old", "new", "change", "p"))
        yield Layout(headers, right, body, list(notes))


def render_compare(comparison: Comparison, title: str | None = None, file: IO[str] | None = None,
                   plain: bool = False, width: int | None = None, warn: IO[str] | None = None) -> None:
    """Print the comparison, fitted to the width; warnings go to ``warn`` (stderr)."""
    stream = warn or sys.stderr
    for text in comparison.warnings:
        wrapped = textwrap.wrap(f"warning: {text}", width or terminal_width(stream), subsequent_indent="    ")
        print("\n".join(wrapped), file=stream)
    print_layouts(_layouts(comparison), title=title, file=file, plain=plain, width=width)
