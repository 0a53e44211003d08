"""Benchmarks of mtia_async: ``python -m mtia_async bench [SUITES...]``.

Each suite returns :class:`Row` objects: samples of one figure, a baseline measured in
the same run, and the goal it is checked against (``GOALS``: the project's speed goals,
listed with their reasons in docs/performance.md, with the method and latest results).
Suites use the public API only.
"""

from __future__ import annotations

from ._harness import GOALS as GOALS
from ._harness import Baseline as Baseline
from ._harness import Context as Context
from ._harness import Goal as Goal
from ._harness import Row as Row
from ._harness import Stats as Stats
from ._report import compare as compare
from ._report import render_compare as render_compare
from ._report import render_table as render_table
from ._results import load_json as load_json
from ._run import SUITES as SUITES
from ._run import bench_command as bench_command
from ._run import run_suites as run_suites

__all__ = [
    "GOALS",
    "SUITES",
    "Baseline",
    "Context",
    "Goal",
    "Row",
    "Stats",
    "bench_command",
    "compare",
    "load_json",
    "render_compare",
    "render_table",
    "run_suites",
]
