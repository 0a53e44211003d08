"""Graphs (docs/graphs.md): capture once, replay: results, memory, random numbers, errors, facades.

What a capture refuses, fork/join across streams, events in graphs and bad use are in
``test_graphs_capture.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _support import ROOT, boom, run_python

import mtia_async as amtia
import mtia_async.sync as mtia
from mtia_async._core.instrument import Launch, Observer, instruments

Chain = Callable[[Any, Any, Any], list[Any]]


def _inputs() -> tuple[Any, Any, Any]:
    x = mtia.asarray(np.linspace(-2.0, 2.0, 16, dtype=np.float32))
    y = mtia.asarray(np.arange(16, dtype=np.float32) / 7)
    m = mtia.asarray(np.arange(16, dtype=np.float32).reshape(4, 4) / 10)
    mtia.synchronize()
    return x, y, m


def _set_inputs(x: Any, y: Any, m: Any, k: float) -> None:
    """New values written into the inputs (on the default stream, waited for)."""
    x[...] = mtia.asarray(np.linspace(-2.0, 2.0, 16, dtype=np.float32) * k)
    y[...] = k
    m[1:3, :] = -k
    mtia.synchronize()


def _user_kernel(a: Any, *, out: Any) -> None:
    np.multiply(a, 3.0, out=out)


# Every capturable operation, each in a chain whose later kernels read the earlier ones' outputs.
CHAINS: dict[str, Chain] = {
    "operators": lambda x, y, m: [((x + y) * 2.0 - y / 3.0) ** 2, 1.5 - x, -y, abs(x), x > y],
    "ufuncs": lambda x, y, m: [np.tanh(np.exp(x) + np.sin(y)), np.maximum(x, y), np.hypot(x, 1.0)],
    "out_and_inplace": lambda x, y, m: _out_and_inplace(x, y),
    "matmul": lambda x, y, m: [m @ m, (m @ x.reshape(4, 4)).T @ m, np.matmul(m, m.T)],
    "reductions": lambda x, y, m: [x.sum(), m.sum(axis=0), np.add.reduce(m, axis=1), m.mean(axis=1),
                                   x.argmax(), y.max(), m.std(), np.maximum.reduce(x)],
    "general_ufunc": lambda x, y, m: [np.add(x, y, where=x > 0.0, out=mtia.zeros(16)), np.add.accumulate(x),
                                      np.multiply.outer(x[:4], y[:3])],
    "setitem_and_views": lambda x, y, m: _setitem_and_views(x, y, m),
    "copies": lambda x, y, m: [x.copy(), m.astype(np.float64) * 2, y[::2].copy(), mtia.asarray(x, dtype=np.int32)],
    "factories": lambda x, y, m: [mtia.zeros(5) + x[:5], mtia.ones((2, 2)) * m[:2, :2], mtia.full(3, 2.5) + 1,
                                  mtia.full((4, 4), y[:4])],
    "user_launch": lambda x, y, m: _user_launch(x),
    "random": lambda x, y, m: [x * (mtia.rand(16) < 0.5) / 0.5, mtia.randn(4, 4) @ m + y.reshape(4, 4),
                               mtia.randint(0, 10, (16,)) + x, mtia.bernoulli(mtia.full(16, 0.3)) * y],
    "events_and_streams": lambda x, y, m: _events_and_streams(x, y, m),
}  # fmt: skip


def _out_and_inplace(x: Any, y: Any) -> list[Any]:
    o = mtia.empty(16)
    np.exp(x, out=o)
    np.add(o, y, out=o)
    t = x + 0.0
    t += y
    t *= 2.0
    return [o, t]


def _setitem_and_views(x: Any, y: Any, m: Any) -> list[Any]:
    z = mtia.zeros((4, 4))
    z[0] = x[:4]
    z[1:3, 1:3] = 7.0
    z[3, :] = m[0] + y[4:8]
    z[...] += 1.0
    return [z, z.T + m, x[3:11].reshape(2, 4) * 2]


def _user_launch(x: Any) -> list[Any]:
    out = mtia.empty(16)
    mtia.launch(_user_kernel, x, out=out, reads=[x], writes=[out])
    return [out + 1.0]


def _events_and_streams(x: Any, y: Any, m: Any) -> list[Any]:
    s, side = mtia.current_stream(), mtia.Stream()
    a = x * 2.0
    side.wait_event(s.record_event())  # fork (in a capture: side joins it)
    with mtia.stream(side):
        b = a + y
        done = mtia.Event()
        done.record()
    s.wait_event(done)  # join
    c = b * a
    e = mtia.Event(enable_timing=True)
    e.record()
    e.wait(s)  # a wait on the same stream's event
    side.wait_stream(s)
    with mtia.stream(side):
        np.subtract(c, 1.0, out=b)  # after c, on side
    s.wait_stream(side)
    return [a, b, c, m @ m]


def _host(arrays: list[Any]) -> list[np.ndarray[Any, Any]]:
    return [a.numpy() for a in arrays]


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_replay_equals_eager_and_reads_its_inputs_at_replay_time(chain: str) -> None:
    fn = CHAINS[chain]
    x, y, m = _inputs()
    mtia.manual_seed(10)  # each eager run and each replay starts from the same seed: the same numbers
    eager = _host(fn(x, y, m))
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        outs = fn(x, y, m)
    ptrs = [o.data_ptr() for o in outs]
    mtia.manual_seed(10)
    g.replay()
    mtia.synchronize()
    for got, want in zip(_host(outs), eager):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    for k in (0.5, -3.0):  # new input values, same arrays: the replays read them
        _set_inputs(x, y, m, k)
        mtia.manual_seed(int(k * 10) + 20)
        eager = _host(fn(x, y, m))
        mtia.manual_seed(int(k * 10) + 20)
        g.replay()
        mtia.synchronize()
        for got, want in zip(_host(outs), eager):
            np.testing.assert_allclose(got, want, rtol=1e-6)
        assert [o.data_ptr() for o in outs] == ptrs  # the outputs never move


def test_nothing_runs_until_replay_and_each_replay_runs_once() -> None:
    calls: list[int] = []
    x = mtia.zeros(4)
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        mtia.launch(calls.append, 1)
        np.add(x, 1.0, out=x)
    mtia.synchronize()
    assert calls == [] and list(x.numpy()) == [0.0] * 4
    for n in (1, 2, 3):
        g.replay()
        mtia.synchronize()
        assert calls == [1] * n and list(x.numpy()) == [float(n)] * 4


def test_reset_then_capture_again_replays_only_the_new_graph() -> None:
    x = mtia.ones(4)
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        np.add(x, 1.0, out=x)
    first = g.pool()
    g.replay()
    mtia.synchronize()
    g.reset()
    with mtia.graph(g):
        np.multiply(x, 10.0, out=x)
    assert g.pool() != first  # a new private pool
    g.replay()
    g.replay()
    np.testing.assert_array_equal(x.numpy(), np.full(4, 200.0))  # (1 + 1) * 10 * 10: the old graph is gone


def test_replay_returns_at_once_and_replays_run_in_order() -> None:
    gate = threading.Event()
    counter = mtia.zeros(1)
    seen: list[float] = []
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        mtia.launch(lambda: gate.wait(10))
        np.add(counter, 1.0, out=counter)
        mtia.launch(lambda c: seen.append(float(c[0])), counter, reads=[counter], writes=[])
    for _ in range(50):
        g.replay()  # returns while the first replay is still blocked on the gate
    assert not mtia.current_stream().query()
    gate.set()
    mtia.synchronize()
    assert seen == [float(i) for i in range(1, 51)]


def test_replay_runs_on_the_current_stream_of_the_call() -> None:
    gate = threading.Event()
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        mtia.launch(lambda: gate.wait(10))
    other = mtia.Stream()
    with mtia.stream(other):
        g.replay()
    assert not other.query() and mtia.current_stream().query()
    gate.set()
    other.synchronize()


def test_observers_see_a_replay_as_one_launch_with_every_captured_access() -> None:
    x, y, m = _inputs()
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        a = x + y
        b = m @ m
    seen: list[Launch] = []

    class Seen(Observer):
        def on_launch(self, stream: Any, kernel: Any, args: Any, reads: Any, writes: Any, t_ns: int) -> None:
            seen.append(Launch(stream, kernel, args, reads, writes))

    observer = Seen()
    instruments.add(observer)
    try:
        g.replay()
    finally:
        instruments.remove(observer)
    (launch,) = seen
    assert {id(r) for r in launch.reads} == {id(x), id(y), id(m)}
    assert {id(w) for w in launch.writes} == {id(a), id(b)}
    mtia.synchronize()
    np.testing.assert_allclose(a.numpy(), x.numpy() + y.numpy())


# --- random numbers ----------------------------------------------------------------------------
def test_random_kernels_draw_new_numbers_per_replay_in_eager_order() -> None:
    mtia.manual_seed(1234)
    eager = [(mtia.rand(8).numpy(), mtia.randn(5).numpy()) for _ in range(3)]
    mtia.manual_seed(1234)
    state = mtia.get_rng_state()
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        r = mtia.rand(8)
        n = mtia.randn(5)
    np.testing.assert_array_equal(mtia.get_rng_state(), state)  # the capture reserved nothing
    for want_r, want_n in eager:
        g.replay()
        mtia.synchronize()
        np.testing.assert_array_equal(r.numpy(), want_r)
        np.testing.assert_array_equal(n.numpy(), want_n)


def test_a_graph_reserves_each_generators_blocks_once_per_replay() -> None:
    gen = mtia.Generator().manual_seed(5)
    mtia.manual_seed(6)
    g = mtia.MTIAGraph()
    p = mtia.full(64, 0.5)
    with mtia.graph(g):
        a = mtia.uniform(-1.0, 1.0, (40,), generator=gen)
        b = mtia.randint(0, 10, (3,))
        c = mtia.bernoulli(p, generator=gen)
        d = mtia.randperm(6)
    before, default_before = gen.get_offset(), mtia.get_rng_state()
    g.replay()
    mtia.synchronize()
    assert gen.get_offset() == before + 5 + 16  # uniform float32: ceil(40/8); bernoulli: ceil(64/4)
    assert sorted(d.numpy().tolist()) == list(range(6)) and set(np.unique(c.numpy())) <= {0.0, 1.0}
    assert -1.0 <= a.numpy().min() and a.numpy().max() < 1.0 and b.numpy().max() < 10
    assert not np.array_equal(mtia.get_rng_state(), default_before)


def test_the_same_seed_gives_the_same_replays_in_two_processes() -> None:
    code = """
        import numpy as np, mtia_async.sync as mtia
        mtia.manual_seed(2026)
        g = mtia.MTIAGraph()
        with mtia.graph(g):
            mask = mtia.rand(6) > 0.5
            noise = mtia.randn(4) * mask[:4]
        rows = []
        for _ in range(3):
            g.replay()
            mtia.synchronize()
            rows.append(np.concatenate([mask.numpy().astype(np.float32), noise.numpy()]).round(6).tolist())
        print(rows)
    """
    first, second = run_python(code, timeout=60), run_python(code, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    rows = eval(first.stdout)
    assert rows[0] != rows[1] != rows[2]


# --- errors in a replay --------------------------------------------------------------------------
def test_a_kernel_error_in_a_replay_surfaces_at_the_waits_naming_the_captured_kernel() -> None:
    x = mtia.ones(4)
    after = mtia.zeros(4)
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        y = x + 1.0
        mtia.launch(boom, "in the graph")
        np.add(y, 1.0, out=after)
    for _ in range(2):
        g.replay()
        with pytest.raises(mtia.KernelError, match=r"kernel boom \(kernel 2 of 3 in a replay of MTIAGraph #\d+\)") as info:
            mtia.current_stream().synchronize()
        assert isinstance(info.value.__cause__, ValueError) and str(info.value.__cause__) == "in the graph"
        np.testing.assert_array_equal(after.numpy(), np.full(4, 3.0))  # the kernels after it ran
    g.replay()
    e = mtia.Event()
    e.record()
    with pytest.raises(mtia.KernelError, match="boom"):
        e.synchronize()
    mtia.synchronize()  # reported: the stream is clean again
    np.testing.assert_array_equal(y.numpy(), np.full(4, 2.0))


def test_events_recorded_in_a_graph_after_a_failing_kernel_raise_for_their_waiters() -> None:
    before, after = mtia.Event(), mtia.Event()
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        before.record()
        mtia.launch(boom, "in the graph")
        after.record()
    g.replay()
    before.synchronize()  # recorded before the failing kernel: fine
    with pytest.raises(mtia.KernelError, match=r"kernel boom \(kernel 1 of 1 in a replay of MTIAGraph #\d+\)"):
        after.synchronize()
    waiter = mtia.Stream()
    waiter.wait_event(after)  # a stream that waits on it inherits the failure
    with pytest.raises(mtia.KernelError, match="in the graph"):
        waiter.synchronize()


async def test_a_replay_error_reaches_an_awaiting_task() -> None:
    g = amtia.MTIAGraph()
    base, exponent = amtia.full(2, 2, dtype=np.int64), amtia.full(2, -1, dtype=np.int64)
    async with amtia.graph(g):
        base**exponent  # numpy refuses negative integer powers when it computes them
    g.replay()
    with pytest.raises(amtia.KernelError, match=r"numpy\.power \(kernel 1 of 1 in a replay of MTIAGraph") as info:
        await amtia.current_stream().synchronize()
    assert isinstance(info.value.__cause__, ValueError)


# --- both facades, asyncio and trio --------------------------------------------------------------
async def test_async_facade_captures_with_async_with_and_refuses_plain_with() -> None:
    x = amtia.ones(8)
    g = amtia.MTIAGraph()
    with pytest.raises(RuntimeError, match="async with mtia_async.graph"):
        with amtia.graph(g):  # type: ignore[attr-defined]
            pass
    assert not amtia.is_current_stream_capturing()
    before = amtia.current_stream()
    async with amtia.graph(g) as entered:
        assert entered is None and amtia.is_current_stream_capturing()
        assert amtia.current_stream() != before
        y = np.sqrt(x * 16.0)
    assert amtia.current_stream() == before and not amtia.is_current_stream_capturing()
    g.replay()
    np.testing.assert_array_equal(await y.to_host(), np.full(8, 4.0))


async def test_an_async_graph_entry_cancelled_while_waiting_for_the_device_captures_nothing() -> None:
    gate = threading.Event()
    amtia.launch(lambda: gate.wait(10))
    g = amtia.MTIAGraph()

    async def capture() -> None:
        async with amtia.graph(g):
            pass

    task = asyncio.create_task(capture())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    assert "fresh" in repr(g) and not amtia.is_current_stream_capturing()
    async with amtia.graph(g):
        amtia.zeros(1)
    g.replay()
    await amtia.synchronize()


def test_trio_captures_and_replays() -> None:
    import trio

    async def main() -> list[float]:
        g = amtia.MTIAGraph()
        x = amtia.full(3, 2.0)
        async with amtia.graph(g):
            y = x * x
        results = []
        for k in (2.0, 5.0):
            x[...] = k
            g.replay()
            results.append(float((await y.to_host())[0]))
        return results

    assert trio.run(main) == [4.0, 25.0]


def test_graphs_replayed_from_many_threads_all_run() -> None:
    counter = mtia.zeros(1, dtype=np.int64)
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        np.add(counter, 1, out=counter)
    barrier = threading.Barrier(8)

    def replays() -> None:
        barrier.wait(10)
        for _ in range(100):
            with mtia.stream(mtia.default_stream()):
                g.replay()

    threads = [threading.Thread(target=replays) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    mtia.synchronize()
    assert int(counter.numpy()[0]) == 800


def test_the_docs_page_runs() -> None:
    with open(os.path.join(ROOT, "docs", "graphs.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert len(blocks) == 2
    for block in blocks:  # each in a fresh interpreter: one uses the sync facade, one the async
        result = run_python(block, timeout=60)
        assert result.returncode == 0, result.stderr


def test_the_sanitizer_checks_a_replay_as_one_launch() -> None:
    from mtia_async import sanitizer

    x = mtia.ones(16)
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        y = x * 2.0
    other = mtia.Stream()
    sanitizer.enable()
    try:
        g.replay()
        other.wait_stream(mtia.current_stream())
        with mtia.stream(other):
            ok = y + 1.0  # ordered after the replay: no report
        with pytest.raises(mtia.UnsynchronizedAccessError, match="write-after-read"):
            g.replay()  # it writes y, which other's kernel may still be reading
        mtia.current_stream().wait_stream(other)
        g.replay()
        with pytest.raises(mtia.UnsynchronizedAccessError, match="(?s)read-after-write.*kernel graph_replay on stream 0"), mtia.stream(other):
            y + 1.0  # the replay writes y, and nothing orders this read after it
    finally:
        sanitizer.disable()
    mtia.synchronize()
    np.testing.assert_array_equal(ok.numpy(), np.full(16, 3.0))
