"""Small helpers shared by the reliability suites (``test_rel_*.py``)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import mtia_async as mtia

__all__ = ["MiB", "boom", "seeded", "wait_until"]

MiB = 1 << 20


def boom(*args: Any) -> None:
    """A kernel that raises ``ValueError("boom")``."""
    raise ValueError("boom")


@contextmanager
def seeded(seed: int) -> Iterator[random.Random]:
    """A ``random.Random(seed)`` for the block, with the device generators seeded too.

    The device generators' states are restored in ``finally``, so a seeded test leaves
    the RNG as it found it even when it fails.
    """
    states = mtia.get_rng_state_all()
    try:
        mtia.manual_seed_all(seed)
        yield random.Random(seed)
    finally:
        mtia.set_rng_state_all(states)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "the condition") -> None:
    """Poll ``predicate`` every millisecond; fail if it is not true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.001)
