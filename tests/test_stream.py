"""Streams: FIFO order, cross-stream ordering, concurrency, priorities, the current stream,
the kernels a stream accepts and the arguments it releases.

Catalogue rows: B3, B10, L1, L3, M4. M4's other parts: a failed kernel's arguments in
test_errors.py, tasks and loops in test_wait.py.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import threading
import time
import warnings
import weakref
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from _support import Payload, join_all

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async.testing import fresh_runtime


async def test_fifo_over_thousands_of_launches() -> None:
    s = mtia.Stream()
    out: list[int] = []
    for i in range(5000):
        s.launch(out.append, i)
    await s.synchronize()
    assert out == list(range(5000))
    assert s.query()


def test_fifo_from_many_threads_keeps_each_threads_order() -> None:
    s = mtia_sync.Stream()
    out: list[tuple[int, int]] = []

    def producer(k: int) -> None:
        for i in range(2000):
            s.launch(out.append, (k, i))

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    join_all(threads)
    s.synchronize()
    assert len(out) == 8000
    for k in range(4):
        assert [i for kk, i in out if kk == k] == list(range(2000))


async def test_launch_passes_args_and_kwargs() -> None:
    s = mtia.Stream()
    got: list[object] = []
    s.launch(lambda a, b, *, c: got.append((a, b, c)), 1, 2, c=3)
    await s.synchronize()
    assert got == [(1, 2, 3)]


def test_two_sleeping_streams_overlap() -> None:
    s1, s2 = mtia_sync.Stream(), mtia_sync.Stream()
    t0 = time.perf_counter()
    s1.launch(time.sleep, 0.3)
    s2.launch(time.sleep, 0.3)
    s1.synchronize()
    s2.synchronize()
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.55, f"two 0.3 s kernels on two streams took {elapsed:.3f} s: they did not overlap"


def test_wait_event_orders_across_streams() -> None:
    producer, consumer = mtia_sync.Stream(), mtia_sync.Stream()
    log: list[str] = []
    producer.launch(time.sleep, 0.1)
    producer.launch(log.append, "produced")
    e = producer.record_event()
    consumer.wait_event(e)
    consumer.launch(log.append, "consumed")
    consumer.synchronize()
    assert log == ["produced", "consumed"]
    assert e.query()


def test_wait_stream_orders_across_streams() -> None:
    a, b = mtia_sync.Stream(), mtia_sync.Stream()
    log: list[str] = []
    a.launch(time.sleep, 0.1)
    a.launch(log.append, "a")
    b.wait_stream(a)
    b.launch(log.append, "b")
    b.synchronize()
    assert log == ["a", "b"]


def test_wait_stream_on_itself_and_on_a_drained_stream_is_a_no_op() -> None:
    a, b = mtia_sync.Stream(), mtia_sync.Stream()
    a.wait_stream(a)
    b.wait_stream(a)
    out: list[int] = []
    a.launch(out.append, 1)
    a.synchronize()
    assert out == [1] and a.query() and b.query()


def test_wait_event_across_devices() -> None:
    s0 = mtia_sync.Stream(device=0)
    s1 = mtia_sync.Stream(device=1)
    log: list[int] = []
    s0.launch(time.sleep, 0.05)
    s0.launch(log.append, 0)
    s1.wait_event(s0.record_event())
    s1.launch(log.append, 1)
    s1.synchronize()
    assert log == [0, 1]


def test_query_false_while_running_true_after() -> None:
    s = mtia_sync.Stream()
    gate = threading.Event()
    s.launch(gate.wait, 5)
    assert not s.query()
    gate.set()
    s.synchronize()
    assert s.query()


class _SlowToken(list):  # type: ignore[type-arg]
    """A stream token whose return takes 20 ms: widens the window between a worker
    reaching the stream's last mark and giving the stream back (``pause_after``: the
    token is free at once, and the worker is held 20 ms after freeing it)."""

    pause_after = False
    paused = False

    def append(self, item: Any) -> None:
        if self.paused:  # only the first return is slow
            super().append(item)
        elif self.pause_after:
            self.paused = True
            super().append(item)
            time.sleep(0.02)
        else:
            self.paused = True
            time.sleep(0.02)
            super().append(item)


class _SlowTokenPausingAfter(_SlowToken):
    pause_after = True


def _event_behind_a_slow_return(s: Any, token: type[_SlowToken]) -> Any:
    """Record an event behind a held kernel, make the stream's next token return slow, release."""
    gate = threading.Event()
    s.launch(gate.wait, 5)
    e = s.record_event()
    impl = s._impl
    impl.token = token(impl.token)
    gate.set()
    return e


def _poll_until_done(e: Any) -> None:
    deadline = time.monotonic() + 5
    while not e.query():
        assert time.monotonic() < deadline, "the event never completed"


@pytest.mark.parametrize("waited", [False, True], ids=["polled", "woken"])
def test_an_event_seen_done_on_the_streams_last_item_means_the_stream_is_idle(waited: bool) -> None:
    """Seeing the last event done, woken or by polling its query(), implies s.query().

    Regression: the worker set the mark done before giving the stream's token back, so
    an ``await e`` arriving in between saw ``e`` done and ``s.query()`` False.
    """
    s = mtia_sync.Stream()
    for _ in range(5):
        e = _event_behind_a_slow_return(s, _SlowToken)
        if waited:
            e.synchronize()
        else:
            _poll_until_done(e)
        assert s.query()
        s.synchronize()


def test_events_of_one_stream_complete_in_order_when_another_worker_takes_the_stream_over() -> None:
    """A launch racing the return of the token hands the stream to another worker; its
    later event never completes before the earlier one."""
    s = mtia_sync.Stream()
    for _ in range(5):
        e1 = _event_behind_a_slow_return(s, _SlowTokenPausingAfter)
        time.sleep(0.005)  # the worker is returning the token (20 ms)
        e2 = s.record_event()
        _poll_until_done(e2)
        assert e1.query()
        s.synchronize()


def test_priority_streams_go_first_when_workers_are_contended() -> None:
    # 2 workers: block both, queue low then high priority work, release: high runs first.
    gates = [threading.Event(), threading.Event()]
    blockers = [mtia_sync.Stream(), mtia_sync.Stream()]
    started = threading.Barrier(3, timeout=5)
    for b, g in zip(blockers, gates):
        b.launch(lambda g=g: (started.wait(), g.wait(5)))
    started.wait()
    order: list[str] = []
    low = mtia_sync.Stream(priority=0)
    high = mtia_sync.Stream(priority=-3)
    low.launch(order.append, "low")
    high.launch(order.append, "high")
    gates[0].set()
    low.synchronize()
    high.synchronize()
    gates[1].set()
    assert order == ["high", "low"]


def test_priority_is_clamped_like_torch_and_validated() -> None:
    assert mtia_sync.Stream(priority=-100).priority == -3
    assert mtia_sync.Stream(priority=7).priority == 0
    with pytest.raises(TypeError, match="priority"):
        mtia_sync.Stream(priority=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="priority"):
        mtia_sync.Stream(priority=True)


def test_stream_attributes_and_equality_across_facades() -> None:
    s = mtia.Stream(device="mtia:1", priority=-1)
    assert (s.device_index, s.device_type, s.priority) == (1, "mtia", -1)
    twin = mtia_sync.current_stream(1)
    assert twin != s
    with mtia.stream(s):
        same = mtia_sync.current_stream()
    assert same == s and hash(same) == hash(s)
    assert isinstance(same, mtia_sync.Stream)
    assert mtia.default_stream(0).stream_id == 0
    assert mtia.default_stream(0) == mtia_sync.default_stream("mtia:0")
    assert "stream_id=" in repr(s)


def test_numpy_functions_and_builtins_are_kernels() -> None:
    s = mtia_sync.Stream()
    a = np.ones(1000, dtype=np.float32)
    out = np.empty_like(a)
    s.launch(np.exp, a, out=out)
    s.launch(np.add, out, 1.0, out)
    s.synchronize()
    np.testing.assert_allclose(out, np.e + 1.0, rtol=1e-6)


def test_module_launch_uses_the_current_stream() -> None:
    s = mtia_sync.Stream()
    gate = threading.Event()
    out: list[int] = []
    with mtia_sync.stream(s):
        mtia_sync.launch(gate.wait, 5)
        mtia_sync.launch(out.append, 1)
    assert not s.query()
    assert mtia_sync.default_stream().query()
    gate.set()
    s.synchronize()
    assert out == [1]


# --- order and count under load (L1, L3) ---------------------------------------------------------
@pytest.mark.timeout(120)
async def test_L1_per_stream_order_and_count_over_256_streams() -> None:
    streams = [mtia.Stream(device=k % 2) for k in range(256)]
    out: list[tuple[int, int]] = []
    for seq in range(1000):  # round robin: every stream has work queued at once
        for k, s in enumerate(streams):
            s.launch(out.append, (k, seq))
    await asyncio.gather(*(s.synchronize() for s in streams))
    await mtia.synchronize(0)
    await mtia.synchronize(1)
    assert len(out) == 256 * 1000
    assert len(set(out)) == len(out), "a kernel ran twice"
    per_stream: dict[int, list[int]] = defaultdict(list)
    for k, seq in out:
        per_stream[k].append(seq)
    assert sorted(per_stream) == list(range(256))
    for k, seqs in per_stream.items():
        assert all(a < b for a, b in itertools.pairwise(seqs)), f"stream {k} ran out of order"
        assert seqs == list(range(1000))
    assert all(s.query() for s in streams)


def test_L3_chain_of_1000_streams_composes_without_recursion() -> None:
    # Every stream on alternating devices, the first and the last on mtia:0 (to time them).
    n = 1000
    streams = [mtia_sync.Stream(device=0 if i in (0, n - 1) else i % 2) for i in range(n)]
    out: list[int] = []
    acc = [1]

    def step(i: int) -> None:
        out.append(i)
        acc[0] = (acc[0] * 31 + i) % 1_000_003

    streams[0].launch(time.sleep, 0.05)  # the whole chain is enqueued before anything runs
    first = mtia_sync.Event(enable_timing=True)
    for i, s in enumerate(streams):
        if i:
            s.wait_event(streams[i - 1].record_event())
        s.launch(step, i)
        if i == 0:
            first.record(s)
    last = streams[-1].record_event(mtia_sync.Event(enable_timing=True))
    assert not last.query()
    last.synchronize()
    expected = 1
    for i in range(n):
        expected = (expected * 31 + i) % 1_000_003
    assert out == list(range(n))
    assert acc[0] == expected
    assert first.elapsed_time(last) > 0


# --- foreign objects (B3) ------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [object(), 42, "stream", None])
def test_B3_foreign_objects_are_refused_at_the_call(bad: object) -> None:
    s = mtia_sync.Stream()
    with pytest.raises(TypeError, match="wait_stream"):
        s.wait_stream(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wait_event"):
        s.wait_event(bad)  # type: ignore[arg-type]
    if bad is not None:
        with pytest.raises(TypeError, match="set_stream"):
            mtia_sync.set_stream(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="StreamContext"):
            mtia_sync.stream(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="record_event"):
            s.record_event(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Event.record"):
            mtia_sync.Event().record(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="record_stream"):
            mtia.zeros(4).record_stream(bad)
    assert s.query()


def test_B3_another_devices_stream_and_another_runtimes_objects_are_refused_at_the_call() -> None:
    e = mtia_sync.Event()
    e.record(mtia_sync.Stream(device=0))
    with pytest.raises(ValueError, match="mtia:0"):
        e.record(mtia_sync.Stream(device=1))  # an event belongs to one device
    with pytest.raises(ValueError, match="mtia:1"):
        mtia.zeros(4, device=0).record_stream(mtia.Stream(device=1))
    with fresh_runtime(device_count=2, workers=2):
        old_stream = mtia_sync.Stream()
        old_event = old_stream.record_event()
        old_event.synchronize()
    s = mtia_sync.Stream()
    new_event = s.record_event()
    for call in (
        lambda: s.wait_event(old_event),  # complete, so waiting would silently do nothing
        lambda: old_event.wait(s),
        lambda: s.wait_stream(old_stream),
        lambda: old_stream.wait_stream(s),
        lambda: old_stream.wait_event(new_event),
    ):
        with pytest.raises(ValueError, match="two mtia_async runtimes"):
            call()
    for call in (lambda: old_stream.launch(print), lambda: new_event.record(old_stream), old_stream.synchronize):
        with pytest.raises(RuntimeError, match="shut down"):
            call()
    old_event.record(s)  # re-recording an event in the current runtime is allowed
    old_event.synchronize()
    assert s.query()


# --- bad kernels (B10) ---------------------------------------------------------------------------
async def _coro_kernel() -> None:
    pass


def _gen_kernel():  # type: ignore[no-untyped-def]
    yield 1


async def _agen_kernel():  # type: ignore[no-untyped-def]
    yield 1


class _AsyncCallable:
    async def __call__(self) -> None:
        pass


@pytest.mark.parametrize(
    ("kernel", "match"),
    [
        (None, "kernel must be a callable"),
        (42, "kernel must be a callable"),
        ("np.add", "kernel must be a callable"),
        (_coro_kernel, "async def or generator"),
        (_gen_kernel, "async def or generator"),
        (_agen_kernel, "async def or generator"),
        (_AsyncCallable(), "async def or generator"),
        (functools.partial(_coro_kernel), "async def or generator"),
    ],
    ids=["None", "int", "str", "async-def", "generator", "async-generator", "async-__call__", "partial-of-async"],
)
def test_B10_bad_kernels_raise_type_error_in_the_caller_and_never_reach_a_worker(kernel: object, match: str) -> None:
    s = mtia_sync.Stream()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a RuntimeWarning
        with pytest.raises(TypeError, match=match):
            s.launch(kernel)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=match):
            mtia.launch(kernel)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=match):
            s.launch(kernel, 1, key=2)  # type: ignore[arg-type]
        gc.collect()
    assert s.query() and mtia_sync.default_stream().query()
    s.synchronize()  # nothing failed in a worker
    mtia_sync.synchronize()


# --- kernel arguments die after completion (M4) --------------------------------------------------
def _closure_calling(target: Payload) -> Any:
    return lambda: target()


def test_M4_kernel_arguments_arrays_closures_and_events_die_after_completion() -> None:
    s = mtia_sync.Stream()
    arr = np.ones(10)
    dev = mtia.zeros(10)
    kernel = Payload()
    closure_target = Payload()
    e = mtia_sync.Event()
    ae = mtia.Event()
    refs = [weakref.ref(x) for x in (arr, dev, kernel, closure_target, e, ae)]
    s.wait_stream(mtia_sync.current_stream())  # the fill of dev is done first
    s.launch(kernel, arr, dev, key=arr)
    s.launch(_closure_calling(closure_target))
    e.record(s)
    ae.record(s)
    s.launch(time.sleep, 0.01)
    s.wait_event(e)
    e.synchronize()
    s.synchronize()
    del arr, dev, kernel, closure_target, e, ae
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)


class GenCall:
    def __call__(self) -> object:
        yield 1


# Regression (issue 15, smaller defects).
def test_a_callable_whose_call_is_a_generator_is_refused() -> None:
    with pytest.raises(TypeError, match="generator"):
        mtia_sync.launch(GenCall())
