"""Suite ``ops``: the host cost of one operation, against PyTorch CPU eager (issue 11).

Per row, ``n`` operations on 16-element float32 DeviceArrays, then one
``synchronize()`` of the current stream, divided by ``n``: "launch + its share of one
final synchronize". The baseline is the same operation in PyTorch CPU eager
(``torch.set_num_threads(1)``), measured in the same run, interleaved; without PyTorch
the rows still report their own cost and the baseline shows ``skip`` with the reason.
Goal 9 of the performance-goals page: each row <= 2.0x torch (stretch 1.5x). Large
arrays (1M float32) are compared with numpy on the host (<= 1.05x).

Then numpy's functions on DeviceArrays (issue 18, ``suites_functions``). Then goal 12: launching a ufunc kernel with DeviceArray arguments on a held stream
(caller side) at queue depths 10^3 and 10^6 (10^5 under ``--quick``), which should cost
the same; and the worker's overhead per such kernel: the drain rate of a pre-filled
FIFO of ``np.exp(X, out=Y)`` on tiny DeviceArrays against the same calls (on numpy
arrays) in a bare thread loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ._harness import Baseline, Context, Row, gc_paused
from ._stats import paired_differences
from .suites_core import held, noop
from .suites_functions import function_rows
from .suites_memory import torch_or_reason

__all__ = ["run_ops"]

_ns = time.perf_counter_ns
Op = Callable[[], object]


def _small_cases(torch: Any) -> list[tuple[str, str, Op, Op | None]]:
    """(key, row name, the operation on the device, PyTorch's, or None) on 16 float32."""
    import numpy as np

    import mtia_async.sync as mtia

    f32 = np.float32
    a = mtia.asarray(np.arange(16, dtype=f32))
    b = mtia.asarray(np.ones(16, dtype=f32))
    o = mtia.empty(16, dtype=f32)
    m = mtia.asarray(np.ones((4, 4), dtype=f32))
    x, y = np.arange(16, dtype=f32), np.empty(16, dtype=f32)
    s = mtia.current_stream()
    exp: Any = np.exp  # typed Any: numpy's stubs do not know DeviceArray's __array_ufunc__
    add: Any = np.add
    launch, s_launch = mtia.launch, s.launch

    def fill() -> None:
        a[...] = 0

    device: list[tuple[str, str, Op]] = [
        ("launch_noop", "s.launch(noop)", lambda: s_launch(noop)),
        ("launch_exp_np", "s.launch(np.exp, x, out=y)", lambda: s_launch(exp, x, out=y)),
        ("launch_exp_da", "s.launch(np.exp, X, out=Y)", lambda: s_launch(exp, a, out=o)),
        ("launch_exp", "mtia.launch(np.exp, A, out=O)", lambda: launch(exp, a, out=o)),
        ("add", "a + b", lambda: a + b),
        ("mul", "a * 2.0", lambda: a * 2.0),
        ("exp", "np.exp(a)", lambda: exp(a)),
        ("exp_out", "np.exp(a, out=o)", lambda: exp(a, out=o)),
        ("sum", "a.sum()", lambda: a.sum()),
        ("reduce", "np.add.reduce(a)", lambda: add.reduce(a)),
        ("matmul", "m @ m (4x4)", lambda: m @ m),
        ("fill", "a[...] = 0", fill),
        ("empty", "empty(16)", lambda: mtia.empty(16, dtype=f32)),
    ]
    theirs: dict[str, Op] = {}
    if torch is not None:
        ta, tb, to = torch.arange(16, dtype=torch.float32), torch.ones(16), torch.empty(16)
        tm = torch.ones(4, 4)
        t_exp, t_empty = torch.exp, torch.empty

        def t_fill() -> None:
            ta[...] = 0

        exp_out: Op = lambda: t_exp(ta, out=to)  # noqa: E731 - one op per name, as on the device side
        theirs = {
            "launch_exp_np": exp_out, "launch_exp_da": exp_out, "launch_exp": exp_out,
            "add": lambda: ta + tb, "mul": lambda: ta * 2.0, "exp": lambda: t_exp(ta), "exp_out": exp_out,
            "sum": lambda: ta.sum(), "reduce": lambda: ta.sum(), "matmul": lambda: tm @ tm,
            "fill": t_fill, "empty": lambda: t_empty(16),
        }
    return [(key, name, fn, theirs.get(key)) for key, name, fn in device]


def _timed_device(fn: Op) -> Callable[[int], float]:
    import mtia_async.sync as mtia

    def timed(n: int) -> float:
        sync = mtia.current_stream().synchronize
        t0 = _ns()
        for _ in range(n):
            fn()
        sync()
        return _ns() - t0

    return timed


def _timed_host(fn: Op) -> Callable[[int], float]:
    def timed(n: int) -> float:
        t0 = _ns()
        for _ in range(n):
            fn()
        return _ns() - t0

    return timed


def _measure_pairs(ctx: Context, label: str, device: Op, other: Op | None,
                   max_n: int) -> tuple[list[float], list[float] | None, int | None]:
    variants = {"device": _timed_device(device)}
    if other is not None:
        variants["other"] = _timed_host(other)
    samples = ctx.per_op(label, variants, max_n=max_n)
    return samples["device"], samples.get("other"), ctx.batch(label, "device")


def _small_rows(ctx: Context) -> list[Row]:
    torch, reason = torch_or_reason()
    rows = []
    for key, name, fn, theirs in _small_cases(torch):
        mine, base, batch = _measure_pairs(ctx, f"ops {name}", fn, theirs, max_n=2_000_000)
        row = Row(f"ops.{key}", "ops", name, "us", samples=mine, batch=batch,
                  note="16 float32; per op, launch + its share of one final synchronize()")
        if base is not None:
            row.baseline = Baseline("torch", base)
        elif key != "launch_noop":
            row.baseline_skipped = reason
        rows.append(row)
    return rows


def _large_rows(ctx: Context) -> list[Row]:
    import numpy as np

    import mtia_async.sync as mtia

    size = 1 << 20
    hx = np.random.default_rng(0).random(size, dtype=np.float32)
    hy, ho = hx.copy(), np.empty_like(hx)
    a, b, o = mtia.asarray(hx), mtia.asarray(hy), mtia.empty(size, dtype=np.float32)
    exp: Any = np.exp
    cases: list[tuple[str, str, Op, Op]] = [
        ("add", "a + b, 1M vs numpy", lambda: a + b, lambda: hx + hy),
        ("exp_out", "np.exp(a, out=o), 1M vs numpy", lambda: exp(a, out=o), lambda: exp(hx, out=ho)),
        ("sum", "a.sum(), 1M vs numpy", lambda: a.sum(), lambda: hx.sum()),
    ]
    rows = []
    for key, name, fn, host in cases:
        mine, base, batch = _measure_pairs(ctx, f"ops {name}", fn, host, max_n=100_000)
        assert base is not None
        rows.append(Row(f"ops.large.{key}", "ops", name, "us", samples=mine, baseline=Baseline("numpy", base),
                        batch=batch, note="1M float32 on the device vs the same expression on numpy arrays"))
    return rows


def _pow10(n: int) -> str:
    """``1000`` -> ``"10^3"`` (n a power of ten)."""
    return f"10^{len(str(n)) - 1}"


def _deep_queue_rows(ctx: Context) -> list[Row]:
    """Caller-side launch of ``np.exp(X, out=Y)`` on a held stream at two queue depths."""

    import mtia_async.sync as mtia

    low, high, n = 1_000, ctx.n(1_000_000, 100_000), 1_000
    x, y = mtia.zeros(16), mtia.empty(16)
    s = mtia.Stream()
    label = f"ops launch at depth {_pow10(low)} and {_pow10(high)}"
    total = ctx.warmup + ctx.reps
    samples: dict[str, list[float]] = {"low": [], "high": []}
    with gc_paused():  # one full collection; each repetition queues 10^6 tuples
        _deep_reps(ctx, label, total, s, x, y, samples, (low, high, n))
    ctx.progress(label, total, total)
    note = (f"s.launch(np.exp, X, out=Y) on 16-float32 DeviceArrays, {n:,} launches timed at each depth, "
            "caller side, the stream held (its worker parked)")
    return [
        Row("ops.launch_da.d1e3", "ops", f"launch at depth {_pow10(low)}", "us", samples=samples["low"],
            batch=n, note=note),
        Row("ops.launch_da.d1e6", "ops", f"launch at depth {_pow10(high)} vs {_pow10(low)}", "us",
            samples=samples["high"], batch=n, baseline=Baseline(f"depth {_pow10(low)}", samples["low"]), note=note),
    ]


def _deep_reps(ctx: Context, label: str, total: int, s: Any, x: Any, y: Any, samples: dict[str, list[float]],
               sizes: tuple[int, int, int]) -> None:
    import numpy as np

    low, high, n = sizes
    exp = np.exp
    for rep in range(total):
        ctx.progress(label, rep, total)
        with held(s) as release, gc_paused():
            launch = s.launch
            for _ in range(low):
                launch(exp, x, out=y)
            t0 = _ns()
            for _ in range(n):
                launch(exp, x, out=y)
            t1 = _ns()
            for _ in range(high - low - n):
                launch(exp, x, out=y)
            t2 = _ns()
            for _ in range(n):
                launch(exp, x, out=y)
            t3 = _ns()
            release()
            s.synchronize()
        if rep >= ctx.warmup:
            samples["low"].append((t1 - t0) / n / 1e3)
            samples["high"].append((t3 - t2) / n / 1e3)


def _worker_rows(ctx: Context) -> list[Row]:
    """The worker's cost per tiny ufunc kernel vs the same call in a bare thread loop."""
    import numpy as np

    import mtia_async.sync as mtia

    n = ctx.n(100_000, 20_000)
    x_dev, y_dev = mtia.zeros(16), mtia.empty(16)
    x, y = np.zeros(16, dtype=np.float32), np.empty(16, dtype=np.float32)
    s = mtia.Stream()
    exp = np.exp

    def drain() -> float:
        with held(s) as release:
            launch = s.launch
            for _ in range(n):
                launch(exp, x_dev, out=y_dev)
            t0 = _ns()
            release()
            s.synchronize()
            return (_ns() - t0) / n / 1e3

    def bare() -> float:
        took: list[int] = []

        def loop() -> None:
            t0 = _ns()
            for _ in range(n):
                exp(x, out=y)
            took.append(_ns() - t0)

        thread = threading.Thread(target=loop, name="bench-bare-loop")
        thread.start()
        thread.join()
        return took[0] / n / 1e3

    samples = ctx.measure("ops worker drain vs bare thread", {"drain": drain, "bare": bare})
    note = f"{n:,} kernels np.exp(X, out=Y) on 16 float32 queued on a held stream, then released"
    return [
        Row("ops.worker.drain", "ops", "worker drain vs bare thread", "us", samples=samples["drain"], batch=n,
            baseline=Baseline("thread", samples["bare"]), note=note),
        Row("ops.worker.overhead", "ops", "worker overhead per kernel", "us",
            samples=paired_differences(samples["drain"], samples["bare"]), batch=n,
            note="drain time per kernel minus a bare thread's call, paired per repetition"),
    ]


def run_ops(ctx: Context) -> list[Row]:
    """Host cost per op vs torch; numpy's functions (issue 18); large arrays vs numpy; deep queues; worker."""
    return (_small_rows(ctx) + function_rows(ctx, _measure_pairs) + _large_rows(ctx) + _deep_queue_rows(ctx)
            + _worker_rows(ctx))
