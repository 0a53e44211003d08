"""The machine a run measures: what it is (recorded with the results) and how busy it is.

The busy check measures what *other* processes use, while the harness itself is idle:
before the first suite and between suites (each suite runs in a child process that has
exited by then). It reads the CPU time of the whole machine from ``/proc/stat`` over a
short window and subtracts this process's own CPU time over the same window. The load
average is recorded too, but not used for the warning: it counts the benchmark's own
threads, so it says the machine is busy on every run.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

__all__ = ["BUSY_SHARE", "busy_threshold", "loadavg", "machine_info", "others_cpu", "source_info"]

#: Other processes using more than this share of the cores make a figure suspect.
BUSY_SHARE = 0.25


def busy_threshold(cores: int | None = None) -> float:
    """Cores' worth of CPU that other processes may use before the harness warns."""
    return max(0.5, BUSY_SHARE * (cores or os.cpu_count() or 1))


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


def loadavg() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not POSIX
        return None


def _busy_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU jiffies of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def others_cpu(window: float = 0.25) -> float | None:
    """How many cores' worth of CPU *other* processes used during ``window`` seconds.

    Call it while this process is idle (it sleeps through the window). Returns None
    where ``/proc/stat`` is not available (not Linux).
    """
    before = _busy_jiffies()
    if before is None:
        return None
    own0 = sum(os.times()[:2])
    t0 = time.monotonic()
    time.sleep(window)
    after = _busy_jiffies()
    own1 = sum(os.times()[:2])
    elapsed = time.monotonic() - t0
    if after is None or elapsed <= 0:
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy_s = (after[0] - before[0]) / tick
    return round(max(0.0, busy_s - (own1 - own0)) / elapsed, 2)


def source_info() -> dict[str, Any] | None:
    """The code measured: the git commit of the checkout and its modified package files.

    None when mtia_async is not imported from a git checkout (an installed copy) or git
    is not available; a run of a working tree with changes says which files differ.
    """
    import subprocess

    import mtia_async

    root = os.path.dirname(os.path.dirname(os.path.abspath(mtia_async.__file__)))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "mtia_async"],
                                capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "modified": [line[3:] for line in status.splitlines() if line.strip()]}


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
        "loadavg_at_start": loadavg(),
        "source": source_info(),
    }
