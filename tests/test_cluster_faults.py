"""Devices on a Dask cluster when the worker's side of a session goes wrong without dying.

A copy to the host that fails on the worker, memory the worker could not back, a reply
that does not serialise: each surfaces at the caller's wait with a clear error, no wait
hangs and nothing stays behind on the client. The faults are made on the worker by a
kernel that reaches its session (waited for, before what the test then does),
on the session's real ``LocalCluster`` (``dask_cluster``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest
from test_cluster import sessions

import mtia_async as amtia
import mtia_async.sync as mtia
from mtia_async._cluster.link import Link
from mtia_async._cluster.wire import handle_of
from mtia_async._core.runtime import state

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("remote")]  # remote: tests/conftest.py

T = TypeVar("T")


def _link(device: int) -> Link:
    link: Link = state.runtime.devices[device].link  # type: ignore[union-attr]
    return link


def _bounded(call: Callable[[], T], seconds: float = 30.0) -> T:
    """``call()`` in a thread, which must return (or raise) within ``seconds``: a hang fails the test."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{call!r} hung"
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _on_session(stream: Any, change: Callable[[Any], None], wait: bool = True) -> None:
    """Run ``change(session)`` on the worker, as a kernel of ``stream`` (of device 0), and wait for it.

    Waited for: the worker finds a batch's arrays (and its copy kernel) when the batch arrives.
    """
    key = _link(0).conn.key

    def reach_session() -> None:
        from mtia_async._cluster.session import SESSIONS

        [session] = [s for (k, _), s in SESSIONS.items() if k == key]
        change(session)

    stream.launch(reach_session)
    if wait:
        _bounded(stream.synchronize)


def test_a_copy_to_the_host_that_fails_on_the_worker_raises_and_leaves_no_read_behind() -> None:
    link = _link(0)
    s = mtia.current_stream(0)
    x = mtia.arange(10, dtype=np.int64, device=0)

    def break_copies(session: Any) -> None:
        def copy(rid: int, view: Any, sent: Any) -> None:
            sent.complete((), 0)
            raise OSError("the copy broke")

        session._read_kernel = copy  # the instance's attribute hides the method

    _on_session(s, break_copies)
    with pytest.raises(mtia.KernelError, match="OSError: the copy broke") as info:
        _bounded(x.numpy)
    assert isinstance(info.value.__cause__, OSError)
    assert link.reads == {}, "a failed copy's read stayed in Link.reads"

    async def awaited() -> None:
        with pytest.raises(amtia.KernelError, match="OSError: the copy broke"):
            await x.to_host()

    _bounded(lambda: __import__("asyncio").run(awaited()))
    assert link.reads == {}

    def repair(session: Any) -> None:
        del session._read_kernel

    _on_session(s, repair)
    np.testing.assert_array_equal(_bounded(x.numpy), np.arange(10))  # only those copies failed
    assert link.reads == {} and link.failed is None


def test_a_copy_of_memory_the_worker_could_not_back_fails_that_copy_as_a_kernel_does() -> None:
    link = _link(0)
    s = mtia.current_stream(0)
    x = mtia.full(1 << 22, 3.0, dtype=np.float32, device=0)  # 16 MiB each (>= 10 MiB): a segment of its own
    y = mtia.ones(1 << 22, dtype=np.float32, device=0)
    ux, uy = handle_of(x)[2], handle_of(y)[2]
    assert ux != uy

    def unback(session: Any) -> None:
        del session.segs[ux]  # as when the host could not allocate it (MemoryError at "res")

    _on_session(s, unback)
    with pytest.raises(mtia.KernelError, match=r"copy_to_host failed on device 0.*holds no memory for segment") as info:
        _bounded(x.numpy)
    assert isinstance(info.value.__cause__, MemoryError)
    assert link.reads == {} and link.failed is None
    with pytest.raises(mtia.KernelError) as kernel_info:  # a kernel using it: the same error
        _bounded((x + 1).numpy)
    assert isinstance(kernel_info.value.__cause__, MemoryError)
    assert "holds no memory for segment" in str(kernel_info.value.__cause__)
    np.testing.assert_array_equal(_bounded(y.numpy), np.ones(1 << 22, np.float32))  # the rest works
    np.testing.assert_array_equal(_bounded(mtia.arange(5, device=0).numpy), np.arange(5))
    assert link.failed is None and link.reads == {}


def test_a_reply_that_does_not_serialise_fails_the_device_naming_the_cause(remote: Any) -> None:
    link = _link(0)
    s, other = mtia.Stream(0), mtia.Stream(1)
    x = mtia.arange(4, device=0)
    s.wait_stream(mtia.current_stream(0))

    def post_unserialisable(session: Any) -> None:
        session.post(("p", threading.Lock()))  # the message that carries it does not serialise

    _on_session(s, post_unserialisable, wait=False)
    s.launch(np.add, x, 1, out=x)  # its reply comes after the bad one: never sent without the fix
    with pytest.raises(mtia.DeviceFailedError, match=r"mtia:0 failed: .*could not send a reply.*cannot pickle"):
        _bounded(s.synchronize)
    assert link.failed is not None and link.reads == {}
    with pytest.raises(mtia.DeviceFailedError):  # every later wait too, at once
        _bounded(x.numpy)
    y = mtia.ones(3, device=1)  # filled on mtia:1's current stream: ``other`` waits for it
    other.wait_stream(mtia.current_stream(1))
    other.launch(np.negative, y, out=y)
    _bounded(other.synchronize)  # the other worker's device keeps working
    np.testing.assert_array_equal(_bounded(y.numpy), -np.ones(3, np.float32))
    assert link.conn.key not in sessions(remote)[link.address], "the ended session kept its memory"


def test_a_session_writer_that_stops_for_another_reason_ends_the_session(remote: Any) -> None:
    link = _link(0)
    s = mtia.current_stream(0)
    x = mtia.arange(4, device=0)

    def break_writer(session: Any) -> None:
        def broken(marks: Any) -> None:
            raise RuntimeError("the writer broke")

        session._when_flushed = broken  # the writer calls it after sending a read's bytes

    _on_session(s, break_writer)
    with pytest.raises(mtia.DeviceFailedError, match=r"mtia:0 failed: .*could not send a reply and ended the session "
                       r"\(its reply writer stopped: RuntimeError: the writer broke\)"):  # fmt: skip
        _bounded(x.numpy)
    assert link.failed is not None and link.reads == {}
    assert link.conn.key not in sessions(remote)[link.address], "the ended session kept its memory"


def _fail(message: str) -> None:
    raise ValueError(message)


def test_every_failure_reaches_the_client_after_earlier_ones_were_reported() -> None:
    """Regression: the worker numbered failures by ``id()``; once a reported failure was
    gone, a new one at the same address got its old number, which the client had
    forgotten: the failure was dropped and the wait returned as if the kernel had run
    (a copy to the host returned an uninitialised buffer)."""
    s = mtia.Stream(0)
    x = mtia.arange(4, device=0)
    s.wait_stream(mtia.current_stream(0))
    for i in range(40):
        s.launch(_fail, f"failure {i}")
        with pytest.raises(mtia.KernelError, match=f"ValueError: failure {i}$"):
            _bounded(s.synchronize)
    _bounded(s.synchronize)  # every one was reported: nothing is left to raise
    np.testing.assert_array_equal(_bounded(x.numpy), np.arange(4))
