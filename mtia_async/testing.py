"""Test helpers: a fresh runtime per test, and the allocator's invariants.

``check_invariants(stats, snapshot)`` asserts the reliability catalogue's M5 and M6 on
``memory_stats()`` and ``snapshot()`` dicts (see its docstring).

Use the context manager::

    from mtia_async.testing import fresh_runtime

    def test_something():
        with fresh_runtime(device_count=2, workers=2):
            ...

or the pytest fixture (add ``pytest_plugins = ["mtia_async.testing"]`` to your
conftest.py, or import ``mtia_runtime`` into it)::

    def test_something(mtia_runtime):
        ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._core.runtime import configure, shutdown_runtime, state
from ._memory.invariants import check_invariants as check_invariants

__all__ = ["check_invariants", "fresh_runtime", "init_count", "mtia_runtime", "reset_runtime", "worker_threads"]


def reset_runtime(join_timeout: float = 10.0) -> None:
    """Shut down the current runtime (if any) and forget configure() overrides.

    Queued kernels are dropped; running ones finish. Raises ``RuntimeError`` when a
    worker thread is still alive after ``join_timeout`` seconds.
    """
    alive = shutdown_runtime(join_timeout=join_timeout, reset_config=True)
    if alive:
        names = ", ".join(t.name for t in alive)
        raise RuntimeError(f"mtia_async worker threads still running after {join_timeout} s: {names}")


@contextmanager
def fresh_runtime(join_timeout: float = 10.0, **settings: Any) -> Iterator[None]:
    """Run the block against a new, uninitialised runtime configured with ``settings``.

    Args:
        join_timeout: seconds to wait for worker threads at exit.
        **settings: passed to ``mtia_async.configure()`` (``device_count``,
            ``device_memory``, ``workers``).
    """
    reset_runtime(join_timeout)
    if settings:
        configure(**settings)
    try:
        yield
    finally:
        reset_runtime(join_timeout)


def init_count() -> int:
    """How many times a runtime has been initialised in this process."""
    return state.init_count


def worker_threads() -> list[threading.Thread]:
    """The live mtia_async worker threads."""
    return [t for t in threading.enumerate() if t.name.startswith("mtia_async-")]


try:  # the pytest fixture, when pytest is installed
    import pytest

    @pytest.fixture
    def mtia_runtime() -> Iterator[None]:
        """A fresh runtime for one test (default settings, or the environment's)."""
        with fresh_runtime():
            yield

except ImportError:  # pragma: no cover
    pass
