"""Micro-benchmark: device ``randn(1_000_000)`` + ``synchronize()`` vs numpy's Philox on the host.

Goal (performance-goals.md #10): the device path costs <= 1.1x the baseline
``numpy.random.Generator(numpy.random.Philox(seed)).standard_normal(1_000_000,
dtype=numpy.float32)``, both measured in this run, alternating (ABBA) so drift hits
both alike. Reports medians and the median of the paired ratios.

Run: ``python benchmarks/bench_rng_micro.py [--reps 31] [--size 1000000]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mtia_async.sync as mtia

try:
    randn: Callable[..., object] = mtia.randn  # type: ignore[attr-defined]
    manual_seed: Callable[[int], None] = mtia.manual_seed  # type: ignore[attr-defined]
except AttributeError:  # before the facades export the random functions
    from mtia_async import manual_seed
    from mtia_async import randn


def _time(fn: Callable[[], None]) -> float:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - t0) / 1e3
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=31)
    parser.add_argument("--size", type=int, default=1_000_000)
    args = parser.parse_args()
    size = args.size
    manual_seed(1234)

    def device() -> None:
        x = randn(size)
        mtia.synchronize()
        del x  # back to the caching allocator: the next draw reuses the block

    def host() -> None:
        np.random.Generator(np.random.Philox(1234)).standard_normal(size, dtype=np.float32)

    for _ in range(3):  # warm-up: worker threads, allocator segment, page faults
        device()
        host()
    dev_us: list[float] = []
    host_us: list[float] = []
    for i in range(args.reps):
        pair = (device, host) if i % 2 == 0 else (host, device)
        times = {f: _time(f) for f in pair}
        dev_us.append(times[device])
        host_us.append(times[host])
    ratios = [d / h for d, h in zip(dev_us, host_us)]
    ratio = statistics.median(ratios)
    print(f"randn({size}) float32, {args.reps} paired repetitions")
    print(f"  device randn + synchronize: median {statistics.median(dev_us):9.1f} us  (min {min(dev_us):.1f})")
    print(f"  numpy Philox standard_normal: median {statistics.median(host_us):7.1f} us  (min {min(host_us):.1f})")
    print(f"  ratio (median of paired ratios): {ratio:.3f}x  goal <= 1.1x: {'met' if ratio <= 1.1 else 'MISSED'}")


if __name__ == "__main__":
    main()
