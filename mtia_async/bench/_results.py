"""Results documents: the JSON of a run (rows, method, machine), written and read back."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._harness import Context, Row
from ._machine import loadavg, machine_info
from ._stats import UNSTABLE_IQR

__all__ = [
    "SCHEMA",
    "SCHEMAS",
    "load_json",
    "machine_info",
    "results_document",
    "rows_from_document",
    "write_json",
]

SCHEMA = "mtia_async.bench/2"
#: Schemas ``load_json`` reads: 1 had no quartiles, batch sizes or busy-machine record.
SCHEMAS = ("mtia_async.bench/1", SCHEMA)


def results_document(
    rows: Sequence[Row],
    *,
    suites: Sequence[str],
    ctx: Context,
    duration_s: float,
    machine: dict[str, Any],
    busy: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """The JSON document of a run (``--json``).

    Args:
        busy: cores' worth of CPU other processes used just before each suite
            (``"start"`` for before the run), from ``_machine.others_cpu``.
    """
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv[1:],
        "suites": list(suites),
        "method": {
            "quick": ctx.quick,
            "reps": ctx.reps,
            "warmup": ctx.warmup,
            "min_time_s": ctx.target_time,
            "statistic": "median of batch samples, with quartiles (IQR), min and max",
            "unstable": f"IQR > {UNSTABLE_IQR:.0%} of the median",
            "ratio": "median of per-repetition paired ratios value/baseline, interleaved ABBA",
            "batches": "calibrated per variant to last min_time_s where the batch size is free",
            "gc": "collected then disabled around every batch",
            "clock": "time.perf_counter_ns",
        },
        "duration_s": round(duration_s, 3),
        "loadavg_at_end": loadavg(),
        "busy": dict(busy or {}),
        "machine": machine,
        "rows": [row.to_dict() for row in rows],
    }


def write_json(path: str, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``path`` (parent folders are created)."""
    import json

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1, sort_keys=False)
        f.write("\n")


def load_json(path: str) -> dict[str, Any]:
    """Read a results document written by ``--json``.

    Raises:
        ValueError: the file is missing, is not JSON, or is not a mtia_async bench
            document (the message says which, and names the file).
    """
    import json

    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{path!r} is a directory, not a results file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path!r} is not a text file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if not isinstance(document, dict) or document.get("schema") not in SCHEMAS or not isinstance(
            document.get("rows"), list):
        raise ValueError(f"{path!r} is not a mtia_async bench result (expected schema {SCHEMA!r}, "
                         "as written by `python -m mtia_async bench --json PATH`)")
    try:
        rows_from_document(document)
    except ValueError as exc:
        raise ValueError(f"{path!r} holds a {exc}") from None
    return document


def rows_from_document(document: Mapping[str, Any]) -> list[Row]:
    """The rows of a results document.

    Raises:
        ValueError: a row is malformed.
    """
    rows = document["rows"]
    if not all(isinstance(d, Mapping) for d in rows):
        raise ValueError("bad row: every row must be a JSON object")
    return [Row.from_dict(d) for d in rows]
