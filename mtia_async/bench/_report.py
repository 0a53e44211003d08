"""Reporting: the results table (rich, or plain text), ``--compare`` and ``--plot``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from ._harness import Row
from ._results import rows_from_document

__all__ = [
    "CompareLine",
    "compare",
    "fmt",
    "markdown_table",
    "plot",
    "render_compare",
    "render_table",
    "summary",
    "table_lines",
]

_HEADERS = ("suite", "row", "median", "min .. max", "baseline", "ratio", "goal", "status")


def fmt(x: float | None, unit: str = "") -> str:
    """A number with three significant digits and its unit (``"0.248 us"``, ``"1.02x"``)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if unit == "x" and abs(x) < 100:  # enough digits to see which side of a goal it is
        return f"{x:.3f}x" if abs(x) < 10 else f"{x:.2f}x"
    if abs(x) >= 1000:
        text = f"{x:,.0f}"
    elif x == 0:
        text = "0"
    else:
        text = f"{x:.3g}"
    if not unit:
        return text
    return f"{text}x" if unit == "x" else f"{text} {unit}"


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cells(row: Row) -> tuple[str, ...]:
    stats, ratio = row.stats, row.ratio
    goal = row.goal.text if row.goal else ""
    if row.error is not None:
        return (row.suite, row.name, _short(f"FAILED: {row.error}"), "", "", "", goal, "n/a")
    if row.skipped is not None or stats is None:
        return (row.suite, row.name, _short(f"skipped: {row.skipped or 'no samples'}"), "", "", "", goal, "n/a")
    base = ""
    if row.baseline is not None and row.baseline.samples:
        base = f"{fmt(row.baseline.stats.median, row.unit)} {row.baseline.name}"
    status: str = row.status
    if status == "met" and row.stretch_met:
        status = "met (stretch)"
    return (
        row.suite,
        row.name,
        fmt(stats.median, row.unit),
        f"{fmt(stats.min)} .. {fmt(stats.max)}",
        base,
        "" if ratio is None else fmt(ratio.median, "x"),
        goal,
        status,
    )


def table_lines(rows: Sequence[Row]) -> list[str]:
    """The results as a plain-text table (the fallback when rich is missing)."""
    cells = [_HEADERS] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(_HEADERS))]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(text.ljust(w) for text, w in zip(c, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def markdown_table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table (for docs/performance.md)."""
    lines = ["| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
    for row in rows:
        cells = [c.replace("|", "\\|") for c in _cells(row)]
        if cells[-1] == "MISSED":
            cells[-1] = "**MISSED**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(rows: Sequence[Row]) -> str:
    """One line: how many goals were met, missed, or could not be checked."""
    with_goal = [r for r in rows if r.goal is not None]
    met = sum(r.status == "met" for r in with_goal)
    missed = [r.key for r in with_goal if r.status == "MISSED"]
    na = sum(r.status == "n/a" for r in with_goal)
    text = f"goals: {met} met, {len(missed)} missed, {na} n/a (of {len(with_goal)} rows with a goal)"
    if missed:
        text += "; missed: " + ", ".join(missed)
    return text


def render_table(rows: Sequence[Row], title: str = "mtia_async benchmarks", file: IO[str] | None = None,
                 plain: bool = False) -> None:
    """Print the results table: rich when installed (and not ``plain``), else plain text."""
    import sys

    out = file or sys.stdout
    console: Any = None
    if not plain:
        try:
            from rich import box
            from rich.console import Console
            from rich.table import Table
            from rich.text import Text
        except ImportError:
            console = None
        else:
            console = Console(file=out)
    if console is None:
        print(title, file=out)
        for line in table_lines(rows):
            print(line, file=out)
        print(summary(rows), file=out)
        return
    def build(columns: Sequence[int]) -> Any:
        table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", title_justify="left")
        for i in columns:
            header = _HEADERS[i]
            table.add_column(header, justify="right" if header in ("median", "min .. max", "ratio") else "left")
        for row in rows:
            cells: list[Any] = list(_cells(row))
            if row.error is not None or row.skipped is not None or row.stats is None:
                # The reason goes under the row's name: the median column stays narrow.
                cells[1] = Text.assemble(row.name, "\n", (cells[2], "bold red" if row.error else "yellow"))
                cells[2] = "FAILED" if row.error is not None else "skipped"
            if cells[-1] in styles:
                cells[-1] = Text(cells[-1], style=styles[cells[-1]])
            table.add_row(*(cells[i] for i in columns))
        return table

    styles = {"met": "green", "met (stretch)": "bold green", "MISSED": "bold red", "n/a": "dim"}
    table = build(range(len(_HEADERS)))
    needed = Console(width=1000).measure(table).maximum
    if not console.is_terminal:  # a pipe or a file: as wide as the table, not folded into 80 columns
        console = Console(file=out, width=needed)
    elif needed > console.width:  # a narrow terminal: drop suite, min .. max and baseline
        table = build([1, 2, 5, 6, 7])
    console.print(table)
    console.print(summary(rows), highlight=False)


# --- compare ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CompareLine:
    """How one row changed between two runs."""

    key: str
    name: str
    unit: str
    old: float | None
    new: float | None
    change: float | None  # relative change of the median, (new - old) / old
    verdict: str  # "better", "worse", "same", "new", "gone", "skipped"
    old_status: str
    new_status: str


def compare(old: Mapping[str, Any], new: Mapping[str, Any], threshold: float = 0.05) -> list[CompareLine]:
    """Match rows of two results documents by key and say how each median moved.

    Args:
        old, new: documents as written by ``--json``.
        threshold: a relative change below this is reported as ``"same"`` (noise).
    """
    old_rows = {r.key: r for r in rows_from_document(old)}
    new_rows = rows_from_document(new)
    lines = []
    for row in new_rows:
        before = old_rows.pop(row.key, None)
        a = before.stats.median if before is not None and before.stats is not None else None
        b = row.stats.median if row.stats is not None else None
        change = None
        if before is None:
            verdict = "new"
        elif a is None or b is None:
            verdict = "skipped"
        else:
            change = (b - a) / a if a else None
            if change is None or abs(change) < threshold:
                verdict = "same"
            else:
                improved = (change < 0) == (row.better == "lower")
                verdict = "better" if improved else "worse"
        lines.append(CompareLine(row.key, row.name, row.unit, a, b, change, verdict,
                                 before.status if before is not None else "-", row.status))
    for key, gone in old_rows.items():
        a = gone.stats.median if gone.stats is not None else None
        lines.append(CompareLine(key, gone.name, gone.unit, a, None, None, "gone", gone.status, "-"))
    return lines


def render_compare(lines: Sequence[CompareLine], file: IO[str] | None = None) -> None:
    """Print the change per row (plain text, one row per line)."""
    import sys

    out = file or sys.stdout
    header = ("row", "old", "new", "change", "verdict", "goal status")
    cells = [header]
    for line in lines:
        change = "" if line.change is None else f"{line.change * 100:+.1f}%"
        status = line.new_status if line.old_status == line.new_status else f"{line.old_status} -> {line.new_status}"
        cells.append((line.key, fmt(line.old, line.unit), fmt(line.new, line.unit), change, line.verdict, status))
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for n, c in enumerate(cells):
        print("  ".join(text.ljust(w) for text, w in zip(c, widths)).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)


# --- plot ------------------------------------------------------------------------------
def plot(rows: Sequence[Row], path: str) -> None:
    """Draw the results to ``path`` (PNG): one panel per suite, median with min-max bars.

    Rows with a baseline are drawn as their ratio (value / baseline), unless their goal
    is on the value; the others in their own unit. The goal is drawn as a red tick.

    Raises:
        RuntimeError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError(
            "--plot needs matplotlib, which is not installed: pip install mtia_async[bench]"
        ) from exc
    data = [r for r in rows if r.stats is not None]
    suites = list(dict.fromkeys(r.suite for r in data))
    if not suites:
        raise ValueError("nothing to plot: every row was skipped")
    heights = [max(1.5, 0.45 * sum(r.suite == s for r in data) + 0.9) for s in suites]
    fig, axes = plt.subplots(len(suites), 1, figsize=(11, sum(heights)), gridspec_kw={"height_ratios": heights},
                             squeeze=False)
    for ax, suite in zip(axes[:, 0], suites):
        suite_rows = [r for r in data if r.suite == suite]
        for y, r in enumerate(suite_rows):
            # The ratio when the row has a baseline, unless its goal is on the value.
            as_ratio = r.ratio is not None and (r.goal is None or r.goal.on == "ratio")
            stats = r.ratio if as_ratio else r.stats
            assert stats is not None
            color = {"met": "tab:green", "MISSED": "tab:red"}.get(r.status, "tab:blue")
            ax.errorbar([stats.median], [y], xerr=[[stats.median - stats.min], [stats.max - stats.median]],
                        fmt="o", color=color, capsize=3)
            ax.annotate(fmt(stats.median, "x" if as_ratio else r.unit), (stats.median, y),
                        textcoords="offset points", xytext=(6, 5), fontsize=7)
            if r.goal is not None:
                ax.plot([r.goal.limit] * 2, [y - 0.35, y + 0.35], color="red", linewidth=2)
        labels = [
            f"{r.name} [x {r.baseline.name}]"
            if r.ratio is not None and r.baseline is not None and (r.goal is None or r.goal.on == "ratio")
            else f"{r.name} [{r.unit}]"
            for r in suite_rows
        ]
        ys = list(range(len(suite_rows)))
        ax.set_yticks(ys, labels, fontsize=8)
        ax.set_ylim(len(suite_rows) - 0.5, -0.5)
        ax.set_xscale("log")
        ax.set_title(suite, fontsize=10, loc="left")
        ax.grid(axis="x", which="both", alpha=0.3)
    fig.suptitle("mtia_async benchmarks (median, min..max; red tick = goal; green met, red missed)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / sum(heights)))
    fig.savefig(path, dpi=110)
    plt.close(fig)
