"""Median cost of a cached malloc + free pair on one stream (performance goal 8).

Goal <= 3 us, stretch 1 us. Also reports a pair whose free is settled before the next
malloc (a different size in between), and numpy's ``np.empty`` + drop as a baseline
measured in the same run.

Run: ``python benchmarks/bench_allocator_micro.py``
"""

from __future__ import annotations

import gc
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtia_async._memory import CachingAllocator

NUMBER = 200_000
REPEATS = 5


class _Stream:
    """The allocator needs only ``stream_id`` (and ``marker()`` after record_stream)."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


def median_us(fn: Callable[[], object]) -> float:
    """Median over REPEATS runs of the cost of one call, in microseconds (gc disabled)."""
    fn()  # warm-up: the first call reserves the segment
    gc.collect()
    gc.disable()
    try:
        runs = timeit.repeat(fn, number=NUMBER, repeat=REPEATS)
    finally:
        gc.enable()
    return statistics.median(runs) / NUMBER * 1e6


def main() -> None:
    """Print the medians and whether goal 8 is met."""
    stream = _Stream(0)
    print(f"{'case':<44} {'median':>10}")
    worst = 0.0
    for size, label in ((256, "256 B"), (1 << 20, "1 MiB")):
        allocator = CachingAllocator(0, 1 << 32)
        malloc, free = allocator.malloc, allocator.free

        def pair(size: int = size, malloc: Any = malloc, free: Any = free) -> None:
            free(malloc(size, stream))

        cost = median_us(pair)
        worst = max(worst, cost)
        print(f"{'malloc+free ' + label + ', same stream':<44} {cost:>8.3f} us")

    allocator = CachingAllocator(0, 1 << 32)
    malloc, free = allocator.malloc, allocator.free

    def interleaved() -> None:
        a = malloc(256, stream)
        b = malloc(4096, stream)
        free(a)
        free(b)

    print(f"{'2 x malloc+free, interleaved (per pair)':<44} {median_us(interleaved) / 2:>8.3f} us")
    print(f"{'baseline: np.empty(256, uint8)':<44} {median_us(lambda: np.empty(256, np.uint8)):>8.3f} us")
    verdict = "met" if worst <= 3.0 else "MISSED"
    stretch = "met" if worst <= 1.0 else "missed"
    print(f"goal 8 (<= 3 us): {verdict}; stretch (<= 1 us): {stretch}")


if __name__ == "__main__":
    main()
