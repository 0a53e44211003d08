"""Nothing leaks: kernel arguments, events, threads, tasks, loops."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import numpy as np

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async.testing import fresh_runtime, worker_threads


class Payload:
    def __call__(self, *args: object) -> None:
        pass


def test_kernel_arguments_closures_and_events_die_after_completion() -> None:
    s = mtia_sync.Stream()
    arr = np.ones(10)
    kernel = Payload()
    closure_target = Payload()
    e = mtia_sync.Event()
    refs = [weakref.ref(arr), weakref.ref(kernel), weakref.ref(closure_target), weakref.ref(e)]
    s.launch(kernel, arr)
    s.launch(lambda: closure_target())
    e.record(s)
    e.synchronize()
    s.synchronize()
    del arr, kernel, closure_target, e
    gc.collect()
    assert [r() for r in refs] == [None] * 4


def test_failed_kernel_arguments_die_once_reported() -> None:
    s = mtia_sync.Stream()
    arr = np.ones(10)
    ref = weakref.ref(arr)

    def boom(a: object) -> None:
        raise ValueError("x")

    s.launch(boom, arr)
    del arr
    try:
        s.synchronize()
    except mtia_sync.KernelError:
        pass
    mtia_sync.synchronize()
    s.synchronize()
    gc.collect()
    # The failure keeps the traceback (and so the frame's arguments) until it is
    # reported; once reported and the error object dropped, nothing holds it.
    assert ref() is None


def test_streams_and_events_cycles_and_runtime_restart_leave_no_threads() -> None:
    baseline = {t.name for t in threading.enumerate()}
    for _ in range(3):
        with fresh_runtime(device_count=2, workers=2):
            for i in range(1000):
                s = mtia_sync.Stream(device=i % 2)
                e = s.record_event()
                if i % 100 == 0:
                    e.synchronize()
            mtia_sync.synchronize(0)
            mtia_sync.synchronize(1)
        assert worker_threads() == []
    assert {t.name for t in threading.enumerate()} == baseline


def test_tasks_and_the_loop_are_collected_after_asyncio_run() -> None:
    loop_ref: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> int:
        loop_ref.append(weakref.ref(asyncio.get_running_loop()))
        s = mtia.Stream()
        for i in range(100):
            s.launch(np.add, 1, i)
        await s.synchronize()
        await s.record_event()
        return len(asyncio.all_tasks())

    assert asyncio.run(main()) == 1
    gc.collect()
    assert loop_ref[0]() is None
