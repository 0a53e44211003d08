"""The current device and stream, per thread and per task: a context never leaks into
another thread or task, and the previous value is restored after normal exit and after an
exception.

Catalogue rows: C5.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from _support import join_all

import mtia_async as mtia
import mtia_async.sync as mtia_sync


async def test_C5_stream_context_in_one_task_never_changes_another_tasks() -> None:
    s1, s2 = mtia.Stream(), mtia.Stream()
    inside = asyncio.Event()
    release = asyncio.Event()
    seen: dict[str, mtia.Stream] = {}

    async def a() -> None:
        with pytest.raises(KeyError):
            with mtia.stream(s1):
                inside.set()
                await release.wait()
                seen["a"] = mtia.current_stream()
                raise KeyError("boom")
        seen["a_after"] = mtia.current_stream()

    async def b() -> None:
        await inside.wait()
        seen["b"] = mtia.current_stream()
        with mtia.stream(s2):
            seen["b_inner"] = mtia.current_stream()
            release.set()
            await asyncio.sleep(0)
        seen["b_after"] = mtia.current_stream()

    await asyncio.gather(a(), b())
    assert seen["a"] == s1
    assert seen["b"] == mtia.default_stream()
    assert seen["b_inner"] == s2
    assert seen["a_after"] == seen["b_after"] == mtia.default_stream()


def test_C5_stream_and_device_contexts_in_one_thread_never_leak_into_another() -> None:
    s = mtia_sync.Stream(device=1)
    entered = threading.Barrier(2, timeout=5)
    read = threading.Barrier(2, timeout=5)
    seen: dict[str, Any] = {}

    def thread_a() -> None:
        try:
            with mtia_sync.device(1), mtia_sync.stream(s):
                entered.wait()
                read.wait()
                seen["a_inside"] = (mtia_sync.current_device(), mtia_sync.current_stream())
                raise KeyError("boom")
        except KeyError:
            seen["a_after"] = (mtia_sync.current_device(), mtia_sync.current_stream(), mtia_sync.current_stream(1))

    def thread_b() -> None:
        entered.wait()  # A is inside its contexts now
        seen["b"] = (mtia_sync.current_device(), mtia_sync.current_stream(), mtia_sync.current_stream(1))
        read.wait()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    join_all(threads)
    defaults = (0, mtia_sync.default_stream(0), mtia_sync.default_stream(1))
    assert seen["b"] == defaults
    assert seen["a_inside"] == (1, s)
    assert seen["a_after"] == defaults


def test_C5_new_threads_start_from_the_defaults() -> None:
    s = mtia_sync.Stream(device=1)
    seen: dict[str, object] = {}
    mtia_sync.set_device(1)
    mtia_sync.set_stream(s)

    def other() -> None:
        seen["device"] = mtia_sync.current_device()
        seen["stream"] = mtia_sync.current_stream()

    t = threading.Thread(target=other)
    t.start()
    join_all([t])
    assert seen == {"device": 0, "stream": mtia_sync.default_stream(0)}
    assert mtia_sync.current_device() == 1
    assert mtia_sync.current_stream() == s


def test_C5_stream_context_restores_after_an_exception_and_selects_the_device() -> None:
    s = mtia_sync.Stream(device=1)
    with pytest.raises(KeyError):
        with mtia_sync.stream(s) as entered:
            assert entered is s
            assert mtia_sync.current_device() == 1
            assert mtia_sync.current_stream() == s
            raise KeyError("boom")
    assert mtia_sync.current_device() == 0
    assert mtia_sync.current_stream(1) == mtia_sync.default_stream(1)
    with mtia_sync.stream(None):
        assert mtia_sync.current_stream() == mtia_sync.default_stream()
    ctx = mtia_sync.StreamContext(s)
    with ctx:
        with ctx:
            assert mtia_sync.current_stream() == s
        assert mtia_sync.current_stream() == s
    assert mtia_sync.current_stream() == mtia_sync.default_stream()
    with pytest.raises(ZeroDivisionError):
        with mtia_sync.device(1):
            1 / 0
    assert mtia_sync.current_device() == 0
