"""Fixtures only (helpers live in ``tests/_support``; tests never import this module).

Every test runs against a fresh runtime (``mtia_async.testing.fresh_runtime``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mtia_async.testing import fresh_runtime, worker_threads

# Transitional: tests/test_issue15_regressions.py (new, written concurrently) still does
# ``from conftest import run_python``. Remove this re-export once it imports from _support.
from _support import run_python  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    """A fresh two-device runtime per test; worker threads must all be gone after it."""
    with fresh_runtime(device_count=2, device_memory="1GiB", workers=2):
        yield
    assert worker_threads() == [], "worker threads outlived the runtime"
