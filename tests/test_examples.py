"""The programs in examples/ run, each in a fresh interpreter under a timeout: the torch.cuda
port, the trio program, and the inference service under its own load test (every answer
checked against numpy on the host)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from _support import ROOT, run_process

EXAMPLES = os.path.join(ROOT, "examples")


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTIA_ASYNC_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return run_process([sys.executable, *args], timeout=timeout, env=env, cwd=ROOT)


def test_the_torch_style_port_runs() -> None:
    result = _run(os.path.join(EXAMPLES, "torch_style_port.py"))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"forward pass: \d+\.\d+ ms on the side stream", out), out
    assert "trace actions: ['alloc', 'free_completed', 'free_requested', 'segment_alloc', 'snapshot']" in out
    assert out.endswith("done\n")


def test_the_torch_style_port_is_line_by_line() -> None:
    """Every statement of the port's main part carries the torch line it replaces."""
    with open(os.path.join(EXAMPLES, "torch_style_port.py")) as f:
        text = f.read()
    assert text.count("# torch.cuda") >= 8 and "with torch.cuda.stream(side)" in text
    assert "record_stream(side)" in text and "elapsed_time(end)" in text


def test_the_trio_program_runs() -> None:
    result = _run(os.path.join(EXAMPLES, "trio_program.py"), timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert len(re.findall(r"task \d: 5 matmuls in \d+\.\d+ ms on the device", out)) == 4, out
    assert "then moved on; stream busy: True" in out and out.endswith("done\n")


@pytest.mark.parametrize("mode", ["mtia", "to_thread"])
def test_the_inference_service_passes_its_load_test(mode: str) -> None:
    result = _run(os.path.join(EXAMPLES, "inference_load_test.py"), "--mode", mode, "--requests", "80",
                  "--concurrency", "8", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "80 requests in " in result.stdout and f"service ({mode})" in result.stdout
    assert result.stdout.endswith("every answer right\n")


def test_the_service_examples_code_is_the_package_code() -> None:
    """The code shown in examples/inference_service.py's docstring is what service_app runs."""
    from mtia_async.bench import service_app

    with open(os.path.join(EXAMPLES, "inference_service.py")) as f:
        doc = f.read().split('"""')[1]
    snippet = doc.split("The heart of it::")[1].split("The service's code")[0]
    with open(service_app.__file__) as f:
        source = f.read()
    lines = [line.split("  #")[0].strip() for line in snippet.splitlines()]
    lines = [line for line in lines if line]
    assert len(lines) >= 8
    for line in lines:
        assert line in source, line


def test_the_service_program_shows_its_options() -> None:
    result = _run(os.path.join(EXAMPLES, "inference_service.py"), "--help", timeout=60)
    assert result.returncode == 0, result.stderr
    for option in ("--mode", "--port", "--streams", "--max-seconds", "--stop-on-stdin-eof", "--blas-threads"):
        assert option in result.stdout


def _guide_blocks() -> list[str]:
    with open(os.path.join(ROOT, "docs", "migrating-from-torch.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    return [b for b in blocks if not b.startswith("# torch")]


@pytest.mark.parametrize("index", range(len(_guide_blocks())))
def test_the_migration_guides_mtia_async_code_runs(index: int, tmp_path: object) -> None:
    script = os.path.join(str(tmp_path), "block.py")
    with open(script, "w") as f:
        f.write(_guide_blocks()[index])
    result = _run(script, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()


def test_the_migration_guide_has_both_sides() -> None:
    with open(os.path.join(ROOT, "docs", "migrating-from-torch.md")) as f:
        text = f.read()
    assert len(_guide_blocks()) == 2 and text.count("```python\n# torch") == 1
    for topic in ("## What maps", "## What does not map, and why", "`t.item()`", "`dim=`", "tensor methods"):
        assert topic in text, topic
