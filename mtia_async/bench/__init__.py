"""Benchmarks of mtia_async: ``python -m mtia_async bench [SUITES...]``.

Each suite returns :class:`Row` objects: samples of one figure, a baseline measured in
the same run, and the goal it is checked against (``GOALS``: the project's speed goals,
listed with their reasons in docs/performance.md, with the method and latest results).
Suites use the public API only. ``bench compare`` and ``bench plot`` work on saved runs.
"""

from __future__ import annotations

from ._compare import Comparison as Comparison
from ._compare import compare as compare
from ._compare import render_compare as render_compare
from ._harness import GOALS as GOALS
from ._harness import Baseline as Baseline
from ._harness import Context as Context
from ._harness import Goal as Goal
from ._harness import Row as Row
from ._harness import Stats as Stats
from ._plot import plot as plot
from ._registry import SUITES as SUITES
from ._results import load_json as load_json
from ._run import bench_command as bench_command
from ._run import compare_command as compare_command
from ._run import plot_command as plot_command
from ._run import run_suites as run_suites
from ._stats import mann_whitney_u as mann_whitney_u
from ._table import render_table as render_table

__all__ = [
    "GOALS",
    "SUITES",
    "Baseline",
    "Comparison",
    "Context",
    "Goal",
    "Row",
    "Stats",
    "bench_command",
    "compare",
    "compare_command",
    "load_json",
    "mann_whitney_u",
    "plot",
    "plot_command",
    "render_compare",
    "render_table",
    "run_suites",
]
