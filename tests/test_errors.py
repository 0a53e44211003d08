"""Kernel errors flow along dependencies, are never lost, and never hang anyone."""

from __future__ import annotations

import threading
import time

import pytest
from _support import boom
from structlog.testing import capture_logs

import mtia_async.sync as mtia_sync


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
    assert ran == []
    with pytest.raises(mtia_sync.KernelError, match="upstream"):
        a.synchronize()
    b.launch(ran.append, "again")
    b.synchronize()
    assert ran == ["again"]


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


def test_kernel_failure_is_logged() -> None:
    s = mtia_sync.Stream()
    with capture_logs() as logs:
        s.launch(boom, "logged")
        with pytest.raises(mtia_sync.KernelError):
            s.synchronize()
    failed = [e for e in logs if e["event"] == "kernel_failed"]
    assert len(failed) == 1
    assert failed[0]["log_level"] == "error"
    assert failed[0]["error"] == "ValueError: logged"
    assert failed[0]["kernel"] == "boom"
