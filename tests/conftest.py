"""Shared fixtures: every test runs against a fresh runtime (mtia_async.testing)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from mtia_async.testing import fresh_runtime, worker_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    """A fresh two-device runtime per test; worker threads must all be gone after it."""
    with fresh_runtime(device_count=2, device_memory="1GiB", workers=2):
        yield
    assert worker_threads() == [], "worker threads outlived the runtime"


def run_python(code: str, timeout: float = 30.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (with the repo on sys.path) under a timeout."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MTIA_ASYNC_")}
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def join_all(threads: list[threading.Thread], timeout: float = 20.0) -> None:
    """Join threads with a timeout; fail the test if one is still alive."""
    for t in threads:
        t.join(timeout)
    alive = [t.name for t in threads if t.is_alive()]
    if alive:
        pytest.fail(f"threads still alive after {timeout} s: {alive}")
