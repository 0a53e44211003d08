"""Suite ``graphs``: what replaying a captured graph costs against launching its kernels (issue 10).

Goal 13 of the performance-goals page: replaying a graph of 100 small kernels (ufuncs
on 16 float32 DeviceArrays) costs <= 0.25x (stretch 0.1x) launching the same 100
kernels eagerly, per kernel, end to end: ``n`` replays (or ``n`` times the 100 eager
operations) then one ``synchronize()``, divided by ``100 n``. Then the caller's cost
of ``replay()`` of a 1-kernel graph on a held stream (<= 2 us), against an eager
launch of that kernel; and the MLP step of docs/graphs.md (matmul, add, tanh, a
dropout mask), replayed against run eagerly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._goals import Goal
from ._harness import Baseline, Context, Row, gc_paused
from .suites_core import held

__all__ = ["run_graphs"]

_ns = time.perf_counter_ns
KERNELS = 100
_REPLAY_100 = Goal("<= 0.25x eager (stretch 0.1x)", "ratio", "<=", 0.25, 0.1, 13)
_REPLAY_1 = Goal("<= 2 us on the caller", "value", "<=", 2.0, None, 13)


def _chain(x: Any, w: Any) -> Any:
    """100 small kernels: 25 times (+, *, tanh, +=) on 16 float32."""
    import numpy as np

    y = x
    for _ in range(KERNELS // 4):
        y = y + w
        y = y * 0.5
        y = np.tanh(y)
        y += x
    return y


def _end_to_end(step: Callable[[], object]) -> Callable[[int], float]:
    """``timed(n)``: ``n`` steps then one synchronize, in ns."""
    import mtia_async.sync as mtia

    def timed(n: int) -> float:
        sync = mtia.current_stream().synchronize
        t0 = _ns()
        for _ in range(n):
            step()
        sync()
        return _ns() - t0

    return timed


def _replay_100(ctx: Context) -> Row:
    import numpy as np

    import mtia_async.sync as mtia

    x = mtia.asarray(np.linspace(-1, 1, 16, dtype=np.float32))
    w = mtia.full(16, 0.25)
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        out = _chain(x, w)
    g.replay()
    mtia.synchronize()
    want = _chain(x, w).numpy()
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)  # the graph computes what eager does
    label = f"graphs replay of {KERNELS} kernels vs eager"
    per_step = ctx.per_op(label, {"replay": _end_to_end(g.replay), "eager": _end_to_end(lambda: _chain(x, w))},
                          max_n=20_000)
    samples = {name: [us / KERNELS for us in values] for name, values in per_step.items()}  # per kernel
    return Row("graphs.replay100", "graphs", f"replay of {KERNELS} kernels vs eager", "us",
               samples=samples["replay"], baseline=Baseline("eager", samples["eager"]), goal=_REPLAY_100,
               batch=ctx.batch(label, "replay"),
               note=f"per kernel: n replays of a graph of {KERNELS} ufuncs on 16 float32 (+, *, tanh, +=) and one "
                    "synchronize, vs the same kernels launched eagerly and one synchronize")  # fmt: skip


def _replay_1(ctx: Context) -> Row:
    import numpy as np

    import mtia_async.sync as mtia

    x, o = mtia.ones(16), mtia.empty(16)
    exp: Any = np.exp
    s = mtia.Stream()
    g = mtia.MTIAGraph()
    with mtia.graph(g, stream=s):
        exp(x, out=o)

    def caller(op: Callable[[], object]) -> Callable[[int], float]:
        def timed(n: int) -> float:
            with mtia.stream(s), held(s) as release:
                t0 = _ns()
                for _ in range(n):
                    op()
                took = _ns() - t0
                release()
                s.synchronize()
            return took

        return timed

    label = "graphs replay() of a 1-kernel graph, caller"
    samples = ctx.per_op(label, {"replay": caller(g.replay), "launch": caller(lambda: exp(x, out=o))},
                         max_n=200_000)
    return Row("graphs.replay1", "graphs", "replay() of 1 kernel, caller", "us", samples=samples["replay"],
               baseline=Baseline("np.exp(x, out=o)", samples["launch"]), goal=_REPLAY_1,
               batch=ctx.batch(label, "replay"),
               note="caller side, the stream held; baseline: the eager launch of the same kernel")


def _mlp_step(x: Any, w1: Any, b1: Any, w2: Any, b2: Any) -> Any:
    import numpy as np

    import mtia_async.sync as mtia

    h = np.tanh(x @ w1 + b1)
    h = h * (mtia.rand(*h.shape) > 0.1) / 0.9  # dropout
    return h @ w2 + b2


def _mlp(ctx: Context) -> Row:
    import numpy as np

    import mtia_async.sync as mtia

    rng = np.random.default_rng(0)
    x, w1, b1, w2, b2 = (mtia.asarray(rng.standard_normal(shape, dtype=np.float32))
                         for shape in ((8, 32), (32, 64), (64,), (64, 10), (10,)))  # fmt: skip
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        _mlp_step(x, w1, b1, w2, b2)
    label = "graphs MLP step replayed vs eager"
    samples = ctx.per_op(label, {"replay": _end_to_end(g.replay),
                                 "eager": _end_to_end(lambda: _mlp_step(x, w1, b1, w2, b2))}, max_n=100_000)
    return Row("graphs.mlp", "graphs", "MLP step (docs/graphs.md) vs eager", "us", samples=samples["replay"],
               baseline=Baseline("eager", samples["eager"]), batch=ctx.batch(label, "replay"),
               note="per step: 8x32 @ 32x64 + b, tanh, dropout mask (rand > 0.1), @ 64x10 + b; 9 kernels")


def run_graphs(ctx: Context) -> list[Row]:
    """Replay vs eager (100 kernels, per kernel), replay() on the caller, the docs' MLP step."""
    with gc_paused():
        return [_replay_100(ctx), _replay_1(ctx), _mlp(ctx)]
