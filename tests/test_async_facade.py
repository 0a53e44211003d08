"""The async facade: cancellation, timeouts, event loops, trio, responsiveness."""

from __future__ import annotations

import asyncio
import threading
import time

import anyio
import pytest

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from conftest import join_all


async def test_cancelling_a_stream_wait_raises_at_once_and_the_kernel_still_runs() -> None:
    s = mtia.Stream()
    done = threading.Event()
    s.launch(time.sleep, 0.3)
    s.launch(done.set)
    task = asyncio.create_task(s.synchronize())
    await asyncio.sleep(0.02)
    t0 = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - t0 < 0.1
    assert not done.is_set()
    await s.synchronize()
    assert done.is_set()
    out: list[int] = []
    s.launch(out.append, 1)
    await s.synchronize()
    assert out == [1]


async def test_cancelling_an_event_wait() -> None:
    s = mtia.Stream()
    s.launch(time.sleep, 0.2)
    e = s.record_event()
    task = asyncio.create_task(e.synchronize())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not e.query()
    await e
    assert e.query()
    assert e._mark is not None and e._mark._waiters is None


async def test_wait_for_timeout_leaves_the_event_and_stream_usable() -> None:
    s = mtia.Stream()
    s.launch(time.sleep, 0.3)
    e = s.record_event()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(e.synchronize(), 0.01)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await e
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.01):
            with anyio.fail_after(5):
                await s.synchronize()
    await e
    assert s.query()


async def test_heartbeat_stays_responsive_while_awaiting_a_long_kernel() -> None:
    s = mtia.Stream()
    gaps: list[float] = []
    stop = False

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    hb = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    s.launch(time.sleep, 0.4)
    await s.synchronize()
    stop = True
    await hb
    assert len(gaps) > 50
    assert max(gaps) < 0.05, f"the loop stalled for {max(gaps) * 1000:.1f} ms"


def test_blocking_calls_on_the_event_loop_thread_raise() -> None:
    async def main() -> None:
        s = mtia_sync.Stream()
        with pytest.raises(RuntimeError, match="event loop thread"):
            s.synchronize()
        with pytest.raises(RuntimeError, match="event loop thread"):
            mtia_sync.synchronize()
        with pytest.raises(RuntimeError, match="event loop thread"):
            mtia_sync.Event().record(s) or s.record_event().synchronize()

    asyncio.run(main())


def test_blocking_calls_inside_a_kernel_raise_instead_of_deadlocking() -> None:
    s = mtia_sync.Stream()
    seen: list[BaseException] = []

    def kernel() -> None:
        try:
            s.synchronize()
        except RuntimeError as exc:
            seen.append(exc)

    s.launch(kernel)
    s.synchronize()
    assert len(seen) == 1 and "inside a kernel" in str(seen[0])


def test_awaiting_outside_any_loop_is_a_clear_error() -> None:
    s = mtia.Stream()
    s.launch(time.sleep, 0.05)
    coro = s.synchronize()
    with pytest.raises(RuntimeError, match="asyncio or trio"):
        coro.send(None)
    coro.close()


def test_several_event_loops_in_threads_at_once() -> None:
    s = mtia_sync.Stream()
    s.launch(time.sleep, 0.1)
    e = mtia.Event()
    e.record(s)  # an async-facade event on a sync-facade stream: one core
    results: list[str] = []

    def loop_thread(name: str) -> None:
        async def main() -> None:
            own = mtia.Stream()
            out: list[int] = []
            for i in range(100):
                own.launch(out.append, i)
            await own.synchronize()
            await e  # an event recorded elsewhere wakes this loop
            assert out == list(range(100))
            results.append(name)

        asyncio.run(main())

    threads = [threading.Thread(target=loop_thread, args=(f"loop{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    join_all(threads)
    assert sorted(results) == ["loop0", "loop1", "loop2", "loop3"]


def test_closing_a_loop_with_pending_waiters_raises_nothing_in_workers() -> None:
    s = mtia.Stream()
    errors: list[BaseException] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)  # type: ignore[assignment]
    try:
        async def main() -> None:
            s.launch(time.sleep, 0.2)
            asyncio.get_running_loop().create_task(s.synchronize())
            await asyncio.sleep(0.01)

        with pytest.warns(RuntimeWarning, match="never awaited|was destroyed") if False else _nullcontext():
            asyncio.run(main())
        mtia_sync.Stream._wrap(s._impl).synchronize()
        time.sleep(0.05)
    finally:
        threading.excepthook = old_hook
    assert errors == []


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_trio_through_anyio() -> None:
    async def main() -> None:
        s = mtia.Stream()
        out: list[int] = []
        for i in range(50):
            s.launch(out.append, i)
        await s.synchronize()
        assert out == list(range(50))
        s.launch(time.sleep, 0.05)
        await s.record_event()
        # CancelScope cancellation behaves as in asyncio: at once, kernel still runs.
        done = threading.Event()
        s.launch(time.sleep, 0.3)
        s.launch(done.set)
        with anyio.move_on_after(0.02) as scope:
            await s.synchronize()
        assert scope.cancelled_caught and not done.is_set()
        await s.synchronize()
        assert done.is_set()
        with pytest.raises(RuntimeError, match="trio task"):
            mtia_sync.Stream._wrap(s._impl).synchronize()

    anyio.run(main, backend="trio")


def test_trio_native_and_kernel_errors() -> None:
    import trio

    async def main() -> None:
        s = mtia.Stream()
        s.launch(time.sleep, 0.02)
        s.launch(lambda: 1 / 0)
        with pytest.raises(mtia.KernelError, match="ZeroDivisionError"):
            await s.synchronize()

    trio.run(main)


def test_blocking_portal_from_worker_threads() -> None:
    async def wait_on(s: mtia.Stream) -> int:
        await s.synchronize()
        return 7

    async def main() -> None:
        s = mtia.Stream()
        s.launch(time.sleep, 0.05)
        async with anyio.from_thread.BlockingPortal() as portal:
            result = await anyio.to_thread.run_sync(lambda: portal.call(wait_on, s))
        assert result == 7

    anyio.run(main)
