"""Fresh interpreters: the repository root, and running code or ``python -m mtia_async`` in a child.

Anything that can hang or crash the interpreter (fork, exit, signals, env configuration)
runs in a subprocess with a timeout (STYLE.md, Tests).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

__all__ = ["ROOT", "SPEC_DIR", "run_module", "run_process", "run_python"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
"""The checkout (the folder holding ``mtia_async/``, ``tests/`` and ``docs/``)."""

SPEC_DIR = os.path.join(os.path.dirname(ROOT), "shared", "spec")
"""Where the shared specification lives when it is beside the checkout (tests skip without it)."""


def run_python(code: str, timeout: float = 30.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (with the repo on sys.path) under a timeout."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MTIA_ASYNC_")}
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return run_process([sys.executable, "-c", textwrap.dedent(code)], timeout=timeout, env=full_env)


def run_process(args: list[str], timeout: float, env: dict[str, str] | None = None,
                cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(args, capture_output=True, text=True, timeout=...)`` that leaves nothing behind.

    The child runs in its own session; on timeout the whole process group is killed, so a
    grandchild (a forked child that hung, a server the script started) cannot outlive the test
    as an orphan, and ``subprocess.TimeoutExpired`` is raised as ``subprocess.run`` would.
    """
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=env, cwd=cwd, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        stdout, stderr = proc.communicate()
        raise subprocess.TimeoutExpired(args, timeout, stdout, stderr) from None
    finally:
        _kill_group(proc.pid)  # the child exited; anything it forked and left running goes too
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_module(args: list[str], timeout: float) -> Any:
    """``python -m mtia_async *args`` in a fresh interpreter (``run_python``)."""
    return run_python(
        f"""
        import runpy, sys
        sys.argv = ["mtia_async"] + {args!r}
        runpy.run_module("mtia_async", run_name="__main__", alter_sys=True)
        """,
        timeout=timeout,
    )
