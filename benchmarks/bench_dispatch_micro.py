"""Median per-op cost of ``c = a + b`` on 16-element float32 DeviceArrays (performance goal 9).

End to end: 5,000 launches, then one ``synchronize()``, divided by 5,000. Baselines
measured in the same run, interleaved with the device batches: numpy on the host, and
PyTorch CPU eager (``x + y`` on 16-element float32 tensors) when torch is importable.
Also printed, for diagnosis: the caller-side cost alone (the launches without the
synchronize) and the two pieces of it the allocator and the dispatch own.

Goal: <= 3.0x torch (stretch 2.0x); without torch the goal row is skipped.

Run: ``python benchmarks/bench_dispatch_micro.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mtia_async.sync as mtia  # the repo checkout, not an installed copy
from mtia_async.testing import fresh_runtime

N = 5_000


def batch(fn: Callable[[], None], sync: Callable[[], None] | None) -> float:
    """One batch of ``N`` calls (then ``sync``), in microseconds per call."""
    gc.collect()
    t0 = time.perf_counter_ns()
    fn()
    if sync is not None:
        sync()
    return (time.perf_counter_ns() - t0) / N / 1e3


def load_torch() -> Any:
    if importlib.util.find_spec("torch") is None:
        return None
    import torch  # type: ignore[import-not-found, unused-ignore]

    torch.set_num_threads(1)
    return torch


def main() -> None:
    """Print the medians and the ratios; say whether goal 9 is met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="batches per variant (median taken), default 9")
    repeats = parser.parse_args().repeats
    torch = load_torch()
    rng = np.random.default_rng(0)
    ha, hb = rng.random(16, dtype=np.float32), rng.random(16, dtype=np.float32)

    with fresh_runtime(device_count=1, workers=2):
        a, b = mtia.asarray(ha), mtia.asarray(hb)
        mtia.synchronize()

        def device() -> None:
            for _ in range(N):
                c = a + b  # noqa: F841 - each result is dropped by the next, as in a loop body

        def host() -> None:
            for _ in range(N):
                c = ha + hb  # noqa: F841

        variants: dict[str, tuple[Callable[[], None], Callable[[], None] | None]] = {
            "device a + b, end to end": (device, mtia.synchronize),
            "device a + b, caller side only": (device, None),
            "numpy a + b (host)": (host, None),
        }
        if torch is not None:
            ta, tb = torch.from_numpy(ha.copy()), torch.from_numpy(hb.copy())

            def eager() -> None:
                for _ in range(N):
                    c = ta + tb  # noqa: F841

            variants["torch CPU eager x + y"] = (eager, None)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for fn, sync in variants.values():  # warm-up
            batch(fn, sync)
            mtia.synchronize()
        for _ in range(repeats):  # interleaved, so a load spike hits every variant alike
            for name, (fn, sync) in variants.items():
                samples[name].append(batch(fn, sync))
                mtia.synchronize()

    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"c = a + b, 16 float32, {N:,} ops per batch, median of {repeats} batches")
    for name, value in medians.items():
        print(f"  {name:<34} {value:8.3f} us/op")
    e2e = medians["device a + b, end to end"]
    print(f"  ratio vs numpy                     {e2e / medians['numpy a + b (host)']:8.1f} x")
    if torch is None:
        print("  ratio vs torch                     skipped: torch is not installed (pip install torch)")
        print("goal 9 (<= 3.0x torch): n/a without torch")
        return
    ratio = e2e / medians["torch CPU eager x + y"]
    print(f"  ratio vs torch                     {ratio:8.2f} x")
    verdict = "met" if ratio <= 3.0 else "MISSED"
    stretch = "met" if ratio <= 2.0 else "missed"
    print(f"goal 9 (<= 3.0x torch): {verdict}; stretch (<= 2.0x): {stretch}")


if __name__ == "__main__":
    main()
