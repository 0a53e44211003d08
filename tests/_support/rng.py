"""Seeded randomness that restores the device generators afterwards."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import mtia_async as mtia

__all__ = ["seeded"]


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
