"""Results documents: the machine and library versions, and the JSON of a run."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._harness import Context, Row

__all__ = ["SCHEMA", "load_json", "machine_info", "results_document", "rows_from_document", "write_json"]

SCHEMA = "mtia_async.bench/1"


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        mod = sys.modules.get(module)
        return getattr(mod, "__version__", None) if mod is not None else None


def machine_info() -> dict[str, Any]:
    """The machine, library versions, BLAS configuration and runtime configuration."""
    import numpy

    import mtia_async

    try:
        from threadpoolctl import threadpool_info

        blas: list[dict[str, Any]] | str = [dict(info) for info in threadpool_info()]
    except ImportError:
        blas = "threadpoolctl not installed"
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = None
    props = mtia_async.get_device_properties(0)
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "numpy": numpy.__version__,
        "blas": blas,
        "mtia_async": mtia_async.__version__,
        "config": {
            "device_count": mtia_async.device_count(),
            "device_memory": props["total_memory"],
            "workers": props["workers"],
        },
        "libraries": {name: _version(name) for name in ("anyio", "rich", "threadpoolctl", "matplotlib", "torch")},
        "env": {k: v for k, v in os.environ.items() if k.startswith(("MTIA_ASYNC_", "OPENBLAS_", "OMP_", "MKL_"))},
        "switch_interval_s": sys.getswitchinterval(),
        "loadavg_at_start": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not POSIX
        return None


def results_document(
    rows: Sequence[Row], *, suites: Sequence[str], ctx: Context, duration_s: float, machine: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document of a run (``--json``)."""
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv[1:],
        "suites": list(suites),
        "method": {
            "quick": ctx.quick,
            "reps": ctx.reps,
            "warmup": ctx.warmup,
            "statistic": "median of batch samples, with min and max",
            "ratio": "median of per-repetition paired ratios value/baseline, interleaved ABBA",
            "gc": "collected then disabled around every batch",
            "clock": "time.perf_counter_ns",
        },
        "duration_s": round(duration_s, 3),
        "loadavg_at_end": _loadavg(),
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
        ValueError: the file is not a mtia_async bench document.
    """
    import json

    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    if not isinstance(document, dict) or document.get("schema") != SCHEMA or not isinstance(document.get("rows"), list):
        raise ValueError(f"{path!r} is not a mtia_async bench result (expected schema {SCHEMA!r})")
    return document


def rows_from_document(document: Mapping[str, Any]) -> list[Row]:
    """The rows of a results document."""
    return [Row.from_dict(d) for d in document["rows"]]
