"""Suites ``memory``, ``dispatch`` and ``rng``: DeviceArrays, the allocator and the generator."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any

from ._harness import Baseline, Context, Row

__all__ = ["run_dispatch", "run_memory", "run_rng", "torch_or_reason"]

_ns = time.perf_counter_ns


def torch_or_reason() -> tuple[Any, str]:
    """Return ``(torch, "")`` when PyTorch is importable, else ``(None, reason)``."""
    if importlib.util.find_spec("torch") is None:
        return None, "torch is not installed (pip install torch to compare with PyTorch CPU eager)"
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]
    except Exception as exc:  # noqa: BLE001 - a broken install; reported as the skip reason
        return None, f"torch failed to import: {type(exc).__name__}: {exc}"
    torch.set_num_threads(1)  # eager CPU ops on tiny tensors: threading only adds noise
    return torch, ""


def _sync_current() -> None:
    import mtia_async.sync as mtia

    mtia.current_stream().synchronize()


# --- memory ----------------------------------------------------------------------------
def run_memory(ctx: Context) -> list[Row]:
    """Cached allocate + free of a 256-float32 DeviceArray vs ``numpy.empty`` (and torch)."""
    import numpy as np

    suite = "memory"
    name = "mtia_async.empty(256, float32) + del"
    from mtia_async.sync import empty

    torch, torch_reason = torch_or_reason()
    n = ctx.n(100_000, 20_000)
    f32 = np.float32

    def device() -> float:
        t0 = _ns()
        for _ in range(n):
            x = empty(256, dtype=f32)
            del x
        return (_ns() - t0) / n / 1e3

    def host() -> float:
        np_empty = np.empty
        t0 = _ns()
        for _ in range(n):
            x = np_empty(256, dtype=f32)
            del x
        return (_ns() - t0) / n / 1e3

    variants = {"device": device, "numpy": host}
    if torch is not None:
        def torch_empty() -> float:
            t_empty = torch.empty
            t0 = _ns()
            for _ in range(n):
                x = t_empty(256)
                del x
            return (_ns() - t0) / n / 1e3

        variants["torch"] = torch_empty
    samples = ctx.measure("memory", variants)
    note = f"{n:,} pairs per batch, cached (the first allocation of the batch reuses a freed block)"
    rows = [Row("memory.alloc_free", suite, name, "us", samples=samples["device"],
                baseline=Baseline("numpy.empty", samples["numpy"]), note=note)]
    if torch is None:
        rows.append(Row("memory.alloc_free.torch", suite, f"{name} vs torch.empty", "us", skipped=torch_reason))
    else:
        rows.append(Row("memory.alloc_free.torch", suite, f"{name} vs torch.empty", "us", samples=samples["device"],
                        baseline=Baseline("torch.empty", samples["torch"]), note=note))
    return rows


# --- dispatch --------------------------------------------------------------------------
def _dispatch_cases(ctx: Context) -> list[tuple[str, str, tuple[int, ...], int]]:
    """(op, size label, shape, ops per batch); 5,000 ops per batch unless that is too long."""
    small, big, matmul_big = ctx.n(5_000, 1_000), ctx.n(100, 20), ctx.n(200, 40)
    return [
        ("add", "16", (16,), small), ("add", "4K", (4096,), small), ("add", "1M", (1 << 20,), big),
        ("matmul", "4x4", (4, 4), small), ("matmul", "64x64", (64, 64), small),
        ("matmul", "256x256", (256, 256), matmul_big),
        ("reduce", "16", (16,), small), ("reduce", "4K", (4096,), small), ("reduce", "1M", (1 << 20,), big),
    ]


_OP_TEXT = {"add": "c = a + b", "matmul": "c = a @ b", "reduce": "np.add.reduce(a)"}


def run_dispatch(ctx: Context) -> list[Row]:
    """``a + b``, ``a @ b`` and ``np.add.reduce(a)`` on DeviceArrays vs numpy (and torch)."""
    import numpy as np

    suite = "dispatch"
    cases = _dispatch_cases(ctx)
    from mtia_async.sync import asarray

    torch, torch_reason = torch_or_reason()

    ops: dict[str, Callable[[Any, Any], Any]] = {
        "add": lambda a, b: a + b,
        "matmul": lambda a, b: a @ b,
        "reduce": lambda a, b: np.add.reduce(a),
    }
    torch_ops: dict[str, Callable[[Any, Any], Any]] = {
        "add": lambda a, b: a + b,
        "matmul": lambda a, b: a @ b,
        "reduce": lambda a, b: a.sum(),
    }
    rng = np.random.default_rng(0)
    rows: list[Row] = []
    for op, size, shape, n in cases:
        ha = rng.random(shape, dtype=np.float32)
        hb = rng.random(shape, dtype=np.float32)
        da, db = asarray(ha), asarray(hb)
        _sync_current()
        fn, tfn = ops[op], torch_ops[op]

        def device(fn: Callable[[Any, Any], Any] = fn, n: int = n, a: Any = da, b: Any = db) -> float:
            t0 = _ns()
            for _ in range(n):
                c = fn(a, b)
            _sync_current()
            elapsed = _ns() - t0
            del c
            return elapsed / n / 1e3

        def host(fn: Callable[[Any, Any], Any] = fn, n: int = n, a: Any = ha, b: Any = hb) -> float:
            t0 = _ns()
            for _ in range(n):
                fn(a, b)
            return (_ns() - t0) / n / 1e3

        variants = {"device": device, "numpy": host}
        if torch is not None:
            ta, tb = torch.from_numpy(ha.copy()), torch.from_numpy(hb.copy())

            def eager(fn: Callable[[Any, Any], Any] = tfn, n: int = n, a: Any = ta, b: Any = tb) -> float:
                t0 = _ns()
                for _ in range(n):
                    fn(a, b)
                return (_ns() - t0) / n / 1e3

            variants["torch"] = eager
        samples = ctx.measure(f"dispatch {op} {size}", variants)
        name = f"{_OP_TEXT[op]}, {size} float32"
        note = f"{n:,} ops launched then one synchronize(), per op"
        rows.append(Row(f"dispatch.{op}.{size}", suite, f"{name} vs numpy", "us", samples=samples["device"],
                        baseline=Baseline("numpy", samples["numpy"]), note=note))
        if torch is not None:
            rows.append(Row(f"dispatch.{op}.{size}.torch", suite, f"{name} vs torch", "us",
                            samples=samples["device"], baseline=Baseline("torch", samples["torch"]), note=note))
        elif (op, size) == ("add", "16"):
            rows.append(Row("dispatch.add.16.torch", suite, f"{name} vs torch", "us", skipped=torch_reason))
        del da, db
    return rows


# --- rng -------------------------------------------------------------------------------
def run_rng(ctx: Context) -> list[Row]:
    """Device ``randn`` of 1M float32 vs numpy's Philox ``standard_normal`` on the host."""
    import numpy as np

    suite = "rng"
    name = "randn(1M) float32 on the device"
    from mtia_async.sync import randn

    size = 1_000_000
    k = ctx.n(10, 3)
    gen = np.random.Generator(np.random.Philox(1234))

    def device() -> float:
        t0 = _ns()
        for _ in range(k):
            x = randn(size)
        _sync_current()
        elapsed = _ns() - t0
        del x
        return elapsed / k / 1e3

    def host() -> float:
        normal = gen.standard_normal
        t0 = _ns()
        for _ in range(k):
            normal(size, dtype=np.float32)
        return (_ns() - t0) / k / 1e3

    samples = ctx.measure("rng", {"device": device, "numpy": host})
    return [Row("rng.randn", suite, f"{name} vs numpy Philox", "us", samples=samples["device"],
                baseline=Baseline("numpy Philox", samples["numpy"]),
                note=f"{k} draws per batch, launched then synchronized; baseline "
                     "Generator(Philox(seed)).standard_normal(1M, dtype=float32)")]
