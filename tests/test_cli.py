"""The command line, ``python -m mtia_async`` without a command: the main job (the
devices, the demo and a quick benchmark summary), in a fresh interpreter. The ``bench``
command is tested with the harness, in test_bench.py.
"""

from __future__ import annotations

import pytest
from _support import run_module


@pytest.mark.timeout(150)  # ~10 s on 2 cores; generous for a loaded CI machine
def test_main_job_describes_the_device_and_runs_the_demo() -> None:
    result = run_module([], timeout=140)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "devices: 1 (current: mtia:0)" in out
    assert "mtia:0  mtia_async emulated MTIA (numpy)" in out and "workers" in out and "capability 2.0" in out
    assert "demo 1: streams overlap numpy work" in out and "x overlap" in out
    assert "demo 2: an async service" in out and "served 24 requests" in out and "heartbeat (5 ms)" in out
    assert "quick benchmark summary" in out and "goals:" in out
