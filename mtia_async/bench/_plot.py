"""``bench plot``: small multiples of a run, one unit per axis, goals drawn.

One panel per suite and unit (a suite whose rows have two units gets two panels side
by side in the same column): a row with a baseline is drawn as its ratio, unless its
goal is on the value. Each row shows its median (a dot coloured by its goal status),
its IQR (a thick bar) and min..max (a thin bar); the goal is a red tick, the stretch
goal a dashed one; with ``--compare`` the old median is a grey diamond. Values are
written in a column at the right of each panel, never over the data.

Drawn at 100 dpi, 13 inches wide (1300 px), for reading at 100 % zoom.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._harness import Row
from ._stats import Stats
from ._table import fmt

__all__ = ["FORMATS", "check_plot_path", "plot"]

FORMATS = (".png", ".svg")
_UNITS = {"us": "microseconds", "ms": "milliseconds", "M/s": "million per second",
          "k/s": "thousand per second", "x": "ratio to the row's baseline (x)"}
_MISSING = "needs matplotlib, which is not installed: pip install 'mtia_async[bench]'"


def check_plot_path(path: str) -> str | None:
    """What is wrong with ``path`` as a plot's output (None when it will do)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        return f"cannot draw {path!r}: the file name must end in .png or .svg"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"cannot draw {path!r}: the folder {folder!r} does not exist"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"plotting {_MISSING}"
    return None


@dataclass
class _Item:
    row: Row
    stats: Stats
    old: float | None


def _as_ratio(row: Row) -> bool:
    return row.ratio is not None and (row.goal is None or row.goal.on == "ratio")


def _drawn(row: Row) -> tuple[Stats | None, str]:
    """The summary a row is drawn with, and its unit (``"x"`` for a ratio)."""
    if row.error is not None or row.skipped is not None:
        return None, row.unit
    return (row.ratio, "x") if _as_ratio(row) else (row.stats, row.unit)


def _panels(rows: Sequence[Row], old: Mapping[str, Row]) -> list[tuple[str, str, list[_Item]]]:
    panels: dict[tuple[str, str], list[_Item]] = {}
    for row in rows:
        stats, unit = _drawn(row)
        if stats is None:
            continue
        before = old.get(row.key)
        old_value = None
        if before is not None:
            old_stats, old_unit = _drawn(before)
            old_value = old_stats.median if old_stats is not None and old_unit == unit else None
        panels.setdefault((row.suite, unit), []).append(_Item(row, stats, old_value))
    return [(suite, unit, items) for (suite, unit), items in panels.items()]


def _direction(items: Sequence[_Item], unit: str) -> str:
    better = {i.row.better for i in items}
    if len(better) != 1:
        return ""
    (b,) = better
    return f", {b} is better"


def _draw_panel(ax: Any, suite: str, unit: str, items: Sequence[_Item], compare: bool) -> None:
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, StrMethodFormatter

    colors = {"met": "#1a9641", "MISSED": "#d7191c"}
    xs: list[float] = []
    for y, item in enumerate(items):
        s, row = item.stats, item.row
        color = colors.get(row.status, "#4d4d4d")
        ax.plot([s.min, s.max], [y, y], color=color, linewidth=1, alpha=0.6, solid_capstyle="butt")
        ax.plot([s.q1, s.q3], [y, y], color=color, linewidth=5, alpha=0.45, solid_capstyle="butt")
        ax.plot([s.median], [y], "o", color=color, markersize=5, zorder=3)
        xs += [s.min, s.max]
        if item.old is not None:
            ax.plot([item.old], [y], "D", markerfacecolor="none", markeredgecolor="#7f7f7f", markersize=6, zorder=4)
            xs.append(item.old)
        goal = row.goal
        if goal is not None and (goal.on == "ratio") == (unit == "x"):
            ax.plot([goal.limit] * 2, [y - 0.38, y + 0.38], color="#d7191c", linewidth=2, zorder=2)
            xs.append(goal.limit)
            if goal.stretch is not None:
                ax.plot([goal.stretch] * 2, [y - 0.38, y + 0.38], color="#d7191c", linewidth=1.2,
                        linestyle=(0, (2, 1.5)), zorder=2)
                xs.append(goal.stretch)
    if unit == "x":
        ax.axvline(1.0, color="#7f7f7f", linewidth=0.8, linestyle=":", zorder=1)
        xs.append(1.0)
    positive = [x for x in xs if x > 0]
    lo, hi = (min(positive), max(positive)) if positive else (0.0, 1.0)
    if positive and hi / lo > 30:
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.6, hi * 1.6)
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=6))
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(0, hi * 1.08 if hi > 0 else 1.0)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ys = list(range(len(items)))
    names = [textwrap.fill(i.row.name, 34, break_on_hyphens=False) for i in items]  # long names: two lines
    ax.set_yticks(ys, names, fontsize=8.5 if all("\n" not in n for n in names) else 7.5)
    ax.set_ylim(len(items) - 0.5, -0.5)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", which="major", alpha=0.25)
    ax.set_xlabel(_UNITS.get(unit, unit) + _direction(items, unit), fontsize=8.5)
    ax.set_title(suite, fontsize=10, loc="left", fontweight="bold")
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    labels = []
    for item in items:
        text = fmt(item.stats.median, unit if unit == "x" else "")
        if compare and item.old is not None:
            text = f"{fmt(item.old, unit if unit == 'x' else '')} > {text}"
        labels.append(text)
    right.set_yticks(ys, labels, fontsize=8)
    right.tick_params(axis="y", length=0)
    for spine in ("top",):
        ax.spines[spine].set_visible(False)
        right.spines[spine].set_visible(False)


def plot(rows: Sequence[Row], path: str, *, old_rows: Sequence[Row] = (), title: str = "mtia_async benchmarks",
         subtitle: str = "") -> None:
    """Draw ``rows`` to ``path`` (.png or .svg) as small multiples; ``old_rows`` as diamonds.

    Raises:
        RuntimeError: matplotlib is not installed.
        ValueError: the path's extension is not .png/.svg, or there is nothing to draw.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError(f"plotting {_MISSING}") from exc
    if os.path.splitext(path)[1].lower() not in FORMATS:
        raise ValueError(f"cannot draw {path!r}: the file name must end in .png or .svg")
    old = {r.key: r for r in old_rows}
    panels = _panels(rows, old)
    if not panels:
        raise ValueError("nothing to plot: every row was skipped or failed")
    # Inches: every panel gets a title band above and a tick + axis-label band below.
    row_h, above, below, head_h, foot_h = 0.27, 0.36, 0.62, 0.85, 0.15
    heights = [above + row_h * len(items) + 0.15 + below for _, _, items in panels]
    # In suite order, split where the taller of the two columns is shortest.
    split = min(range(1, len(heights) + 1), key=lambda k: max(sum(heights[:k]), sum(heights[k:])))
    columns: list[list[int]] = [list(range(split)), list(range(split, len(heights)))]
    body_h = max(sum(heights[i] for i in col) for col in columns)
    width, total_h = 13.0, head_h + body_h + foot_h
    fig = plt.figure(figsize=(width, total_h), dpi=100)
    fig.text(0.1 / width, 1 - 0.3 / total_h, title, fontsize=12, fontweight="bold", va="center")
    legend = ("dot: median (green: goal met, red: missed, grey: no goal); thick bar: IQR; thin bar: min..max; "
              "red tick: goal, dashed: stretch goal")
    if old:
        legend += "; grey diamond: the older run's median"
    fig.text(0.1 / width, 1 - 0.62 / total_h, (subtitle + "\n" if subtitle else "") + legend, fontsize=8.5,
             va="center", color="#333333", linespacing=1.5)
    label_w, plot_w, column_w = 2.35, 3.2, width / 2  # names left of the axes, values right of them
    for c, col in enumerate(columns):
        top = head_h
        for i in col:
            suite, unit, items = panels[i]
            h = row_h * len(items) + 0.15
            ax = fig.add_axes((
                (c * column_w + label_w) / width, 1 - (top + above + h) / total_h, plot_w / width, h / total_h))
            _draw_panel(ax, suite, unit, items, bool(old))
            top += heights[i]
    fig.savefig(path, dpi=100)
    plt.close(fig)
