"""Waiting in tests without hanging: join threads and poll conditions under a timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

__all__ = ["join_all", "wait_until"]


def join_all(threads: list[threading.Thread], timeout: float = 20.0) -> None:
    """Join threads with a timeout; fail the test if one is still alive."""
    for t in threads:
        t.join(timeout)
    alive = [t.name for t in threads if t.is_alive()]
    if alive:
        pytest.fail(f"threads still alive after {timeout} s: {alive}")


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "the condition") -> None:
    """Poll ``predicate`` every millisecond; fail if it is not true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.001)
