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
#: A kernel as launched: the function, its positional and its keyword arguments.
Launch = tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]]


def _stream_rate(streams: Sequence[Any], launches: Sequence[Launch], k: int) -> float:
    """Thousand kernels/s: ``k`` kernels launched on each stream, then all synchronized."""
    t0 = _ns()
    for s, (fn, args, kwargs) in zip(streams, launches):
        launch = s.launch
        for _ in range(k):
            launch(fn, *args, **kwargs)
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
    """1, 2 and 4 streams of compute- and memory-bound kernels vs as many bare threads.

    Compute: ``s.launch(np.exp, X, out=Y)`` on 64K float32 DeviceArrays (goal 6), against
    bare threads calling ``np.exp(x, out=y)`` on numpy arrays. Memory: ``np.copyto`` of
    8 MiB numpy arrays, launched the same way.
    """
    import numpy as np

    import mtia_async.sync as mtia

    counts = (1, 2, 4)
    streams = [mtia.Stream() for _ in range(max(counts))]
    rng = np.random.default_rng(0)
    exp, copyto = np.exp, np.copyto

    def compute(i: int) -> tuple[Launch, Kernel]:
        x = rng.random(64 * 1024, dtype=np.float32)
        y = np.empty_like(x)
        dx, dy = mtia.asarray(x), mtia.empty(x.shape, dtype=np.float32)
        return (exp, (dx,), {"out": dy}), lambda: exp(x, out=y)

    def memory(i: int) -> tuple[Launch, Kernel]:
        src = rng.random(2 * 1024 * 1024, dtype=np.float32)  # 8 MiB
        dst = np.empty_like(src)
        return (copyto, (dst, src), {}), lambda: copyto(dst, src)

    kinds: dict[str, tuple[Callable[[int], tuple[Launch, Kernel]], int, str]] = {
        "compute": (compute, ctx.n(600, 100), "exp"),
        "memory": (memory, ctx.n(40, 8), "copy"),
    }
    notes = {"compute": "s.launch(np.exp, X, out=Y), 64K float32 DeviceArrays; threads: np.exp on numpy arrays",
             "memory": "s.launch(np.copyto, dst, src), 8 MiB numpy arrays; threads: the same call"}
    rows: list[Row] = []
    for kind, (make, k, short) in kinds.items():
        made = [make(i) for i in range(max(counts))]
        launches, kernels = [m[0] for m in made], [m[1] for m in made]
        for kernel in kernels:
            kernel()  # touch the output pages
        for s, (fn, args, kwargs) in zip(streams, launches):
            s.launch(fn, *args, **kwargs)
            s.synchronize()
        t0 = _ns()
        kernels[0]()
        one_us = (_ns() - t0) / 1e3
        variants: dict[str, Callable[[], float]] = {}
        for n in counts:
            ls, ks, ss = launches[:n], kernels[:n], streams[:n]
            variants[f"streams{n}"] = lambda ss=ss, ls=ls, k=k: _stream_rate(ss, ls, k)  # type: ignore[misc]
            variants[f"threads{n}"] = lambda ks=ks, k=k: _thread_rate(ks, k)  # type: ignore[misc]
        samples = ctx.measure(f"overlap {kind}", variants)
        note = f"{notes[kind]} (~{one_us:.0f} us each), {k} per stream per batch; k/s = thousand kernels/s"
        suite = "overlap"
        rows.append(Row(f"overlap.{kind}.1", suite, f"{short}: 1 stream vs 1 thread", "k/s", "higher",
                        samples=samples["streams1"], baseline=Baseline("thread", samples["threads1"]), note=note))
        for n in counts[1:]:
            rows += [
                Row(f"overlap.{kind}.{n}.speedup", suite, f"{short}: {n} streams vs 1 stream", "k/s",
                    "higher", samples=samples[f"streams{n}"], baseline=Baseline("stream", samples["streams1"]),
                    note=note),
                Row(f"overlap.{kind}.{n}.threads", suite, f"{short}: {n} streams vs {n} threads", "k/s",
                    "higher", samples=samples[f"streams{n}"], baseline=Baseline(f"{n} thr", samples[f"threads{n}"]),
                    note=note),
                Row(f"overlap.{kind}.{n}.bare", suite, f"{short}: {n} threads vs 1 thread", "k/s",
                    "higher", samples=samples[f"threads{n}"], baseline=Baseline("thread", samples["threads1"]),
                    note="the machine's own scaling, for reference"),
            ]
    return rows


def run_kernels(ctx: Context) -> list[Row]:
    """Small, medium and large ``np.add(a, b, out=c)`` through a stream vs the direct call."""
    import numpy as np

    import mtia_async.sync as mtia

    s = mtia.Stream()
    add = np.add
    sizes = {"small": (1024, "1K"), "medium": (1 << 20, "1M"), "large": (16 << 20, "16M")}
    rows: list[Row] = []
    for label, (size, text) in sizes.items():
        a = np.ones(size, dtype=np.float32)
        b = np.full(size, 2.0, dtype=np.float32)
        c = np.empty_like(a)

        def kernel(a: np.ndarray = a, b: np.ndarray = b, c: np.ndarray = c) -> None:
            add(a, b, out=c)

        kernel()  # touch the output pages

        def through_stream(k: int, kernel: Kernel = kernel) -> float:
            launch = s.launch
            t0 = _ns()
            for _ in range(k):
                launch(kernel)
            s.synchronize()
            return _ns() - t0

        def direct(k: int, kernel: Kernel = kernel) -> float:
            t0 = _ns()
            for _ in range(k):
                kernel()
            return _ns() - t0

        group = f"kernels {label}"
        samples = ctx.per_op(group, {"stream": through_stream, "numpy": direct}, max_n=1_000_000)
        rows.append(Row(f"kernels.{label}", "kernels", f"np.add {text} via stream vs numpy", "us",
                        samples=samples["stream"], baseline=Baseline("numpy", samples["numpy"]),
                        batch=ctx.batch(group, "stream"),
                        note="np.add(a, b, out=c) on float32: N kernels launched then synchronized, per kernel; "
                             "baseline calls numpy directly"))
        del a, b, c
    return rows
