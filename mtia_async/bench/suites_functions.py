"""Rows of suite ``ops`` for numpy's functions on DeviceArrays (issue 18).

Small rows: one call on 16-element float32 DeviceArrays (4x4 for the matrix ones),
launch + its share of one final ``synchronize()``, against PyTorch CPU eager's
``torch.exp(t)`` on 16 floats measured in the same run: the unit of the "ufunc call"
whose host-cost goal is 2.0x torch (goal 9), so "<= 2x that goal" is <= 4.0x this
baseline. Large rows: the same call on 1M float32 (512x512 for ``dot``) against numpy
on host arrays, <= 1.05x. ``--quick`` measures one row per family.
"""

from __future__ import annotations

from typing import Any

from ._harness import Baseline, Context, Row
from .suites_memory import torch_or_reason

__all__ = ["function_rows"]

# Under --quick (the main job's summary, the tests) one row per family, the cheap large ones.
_QUICK = {"concatenate", "squeeze", "zeros_like", "where", "getitem_int", "dot", "sort"}
_QUICK_LARGE = {"concatenate", "cumsum"}


def _small_cases() -> list[tuple[str, str, Any]]:
    import numpy as np

    import mtia_async.sync as mtia

    f32 = np.float32
    a = mtia.asarray(np.arange(16, dtype=f32))
    b = mtia.asarray(np.ones(16, dtype=f32))
    c = a > 7.0
    m = mtia.asarray(np.ones((4, 4), dtype=f32))
    col = a.reshape(16, 1)
    idx = np.array([1, 5, 3, 7])
    npf: Any = np  # numpy's stubs do not know DeviceArray's __array_function__

    def setidx() -> None:
        a[idx] = 0.0

    return [
        ("concatenate", "np.concatenate([a, b])", lambda: npf.concatenate([a, b])),
        ("stack", "np.stack([a, b])", lambda: npf.stack([a, b])),
        ("squeeze", "np.squeeze(a[:, None]) (a view)", lambda: npf.squeeze(col)),
        ("tile", "np.tile(a, 2)", lambda: npf.tile(a, 2)),
        ("zeros_like", "np.zeros_like(a)", lambda: npf.zeros_like(a)),
        ("arange", "mtia.arange(16)", lambda: mtia.arange(16)),
        ("where", "np.where(c, a, b)", lambda: npf.where(c, a, b)),
        ("clip", "np.clip(a, 0, 1)", lambda: npf.clip(a, 0, 1)),
        ("take", "np.take(a, idx)", lambda: npf.take(a, idx)),
        ("getitem_int", "a[idx] (host int array)", lambda: a[idx]),
        ("setitem_int", "a[idx] = 0.0", setidx),
        ("fill", "a.fill(1.0)", lambda: a.fill(1.0)),
        ("median", "np.median(a)", lambda: npf.median(a)),
        ("dot", "np.dot(m, m) (4x4)", lambda: npf.dot(m, m)),
        ("einsum", "np.einsum('ij,jk->ik', m, m)", lambda: npf.einsum("ij,jk->ik", m, m)),
        ("sort", "np.sort(a)", lambda: npf.sort(a)),
        ("cumsum", "np.cumsum(a)", lambda: npf.cumsum(a)),
    ]


def _large_cases() -> list[tuple[str, str, Any, Any]]:
    import numpy as np

    import mtia_async.sync as mtia

    rng = np.random.default_rng(0)
    hx = rng.random(1 << 20, dtype=np.float32)
    hy = rng.random(1 << 20, dtype=np.float32)
    hc = hx > 0.5
    hm = rng.random((512, 512), dtype=np.float32)
    x, y, c, m = mtia.asarray(hx), mtia.asarray(hy), mtia.asarray(hc), mtia.asarray(hm)
    npf: Any = np
    return [
        ("concatenate", "np.concatenate, 2x1M", lambda: npf.concatenate([x, y]), lambda: np.concatenate([hx, hy])),
        ("where", "np.where(c, a, b), 1M", lambda: npf.where(c, x, y), lambda: np.where(hc, hx, hy)),
        ("sort", "np.sort(a), 1M", lambda: npf.sort(x), lambda: np.sort(hx)),
        ("cumsum", "np.cumsum(a), 1M", lambda: npf.cumsum(x), lambda: np.cumsum(hx)),
        ("dot", "np.dot(m, m), 512x512", lambda: npf.dot(m, m), lambda: np.dot(hm, hm)),
    ]


def function_rows(ctx: Context, measure: Any) -> list[Row]:
    """The rows; ``measure(ctx, label, device_op, other_op, max_n)`` is suite ops' paired timer."""
    torch, reason = torch_or_reason()
    unit = None
    if torch is not None:
        ta = torch.arange(16, dtype=torch.float32)
        t_exp = torch.exp
        unit = lambda: t_exp(ta)  # noqa: E731
    rows = []
    for key, name, fn in _small_cases():
        if ctx.quick and key not in _QUICK:
            continue
        mine, base, batch = measure(ctx, f"ops {name}", fn, unit, 200_000)
        row = Row(f"ops.np.{key}", "ops", name, "us", samples=mine, batch=batch,
                  note="16 float32 (4x4); per call, launch + its share of one final synchronize(); "
                       "baseline: torch.exp on 16 floats (the ufunc-call unit)")
        if base is not None:
            row.baseline = Baseline("torch exp", base)
        else:
            row.baseline_skipped = reason
        rows.append(row)
    for key, name, fn, host in _large_cases():
        if ctx.quick and key not in _QUICK_LARGE:
            continue
        mine, base, batch = measure(ctx, f"ops {name}", fn, host, 2_000)
        rows.append(Row(f"ops.np.large.{key}", "ops", f"{name} vs numpy", "us", samples=mine,
                        baseline=Baseline("numpy", base), batch=batch,
                        note="on the device vs the same call on numpy host arrays"))
    return rows
