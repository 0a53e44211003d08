"""The instruments layer (``_core/instrument.py``): what observers and captures see.

The profiler, the sanitizer and graph capture are built on these hooks; here they are
checked with a recording observer and a fake capture: exact access sets for every kind
of operation, every hook, raising and wrapping observers, the flag going on and off.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _support import sanitizer_off, wait_until

import mtia_async as amtia
import mtia_async.sync as mtia
from mtia_async._core.instrument import Capture, Launch, Observer, instruments
from mtia_async._core.mark import Mark


@pytest.fixture(autouse=True)
def _no_sanitizer() -> Iterator[None]:
    """These tests check the instruments' own state: the stream sanitizer stays out (MTIA_ASYNC_SANITIZE)."""
    with sanitizer_off():
        yield


class Recorder(Observer):
    def __init__(self) -> None:
        self.launches: list[Launch] = []
        self.events: list[tuple[Any, ...]] = []

    def on_launch(self, stream: Any, kernel: Any, args: Any, reads: Any, writes: Any, t_ns: int) -> None:
        launch = Launch(stream, kernel, args, reads, writes)
        launch.t_ns = t_ns
        self.launches.append(launch)

    def on_record(self, stream: Any, mark: Mark) -> None:
        self.events.append(("record", stream.stream_id, mark))

    def on_wait(self, stream: Any, mark: Mark) -> None:
        self.events.append(("wait", stream.stream_id, mark))

    def on_host_wait(self, marks: Any, started_ns: int, what: str) -> None:
        self.events.append(("host_wait", what, tuple(marks), started_ns))

    def on_alloc(self, array: Any, stream: Any) -> None:
        self.events.append(("alloc", array.shape))

    def on_free(self, array: Any) -> None:
        self.events.append(("free", array.shape))


@pytest.fixture
def rec() -> Iterator[Recorder]:
    recorder = Recorder()
    instruments.add(recorder)
    try:
        yield recorder
    finally:
        instruments.remove(recorder)
    assert not instruments.active and instruments.observers == ()


def _ids(arrays: Any) -> list[int]:
    return [id(a) for a in arrays]


def test_off_by_default() -> None:
    assert instruments.active is False and instruments.observers == ()


def test_public_launch_reads_and_writes_every_array_argument(rec: Recorder) -> None:
    x, y = mtia.zeros(4), mtia.zeros(4)
    mtia.launch(np.exp, x, out=y)
    (launch,) = rec.launches[-1:]
    assert _ids(launch.reads) == _ids([x, y]) and _ids(launch.writes) == _ids([x, y])
    mtia.synchronize()
    np.testing.assert_array_equal(y.numpy(), np.ones(4))


def test_reads_and_writes_are_consumed_and_checked(rec: Recorder) -> None:
    x, y = mtia.ones(4), mtia.zeros(4)
    got: list[Any] = []

    def kernel(a: Any, *, out: Any, **rest: Any) -> None:
        got.append(sorted(rest))
        np.add(a, 1, out=out)

    mtia.launch(kernel, x, out=y, reads=[x], writes=[y])
    launch = rec.launches[-1]
    assert _ids(launch.reads) == _ids([x]) and _ids(launch.writes) == _ids([y])
    mtia.synchronize()
    assert got == [[]]  # the kernel never sees reads=/writes=
    np.testing.assert_array_equal(y.numpy(), np.full(4, 2.0))
    with pytest.raises(TypeError, match="reads=.*list or tuple of DeviceArrays"):
        mtia.launch(kernel, x, out=y, reads=x)
    with pytest.raises(TypeError, match=r"writes=.*item #0 is a ndarray"):
        mtia.launch(kernel, x, out=y, writes=[np.zeros(4)])
    with pytest.raises(ValueError, match="writes\\[0\\].*mtia:1"):
        mtia.launch(kernel, x, out=y, writes=[mtia.zeros(4, device=1)])


def test_reads_and_writes_are_consumed_with_the_instruments_off() -> None:
    x = mtia.ones(2)
    seen: list[Any] = []
    mtia.launch(lambda a, **kw: seen.append(sorted(kw)), x, reads=[x], writes=[])
    mtia.synchronize()
    assert seen == [[]]


@pytest.mark.parametrize(
    "op",
    ["add", "scalar", "rscalar", "unary", "out", "iadd", "matmul", "sum", "reduce", "mean", "argmax", "general"],
)
def test_operators_and_ufuncs_report_exact_access_sets(rec: Recorder, op: str) -> None:
    a = mtia.asarray(np.arange(6.0).reshape(2, 3))
    b = mtia.ones((2, 3), dtype=np.float64)
    o = mtia.empty((2, 3), dtype=np.float64)
    mtia.synchronize()
    rec.launches.clear()
    result: Any = {
        "add": lambda: a + b,
        "scalar": lambda: a * 2.0,
        "rscalar": lambda: 2.0 - a,
        "unary": lambda: np.exp(a),
        "out": lambda: np.add(a, b, out=o),
        "iadd": lambda: a.__iadd__(b),
        "matmul": lambda: a @ b.T,
        "sum": lambda: a.sum(),
        "reduce": lambda: np.add.reduce(a, axis=1),
        "mean": lambda: a.mean(axis=0),
        "argmax": lambda: a.argmax(),
        "general": lambda: np.add(a, b, where=mtia.asarray(np.ones((2, 3), bool))),
    }[op]()
    launch = rec.launches[-1]
    reads = {"add": [a, b], "scalar": [a], "rscalar": [a], "unary": [a], "out": [a, b], "iadd": [a, b],
             "matmul": [a], "sum": [a], "reduce": [a], "mean": [a], "argmax": [a]}.get(op)  # fmt: skip
    if op == "matmul":
        assert _ids(launch.reads)[0] == id(a) and len(launch.reads) == 2  # b.T is a view of b
        assert launch.reads[1].base is b
    elif op == "general":
        assert _ids(launch.reads)[:2] == _ids([a, b]) and launch.reads[2].dtype == np.bool_
    else:
        assert _ids(launch.reads) == _ids(reads)
    expected_writes = {"out": [o], "iadd": [a]}.get(op, [result])
    assert _ids(launch.writes) == _ids(expected_writes)
    mtia.synchronize()


def test_copies_fills_setitem_and_random_kernels_report_access_sets(rec: Recorder) -> None:
    a = mtia.asarray(np.arange(4.0))
    assert _ids(rec.launches[-1].writes) == _ids([a]) and rec.launches[-1].reads == ()
    z = mtia.zeros(4)
    assert _ids(rec.launches[-1].writes) == _ids([z])
    a[1:3] = 7
    assert rec.launches[-1].writes[0].base is a and rec.launches[-1].reads == ()
    z[...] = a
    assert _ids(rec.launches[-1].writes) == _ids([z]) and _ids(rec.launches[-1].reads) == _ids([a])
    c = a.astype(np.float32)
    assert _ids(rec.launches[-1].reads) == _ids([a]) and _ids(rec.launches[-1].writes) == _ids([c])
    moved = a.to(1)
    assert _ids(rec.launches[-1].reads) == _ids([a]) and _ids(rec.launches[-1].writes) == _ids([moved])
    r = mtia.rand(3)
    assert _ids(rec.launches[-1].writes) == _ids([r]) and rec.launches[-1].reads == ()
    p = mtia.full(3, 0.5)
    coin = mtia.bernoulli(p)
    assert _ids(rec.launches[-1].reads) == _ids([p]) and _ids(rec.launches[-1].writes) == _ids([coin])
    a.numpy()
    assert _ids(rec.launches[-1].reads) == _ids([a]) and rec.launches[-1].writes == ()


def test_records_waits_host_waits_allocations_and_frees(rec: Recorder) -> None:
    s, t = mtia.Stream(), mtia.Stream()
    x = mtia.zeros(8)
    assert ("alloc", (8,)) in rec.events
    e = s.record_event()
    assert ("record", s.stream_id, e._mark) in rec.events
    t.wait_event(e)
    assert ("wait", t.stream_id, e._mark) in rec.events
    t.wait_stream(s)
    assert rec.events[-1][:2] == ("wait", t.stream_id)
    s.synchronize()  # drained: still a host wait the instruments see
    assert rec.events[-1][:2] == ("host_wait", "Stream.synchronize()")
    e.synchronize()
    assert rec.events[-1][:2] == ("host_wait", "Event.synchronize()")
    mtia.synchronize()
    assert rec.events[-1][:2] == ("host_wait", "synchronize()")
    x.numpy()
    assert rec.events[-1][:2] == ("host_wait", "DeviceArray.numpy()")
    rec.launches.clear()  # they hold the arrays they name
    del x  # freed here, or on the worker a moment later if it still held the copy's arguments
    wait_until(lambda: ("free", (8,)) in rec.events, 5.0, "the free hook")


async def test_async_host_waits_are_seen_too(rec: Recorder) -> None:
    s = amtia.Stream()
    s.launch(int)
    await s.synchronize()
    assert rec.events[-1][:2] == ("host_wait", "Stream.synchronize()")
    x = amtia.ones(2)
    await x.to_host()
    assert rec.events[-1][:2] == ("host_wait", "DeviceArray.to_host()")
    await amtia.synchronize()
    assert rec.events[-1][:2] == ("host_wait", "synchronize()")


def test_an_observer_that_raises_refuses_the_launch_and_one_that_wraps_replaces_the_kernel() -> None:
    class Refuse(Observer):
        def on_launch(self, stream: Any, kernel: Any, args: Any, reads: Any, writes: Any, t_ns: int) -> None:
            raise RuntimeError("refused")

    ran: list[str] = []

    class Wrap(Observer):
        def on_launch(self, stream: Any, kernel: Any, args: Any, reads: Any, writes: Any,
                      t_ns: int) -> tuple[Any, Any]:  # fmt: skip
            def wrapped(*args: Any) -> object:
                ran.append("before")
                return kernel(*args)

            return wrapped, args

    refuse = Refuse()
    instruments.add(refuse)
    try:
        with pytest.raises(RuntimeError, match="refused"):
            mtia.launch(ran.append, "kernel")
    finally:
        instruments.remove(refuse)
    mtia.synchronize()
    assert ran == []  # nothing was enqueued
    wrap = Wrap()
    instruments.add(wrap)
    try:
        mtia.launch(ran.append, "kernel")
        mtia.synchronize()
    finally:
        instruments.remove(wrap)
    assert ran == ["before", "kernel"]


class CapturedMark(Mark):
    __slots__ = ("capture",)


class FakeCapture(Capture):
    def __init__(self) -> None:
        self.launches: list[Launch] = []
        self.records: list[Any] = []
        self.waits: list[Any] = []

    def launch(self, launch: Launch) -> None:
        self.launches.append(launch)

    def record(self, stream: Any) -> Mark:
        mark = CapturedMark(stream)
        mark.capture = self  # a wait on it joins this capture
        self.records.append(mark)
        return mark

    def wait(self, stream: Any, mark: Mark) -> None:
        self.waits.append((stream.stream_id, mark))


def test_a_capturing_stream_records_instead_of_running_and_refuses_host_waits() -> None:
    s, other = mtia.Stream(), mtia.Stream()
    x = mtia.zeros(4)
    mtia.synchronize()
    capture = FakeCapture()
    instruments.capturing(s._impl, capture)
    try:
        assert instruments.active
        ran: list[int] = []
        s.launch(ran.append, 1)
        with mtia.stream(s):
            y = x + 1
        assert [launch.kernel for launch in capture.launches][0] == ran.append
        assert _ids(capture.launches[1].writes) == _ids([y])
        e = s.record_event()
        assert capture.records == [e._mark]
        s.wait_event(mtia.Event().__class__())  # an unrecorded event: nothing to wait for
        other_event = other.record_event()
        s.wait_event(other_event)
        assert capture.waits == [(s.stream_id, other_event._mark)]
        other.wait_stream(s)  # forks the capture: an event recorded on s, waited on by other
        assert len(capture.records) == 2 and capture.waits[-1] == (other.stream_id, capture.records[-1])
        with pytest.raises(RuntimeError, match=r"synchronize\(\) is not allowed while stream"):
            s.synchronize()
        with pytest.raises(RuntimeError, match="not allowed"):
            mtia.synchronize()
        with pytest.raises(RuntimeError, match="copy to the host"), mtia.stream(s):
            x.numpy()
    finally:
        instruments.capturing(s._impl, None)
    assert not instruments.active
    mtia.synchronize()
    assert ran == []  # captured, never run
