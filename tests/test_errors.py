"""Kernel errors flow along dependencies, are never lost, and never hang anyone; a dead
worker fails its device and every waiter.

Catalogue rows: F1, F2, M4. M4's other parts are in test_stream.py and test_wait.py.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import traceback
import weakref

import numpy as np
import pytest
from _support import boom, join_all, wait_until

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async._core.device import DeviceImpl
from mtia_async.testing import reset_runtime


def test_failure_on_a_drained_stream_is_raised_by_the_next_wait() -> None:
    s = mtia_sync.Stream()
    s.launch(boom)
    deadline = time.monotonic() + 5
    while not s.query() and time.monotonic() < deadline:
        time.sleep(0.001)
    with pytest.raises(mtia_sync.KernelError):
        s.synchronize()
    s.synchronize()


def test_events_recorded_after_the_failure_raise_and_earlier_ones_do_not() -> None:
    s = mtia_sync.Stream()
    before = s.record_event()
    s.launch(boom)
    after = s.record_event()
    before.synchronize()
    with pytest.raises(mtia_sync.KernelError):
        after.synchronize()
    with pytest.raises(mtia_sync.KernelError):
        after.synchronize()  # an event's record stays failed
    assert after.query()
    s.synchronize()  # reported by the event wait


def test_failure_flows_along_wait_event_to_another_stream() -> None:
    a, b = mtia_sync.Stream(), mtia_sync.Stream()
    ran: list[str] = []
    a.launch(time.sleep, 0.05)
    a.launch(boom, "upstream")
    b.wait_event(a.record_event())
    b.launch(ran.append, "b")
    with pytest.raises(mtia_sync.KernelError, match="upstream") as info:
        b.synchronize()
    assert isinstance(info.value.__cause__, ValueError)
    assert ran == ["b"]  # b's kernel ran; b's wait still reports the upstream failure
    with pytest.raises(mtia_sync.KernelError, match="upstream"):
        a.synchronize()
    b.launch(ran.append, "again")
    b.synchronize()
    assert ran == ["b", "again"]


def test_device_synchronize_reports_every_failed_stream() -> None:
    a, b, ok = mtia_sync.Stream(), mtia_sync.Stream(), mtia_sync.Stream()
    a.launch(boom, "first")
    b.launch(boom, "second")
    ok.launch(time.sleep, 0.01)
    with pytest.raises(mtia_sync.KernelError, match="2 kernels failed") as info:
        mtia_sync.synchronize()
    group = info.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert sorted(str(e) for e in group.exceptions) == ["first", "second"]
    mtia_sync.synchronize()
    a.synchronize()
    b.synchronize()


def test_failure_of_a_dropped_stream_is_not_lost() -> None:
    s = mtia_sync.Stream()
    s.launch(boom, "orphan")
    del s
    with pytest.raises(mtia_sync.KernelError, match="orphan"):
        mtia_sync.synchronize()


def test_concurrent_waiters_all_see_the_failure() -> None:
    s = mtia_sync.Stream()
    gate = threading.Event()
    s.launch(gate.wait, 5)
    s.launch(boom)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            s.synchronize()
        except mtia_sync.KernelError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wait) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(errors) == 4


def test_base_exception_in_a_kernel_is_a_kernel_error_not_a_dead_worker() -> None:
    s = mtia_sync.Stream()

    def exits() -> None:
        raise SystemExit(3)

    s.launch(exits)
    with pytest.raises(mtia_sync.KernelError, match="SystemExit") as info:
        s.synchronize()
    assert isinstance(info.value.__cause__, SystemExit)
    out: list[int] = []
    s.launch(out.append, 1)
    s.synchronize()
    assert out == [1]


def test_kernel_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    s = mtia_sync.Stream()
    s.launch(boom, "logged")
    with pytest.raises(mtia_sync.KernelError):
        s.synchronize()
    failed = [r for r in caplog.records if getattr(r, "event", None) == "kernel_failed"]
    assert len(failed) == 1
    assert (failed[0].name, failed[0].levelname) == ("mtia_async", "ERROR")
    assert failed[0].error == "ValueError: logged"  # type: ignore[attr-defined]
    assert failed[0].kernel == "boom"  # type: ignore[attr-defined]


# --- a kernel error reaches its awaiter (F1) -----------------------------------------------------
@pytest.mark.parametrize("wait", ["stream", "event", "device"])
async def test_F1_kernel_error_reaches_its_awaiter_chained_and_other_streams_complete(wait: str) -> None:
    """The failing stream continues once the failure is reported (the documented choice)."""
    s, other = mtia.Stream(), mtia.Stream()
    buf = mtia.zeros(4096, dtype=np.int32)  # the failing kernel gets a buffer argument
    await mtia.synchronize()
    stats_before = mtia.memory_stats()
    ran: list[int] = []
    others: list[int] = []
    s.launch(ran.append, 1)
    before = s.record_event()
    s.launch(boom, buf)
    s.launch(ran.append, 2)  # behind the failure: runs (a failure affects only its kernel)
    after = s.record_event()
    for i in range(100):
        other.launch(others.append, i)
    with pytest.raises(mtia.KernelError, match="ValueError: boom") as info:
        if wait == "stream":
            await s.synchronize()
        elif wait == "event":
            await after
        else:
            await mtia.synchronize()
    cause = info.value.__cause__
    assert type(cause) is ValueError and str(cause) == "boom"  # the same type, chained
    assert any(frame.name == "boom" for frame in traceback.extract_tb(cause.__traceback__))
    await before  # recorded before the failing kernel: completes normally
    await other.synchronize()
    assert others == list(range(100))
    assert ran == [1, 2]
    gc.collect()
    assert mtia.memory_stats() == stats_before  # the failure moved no allocator statistic
    # Reported once: the stream runs work launched from now on, and never hangs.
    s.launch(ran.append, 3)
    async with asyncio.timeout(10):
        await s.synchronize()
        await s.synchronize()
    assert ran == [1, 2, 3]
    with pytest.raises(mtia.KernelError):
        await after  # an event's record stays failed
    del buf


# --- a dead worker (F2) --------------------------------------------------------------------------
class WorkerKilled(BaseException):
    """Not an Exception: what killing a thread from outside looks like."""


@pytest.mark.parametrize("injected", [SystemError("dispatcher killed"), WorkerKilled("dispatcher killed")])
def test_F2_dead_worker_fails_every_pending_awaiter_within_1s(
    monkeypatch: pytest.MonkeyPatch, injected: BaseException
) -> None:
    hooked: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: hooked.append(args.exc_value))
    victim = mtia_sync.Stream()
    bystander = mtia_sync.Stream()
    gate = threading.Event()
    bystander.launch(gate.wait, 5)  # holds one worker
    other = mtia_sync.Stream()
    other.wait_event(bystander.record_event())  # parked behind the bystander
    other.launch(time.sleep, 0)
    pending = mtia.Event()  # an async-facade event on a sync-facade stream: one core
    pending.record(other)
    real_drain = DeviceImpl._drain

    def dying_drain(self: DeviceImpl, s: object) -> None:
        if s is victim._impl:
            raise injected
        real_drain(self, s)  # type: ignore[arg-type]

    monkeypatch.setattr(DeviceImpl, "_drain", dying_drain)
    errors: dict[str, BaseException] = {}

    def wait_blocking() -> None:
        try:
            other.synchronize()
        except BaseException as exc:
            errors["thread"] = exc

    def wait_async() -> None:
        async def main() -> None:
            try:
                await pending
            except BaseException as exc:
                errors["task"] = exc

        asyncio.run(main())

    waiters = [threading.Thread(target=wait_blocking), threading.Thread(target=wait_async)]
    for t in waiters:
        t.start()
    time.sleep(0.02)
    t0 = time.monotonic()
    victim.launch(time.sleep, 0)
    wait_until(lambda: mtia.get_device_properties()["failed"], timeout=1.0, what="the device failing")
    join_all(waiters, timeout=max(0.05, 1.0 - (time.monotonic() - t0)))
    for where in ("thread", "task"):
        assert isinstance(errors.get(where), mtia.DeviceFailedError), errors
        assert "dispatcher killed" in str(errors[where])
    with pytest.raises(mtia.DeviceFailedError):
        victim.launch(time.sleep, 0)
    with pytest.raises(mtia.DeviceFailedError):
        mtia_sync.synchronize()
    gate.set()
    assert hooked == []  # reported to the waiters, not left to threading.excepthook
    # A failed device keeps no worker: once their kernels end, they all exit by themselves.
    join_all([t for t in threading.enumerate() if t.name.startswith("mtia_async-dev0-")], timeout=5)
    monkeypatch.undo()
    reset_runtime()
    s = mtia_sync.Stream()  # a fresh runtime works again
    s.launch(time.sleep, 0)
    s.synchronize()


# --- a failed kernel's arguments (M4) ------------------------------------------------------------
def test_M4_failed_kernel_arguments_die_once_reported() -> None:
    s = mtia_sync.Stream()
    arr = np.ones(10)
    ref = weakref.ref(arr)
    s.launch(boom, arr)
    del arr
    with pytest.raises(mtia_sync.KernelError):
        s.synchronize()
    mtia_sync.synchronize()
    s.synchronize()
    gc.collect()
    # The failure keeps the traceback (and so the frame's arguments) until it is
    # reported; once reported and the error object dropped, nothing holds it.
    assert ref() is None


# Regression (issue 15, defect 1).
async def test_a_failure_reported_by_one_task_never_voids_another_tasks_work() -> None:
    gate = threading.Event()
    results: dict[str, object] = {}

    async def task_a() -> None:
        mtia.launch(gate.wait, 5)
        mtia.launch(lambda: 1 / 0)
        await asyncio.sleep(0.05)
        gate.set()
        try:
            await mtia.current_stream().synchronize()
        except mtia.KernelError as exc:
            results["a"] = exc

    async def task_b() -> None:
        x = mtia.asarray(np.arange(5.0))
        y = x * 10
        await asyncio.sleep(0.2)
        try:
            results["b"] = await y.to_host()
        except mtia.KernelError as exc:
            results["b"] = exc

    await asyncio.gather(task_a(), task_b())
    assert isinstance(results["a"], mtia.KernelError)
    b = results["b"]
    assert not isinstance(b, BaseException), b
    np.testing.assert_array_equal(b, np.arange(5.0) * 10)


# Regression (issue 15, defect 1).
def test_a_failure_reported_by_one_thread_never_voids_another_threads_work() -> None:
    gate = threading.Event()
    queued = threading.Event()
    out: dict[str, object] = {}

    def thread_a() -> None:
        mtia_sync.launch(gate.wait, 5)
        mtia_sync.launch(boom)
        queued.set()
        time.sleep(0.1)
        gate.set()
        try:
            mtia_sync.current_stream().synchronize()
        except mtia_sync.KernelError as exc:
            out["a"] = exc

    def thread_b() -> None:
        queued.wait(5)
        done: list[int] = []
        mtia_sync.launch(done.append, 1)  # queued behind A's failing kernel on the shared default stream
        time.sleep(0.3)  # A reports and clears meanwhile
        mtia_sync.current_stream().synchronize()
        out["b"] = done

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert isinstance(out["a"], mtia_sync.KernelError)
    assert out["b"] == [1]


class NastyError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception raises")


class NastyName:
    def __getattribute__(self, name: str) -> object:
        if name in ("__qualname__", "__name__"):
            raise RuntimeError("no name for you")
        return object.__getattribute__(self, name)

    def __call__(self) -> None:
        raise ValueError("nasty kernel")


# Regression (issue 15, defect 9).
def test_hostile_exceptions_and_kernels_fail_their_stream_not_the_device() -> None:
    s = mtia_sync.Stream()

    def raises_nasty() -> None:
        raise NastyError()

    s.launch(raises_nasty)
    with pytest.raises(mtia_sync.KernelError):
        s.synchronize()
    s.launch(NastyName())
    with pytest.raises(mtia_sync.KernelError, match="nasty kernel"):
        s.synchronize()
    assert mtia_sync.get_device_properties()["failed"] is False
    done: list[int] = []
    s.launch(done.append, 1)
    s.synchronize()
    assert done == [1]


# Regression (issue 15, smaller defects).
def test_a_kernel_returning_a_coroutine_fails_with_a_clear_error() -> None:
    async def coro() -> None:
        pass

    s = mtia_sync.Stream()
    s.launch(lambda: coro())
    with pytest.raises(mtia_sync.KernelError, match="coroutine"):
        s.synchronize()
