"""Faults that are not kernel errors: a dead worker, shutdown with waiters pending."""

from __future__ import annotations

import threading
import time

import pytest

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async.testing import reset_runtime


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
