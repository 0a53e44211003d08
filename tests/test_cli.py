"""The command line, ``python -m mtia_async`` without a command: the main job (the
devices, the demo and a quick benchmark summary), in a fresh interpreter, and its width:
every line fits 100 columns, with PyTorch installed and without it. The ``bench``
command is tested with the harness, in test_bench.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from _support import ROOT, run_module, run_python


def _assert_fits(text: str, width: int = 100) -> None:
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} columns: {line!r}"


@pytest.mark.timeout(200)  # ~50 s on 2 cores; generous for a loaded CI machine
def test_main_job_describes_the_device_runs_the_demo_and_fits_100_columns() -> None:
    result = run_module([], timeout=190)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "devices: 1 (current: mtia:0)" in out
    assert "mtia:0  mtia_async emulated MTIA (numpy)" in out and "workers" in out and "capability 2.0" in out
    assert "demo 1: streams overlap numpy work" in out and "x overlap" in out
    assert "demo 2: an async service" in out and "served 24 requests" in out and "heartbeat (5 ms)" in out
    assert "demo 3: numpy's functions" in out and "awaited unique(x > 1.5) -> [False, True]" in out
    assert "quick benchmark summary" in out and "goals:" in out
    for suite in ("launch", "sync", "await", "overlap", "kernels", "memory", "ops", "rng"):
        assert f"\n{suite} " in out or f"\n{suite}\n" in out, suite  # each suite is a section
    assert "mtia.launch(np.exp, A, out=O)" in out
    _assert_fits(out)  # a pipe gets the design width, 100 columns
    _assert_fits(result.stderr)


@pytest.mark.timeout(120)
def test_without_torch_the_rows_say_skipped_in_a_footnote(tmp_path: Path) -> None:
    stub = tmp_path / "torch"  # an import of torch fails as it does when torch is not installed
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    code = """
        import runpy, sys
        sys.argv = ["mtia_async", "bench", "memory", "ops", "--quick", "--reps", "3"]
        runpy.run_module("mtia_async", run_name="__main__", alter_sys=True)
    """
    result = run_python(code, timeout=110, env={"PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "[1] torch is not installed (pip install torch to compare with PyTorch CPU eager)" in out
    rows = [line for line in out.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    skipped = [line for line in rows if re.search(r"skipped +\[1\]", line)]
    # memory vs torch, 12 ops (s.launch(noop) has no torch twin) and the 7 numpy-function rows of a quick run
    assert len(skipped) == 20, rows
    assert any(line.lstrip().startswith("a + b") and re.search(r"skipped +\[1\]", line) for line in rows)
    _assert_fits(out)
    _assert_fits(result.stderr)
