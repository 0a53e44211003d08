"""Suites ``overlap`` and ``kernels``: real numpy work through streams vs bare threads/calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._harness import Baseline, Context, Row

__all__ = ["run_kernels", "run_overlap"]

_ns = time.perf_counter_ns
Kernel = Callable[[], object]


def _stream_rate(streams: Sequence[Any], kernels: Sequence[Kernel], k: int) -> float:
    """Thousand kernels/s: ``k`` kernels launched on each stream, then all synchronized."""
    t0 = _ns()
    for s, kernel in zip(streams, kernels):
        launch = s.launch
        for _ in range(k):
            launch(kernel)
    for s in streams:
        s.synchronize()
    return len(streams) * k / (_ns() - t0) * 1e6


def _thread_rate(kernels: Sequence[Kernel], k: int) -> float:
    """Thousand kernels/s: one bare thread per kernel, each calling it ``k`` times."""
    barrier = threading.Barrier(len(kernels) + 1)

    def body(kernel: Kernel) -> None:
        barrier.wait()
        for _ in range(k):
            kernel()

    threads = [threading.Thread(target=body, args=(kern,), name=f"bench-bare-{i}") for i, kern in enumerate(kernels)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = _ns()
    for t in threads:
        t.join()
    return len(kernels) * k / (_ns() - t0) * 1e6


def run_overlap(ctx: Context) -> list[Row]:
    """1, 2 and 4 streams of compute- and memory-bound kernels vs as many bare threads."""
    import numpy as np

    import mtia_async.sync as mtia

    counts = (1, 2, 4)
    streams = [mtia.Stream() for _ in range(max(counts))]
    rng = np.random.default_rng(0)
    exp, copyto = np.exp, np.copyto

    def compute_kernel(i: int) -> Kernel:
        x = rng.random(64 * 1024, dtype=np.float32)
        y = np.empty_like(x)
        return lambda: exp(x, out=y)

    def memory_kernel(i: int) -> Kernel:
        src = rng.random(2 * 1024 * 1024, dtype=np.float32)  # 8 MiB
        dst = np.empty_like(src)
        return lambda: copyto(dst, src)

    kinds: dict[str, tuple[Callable[[int], Kernel], int, str]] = {
        "compute": (compute_kernel, ctx.n(600, 100), "np.exp, 64K float32, out="),
        "memory": (memory_kernel, ctx.n(40, 8), "np.copyto, 8 MiB"),
    }
    rows: list[Row] = []
    for kind, (make, k, what) in kinds.items():
        kernels = [make(i) for i in range(max(counts))]
        for kernel in kernels:
            kernel()  # touch the output pages
        t0 = _ns()
        kernels[0]()
        one_us = (_ns() - t0) / 1e3
        variants: dict[str, Callable[[], float]] = {}
        for n in counts:
            ks, ss = kernels[:n], streams[:n]
            variants[f"streams{n}"] = lambda ss=ss, ks=ks, k=k: _stream_rate(ss, ks, k)  # type: ignore[misc]
            variants[f"threads{n}"] = lambda ks=ks, k=k: _thread_rate(ks, k)  # type: ignore[misc]
        samples = ctx.measure(f"overlap {kind}", variants)
        note = f"{what} (~{one_us:.0f} us each), {k} per stream per batch; k/s = thousand kernels per second"
        suite = "overlap"
        rows.append(Row(f"overlap.{kind}.1", suite, f"{kind}: 1 stream vs 1 bare thread", "k/s", "higher",
                        samples=samples["streams1"], baseline=Baseline("1 thread", samples["threads1"]), note=note))
        for n in counts[1:]:
            rows += [
                Row(f"overlap.{kind}.{n}.speedup", suite, f"{kind}: {n} streams, speed-up vs 1 stream", "k/s",
                    "higher", samples=samples[f"streams{n}"], baseline=Baseline("1 stream", samples["streams1"])),
                Row(f"overlap.{kind}.{n}.threads", suite, f"{kind}: {n} streams vs {n} bare threads", "k/s",
                    "higher", samples=samples[f"streams{n}"], baseline=Baseline(f"{n} threads", samples[f"threads{n}"])),
                Row(f"overlap.{kind}.{n}.bare", suite, f"{kind}: {n} bare threads, speed-up vs 1 thread", "k/s",
                    "higher", samples=samples[f"threads{n}"], baseline=Baseline("1 thread", samples["threads1"]),
                    note="the machine's own scaling, for reference"),
            ]
    return rows


def run_kernels(ctx: Context) -> list[Row]:
    """Small, medium and large ``np.add(a, b, out=c)`` through a stream vs the direct call."""
    import numpy as np

    import mtia_async.sync as mtia

    s = mtia.Stream()
    add = np.add
    sizes = {
        "small": (1024, ctx.n(20_000, 4_000), "1K"),
        "medium": (1 << 20, ctx.n(100, 20), "1M"),
        "large": (16 << 20, ctx.n(3, 1), "16M"),
    }
    rows: list[Row] = []
    for label, (size, k, text) in sizes.items():
        a = np.ones(size, dtype=np.float32)
        b = np.full(size, 2.0, dtype=np.float32)
        c = np.empty_like(a)

        def kernel(a: np.ndarray = a, b: np.ndarray = b, c: np.ndarray = c) -> None:
            add(a, b, out=c)

        kernel()  # touch the output pages

        def through_stream(kernel: Kernel = kernel, k: int = k) -> float:
            launch = s.launch
            t0 = _ns()
            for _ in range(k):
                launch(kernel)
            s.synchronize()
            return (_ns() - t0) / k / 1e3

        def direct(kernel: Kernel = kernel, k: int = k) -> float:
            t0 = _ns()
            for _ in range(k):
                kernel()
            return (_ns() - t0) / k / 1e3

        samples = ctx.measure(f"kernels {label}", {"stream": through_stream, "numpy": direct})
        rows.append(Row(f"kernels.{label}", "kernels", f"np.add {text} float32 out=, via a stream", "us",
                        samples=samples["stream"], baseline=Baseline("numpy", samples["numpy"]),
                        note=f"{k} kernels per batch, launched then synchronized; baseline calls numpy directly"))
        del a, b, c
    return rows
