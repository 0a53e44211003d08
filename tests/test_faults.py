"""Faults that are not kernel errors: a dead worker, shutdown with waiters pending."""

from __future__ import annotations

import threading
import time

import pytest

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async._device import DeviceImpl
from mtia_async.testing import reset_runtime


def test_a_dead_worker_fails_every_pending_wait_within_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    victim = mtia_sync.Stream()
    bystander = mtia_sync.Stream()
    gate = threading.Event()
    bystander.launch(gate.wait, 5)  # holds one worker
    other = mtia_sync.Stream()
    other.wait_event(bystander.record_event())  # parked behind the bystander
    other.launch(time.sleep, 0)
    real_drain = DeviceImpl._drain

    def dying_drain(self: DeviceImpl, s: object) -> None:
        if s is victim._impl:
            raise SystemError("dispatcher killed")
        real_drain(self, s)  # type: ignore[arg-type]

    monkeypatch.setattr(DeviceImpl, "_drain", dying_drain)
    victim.launch(time.sleep, 0)
    waiter_error: list[BaseException] = []

    def wait_other() -> None:
        try:
            other.synchronize()
        except BaseException as exc:
            waiter_error.append(exc)

    t = threading.Thread(target=wait_other)
    t.start()
    deadline = time.monotonic() + 1.0
    while mtia.get_device_properties()["failed"] is False and time.monotonic() < deadline:
        time.sleep(0.005)
    assert mtia.get_device_properties()["failed"] is True
    t.join(1.0)
    assert not t.is_alive(), "a waiter hung after its device failed"
    assert len(waiter_error) == 1 and isinstance(waiter_error[0], mtia.DeviceFailedError)
    assert "dispatcher killed" in str(waiter_error[0])
    with pytest.raises(mtia.DeviceFailedError):
        victim.launch(time.sleep, 0)
    with pytest.raises(mtia.DeviceFailedError):
        mtia_sync.synchronize()
    gate.set()
    assert errors == []
    monkeypatch.undo()
    reset_runtime()
    s = mtia_sync.Stream()  # a fresh runtime works again
    s.launch(time.sleep, 0)
    s.synchronize()


def test_shutdown_fails_pending_waiters_instead_of_hanging() -> None:
    s = mtia_sync.Stream()
    s.launch(time.sleep, 0.2)
    s.launch(time.sleep, 10)  # queued: dropped at shutdown
    e = s.record_event()
    result: list[BaseException] = []

    def wait() -> None:
        try:
            e.synchronize()
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    reset_runtime(join_timeout=5)
    t.join(2)
    assert not t.is_alive()
    assert time.monotonic() - t0 < 1.0  # the running 0.2 s kernel finishes, the 10 s one never starts
    assert len(result) == 1 and isinstance(result[0], RuntimeError) and "shut down" in str(result[0])
    with pytest.raises(RuntimeError, match="shut down"):
        s.launch(time.sleep, 0)
    with pytest.raises(RuntimeError, match="shut down"):
        s.synchronize()


async def test_shutdown_with_an_async_waiter() -> None:
    s = mtia.Stream()
    s.launch(time.sleep, 0.1)
    s.launch(time.sleep, 10)
    e = s.record_event()
    closer = threading.Thread(target=reset_runtime)
    closer.start()
    with pytest.raises(RuntimeError, match="shut down"):
        await e
    closer.join(5)
    assert not closer.is_alive()
