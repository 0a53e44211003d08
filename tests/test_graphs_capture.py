"""Graphs (docs/graphs.md): what a capture refuses, fork/join, events in graphs, bad use, the surface.

Results of replays, memory pools, random numbers, errors and the facades are in
``test_graphs.py``.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _support import join_all

import mtia_async as amtia
import mtia_async.sync as mtia


def test_both_facades_export_all_of_torch_mtia() -> None:
    torch_mtia = pytest.importorskip("torch.mtia")
    for facade in (amtia, mtia):
        assert [n for n in torch_mtia.__all__ if not hasattr(facade, n)] == []
    assert amtia.MTIAGraph is mtia.MTIAGraph and amtia.graph is not mtia.graph
    assert amtia.graph.__name__ == mtia.graph.__name__ == "graph"


def test_pool_handles_and_is_current_stream_capturing_do_not_initialise() -> None:
    assert mtia.is_current_stream_capturing() is False
    a, b = mtia.graph_pool_handle(), mtia.graph_pool_handle()
    assert a[0] == b[0] == 0 and 0 < a[1] < b[1]
    assert not mtia.is_initialized()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: mtia.MTIAGraph(keep_graph="yes"), TypeError, "keep_graph=.*must be a bool, got str"),
        (lambda: mtia.MTIAGraph().capture_begin(pool=[0, 1]), TypeError, "pool must be None or a pool token"),
        (lambda: mtia.MTIAGraph().capture_begin(pool=(0, 1.0)), TypeError, "tuple of two ints"),
        (lambda: mtia.MTIAGraph().capture_begin(pool=(0, 10**9)), ValueError, "was not given by graph_pool_handle"),
        (lambda: mtia.MTIAGraph().capture_begin(pool=(3, 4)), ValueError, "was not given by graph_pool_handle"),
        (lambda: mtia.graph(object()), TypeError, "graph\\(\\) expects an MTIAGraph, got object"),  # type: ignore[arg-type]
        (lambda: mtia.graph(mtia.MTIAGraph(), stream=1), TypeError, "graph\\(stream=...\\) expects a mtia_async Stream"),
        (lambda: mtia.graph(mtia.MTIAGraph(), pool="p"), TypeError, "pool must be None"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_are_refused_at_the_call(call: Callable[[], Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()
    assert not mtia.is_current_stream_capturing()


# --- what a capture refuses ------------------------------------------------------------------------
def _forbidden_cases() -> dict[str, tuple[Callable[[Any, Any, Any], object], str]]:
    """Each operation a capture refuses, as ``op(capturing stream, an input, a captured event)``."""
    other = mtia.MTIAGraph()  # captured before the capture under test begins
    with mtia.graph(other):
        mtia.zeros(1)

    def host_copy_from_another_stream(s: Any, x: Any, e: Any) -> None:
        y = x + 1.0
        with mtia.stream(mtia.Stream()):
            y.numpy()

    cases: dict[str, tuple[Callable[[Any, Any, Any], object], str]] = {
        "stream synchronize": (lambda s, x, e: s.synchronize(), r"synchronize\(\) is not allowed while stream"),
        "stream query": (lambda s, x, e: s.query(), r"query\(\) of a capturing stream is not allowed while stream"),
        "device synchronize": (lambda s, x, e: mtia.synchronize(), r"synchronize\(\) is not allowed while stream"),
        "event synchronize": (lambda s, x, e: e.synchronize(), r"query\(\), synchronize\(\) or elapsed_time\(\)"),
        "event query": (lambda s, x, e: e.query(), r"query\(\), synchronize\(\) or elapsed_time\(\) of an event"),
        "elapsed_time": (lambda s, x, e: e.elapsed_time(e), r"elapsed_time\(\) of an event recorded during"),
        "numpy": (lambda s, x, e: (x * 2.0).numpy(), r"a copy to the host \(to_host\(\)/numpy\(\)\)"),
        "numpy of an input": (lambda s, x, e: x.numpy(), r"a copy to the host"),
        "host copy on another stream": (host_copy_from_another_stream, r"to_host\(\)/numpy\(\) of memory the capture"),
        "asarray": (lambda s, x, e: mtia.asarray(np.ones(3)), r"asarray\(\) of host data"),
        "host operand": (lambda s, x, e: x + np.ones(16, np.float32), r"asarray\(\) of host data"),
        "setitem host array": (lambda s, x, e: x.__setitem__(slice(0, 2), np.array([1.0, 2.0])), r"<host array>"),
        "replay": (lambda s, x, e: other.replay(), r"replay\(\) of MTIAGraph #\d+ is not allowed"),
    }
    return cases


FORBIDDEN = ["stream synchronize", "stream query", "device synchronize", "event synchronize", "event query", "elapsed_time", "numpy",
             "numpy of an input", "host copy on another stream", "asarray", "host operand", "setitem host array",
             "replay"]  # fmt: skip


@pytest.mark.parametrize("case", FORBIDDEN)
def test_an_operation_a_graph_cannot_hold_raises_and_invalidates_the_capture(case: str) -> None:
    op, match = _forbidden_cases()[case]
    x = mtia.ones(16)
    s = mtia.Stream()
    g = mtia.MTIAGraph()
    with mtia.stream(s):
        g.capture_begin()
        e = mtia.Event(enable_timing=True)
        e.record()
        assert "done=False" in repr(e)  # printing a captured event is allowed
        with pytest.raises(RuntimeError, match=match) as info:
            op(s, x, e)
        label = "MTIAGraph " + repr(g).split()[1]  # "<mtia_async.MTIAGraph #7 capturing, ...>"
        assert f"captures {label}: " in str(info.value) and "The capture is invalidated" in str(info.value)
        with pytest.raises(RuntimeError, match="whose capture was invalidated by"):
            mtia.launch(print)  # nothing more is recorded (nor run)
        with pytest.raises(RuntimeError, match=r"capture_end\(\) of MTIAGraph #\d+: its capture was invalidated"):
            g.capture_end()
        assert not mtia.is_current_stream_capturing()
        with pytest.raises(RuntimeError, match="the capture of MTIAGraph #\\d+ failed"):
            g.replay()
        with pytest.raises(RuntimeError, match="holds a failed capture; reset"):
            g.capture_begin()
        g.reset()
        g.capture_begin()  # and a clean capture works
        y = x * 3.0
        g.capture_end()
    g.replay()
    mtia.synchronize()
    np.testing.assert_array_equal(y.numpy(), np.full(16, 3.0))


def test_an_error_in_a_graph_block_discards_the_capture_and_restores_the_stream() -> None:
    before = mtia.current_stream()
    g = mtia.MTIAGraph()
    with pytest.raises(RuntimeError, match=r"a copy to the host"):
        with mtia.graph(g):
            (mtia.ones(2) + 1.0).numpy()
    assert mtia.current_stream() == before and not mtia.is_current_stream_capturing()
    assert "fresh" in repr(g)
    with pytest.raises(KeyError):
        with mtia.graph(g):
            raise KeyError("the body's own error, unchanged")
    with mtia.graph(g):
        z = mtia.full(2, 4.0)
    g.replay()
    np.testing.assert_array_equal(z.numpy(), [4.0, 4.0])


def test_another_stream_may_copy_to_the_host_the_bytes_a_capture_does_not_write() -> None:
    x = mtia.asarray(np.arange(16, dtype=np.float32))
    s, reader = mtia.Stream(), mtia.Stream()
    reader.wait_stream(mtia.current_stream())
    g = mtia.MTIAGraph()
    with mtia.stream(s):
        g.capture_begin()
        np.add(x[:4], 100.0, out=x[4:8])  # writes bytes 16-32 of x's block
        with mtia.stream(reader):
            np.testing.assert_array_equal(x[8:].numpy(), np.arange(8, 16))  # the capture reads or leaves these
            np.testing.assert_array_equal(x[:4].numpy(), np.arange(4))
            with pytest.raises(RuntimeError, match=r"to_host\(\)/numpy\(\) of memory the capture writes"):
                x[7:9].numpy()  # one element of it is written
        with pytest.raises(RuntimeError, match="invalidated"):
            g.capture_end()
    g.reset()


def test_scalars_and_device_arrays_are_captured_as_constants_and_references() -> None:
    x = mtia.zeros(4)
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        x[:2] = 5  # a scalar: a constant of the graph
        x[2:] = np.float32(7.0)
        x[...] += mtia.asarray(x)  # asarray of a DeviceArray is the array itself
    g.replay()
    np.testing.assert_array_equal(x.numpy(), [10.0, 10.0, 14.0, 14.0])


# --- fork and join ---------------------------------------------------------------------------------
def test_fork_and_join_across_two_streams() -> None:
    x = mtia.asarray(np.arange(8, dtype=np.float32))
    side = mtia.Stream()
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        a = x * 2.0
        side.wait_stream(mtia.current_stream())  # fork: side joins the capture
        with mtia.stream(side):
            assert mtia.is_current_stream_capturing()
            b = a + 1.0  # on side, after a; from the graph's pool
        done = mtia.Event()
        done.record(side)
        mtia.current_stream().wait_event(done)  # join
        c = a + b
    segments = [seg for seg in mtia.snapshot()["segments"]
                if seg["address"] <= b.data_ptr() < seg["address"] + seg["total_size"]]
    assert [seg["segment_pool_id"] for seg in segments] == [g.pool()]
    with mtia.stream(side):
        assert not mtia.is_current_stream_capturing()  # the join ended with the capture
        ran: list[int] = []
        mtia.launch(ran.append, 1)
        side.synchronize()
        assert ran == [1]
    g.replay()
    mtia.synchronize()
    want = np.arange(8) * 2.0
    np.testing.assert_array_equal(c.numpy(), want + want + 1.0)


def test_a_stream_that_joined_but_was_not_joined_back_fails_capture_end_by_name() -> None:
    side = mtia.Stream()
    g = mtia.MTIAGraph()
    s = mtia.Stream()
    with mtia.stream(s):
        g.capture_begin()
        mtia.zeros(2)
        side.wait_stream(s)
        with mtia.stream(side):
            mtia.ones(2)
        with pytest.raises(RuntimeError, match=rf"stream {side.stream_id} of mtia:0 joined the capture .* was not "
                                               rf"joined back into the capturing stream {s.stream_id}"):  # fmt: skip
            g.capture_end()
    assert not any(st._impl.capture for st in (s, side))
    with pytest.raises(RuntimeError, match="failed"):
        g.replay()
    g.reset()


def test_joining_from_another_device_is_refused() -> None:
    g = mtia.MTIAGraph()
    with pytest.raises(RuntimeError, match=r"a stream of another device \(mtia:1\) joining"):
        with mtia.graph(g):
            mtia.ones(2).to(1)  # a copy between devices waits across them


def test_two_captures_cannot_wait_on_each_other() -> None:
    g1, g2 = mtia.MTIAGraph(), mtia.MTIAGraph()
    s1, s2 = mtia.Stream(), mtia.Stream()
    with mtia.stream(s1):
        g1.capture_begin()
        e1 = s1.record_event()
    with mtia.stream(s2):
        g2.capture_begin()
        with pytest.raises(RuntimeError, match=r"waiting on an event recorded in the capture of another graph"):
            s2.wait_event(e1)
        with pytest.raises(RuntimeError, match="invalidated"):
            g2.capture_end()
    with mtia.stream(s1):
        g1.capture_end()


def test_a_wait_on_outside_work_is_kept_by_each_replay() -> None:
    gate = threading.Event()
    producer = mtia.Stream()
    with mtia.stream(producer):
        mtia.launch(lambda: gate.wait(10))
        ready = producer.record_event()
    g = mtia.MTIAGraph()
    hits: list[int] = []
    # capture_begin()/capture_end(), not `with graph(g)`: that synchronizes the device on entry (as
    # torch's does), which would wait for the gate instead of capturing a wait on it
    with mtia.stream(mtia.Stream()):
        g.capture_begin()
        mtia.current_stream().wait_event(ready)
        mtia.launch(hits.append, 1)
        g.capture_end()
        g.replay()
        assert hits == [] and not mtia.current_stream().query()
    gate.set()
    mtia.synchronize()
    assert hits == [1]


# --- events recorded in a graph ---------------------------------------------------------------------
def test_events_recorded_in_a_graph_complete_at_their_place_in_each_replay() -> None:
    gate = threading.Event()
    g = mtia.MTIAGraph()
    start, middle = mtia.Event(enable_timing=True), mtia.Event(enable_timing=True)
    with mtia.graph(g):
        start.record()
        mtia.launch(lambda: gate.wait(10))
        middle.record()
    assert start.query() and middle.query()  # never replayed: nothing to wait for
    with pytest.raises(RuntimeError, match="has not been replayed"):
        start.elapsed_time(middle)
    g.replay()
    start.synchronize()
    assert start.query() and not middle.query()
    waiter = mtia.Stream()
    waiter.wait_event(middle)  # a wait on the event follows this replay
    gate.set()
    middle.synchronize()
    waiter.synchronize()
    assert start.elapsed_time(middle) >= 0.0
    gate.clear()
    g.replay()
    assert not middle.query()
    gate.set()
    mtia.synchronize()
    assert middle.query()


async def test_an_awaited_graph_event_wakes_the_task() -> None:
    g = amtia.MTIAGraph()
    e = amtia.Event()
    async with amtia.graph(g):
        x = amtia.ones(4) * 2.0
        e.record()
    g.replay()
    await e
    np.testing.assert_array_equal(await x.to_host(), np.full(4, 2.0))


# --- bad use ----------------------------------------------------------------------------------------
def test_the_states_of_a_graph_and_their_errors() -> None:
    g = mtia.MTIAGraph()
    with pytest.raises(RuntimeError, match=r"replay\(\) before a capture"):
        g.replay()
    with pytest.raises(RuntimeError, match=r"capture_end\(\) without capture_begin\(\)"):
        g.capture_end()
    with pytest.raises(RuntimeError, match=r"pool\(\) before a capture"):
        g.pool()
    with pytest.raises(RuntimeError, match=r"instantiate\(\) before a capture"):
        g.instantiate()
    s = mtia.Stream()
    with mtia.stream(s):
        g.capture_begin()
        with pytest.raises(RuntimeError, match=r"replay\(\) before capture_end\(\)"):
            g.replay()
        with pytest.raises(RuntimeError, match="is capturing already"):
            g.capture_begin()
        with pytest.raises(RuntimeError, match=rf"stream {s.stream_id} of mtia:0 already captures .*nested captures"):
            mtia.MTIAGraph().capture_begin()
        mtia.ones(3)
        g.capture_end()
    with pytest.raises(RuntimeError, match=r"instantiate\(\) is for graphs made with MTIAGraph\(keep_graph=True\)"):
        g.instantiate()
    with pytest.raises(RuntimeError, match="holds a captured graph; reset"):
        g.capture_begin()
    g.replay()
    g.reset()
    g.reset()  # resetting a fresh graph does nothing
    with pytest.raises(RuntimeError, match=r"replay\(\) after reset\(\)"):
        g.replay()
    with pytest.raises(RuntimeError, match=r"pool\(\) after reset\(\)"):
        g.pool()
    mtia.synchronize()


def test_keep_graph_instantiates_on_demand_and_again() -> None:
    x = mtia.ones(2)
    g = mtia.MTIAGraph(keep_graph=True)
    assert g.keep_graph is True
    with mtia.graph(g):
        np.add(x, 1.0, out=x)
    assert "kernels" not in repr(g)  # not instantiated yet
    g.replay()  # the first replay instantiates
    assert "1 kernels" in repr(g)
    g.instantiate()  # again: a new instance of the same graph
    g.replay()
    np.testing.assert_array_equal(x.numpy(), [3.0, 3.0])
    h = mtia.MTIAGraph(keep_graph=True)
    with mtia.graph(h):
        np.add(x, 1.0, out=x)
    h.instantiate()
    h.replay()
    np.testing.assert_array_equal(x.numpy(), [4.0, 4.0])


def test_capture_end_and_reset_from_another_thread() -> None:
    s = mtia.Stream()
    g = mtia.MTIAGraph()
    with mtia.stream(s):
        g.capture_begin()
        y = mtia.ones(3) + 1.0
    errors: list[BaseException] = []

    def end() -> None:
        try:
            g.capture_end()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=end)
    t.start()
    t.join(10)
    assert errors == [] and not s._impl.capture
    g.replay()
    np.testing.assert_array_equal(y.numpy(), [2.0] * 3)


# --- threads and tasks -------------------------------------------------------------------------------
def test_a_capture_records_its_streams_work_whichever_thread_launches_it_and_nothing_else() -> None:
    s, other = mtia.Stream(), mtia.Stream()
    g = mtia.MTIAGraph()
    ran: list[str] = []
    capturing: dict[str, bool] = {}
    errors: list[BaseException] = []

    def elsewhere() -> None:  # another thread, other streams: runs as usual while s captures
        try:
            with mtia.stream(other):
                capturing["other"] = mtia.is_current_stream_capturing()
                mtia.launch(ran.append, "other stream")
                other.synchronize()
            capturing["default"] = mtia.is_current_stream_capturing()  # this thread's own default stream
            mtia.launch(ran.append, "default stream")
            mtia.current_stream().synchronize()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def onto_the_capturing_stream() -> None:  # another thread, the capturing stream: captured
        try:
            with mtia.stream(s):
                capturing["s"] = mtia.is_current_stream_capturing()
                mtia.launch(ran.append, "captured from a thread")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with mtia.stream(s):
        g.capture_begin()
        threads = [threading.Thread(target=elsewhere), threading.Thread(target=onto_the_capturing_stream)]
        for t in threads:
            t.start()
        join_all(threads)
        assert errors == [] and ran == ["other stream", "default stream"]
        assert capturing == {"other": False, "default": False, "s": True}
        g.capture_end()
    g.replay()
    mtia.synchronize()
    assert ran == ["other stream", "default stream", "captured from a thread"]


def test_a_device_synchronize_from_another_thread_raises_there_and_invalidates_the_capture() -> None:
    s = mtia.Stream()
    g = mtia.MTIAGraph()
    errors: list[BaseException] = []

    def sync_the_device() -> None:
        try:
            mtia.synchronize()
        except BaseException as exc:
            errors.append(exc)

    with mtia.stream(s):
        g.capture_begin()
        mtia.ones(2)
        t = threading.Thread(target=sync_the_device)
        t.start()
        join_all([t])
        (error,) = errors
        assert isinstance(error, RuntimeError)
        assert re.match(rf"synchronize\(\) is not allowed while stream {s.stream_id} of mtia:0 captures MTIAGraph #\d+",
                        str(error))  # fmt: skip
        with pytest.raises(RuntimeError, match="its capture was invalidated: synchronize"):
            g.capture_end()
    g.reset()


async def test_a_task_awaiting_its_own_stream_while_another_task_captures() -> None:
    x = amtia.ones(4)
    entered, captured = asyncio.Event(), asyncio.Event()
    g = amtia.MTIAGraph()

    async def capture() -> Any:
        async with amtia.graph(g):
            y = x * 3.0
            entered.set()
            await captured.wait()  # the other task runs while this one captures
        return y

    task = asyncio.create_task(capture())
    await entered.wait()
    assert not amtia.is_current_stream_capturing()  # this task's current stream is its own
    z = x + 1.0
    np.testing.assert_array_equal(await z.to_host(), np.full(4, 2.0))  # ran at once, not captured
    await amtia.current_stream().synchronize()
    captured.set()
    y = await task
    g.replay()
    np.testing.assert_array_equal(await y.to_host(), np.full(4, 3.0))


@pytest.mark.parametrize("case", ["await to_host", "await event", "await event.synchronize", "await synchronize",
                                  "await stream.synchronize"])  # fmt: skip
async def test_the_async_facade_refuses_the_same_waits(case: str) -> None:
    s = amtia.Stream()
    g = amtia.MTIAGraph()
    with amtia.stream(s):
        g.capture_begin()
        y = amtia.ones(4) * 2.0
        e = amtia.Event()
        e.record()
        waits: dict[str, Callable[[], Any]] = {
            "await to_host": y.to_host, "await event": lambda: e, "await event.synchronize": e.synchronize,
            "await synchronize": amtia.synchronize, "await stream.synchronize": s.synchronize,
        }  # fmt: skip
        with pytest.raises(RuntimeError, match=r"is not allowed while stream \d+ of mtia:0 captures MTIAGraph #\d+"):
            await waits[case]()
        with pytest.raises(RuntimeError, match="its capture was invalidated"):
            g.capture_end()
    g.reset()
