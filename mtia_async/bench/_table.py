"""Tables that fit the terminal: the results table, and the renderer ``--compare`` shares.

A table is built in *layouts*, from the fullest to the most compact (e.g. without the
stretch goals, then without the IQR column); the first layout whose measured width
fits is printed. rich measures its own tables (``Console.measure``); the plain-text
fallback measures characters. The width is the terminal's when printing to one, else
``COLUMNS`` when set, else ``DESIGN_WIDTH`` (100 columns): a pipe or a file gets the
design width, never a table as wide as its longest row.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from ._harness import Row
from ._stats import UNSTABLE_IQR

__all__ = [
    "DESIGN_WIDTH",
    "Layout",
    "Section",
    "fmt",
    "markdown_table",
    "num",
    "print_layouts",
    "render_table",
    "results_layouts",
    "summary",
    "table_lines",
    "terminal_width",
]

DESIGN_WIDTH = 100

#: Status cell -> rich style.
STYLES = {"met": "green", "met*": "bold green", "MISSED": "bold red", "FAILED": "bold red", "worse": "bold red",
          "better": "green", "not significant": "dim"}


def num(x: float | None) -> str:
    """A number with three significant digits, thousands grouped (``0.231``, ``13,436``)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def fmt(x: float | None, unit: str = "") -> str:
    """A number with its unit (``"0.248 us"``); ratios get enough digits to see a goal's side."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if unit == "x":
        if abs(x) < 10:
            return f"{x:.3f}x"
        return f"{x:.2f}x" if abs(x) < 100 else f"{x:.0f}x"
    text = num(x)
    return f"{text} {unit}" if unit else text


def terminal_width(file: IO[str] | None = None) -> int:
    """The width to render to: the terminal's, else ``COLUMNS``, else ``DESIGN_WIDTH``."""
    out = file or sys.stdout
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        if out.isatty():
            return shutil.get_terminal_size((DESIGN_WIDTH, 24)).columns
    except (AttributeError, ValueError, OSError):
        pass
    return DESIGN_WIDTH


@dataclass(frozen=True)
class Section:
    """A section heading inside a table (a suite's name)."""

    title: str


@dataclass
class Layout:
    """One way to draw a table: headers, right-aligned columns, body, footnotes."""

    headers: tuple[str, ...]
    right: frozenset[int]
    body: list[Section | tuple[str, ...]]
    footnotes: list[str] = field(default_factory=list)

    def plain_lines(self) -> list[str]:
        """The table as plain text (two spaces between columns; a folded name goes on below)."""
        cells = [self.headers] + [b for b in self.body if isinstance(b, tuple)]
        widths = [max(len(part) for c in cells for part in c[i].split("\n")) for i in range(len(self.headers))]

        def line(c: Sequence[str]) -> str:
            return "  ".join(t.rjust(w) if i in self.right else t.ljust(w)
                             for i, (t, w) in enumerate(zip(c, widths))).rstrip()

        lines = [line(self.headers), "  ".join("-" * w for w in widths)]
        for b in self.body:
            if isinstance(b, Section):
                lines.append(b.title)
                continue
            first, *rest = b[0].split("\n")
            lines.append(line((first, *b[1:])))
            lines += rest
        return lines

    def plain_width(self) -> int:
        return max(len(x) for x in self.plain_lines())

    def rich_table(self, title: str | None) -> Any:
        """The table as a rich ``Table``."""
        from rich import box
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                      header_style="bold",
                      title_justify="left", title_style="bold")
        for i, header in enumerate(self.headers):
            table.add_column(header, justify="right" if i in self.right else "left", no_wrap=True)
        blank = ("",) * (len(self.headers) - 1)
        for b in self.body:
            if isinstance(b, Section):
                table.add_row(Text(b.title, style="bold"), *blank)
                continue
            cells: list[Any] = []
            for text in b:
                if text in STYLES:
                    cells.append(Text(text, style=STYLES[text]))
                elif text.endswith("!"):
                    cells.append(Text.assemble(text[:-1], ("!", "bold yellow")))
                else:
                    cells.append(Text(text))  # literal: a row name such as "a[idx]" is no markup
            table.add_row(*cells)
        return table


def print_layouts(layouts: Iterator[Layout], *, title: str | None = None, file: IO[str] | None = None,
                  plain: bool = False, width: int | None = None) -> None:
    """Print the first layout that fits ``width`` (default ``terminal_width``), then its notes.

    rich draws it when installed and not ``plain``; otherwise plain text. When no layout
    fits, the last (most compact) one is printed.
    """
    out = file or sys.stdout
    width = width or terminal_width(out)
    console: Any = None
    if not plain:
        try:
            from rich.console import Console
        except ImportError:
            console = None
        else:
            console = Console(file=out, width=width, highlight=False)
    chosen: Layout | None = None
    table: Any = None
    # rich clamps a measurement to the console's width: measure on an unbounded one.
    ruler: Any = None if console is None else Console(file=io.StringIO(), width=10_000)
    for layout in layouts:
        chosen = layout
        if console is not None:
            table = layout.rich_table(title)
            if ruler.measure(table).maximum <= width:
                break
        elif layout.plain_width() <= width:
            break
    assert chosen is not None, "print_layouts needs at least one layout"
    notes = [line for note in chosen.footnotes for line in _wrap(note, width)]
    if console is not None:
        console.print(table)
        for line in notes:
            console.print(line, soft_wrap=True, markup=False)
        return
    if title:
        for line in _wrap(title, width):
            print(line, file=out)
    for line in chosen.plain_lines():
        print(line[:width], file=out)
    for line in notes:
        print(line, file=out)


def _wrap(text: str, width: int) -> list[str]:
    indent = " " * min(len(text) - len(text.lstrip(" ")) + 4, 8)
    return textwrap.wrap(text, width=width, subsequent_indent=indent, break_on_hyphens=False) or [""]


# --- the results table -----------------------------------------------------------------
_RESULT_HEADERS = ("row", "unit", "median", "IQR %", "base", "ratio", "goal", "status")


class _Notes:
    """Numbered footnotes for skip and failure reasons ([1], [2], ...), deduplicated."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str) -> str:
        reason = " ".join(reason.split())
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"[{self.reasons.index(reason) + 1}]"

    def lines(self) -> list[str]:
        return [f"[{i}] {reason}" for i, reason in enumerate(self.reasons, 1)]


#: Row names longer than this fold onto a second line when the table would not fit.
NAME_WIDTH = 32


def fold(name: str, width: int | None) -> str:
    """``name`` (indented) folded onto lines of at most ``width`` characters (None: as is)."""
    if width is None or len(name) <= width:
        return name
    indent = " " * (len(name) - len(name.lstrip(" ")))
    return "\n".join(textwrap.wrap(name.strip(), width, initial_indent=indent, subsequent_indent=indent + "  ",
                                    break_on_hyphens=False))


def _iqr_cell(row: Row) -> str:
    stats = row.stats
    if stats is None or stats.n < 3 or stats.rel_iqr is None:
        return "-"
    pct = stats.rel_iqr * 100
    text = f"{pct:.0f}" if pct >= 10 else f"{pct:.1f}"
    return text + ("!" if stats.unstable else "")


def _result_cells(row: Row, notes: _Notes, *, stretch: bool, base_names: bool) -> tuple[str, ...]:
    stats, ratio, goal = row.stats, row.ratio, row.goal
    goal_text = "" if goal is None else (goal.short if stretch else goal.short.split(" (")[0])
    name = f"  {row.name}"
    # A reason's footnote mark goes in the next column: "skipped  [1]" reads across two.
    if row.error is not None:
        return (name, row.unit, "FAILED", notes.mark(row.error).ljust(5), "", "", goal_text, "FAILED")
    if row.skipped is not None or stats is None:
        return (name, row.unit, "skipped", notes.mark(row.skipped or "no samples").ljust(5), "", "", goal_text, "-")
    ratio_cell = "" if ratio is None else fmt(ratio.median, "x")
    if row.baseline is not None and row.baseline.samples:
        base = num(row.baseline.stats.median)
        if base_names:
            base = f"{base} {row.baseline.name}"
    elif row.baseline_skipped is not None:
        base, ratio_cell = "skipped", notes.mark(row.baseline_skipped).ljust(6)  # reads on from "skipped"
    else:
        base = ""
    status = {"met": "met*" if row.stretch_met else "met", "MISSED": "MISSED"}.get(row.status, "-" if goal else "")
    return (name, row.unit, num(stats.median), _iqr_cell(row), base, ratio_cell, goal_text, status)


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


def _legend(rows: Sequence[Row], stretch: bool) -> str:
    units = {"us": "microseconds", "ms": "milliseconds", "M/s": "million per second",
             "k/s": "thousand per second", "1/s": "per second"}
    present = [f"{u} = {units[u]}" for u in units if any(r.unit == u for r in rows)]
    parts = ["; ".join(present)] if present else []
    parts.append(f"IQR %: interquartile range / median, ! above {UNSTABLE_IQR:.0%} (unstable: rerun, more --reps)")
    parts.append("base: the median of the baseline the row names, measured in the same run; ratio: median "
                 "of per-repetition value / baseline")
    parts.append("goal" + (" (stretch)" if stretch else "") + "; met* = the stretch goal is met too")
    return "; ".join(parts) + "."


def results_layouts(rows: Sequence[Row], extra_notes: Sequence[str] = ()) -> Iterator[Layout]:
    """Layouts of the results table, fullest first.

    Rows are grouped under their suite's name; skip and failure reasons become
    numbered footnotes. The compact layouts, in order: fold names longer than
    ``NAME_WIDTH`` onto a second line, drop the stretch goals, the IQR column, the base
    column, the goal column.
    """
    steps: list[tuple[bool, int | None, tuple[str, ...]]] = [
        (True, None, ()), (True, NAME_WIDTH, ()), (False, NAME_WIDTH, ()), (False, NAME_WIDTH, ("IQR %",)),
        (False, NAME_WIDTH, ("IQR %", "base")), (False, NAME_WIDTH, ("IQR %", "base", "goal")),
    ]
    for stretch, width, dropped in steps:
        notes = _Notes()
        keep = [i for i, h in enumerate(_RESULT_HEADERS) if h not in dropped]
        body: list[Section | tuple[str, ...]] = []
        suite = None
        for row in rows:
            if row.suite != suite:
                suite = row.suite
                body.append(Section(suite))
            cells = list(_result_cells(row, notes, stretch=stretch, base_names=False))
            if "IQR %" in dropped and cells[3].startswith("["):  # keep a skip reason's mark
                cells[2] = f"{cells[2]} {cells[3].strip()}"
            if "base" in dropped and cells[4] == "skipped":
                cells[5] = f"skipped {cells[5].strip()}"
            body.append((fold(cells[0], width), *(cells[i] for i in keep[1:])))
        headers = tuple(_RESULT_HEADERS[i] for i in keep)
        right = frozenset(i for i, h in enumerate(headers) if h in ("median", "IQR %", "base", "ratio"))
        footnotes = [_legend(rows, stretch), *extra_notes, *notes.lines(), summary(rows)]
        yield Layout(headers, right, body, footnotes)


def table_lines(rows: Sequence[Row], width: int = DESIGN_WIDTH) -> list[str]:
    """The results as plain text lines, in the first layout that fits ``width``."""
    chosen: Layout | None = None
    for layout in results_layouts(rows):
        chosen = layout
        if layout.plain_width() <= width:
            break
    assert chosen is not None
    return chosen.plain_lines() + [line for note in chosen.footnotes for line in _wrap(note, width)]


def render_table(rows: Sequence[Row], title: str = "mtia_async benchmarks", file: IO[str] | None = None,
                 plain: bool = False, width: int | None = None, notes: Sequence[str] = ()) -> None:
    """Print the results table (rich when installed and not ``plain``), fitted to the width."""
    print_layouts(results_layouts(rows, notes), title=title, file=file, plain=plain, width=width)


def markdown_table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table (for docs/performance.md), with the suite column."""
    notes = _Notes()
    headers = ("suite", *_RESULT_HEADERS)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [row.suite, *(c.strip() for c in _result_cells(row, notes, stretch=True, base_names=True))]
        cells = [c.replace("|", "\\|") for c in cells]
        if cells[-1] == "MISSED":
            cells[-1] = "**MISSED**"
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"{line}  " for line in notes.lines()]
    return "\n".join(lines).rstrip() + "\n"

