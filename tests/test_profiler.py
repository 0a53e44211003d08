"""The profiler (``mtia_async.profiler``): traces Perfetto imports cleanly, statistics, ranges, memory.

Every trace is checked by ``_support.tracecheck``, which imports it as Perfetto's trace
processor does (fields, matched flows, nesting, non-negative durations, sorted
timestamps per track) and fails on anything Perfetto would warn about. Timing is only
asserted with sleep kernels, and generously.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import threading
import time
import weakref
from typing import Any

import numpy as np
import pytest
from _support import boom, run_module, sanitizer_off
from _support.tracecheck import TraceCheck, check_trace, load_trace

import mtia_async
import mtia_async.sync as mtia
from mtia_async._core.instrument import instruments
from mtia_async.profiler import EventAverage, ProfilerEvent, profile, record_function

SLEEP = 0.05


def _trace(p: profile, tmp_path: Any, name: str = "trace.json") -> tuple[dict[str, Any], TraceCheck]:
    path = os.path.join(str(tmp_path), name)
    p.export_chrome_trace(path)
    doc = load_trace(path)
    return doc, check_trace(doc)


def _kernels(p: profile, name: str | None = None) -> list[ProfilerEvent]:
    return [e for e in p.events() if e.kind == "kernel" and (name is None or e.name == name)]


def sleep_kernel(seconds: float) -> None:
    time.sleep(seconds)


@pytest.fixture(autouse=True)
def _instruments_off_after() -> Any:
    with sanitizer_off():  # these tests check that no observer stays: the stream sanitizer stays out
        yield
        assert not instruments.active and instruments.observers == (), "a profile stayed attached"


# --- the trace ---------------------------------------------------------------------------------------
def test_the_trace_has_a_process_per_device_a_track_per_stream_and_thread_and_flows(tmp_path: Any) -> None:
    s0, s1 = mtia.Stream(), mtia.Stream(device=1)
    x = mtia.ones(8)
    with profile() as p:
        s0.launch(sleep_kernel, 0.001)
        y = x * 2.0
        s1.launch(np.negative, 1.0)
        mtia.synchronize()
    doc, tr = _trace(p, tmp_path)
    assert set(tr.processes.values()) == {f"host (pid {os.getpid()})", "mtia:0", "mtia:1"}
    names = set(tr.threads.values())
    assert {f"stream {s0.stream_id}", f"stream {s1.stream_id}", "stream 0 (default)", "MainThread"} <= names
    assert any(n.startswith("mtia_async-dev0-worker") for n in names)
    assert any(n.startswith("mtia_async-dev1-worker") for n in names)
    kernels = [s for s in tr.slices if s.cat in ("kernel", "worker") and not s.instant]
    stream_kernels = [s for s in kernels if tr.threads[(s.pid, s.tid)].startswith("stream")]
    assert stream_kernels == [s for s in kernels if s.cat == "kernel"]  # a query on "kernel" counts each once
    assert sorted(s.name for s in stream_kernels) == ["multiply", "negative", "sleep_kernel"]
    # every kernel on a stream track has exactly one flow in, from its launch on the launching thread
    launch_flows = [(a, b) for a, b, cat in tr.flows if cat == "launch"]
    assert sorted(b.name for _, b in launch_flows) == ["multiply", "negative", "sleep_kernel"]
    for a, b in launch_flows:
        assert a.name == f"launch {b.name}" and tr.threads[(a.pid, a.tid)] == "MainThread"
        assert b in stream_kernels and a.ts <= b.ts
    # the worker tracks show the same kernels at the same times
    on_workers = sorted((s.name, s.ts, s.dur) for s in kernels if tr.threads[(s.pid, s.tid)].startswith("mtia"))
    assert on_workers == sorted((s.name, s.ts, s.dur) for s in stream_kernels)
    assert doc["mtia_async"]["pending_kernels"] == 0 and doc["mtia_async"]["oldest_dropped"] is False
    assert y.numpy().tolist() == [2.0] * 8


def test_overlapping_kernels_of_two_streams_overlap_in_the_trace(tmp_path: Any) -> None:
    a, b = mtia.Stream(), mtia.Stream()
    with profile() as p:
        a.launch(time.sleep, 0.2)
        b.launch(time.sleep, 0.2)
    ka, kb = (next(e for e in _kernels(p, "sleep") if e.stream == s.stream_id) for s in (a, b))
    assert ka.start_ns < kb.end_ns and kb.start_ns < ka.end_ns  # the two ran at once (two workers)
    assert ka.worker != kb.worker
    _, tr = _trace(p, tmp_path)
    sa, sb = (next(s for s in tr.track(f"stream {s.stream_id}") if s.name == "sleep") for s in (a, b))
    assert sa.ts < sb.end and sb.ts < sa.end
    assert sa.dur >= 190_000_000 and sb.dur >= 190_000_000  # ns


def test_trace_timestamps_agree_with_event_elapsed_time(tmp_path: Any) -> None:
    s = mtia.Stream()
    start, end = mtia.Event(enable_timing=True), mtia.Event(enable_timing=True)
    with profile() as p:
        start.record(s)
        s.launch(time.sleep, SLEEP)
        end.record(s)
    ms = start.elapsed_time(end)
    records = [e for e in p.events() if e.kind == "record"]
    assert [r.args["reached"] for r in records] == [True, True]
    assert (records[1].start_ns - records[0].start_ns) / 1e6 == pytest.approx(ms, abs=1e-6)
    (kernel,) = _kernels(p, "sleep")
    assert records[0].start_ns <= kernel.start_ns <= kernel.end_ns <= records[1].start_ns
    _, tr = _trace(p, tmp_path)
    reached = [x for x in tr.track(f"stream {s.stream_id}") if x.name == "event reached"]
    assert len(reached) == 2
    assert (reached[1].ts - reached[0].ts) / 1e6 == pytest.approx(ms, abs=1e-6)  # the trace keeps nanoseconds
    sleep_slice = next(x for x in tr.track(f"stream {s.stream_id}") if x.name == "sleep")
    assert reached[0].ts <= sleep_slice.ts and sleep_slice.end <= reached[1].ts


def test_event_records_flow_to_the_waits_on_them(tmp_path: Any) -> None:
    s1, s2 = mtia.Stream(), mtia.Stream()
    with profile() as p:
        s1.launch(time.sleep, SLEEP)
        e = s1.record_event()
        s2.wait_event(e)
        s2.launch(np.negative, 1.0)
        e.synchronize()
    record = next(x for x in p.events() if x.kind == "record")
    wait = next(x for x in p.events() if x.kind == "wait")
    assert wait.marks == record.marks and wait.stream == s2.stream_id and wait.args["event_stream"] == s1.stream_id
    assert wait.start_ns >= record.start_ns  # s2 could go on only once s1 reached the event
    (neg,) = _kernels(p, "negative")
    assert neg.start_ns >= record.start_ns  # and it did wait
    host = next(x for x in p.events() if x.kind == "host_wait")
    assert host.name == "Event.synchronize()" and host.marks == record.marks
    _, tr = _trace(p, tmp_path)
    event_flows = [(a, b) for a, b, cat in tr.flows if cat == "event"]
    targets = sorted((a.name, b.name, tr.threads[(b.pid, b.tid)]) for a, b in event_flows)
    assert targets == [("event reached", "wait_event", f"stream {s2.stream_id}"),
                       ("event reached", "woken", "MainThread")]  # fmt: skip


def test_host_waits_are_slices_with_flows_from_where_the_stream_got_to(tmp_path: Any) -> None:
    s = mtia.Stream()
    x = mtia.ones(4)
    with profile() as p:
        s.launch(time.sleep, SLEEP)
        s.synchronize()
        x.numpy()
        mtia.synchronize()
    waits = [e for e in p.events() if e.kind == "host_wait"]
    assert [w.name for w in waits] == ["Stream.synchronize()", "DeviceArray.numpy()", "synchronize()"]
    assert waits[0].dur_ns >= SLEEP * 1e9 * 0.9
    (kernel,) = _kernels(p, "sleep")
    assert waits[0].start_ns <= kernel.start_ns and kernel.end_ns <= waits[0].end_ns
    _, tr = _trace(p, tmp_path)
    main = tr.track("MainThread")
    assert [w.name for w in main if w.cat == "host_wait" and not w.instant] == [w.name for w in waits]
    sync_flows = [(a, b) for a, b, cat in tr.flows if cat == "event" and a.name == "sync point"]
    assert any(tr.threads[(a.pid, a.tid)] == f"stream {s.stream_id}" for a, _ in sync_flows)


async def test_async_host_waits_to_host_and_await_event_are_recorded(tmp_path: Any) -> None:
    s = mtia_async.Stream()
    x = mtia_async.ones(4)
    async with profile() as p:
        s.launch(time.sleep, 0.01)
        e = s.record_event()
        await e
        await s.synchronize()
        host = await x.to_host()
    assert host.tolist() == [1.0] * 4
    waits = [w for w in p.events() if w.kind == "host_wait"]
    assert [w.name for w in waits][1:] == ["Stream.synchronize()", "DeviceArray.to_host()"]
    record = next(r for r in p.events() if r.kind == "record")
    assert waits[0].marks == record.marks and waits[0].dur_ns >= 0.009e9  # awaiting the event waited for the sleep
    _, tr = _trace(p, tmp_path)
    woken = [(a.name, b.args["wait"]) for a, b, cat in tr.flows if cat == "event" and b.name == "woken"]
    # the stream was drained when it was synchronized: no point it had to reach, no arrow
    assert woken == [("event reached", "Event.synchronize()"), ("sync point", "DeviceArray.to_host()")]


def test_ranges_nest(tmp_path: Any) -> None:
    with profile() as p:
        with record_function("outer"):
            with record_function("inner"):
                mtia.launch(np.negative, 1.0)
            mtia.launch(np.negative, 2.0)
        mtia.synchronize()
    ranges = [e for e in p.events() if e.kind == "range"]
    outer, inner = sorted(ranges, key=lambda r: r.start_ns)
    assert (outer.name, inner.name) == ("outer", "inner")
    assert outer.start_ns <= inner.start_ns <= inner.end_ns <= outer.end_ns
    launches = sorted(k.host_ns or 0 for k in _kernels(p, "negative"))
    assert inner.start_ns <= launches[0] <= inner.end_ns < launches[1] <= outer.end_ns
    _, tr = _trace(p, tmp_path)
    main = {s.name: s for s in tr.track("MainThread")}
    assert (main["outer"].depth, main["inner"].depth) == (0, 1)
    assert main["inner"].ts >= main["outer"].ts and main["inner"].end <= main["outer"].end


async def test_overlapping_async_ranges_on_one_thread_get_tracks_of_their_own(tmp_path: Any) -> None:
    first_in, release = asyncio.Event(), asyncio.Event()

    async def task_a() -> None:
        async with record_function("a"):
            first_in.set()
            await release.wait()
            await asyncio.sleep(0.01)

    async def task_b() -> None:
        await first_in.wait()
        async with record_function("b"):
            release.set()
            await asyncio.sleep(0.03)  # b closes after a: the two overlap without nesting

    async with profile() as p:
        await asyncio.gather(task_a(), task_b())
    a, b = sorted((e for e in p.events() if e.kind == "range"), key=lambda r: r.name)
    assert a.start_ns < b.start_ns < a.end_ns < b.end_ns
    _, tr = _trace(p, tmp_path)  # the checker fails on a partial overlap on one track
    sa = next(s for s in tr.slices if s.name == "a")
    sb = next(s for s in tr.slices if s.name == "b")
    assert (sa.pid, sa.tid) != (sb.pid, sb.tid) and sa.pid == sb.pid
    assert tr.threads[(sb.pid, sb.tid)] == f"{tr.threads[(sa.pid, sa.tid)]} (overlapping, 2)"


def test_record_function_decorates_functions_and_async_functions() -> None:
    @record_function("sync step")
    def step(n: int) -> int:
        return n + 1

    @record_function("async step")
    async def astep(n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    assert step.__name__ == "step" and astep.__name__ == "astep"
    with profile() as p:
        assert step(1) == 2 and step(2) == 3
        assert asyncio.run(astep(4)) == 8
    assert sorted(e.name for e in p.events() if e.kind == "range") == ["async step", "sync step", "sync step"]
    assert step(5) == 6  # off: the decorator still just calls the function
    with pytest.raises(TypeError, match="takes a str"):
        record_function(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator function"):

        @record_function("gen")
        def gen() -> Any:
            yield 1


# --- statistics ---------------------------------------------------------------------------------------
def test_key_averages_counts_equal_launches() -> None:
    s = mtia.Stream()
    a, b = mtia.ones(16), mtia.ones(16)
    with profile() as p:
        for _ in range(7):
            s.launch(sleep_kernel, 0.001)
        for _ in range(5):
            c = a + b
        for _ in range(3):
            s.launch(np.exp, a, out=b)
    rows = {(r.name, r.kind): r for r in p.key_averages()}
    assert rows[("sleep_kernel", "kernel")].count == 7
    assert rows[("add", "kernel")].count == 5
    assert rows[("exp", "kernel")].count == 3
    assert all(isinstance(r, EventAverage) for r in rows.values())
    sleep = rows[("sleep_kernel", "kernel")]
    events = _kernels(p, "sleep_kernel")
    assert sleep.total_us == pytest.approx(sum(e.dur_us for e in events))
    assert sleep.mean_us == pytest.approx(sleep.total_us / 7)
    assert sleep.min_us == min(e.dur_us for e in events) and sleep.max_us == max(e.dur_us for e in events)
    assert sleep.min_us >= 900  # each slept 1 ms
    assert sleep.queued_us == pytest.approx(sum(e.queued_us or 0 for e in events) / 7)
    assert all(r.queued_us is not None and r.queued_us >= 0 for r in rows.values())
    assert c.numpy().tolist() == [2.0] * 16


def test_the_table_is_printed_like_torch_profilers() -> None:
    with profile() as p:
        for _ in range(3):
            mtia.launch(sleep_kernel, 0.03)  # 90 ms of kernels, then a 5 ms range on the host, then a wait
        mtia.launch(np.negative, 1.0)
        with record_function("a range"):
            time.sleep(0.005)
        mtia.synchronize()
    averages = p.key_averages()
    table = averages.table()
    lines = table.splitlines()
    assert lines[0] == lines[2] == lines[-3] and set(lines[0]) == {"-", " "}
    header = lines[1].split()
    assert header[:4] == ["Name", "Kind", "#", "of"] and header[-2:] == ["Queued", "avg"]
    body = lines[3:-3]
    assert [row.split()[0] for row in body] == ["sleep_kernel", "synchronize()", "a", "negative"]  # total_us, desc
    assert body[0].split()[1:3] == ["kernel", "3"]
    assert lines[-2].startswith("Kernel time total: ") and lines[-1].startswith("Host wait time total: ")
    assert averages.table(sort_by="count").splitlines()[3].split()[0] == "sleep_kernel"
    assert averages.table(sort_by="name").splitlines()[3].split()[:2] == ["a", "range"]
    assert len(averages.table(row_limit=1).splitlines()) == len(lines) - 3
    assert averages.table(row_limit=-1) == table  # torch's spelling of "every row"
    with pytest.raises(ValueError, match="sort_by must be one of 'total_us'.*got 'cuda_time'"):
        averages.table(sort_by="cuda_time")
    with pytest.raises(ValueError, match="row_limit must be >= 0"):
        averages.table(row_limit=-2)
    with pytest.raises(TypeError, match="row_limit must be an int"):
        averages.table(row_limit=1.5)  # type: ignore[arg-type]


def test_shapes_and_stacks_are_recorded_when_asked() -> None:
    a = mtia.ones((2, 3))
    o = mtia.empty((2, 3))
    with profile(record_shapes=True, with_stack=True) as p:
        mtia.launch(np.exp, a, out=o)
        _ = a + 1.0
    exp, add = _kernels(p, "exp")[0], _kernels(p, "add")[0]
    assert exp.args["Input Dims"] == [[2, 3], [2, 3]] and exp.args["Input type"] == ["float32", "float32"]
    assert add.args["Input Dims"] == [[2, 3], [], [2, 3]] and add.args["Input type"] == ["float32", "Scalar", "float32"]
    stack = exp.args["Python stack"]
    assert stack[0].startswith(f"{__file__}(") and stack[0].endswith("test_shapes_and_stacks_are_recorded_when_asked")
    assert not any("mtia_async" + os.sep in frame.split("(")[0] for frame in stack)
    with profile() as plain:
        mtia.launch(np.exp, a, out=o)
    assert _kernels(plain, "exp")[0].args == {}


def test_kernels_are_named_as_the_user_wrote_them() -> None:
    a = mtia.asarray(np.arange(4.0))
    with profile() as p:
        mtia.launch(lambda: None)
        mtia.launch(np.exp, a, out=a)
        _ = a.sum()
        _ = a - 1
        a[...] = 0
        _ = mtia.zeros(3)
        a.numpy()
    names = [e.name for e in _kernels(p)]
    assert names == ["test_kernels_are_named_as_the_user_wrote_them.<locals>.<lambda>", "exp", "add.reduce",
                     "subtract", "setitem", "Memset", "Memcpy DtoH"]  # fmt: skip


def test_a_graph_replay_is_one_kernel_named_after_its_graph(tmp_path: Any) -> None:
    x = mtia.zeros(4)
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        x += 1.0
        x *= 2.0
    mtia.synchronize()
    with profile() as p:
        g.replay()
        g.replay()
    (row,) = [r for r in p.key_averages() if r.kind == "kernel"]
    assert row.name.startswith("graph replay (MTIAGraph #") and row.count == 2
    assert x.numpy().tolist() == [6.0] * 4
    _trace(p, tmp_path)


# --- memory -----------------------------------------------------------------------------------------------
def test_memory_counters_follow_allocations(tmp_path: Any) -> None:
    keep = mtia.ones(1000)  # 4000 bytes -> one 4096-byte block, allocated before the session
    mtia.synchronize()
    before = mtia.memory_allocated()
    with profile(profile_memory=True) as p:
        big = mtia.empty(256 * 1024)  # 1 MiB
        small = mtia.empty(10)  # 512 bytes
        del big
        gc.collect()
        on_device_1 = mtia.empty(100, device=1)
        del small
    samples = [(e.device, e.args["allocated_bytes"]) for e in p.events() if e.kind == "memory"]
    dev0 = [v for d, v in samples if d == 0]
    assert dev0 == [before, before + (1 << 20), before + (1 << 20) + 512, before + 512, before, before]
    assert [v for d, v in samples if d == 1] == [512, 512]  # the allocation, and the exact sample at the end
    assert dev0[-1] == mtia.memory_allocated(0)
    reserved = [e.args["reserved_bytes"] for e in p.events() if e.kind == "memory" and e.device == 0]
    assert all(r >= a for r, a in zip(reserved, dev0)) and reserved[-1] == mtia.memory_reserved(0)
    _, tr = _trace(p, tmp_path)
    counter = [int(v) for _, v in tr.counters[(1_000_000_000, "memory allocated")]]
    assert counter == dev0
    assert keep.nbytes == 4000 and on_device_1.nbytes == 400


def test_without_profile_memory_there_are_no_counters() -> None:
    with profile() as p:
        x = mtia.empty(100)
        del x
    assert not [e for e in p.events() if e.kind == "memory"]


# --- entering and leaving -----------------------------------------------------------------------------
async def test_async_exit_awaits_the_work_without_blocking_a_heartbeat() -> None:
    ticks: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    s = amtia_stream()
    t0 = time.perf_counter()
    async with profile() as p:
        s.launch(time.sleep, 0.3)
        entered = time.perf_counter()
    left = time.perf_counter()
    stop.set()
    await beat
    assert entered - t0 < 0.1 and left - t0 >= 0.29  # leaving waited for the kernel ...
    during = [b - a for a, b in itertools.pairwise(t for t in ticks if entered <= t <= left)]
    assert len(during) > 10 and max(during) < 0.1  # ... while the loop kept running
    (kernel,) = _kernels(p, "sleep")
    assert kernel.dur_ns >= 0.29e9 and not p.key_averages().pending


def amtia_stream() -> Any:
    return mtia_async.Stream()


async def test_a_plain_with_on_the_event_loop_raises_and_points_to_async_with() -> None:
    with pytest.raises(RuntimeError, match=r"event loop's thread.*use `async with mtia_async.profiler.profile\(\)`"):
        with profile():
            pass  # pragma: no cover
    assert not instruments.active


def test_trio() -> None:
    import trio

    async def main() -> tuple[list[str], float]:
        with pytest.raises(RuntimeError, match="trio task.*async with"):
            with profile():
                pass  # pragma: no cover
        s = mtia_async.Stream()
        t0 = time.perf_counter()
        async with profile() as p:
            s.launch(time.sleep, SLEEP)
            async with record_function("trio range"):
                await s.synchronize()
            s.launch(time.sleep, SLEEP)
        return sorted(e.name for e in p.events() if e.kind in ("kernel", "range")), time.perf_counter() - t0

    names, took = trio.run(main)
    assert names == ["sleep", "sleep", "trio range"] and took >= 2 * SLEEP * 0.9


async def test_cancelling_the_async_exit_stops_the_profile_and_raises_at_once() -> None:
    s = mtia_async.Stream()
    gate = threading.Event()
    entered = asyncio.Event()
    holder: list[profile] = []

    async def body() -> None:
        async with profile() as p:
            holder.append(p)
            s.launch(gate.wait, 10.0)
            entered.set()
        raise AssertionError("the exit was cancelled: never here")  # pragma: no cover

    task = asyncio.create_task(body())
    await entered.wait()
    await asyncio.sleep(0.02)  # the task is awaiting the kernel in the profile's exit
    task.cancel()
    t0 = time.perf_counter()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - t0 < 1.0 and not instruments.active
    (p,) = holder
    assert p.key_averages().pending == 1  # the kernel still runs ...
    gate.set()
    await s.synchronize()
    assert [e.name for e in _kernels(p)] == ["Event.wait"]  # ... and is in the results once it finished


def test_two_event_loops_in_two_threads_in_one_profile(tmp_path: Any) -> None:
    def loop_thread(i: int) -> None:
        async def main() -> None:
            s = mtia_async.Stream()
            async with record_function(f"loop {i}"):
                for _ in range(3):
                    s.launch(np.negative, float(i))
                await s.synchronize()

        asyncio.run(main())

    with profile() as p:
        threads = [threading.Thread(target=loop_thread, args=(i,), name=f"loop-{i}") for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert sorted((e.thread or "", e.name) for e in p.events() if e.kind == "range") == [
        ("loop-0", "loop 0"), ("loop-1", "loop 1")]  # fmt: skip
    assert len(_kernels(p, "negative")) == 6
    _, tr = _trace(p, tmp_path)
    assert [s.name for s in tr.track("loop-0") if s.cat == "host_wait" and not s.instant] == ["Stream.synchronize()"]


def test_a_child_forked_while_profiling_memory_exits_cleanly() -> None:
    from _support import run_python

    result = run_python(
        """
        import gc, os, threading
        import mtia_async.sync as mtia
        from mtia_async.profiler import profile

        arrays = [mtia.ones(100) for _ in range(50)]
        mtia.synchronize()
        p = profile(profile_memory=True)
        p.start()
        frees = threading.Thread(target=lambda: [arrays.pop() for _ in range(50)])
        frees.start()  # frees race the fork: the recorder's lock may be held at it
        pid = os.fork()
        if pid == 0:
            arrays.clear()
            gc.collect()
            os._exit(0)
        frees.join()
        _, status = os.waitpid(pid, 0)
        p.stop()
        print("child", os.waitstatus_to_exitcode(status), "memory events", len([e for e in p.events() if e.kind == "memory"]) > 0)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "child 0 memory events True" in result.stdout


def test_plain_with_inside_a_kernel_raises() -> None:
    errors: list[str] = []

    def kernel() -> None:
        try:
            with profile():
                pass  # pragma: no cover
        except RuntimeError as exc:
            errors.append(str(exc))

    mtia.launch(kernel)
    mtia.synchronize()
    assert len(errors) == 1 and "inside a kernel" in errors[0]


def test_stop_never_waits_and_late_kernels_count_once_finished() -> None:
    s = mtia.Stream()
    gate = threading.Event()
    p = profile()
    p.start()
    s.launch(gate.wait, 5.0)
    s.launch(np.negative, 1.0)
    t0 = time.perf_counter()
    p.stop()
    assert time.perf_counter() - t0 < 0.5
    averages = p.key_averages()
    assert averages.pending == 2 and not [r for r in averages if r.kind == "kernel"]
    assert "2 kernel(s) launched in the session had not finished" in averages.table()
    gate.set()
    s.synchronize()
    assert sorted(e.name for e in _kernels(p)) == ["Event.wait", "negative"]
    assert p.key_averages().pending == 0


def test_misuse_raises_clear_errors() -> None:
    with pytest.raises(TypeError, match=r"profile\(record_shapes=...\) takes True or False, got int 1"):
        profile(record_shapes=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_events=...\) must be >= 1"):
        profile(max_events=0)
    with pytest.raises(TypeError, match="max_events=...\\) takes an int"):
        profile(max_events=1.5)  # type: ignore[arg-type]
    p = profile()
    with pytest.raises(RuntimeError, match="it never ran"):
        p.events()
    with pytest.raises(RuntimeError, match="not recording \\(it was never started\\)"):
        p.stop()
    p.start()
    with pytest.raises(RuntimeError, match="leave its `with` block or call stop\\(\\) first"):
        p.key_averages()
    with pytest.raises(RuntimeError, match="another mtia_async profile is recording"):
        profile().start()
    with pytest.raises(RuntimeError, match="records once"):
        p.start()
    p.stop()
    with pytest.raises(RuntimeError, match="already stopped"):
        p.stop()
    with pytest.raises(RuntimeError, match="records once"):
        with p:
            pass  # pragma: no cover
    with profile() as early:
        mtia.launch(time.sleep, 0.05)
        early.stop()  # stopped inside the block: leaving it still waits for the work, and does not raise
    assert [e.name for e in _kernels(early)] == ["sleep"] and early.key_averages().pending == 0
    with pytest.raises(TypeError, match="takes a str or os.PathLike"):
        p.export_chrome_trace(3)  # type: ignore[arg-type]
    assert not instruments.active


def test_nothing_leaks_between_two_sessions_or_after_exit() -> None:
    class Payload:
        pass

    payload = Payload()
    ref = weakref.ref(payload)
    s = mtia.Stream()
    stream_ref = weakref.ref(s._impl)
    with profile() as first:
        s.launch(lambda obj: None, payload)
        mtia.launch(np.negative, 1.0)
    assert not instruments.active and instruments.observers == ()
    with record_function("outside"):  # no session: recorded nowhere
        mtia.launch(np.negative, 2.0)
    mtia.synchronize()
    with profile() as second:
        mtia.launch(np.exp, 1.0)
    assert [e.name for e in _kernels(second)] == ["exp"]
    assert sorted(e.name for e in _kernels(first)) == ["negative", "test_nothing_leaks_between_two_sessions_or_"
                                                       "after_exit.<locals>.<lambda>"]  # fmt: skip
    assert not [e for e in first.events() + second.events() if e.kind == "range"]
    del payload, s
    gc.collect()
    assert ref() is None, "the profile kept a kernel's argument alive"
    assert stream_ref() is None, "the profile kept a stream alive after its results were read"


def test_a_failing_kernel_is_named_and_its_failure_left_to_the_users_wait() -> None:
    s = mtia.Stream()
    with profile() as p:
        s.launch(boom)
    with pytest.raises(mtia.KernelError, match=r"kernel boom failed on device 0, stream \d+: ValueError: boom"):
        s.synchronize()  # the profile's exit waited, but left the failure to this wait
    (kernel,) = _kernels(p, "boom")
    assert kernel.args["failed"] == "ValueError: boom"
    x = mtia.ones(3)
    with profile():
        mtia.launch(boom, x)  # through a launch runner (a DeviceArray argument)
    with pytest.raises(mtia.KernelError, match="kernel boom failed"):
        mtia.synchronize()


def test_launches_from_several_threads_get_a_track_each(tmp_path: Any) -> None:
    def work(i: int) -> None:
        s = mtia.Stream()
        for _ in range(5):
            s.launch(np.negative, float(i))
        s.synchronize()

    with profile() as p:
        threads = [threading.Thread(target=work, args=(i,), name=f"launcher-{i}") for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert sorted({e.thread or "" for e in _kernels(p)}) == ["launcher-0", "launcher-1", "launcher-2"]
    _, tr = _trace(p, tmp_path)
    for i in range(3):
        launches = [s for s in tr.track(f"launcher-{i}") if s.name == "launch negative"]
        assert len(launches) == 5
    assert len([f for f in tr.flows if f[2] == "launch"]) == 15


# --- bounded memory ---------------------------------------------------------------------------------------
def test_the_ring_buffer_keeps_the_newest_events(tmp_path: Any) -> None:
    with profile(max_events=100) as p:
        for i in range(1000):
            mtia.launch(np.negative, float(i))
    kernels = _kernels(p)
    assert len(kernels) == 100 and kernels == sorted(kernels, key=lambda e: e.start_ns)
    averages = p.key_averages()
    assert averages.dropped and "oldest events were dropped" in averages.table()
    doc, _ = _trace(p, tmp_path)
    assert doc["mtia_async"]["oldest_dropped"] is True


def test_export_writes_gzip_and_path_objects(tmp_path: Any) -> None:
    import pathlib

    with profile() as p:
        mtia.launch(np.negative, 1.0)
    p.export_chrome_trace(pathlib.Path(tmp_path) / "t.json")
    p.export_chrome_trace(os.path.join(str(tmp_path), "t.json.gz"))
    plain = load_trace(os.path.join(str(tmp_path), "t.json"))
    zipped = load_trace(os.path.join(str(tmp_path), "t.json.gz"))
    assert plain["traceEvents"] == zipped["traceEvents"]
    check_trace(zipped)
    with open(os.path.join(str(tmp_path), "t.json"), encoding="utf-8") as f:
        assert f.readline() == '{"traceEvents": [\n'  # one event per line


def test_the_checker_rejects_what_perfetto_would_warn_about() -> None:
    meta = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "p"}},
            {"ph": "M", "name": "thread_name", "pid": 1, "tid": 2, "args": {"name": "t"}}]  # fmt: skip

    def x(ts: float, dur: float, name: str = "x") -> dict[str, Any]:
        return {"ph": "X", "pid": 1, "tid": 2, "ts": ts, "dur": dur, "name": name}

    check_trace({"traceEvents": meta + [x(0, 10), x(1, 2), {"ph": "s", "id": 1, "pid": 1, "tid": 2, "ts": 1},
                                        x(5, 1), {"ph": "f", "id": 1, "pid": 1, "tid": 2, "ts": 5, "bp": "e"}]})
    bad = {
        "negative duration": [x(0, -1)],
        "overlaps": [x(0, 10), x(5, 10)],
        "not sorted": [x(5, 1), x(1, 1)],
        "no enclosing slice": [{"ph": "s", "id": 1, "pid": 1, "tid": 2, "ts": 1}],
        "never ended": [x(0, 1), {"ph": "s", "id": 1, "pid": 1, "tid": 2, "ts": 0}],
        "without a start": [x(0, 1), {"ph": "f", "id": 1, "pid": 1, "tid": 2, "ts": 0, "bp": "e"}],
        "started twice": [x(0, 1), {"ph": "s", "id": 1, "pid": 1, "tid": 2, "ts": 0},
                          {"ph": "s", "id": 1, "pid": 1, "tid": 2, "ts": 0}],
        "without thread_name": [{"ph": "X", "pid": 1, "tid": 3, "ts": 0, "dur": 1, "name": "x"}],
        "top-level array": [{**x(0, 1), "stack": ["f"]}],
        "no ts": [{"ph": "i", "pid": 1, "tid": 2, "name": "x", "s": "t"}],
        "no uint32 pid": [{**x(0, 1), "pid": 1 << 32}],
        "flow_invalid_id": [x(0, 1), {"ph": "s", "id": "a", "pid": 1, "tid": 2, "ts": 0}],
    }  # fmt: skip
    for why, events in bad.items():
        with pytest.raises(AssertionError, match=why):
            check_trace({"traceEvents": meta + events})
    # Perfetto's sorter: at equal timestamps the X events go first (longest first), then flow
    # events and instants in file order; so a flow written after "outer" binds to "inner"
    tr = check_trace({"traceEvents": meta + [x(0, 10, "outer"), {"ph": "s", "id": 1, "pid": 1, "tid": 2, "ts": 0},
                                             x(0, 5, "inner"), x(7, 1, "later"),
                                             {"ph": "f", "id": 1, "pid": 1, "tid": 2, "ts": 7, "bp": "e"}]})
    assert [(a.name, b.name) for a, b, _ in tr.flows] == [("inner", "later")]
    assert [(s.name, s.depth) for s in tr.slices] == [("outer", 0), ("inner", 1), ("later", 1)]


# --- docs/profiling.md ----------------------------------------------------------------------------------
def test_the_profiling_page_runs_and_its_traces_load(tmp_path: Any) -> None:
    import re

    from _support import ROOT, run_python

    with open(os.path.join(ROOT, "docs", "profiling.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert len(blocks) >= 2
    outputs = []
    for i, block in enumerate(blocks):
        result = run_python(f"import os\nos.chdir({str(tmp_path)!r})\n" + block, timeout=60)
        assert result.returncode == 0, (i, result.stderr)
        outputs.append(result.stdout)
    rows = [line.split()[:3] for line in outputs[0].splitlines()]
    assert ["exp", "kernel", "1"] in rows and ["sqrt", "kernel", "1"] in rows and ["step", "range", "1"] in rows
    kinds = {(s.name, s.cat) for s in check_trace(load_trace(os.path.join(str(tmp_path), "trace.json"))).slices}
    assert {("exp", "kernel"), ("exp", "worker"), ("step", "user_annotation")} <= kinds
    ranges = [s for s in check_trace(load_trace(os.path.join(str(tmp_path), "async.json"))).slices
              if s.name == "handle request"]  # fmt: skip
    assert len(ranges) == 4


# --- the command line ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_demo_writes_a_trace(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), "demo.json")
    result = run_module(["demo", "--trace", path], timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"trace written to {path}" in result.stdout
    tr = check_trace(load_trace(path))
    names = {s.name for s in tr.slices}
    assert {"exp", "multiply", "sqrt", "dot", "tanh", "demo"} <= names
    assert len([f for f in tr.flows if f[2] == "launch"]) >= 48


@pytest.mark.slow
def test_the_main_job_writes_a_trace_of_its_demo(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), "main.json")
    result = run_module(["--no-bench", "--trace", path], timeout=120)  # the quick bench is the bench test's
    assert result.returncode == 0, result.stderr
    assert f"trace written to {path}" in result.stdout
    tr = check_trace(load_trace(path))
    assert {"exp", "tanh", "demo"} <= {s.name for s in tr.slices} and tr.counters
    missing = os.path.join(str(tmp_path), "no such folder", "main.json")
    result = run_module(["--no-bench", "--trace", missing], timeout=60)
    assert result.returncode == 2 and "does not exist" in result.stderr and not os.path.exists(missing)


@pytest.mark.slow
def test_bench_writes_a_trace_per_suite(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), "bench.json")
    result = run_module(["bench", "sync", "rng", "--quick", "--no-progress", "--plain", "--trace", path], timeout=300)
    assert result.returncode == 0, result.stderr
    for suite in ("sync", "rng"):
        suite_path = os.path.join(str(tmp_path), f"bench.{suite}.json")
        assert f"trace written to {suite_path}" in result.stdout
        doc = load_trace(suite_path)
        check_trace(doc)
        assert json.dumps(doc["mtia_async"]).count('"max_events": 100000') == 1


@pytest.mark.slow
def test_kept_kernel_records_add_nothing_the_garbage_collector_walks() -> None:
    """A long profile must not make every collection of the process longer: its kernel
    records hold only numbers and strings, so the collector stops tracking them."""
    s = mtia.Stream()

    def kernel() -> None:
        pass

    with profile(max_events=50_000) as p:
        for _ in range(200):  # warm: the streams' and the profile's own objects exist
            s.launch(kernel)
        s.synchronize()
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(20_000):
            s.launch(kernel)
        s.synchronize()
        gc.collect()
        grown = len(gc.get_objects()) - before
    assert grown < 2_000, f"{grown} more objects tracked after 20,000 profiled kernels"
    assert sum(e.kind == "kernel" for e in p.events()) == 20_200


def test_the_bench_suite_measures_on_off_and_a_bounded_ring() -> None:
    from mtia_async.bench._harness import Context
    from mtia_async.bench.suites_profiler import run_profiler

    rows = {r.key: r for r in run_profiler(Context(quick=True, reps=2))}
    assert sorted(rows) == ["profiler.bounded", "profiler.extra", "profiler.extra_cpu", "profiler.extra_da",
                            "profiler.off", "profiler.on", "profiler.record_bytes"]  # fmt: skip
    assert rows["profiler.off"].baseline is not None and rows["profiler.off"].baseline.name == "never profiled"
    assert len(rows["profiler.extra"].samples) == 2 and rows["profiler.extra"].goal is not None
    assert 100 < rows["profiler.record_bytes"].samples[0] < 1000  # bytes per kept record (~280)
    bounded = rows["profiler.bounded"]
    assert bounded.baseline is not None
    held_10x, held_1x = sorted(bounded.samples)[0], sorted(bounded.baseline.samples)[-1]
    assert held_10x < 1.1 * held_1x, (bounded.samples, bounded.baseline.samples)  # 10x the kernels, same memory
    with profile():  # bench --trace: a profile records already, the suite says it cannot measure
        (skipped,) = run_profiler(Context(quick=True, reps=2))
    assert skipped.key == "profiler.extra" and skipped.skipped and "bench --trace" in skipped.skipped


def test_the_profiler_is_a_submodule_of_both_facades() -> None:
    import mtia_async.profiler as direct

    assert mtia_async.profiler is direct and mtia.profiler is direct
    assert direct.profile.__module__ == "mtia_async.profiler"
    assert direct.__all__ == sorted(direct.__all__)
