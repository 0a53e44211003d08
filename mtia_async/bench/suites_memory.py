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
    missing = "torch is not installed (pip install torch to compare with PyTorch CPU eager)"
    try:
        if importlib.util.find_spec("torch") is None:
            return None, missing
        import torch  # type: ignore[import-not-found, unused-ignore]
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            return None, missing
        return None, f"torch failed to import: {type(exc).__name__}: {exc}"
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

    from mtia_async.sync import empty

    suite = "memory"
    torch, torch_reason = torch_or_reason()
    f32 = np.float32

    def device(n: int) -> float:
        t0 = _ns()
        for _ in range(n):
            x = empty(256, dtype=f32)
            del x
        return _ns() - t0

    def host(n: int) -> float:
        np_empty = np.empty
        t0 = _ns()
        for _ in range(n):
            x = np_empty(256, dtype=f32)
            del x
        return _ns() - t0

    variants = {"device": device, "numpy": host}
    if torch is not None:
        def torch_empty(n: int) -> float:
            t_empty = torch.empty
            t0 = _ns()
            for _ in range(n):
                x = t_empty(256)
                del x
            return _ns() - t0

        variants["torch"] = torch_empty
    samples = ctx.per_op("memory", variants)
    note = "x = mtia_async.empty(256, dtype=float32); del x: a cached allocate + free pair"
    batch = ctx.batch("memory", "device")
    rows = [Row("memory.alloc_free", suite, "empty(256) + del vs numpy", "us", samples=samples["device"],
                baseline=Baseline("numpy", samples["numpy"]), note=note, batch=batch)]
    torch_row = Row("memory.alloc_free.torch", suite, "empty(256) + del vs torch", "us", samples=samples["device"],
                    note=note, batch=batch)
    if torch is None:
        torch_row.baseline_skipped = torch_reason
    else:
        torch_row.baseline = Baseline("torch", samples["torch"])
    return rows + [torch_row]


# --- dispatch --------------------------------------------------------------------------
_CASES = [("add", "16", (16,)), ("add", "4K", (4096,)), ("add", "1M", (1 << 20,)),
          ("matmul", "4x4", (4, 4)), ("matmul", "64x64", (64, 64)), ("matmul", "256x256", (256, 256)),
          ("reduce", "16", (16,)), ("reduce", "4K", (4096,)), ("reduce", "1M", (1 << 20,))]
_OP_TEXT = {"add": "a + b", "matmul": "a @ b", "reduce": "add.reduce"}


def run_dispatch(ctx: Context) -> list[Row]:
    """``a + b``, ``a @ b`` and ``np.add.reduce(a)`` on DeviceArrays by size vs numpy (and torch)."""
    import numpy as np

    from mtia_async.sync import asarray

    suite = "dispatch"
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
    for op, size, shape in _CASES:
        ha = rng.random(shape, dtype=np.float32)
        hb = rng.random(shape, dtype=np.float32)
        da, db = asarray(ha), asarray(hb)
        _sync_current()
        fn, tfn = ops[op], torch_ops[op]

        def device(n: int, fn: Callable[[Any, Any], Any] = fn, a: Any = da, b: Any = db) -> float:
            t0 = _ns()
            for _ in range(n):
                c = fn(a, b)
            _sync_current()
            elapsed = _ns() - t0
            del c
            return elapsed

        def host(n: int, fn: Callable[[Any, Any], Any] = fn, a: Any = ha, b: Any = hb) -> float:
            t0 = _ns()
            for _ in range(n):
                fn(a, b)
            return _ns() - t0

        variants = {"device": device, "numpy": host}
        if torch is not None:
            ta, tb = torch.from_numpy(ha.copy()), torch.from_numpy(hb.copy())

            def eager(n: int, fn: Callable[[Any, Any], Any] = tfn, a: Any = ta, b: Any = tb) -> float:
                t0 = _ns()
                for _ in range(n):
                    fn(a, b)
                return _ns() - t0

            variants["torch"] = eager
        group = f"dispatch {op} {size}"
        samples = ctx.per_op(group, variants, max_n=1_000_000)
        name = f"{_OP_TEXT[op]} {size}"
        note = "ops launched then one synchronize(), per op (launch + its share of the sync)"
        batch = ctx.batch(group, "device")
        rows.append(Row(f"dispatch.{op}.{size}", suite, f"{name} vs numpy", "us", samples=samples["device"],
                        baseline=Baseline("numpy", samples["numpy"]), note=note, batch=batch))
        torch_row = Row(f"dispatch.{op}.{size}.torch", suite, f"{name} vs torch", "us", samples=samples["device"],
                        note=note, batch=batch)
        if torch is None:
            torch_row.baseline_skipped = torch_reason
        else:
            torch_row.baseline = Baseline("torch", samples["torch"])
        rows.append(torch_row)
        del da, db
    return rows


# --- rng -------------------------------------------------------------------------------
def run_rng(ctx: Context) -> list[Row]:
    """Device ``randn`` of 1M float32 vs numpy's Philox ``standard_normal`` on the host."""
    import numpy as np

    from mtia_async.sync import randn

    size = 1_000_000
    gen = np.random.Generator(np.random.Philox(1234))

    def device(k: int) -> float:
        t0 = _ns()
        for _ in range(k):
            x = randn(size)
        _sync_current()
        elapsed = _ns() - t0
        del x
        return elapsed

    def host(k: int) -> float:
        normal = gen.standard_normal
        t0 = _ns()
        for _ in range(k):
            normal(size, dtype=np.float32)
        return _ns() - t0

    samples = ctx.per_op("rng", {"device": device, "numpy": host}, max_n=1_000)
    return [Row("rng.randn", "rng", "randn(1M) vs numpy Philox", "us", samples=samples["device"],
                baseline=Baseline("Philox", samples["numpy"]), batch=ctx.batch("rng", "device"),
                note="draws launched then synchronized, per draw; baseline "
                     "Generator(Philox(seed)).standard_normal(1M, dtype=float32)")]
