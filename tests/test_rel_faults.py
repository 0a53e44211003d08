"""Reliability under faults: catalogue rows F1-F13 (see docs/reliability.md).

Init, fork, signal and exit scenarios run in fresh interpreters with timeouts.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from _support import ROOT, MiB, boom, join_all, run_python, wait_until

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async.testing import check_invariants
from mtia_async._core.device import DeviceImpl
from mtia_async._core.runtime import get_runtime
from mtia_async.testing import fresh_runtime, reset_runtime

SPAWN = "'spawn' start method"


def _usage(device: int = 0) -> tuple[int, int]:
    stats = mtia.memory_stats(device)
    return stats["allocated_bytes.all.current"], stats["active_bytes.all.current"]


# --- F1 ------------------------------------------------------------------------------------------
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
    s.launch(ran.append, 2)  # behind the failure: skipped
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
    assert ran == [1]
    gc.collect()
    assert mtia.memory_stats() == stats_before  # the failure moved no allocator statistic
    # Reported once: the stream runs work launched from now on, and never hangs.
    s.launch(ran.append, 3)
    async with asyncio.timeout(10):
        await s.synchronize()
        await s.synchronize()
    assert ran == [1, 3]
    with pytest.raises(mtia.KernelError):
        await after  # an event's record stays failed
    del buf


# --- F2 ------------------------------------------------------------------------------------------
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


# --- F3 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("wait", ["stream.synchronize", "event.synchronize", "await event"])
async def test_F3_cancelled_wait_raises_at_once_and_the_kernel_still_completes(
    wait: str, capfd: pytest.CaptureFixture[str]
) -> None:
    s = mtia.Stream()
    done = threading.Event()
    s.launch(time.sleep, 0.3)
    s.launch(done.set)
    e = s.record_event()

    async def waiter() -> None:
        if wait == "stream.synchronize":
            await s.synchronize()
        elif wait == "event.synchronize":
            await e.synchronize()
        else:
            await e

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0.02)
    t0 = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - t0 < 0.1
    assert not done.is_set() and not e.query()
    assert e._mark is not None and not e._mark._waiters  # the cancelled waiter is gone
    await s.synchronize()  # trio's "abandon": the kernel ran to completion meanwhile
    assert done.is_set() and e.query()
    out: list[int] = []
    s.launch(out.append, 1)
    await s.synchronize()
    assert out == [1]
    assert "Exception in thread" not in capfd.readouterr().err


# --- F4 ------------------------------------------------------------------------------------------
async def test_F4_cancel_while_blocked_on_a_cross_stream_event_leaks_nothing() -> None:
    producer, consumer = mtia.Stream(), mtia.Stream()
    await mtia.synchronize()
    baseline = _usage()
    gate = threading.Event()
    producer.launch(gate.wait, 5)
    consumer.wait_event(producer.record_event())

    async def work() -> np.ndarray:
        with mtia.stream(consumer):
            a = mtia.zeros(MiB, dtype=np.uint8)
            b = a + 1
            return await b.to_host()  # blocked behind the producer's event

    task = asyncio.create_task(work())
    await asyncio.sleep(0.05)
    assert _usage() > baseline  # the task's buffers exist
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    await consumer.synchronize()
    del task
    gc.collect()
    mtia.empty_cache()
    assert _usage() == baseline


async def test_F4_cancel_during_an_oom_retry_leaks_nothing() -> None:
    """The allocation waits in a thread (``asyncio.to_thread``): the task is cancelled at
    once, the abandoned allocation still completes, and its buffer is freed when dropped."""
    with fresh_runtime(device_count=1, device_memory="2MiB", workers=2):
        s, side = mtia.Stream(), mtia.Stream()
        with mtia.stream(s):
            a = mtia.empty(MiB, dtype=np.uint8)
            b = mtia.empty(MiB, dtype=np.uint8)  # the device (one 2 MiB segment) is full
        gate = threading.Event()
        side.wait_stream(s)
        side.launch(gate.wait, 5)
        a.record_stream(side)
        del a  # a pending free: it waits for the side stream
        baseline = _usage()

        def allocate() -> Any:
            with mtia.stream(s):
                return mtia.empty(MiB, dtype=np.uint8)  # OOM retry: waits for the pending free

        task = asyncio.create_task(asyncio.to_thread(allocate))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.perf_counter() - t0 < 0.1
        gate.set()
        await side.synchronize()
        del task

        def settled() -> bool:
            gc.collect()
            return mtia.memory_stats()["num_alloc_retries"] == 1 and _usage() == (MiB, MiB)

        await asyncio.to_thread(wait_until, settled, 10.0, "the abandoned allocation being freed")
        assert baseline == (MiB, 2 * MiB)  # b, and a pending
        assert mtia.memory_stats()["num_ooms"] == 0
        del b
        gc.collect()
        assert _usage() == (0, 0)


# --- F5 ------------------------------------------------------------------------------------------
async def test_F5_timeouts_raise_timeout_error_and_the_event_still_completes() -> None:
    """``asyncio.wait_for``, ``asyncio.timeout`` and anyio's ``fail_after``, also nested.

    The catalogue's "a timeout argument rejects -1 and nan" is n/a: no call of the API
    takes a timeout (they compose with the event loop's own timeouts instead), which
    the signature check below pins.
    """
    for fn in (mtia.Stream.synchronize, mtia.Event.synchronize, mtia_sync.Stream.synchronize, mtia_sync.Event.synchronize):
        assert list(inspect.signature(fn).parameters) == ["self"]
    for fn in (mtia.synchronize, mtia_sync.synchronize):
        assert list(inspect.signature(fn).parameters) == ["device"]
    s = mtia.Stream()
    s.launch(time.sleep, 1.0)
    e = s.record_event()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(e.synchronize(), 0.01)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await e
    async with asyncio.timeout(10):  # nested: only the inner one fires
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await s.synchronize()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.01):
            with anyio.fail_after(5):
                await s.synchronize()
    assert not e.query()
    await e  # the event still completes
    assert e.query() and s.query()
    assert e._mark is not None and not e._mark._waiters
    out: list[int] = []
    s.launch(out.append, 1)  # the stream stays usable
    await s.synchronize()
    assert out == [1]


# --- F6 ------------------------------------------------------------------------------------------
def test_F6_closed_loop_drops_the_wakeup_and_no_worker_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    hooked: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: hooked.append(args.exc_value))
    s = mtia_sync.Stream()
    gate = threading.Event()
    s.launch(gate.wait, 5)  # a long kernel, pending while the loops close
    e = mtia.Event()
    e.record(s)

    # (a) asyncio.run returns (it cancels the waiting task) in a thread that then exits.
    def run_and_return() -> None:
        async def main() -> None:
            asyncio.get_running_loop().create_task(mtia.Stream._wrap(s._impl).synchronize())
            await asyncio.sleep(0.01)

        asyncio.run(main())

    loop_thread = threading.Thread(target=run_and_return)
    loop_thread.start()
    join_all([loop_thread])

    # (b) a loop closed with a task still waiting: its waiter stays registered.
    loop = asyncio.new_event_loop()
    woken: list[tuple[Any, ...]] = []
    task = loop.create_task(e.synchronize())
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    monkeypatch.setattr(loop, "call_soon_threadsafe", lambda *args: woken.append(args))
    assert e._mark is not None and len(e._mark._waiters or []) == 1
    gate.set()
    s.synchronize()
    time.sleep(0.05)
    assert woken == []  # dropped, not invoked
    assert not task.done()
    assert hooked == []  # no RuntimeError('Event loop is closed') in a worker
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # it is pending on purpose
    out: list[int] = []
    s.launch(out.append, 1)
    s.synchronize()
    assert out == [1]


# --- F7 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ending", "code"),
    [("pass", 0), ("import sys; sys.exit(0)", 0), ("raise SystemError('uncaught')", 1)],
    ids=["plain-exit", "sys.exit", "uncaught-exception"],
)
def test_F7_exit_with_queued_long_kernels_ends_within_10s(ending: str, code: int) -> None:
    t0 = time.monotonic()
    result = run_python(
        f"""
        import time, asyncio
        import numpy as np
        import mtia_async as m
        streams = [m.Stream(device=0) for _ in range(4)]
        arrays = [m.zeros(1000) for _ in range(4)]
        for s, a in zip(streams, arrays):
            for _ in range(100):
                s.launch(time.sleep, 1.0)
                s.launch(np.add, a, 1, out=a)
        {ending}
        """,
        timeout=10,
    )
    assert result.returncode == code, result.stderr
    assert time.monotonic() - t0 < 10
    assert "Fatal Python error" not in result.stderr
    assert "Exception ignored" not in result.stderr
    if code == 0:
        assert result.stderr == ""
    else:
        assert result.stderr.rstrip().endswith("SystemError: uncaught")


def test_F7_exit_from_asyncio_run_with_pending_waiters_ends_cleanly() -> None:
    result = run_python(
        """
        import asyncio, time
        import mtia_async as m

        async def main():
            s = m.Stream()
            s.launch(time.sleep, 5)
            asyncio.get_running_loop().create_task(s.synchronize())
            await asyncio.to_thread(time.sleep, 0.01)   # a default executor to shut down
            await asyncio.sleep(0.05)

        asyncio.run(main())
        print("done")
        """,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
    assert result.stderr == ""


# --- F8 ------------------------------------------------------------------------------------------
def test_F8_sigint_reaches_main_thread_within_1s() -> None:
    code = textwrap.dedent(
        """
        import sys, time
        sys.path.insert(0, %r)
        import mtia_async.sync as m
        s = m.Stream()
        s.launch(time.sleep, 30)
        print("waiting", flush=True)
        try:
            s.synchronize()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
        % ROOT
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.2)  # the main thread is inside the blocking wait
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().strip()
        elapsed = time.monotonic() - t0
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert line == "interrupted", err
    assert elapsed < 1.0, f"KeyboardInterrupt took {elapsed:.2f} s"
    assert proc.returncode == 3, err
    again = run_python("import mtia_async.sync as m; s = m.Stream(); s.launch(print, 'ok'); s.synchronize()")
    assert again.returncode == 0 and again.stdout == "ok\n", again.stderr


# --- F9 ------------------------------------------------------------------------------------------
def test_F9_fork_after_init_raises_torch_error_in_the_child_within_5s() -> None:
    """Documented choice: torch.mtia's clear RuntimeError, not a fresh runtime."""
    result = run_python(
        """
        import os, time, threading
        import numpy as np
        import mtia_async as mtia
        import mtia_async.sync as m
        s = m.Stream()
        parent_block = mtia.zeros(1000)
        gate = threading.Event()
        s.launch(gate.wait, 2)          # a worker is busy mid-kernel at fork time
        pid = os.fork()
        if pid == 0:
            t0 = time.monotonic()
            calls = [m.current_stream, lambda: mtia.empty(10), m.synchronize, lambda: s.launch(print),
                     s.synchronize, m.init, mtia.snapshot, mtia.memory_stats, lambda: parent_block.numpy()]
            codes = []
            for call in calls:
                try:
                    call()
                    codes.append("ok")
                except RuntimeError as exc:
                    codes.append("spawn" if "'spawn' start method" in str(exc) else repr(exc))
            print("child", codes, m.is_initialized(), time.monotonic() - t0 < 5, flush=True)
            os._exit(0)
        gate.set()
        _, status = os.waitpid(pid, 0)
        s.synchronize()
        print("parent ok", status, mtia.memory_allocated() > 0)
        """,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert f"child {['spawn'] * 9} False True" in result.stdout
    assert "parent ok 0 True" in result.stdout


def test_F9_fork_before_init_and_spawn_both_work(tmp_path: Path) -> None:
    script = tmp_path / "spawn_check.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, multiprocessing as mp
            sys.path.insert(0, %r)
            import mtia_async as mtia
            import mtia_async.sync as m

            def child(q):
                s = m.Stream()
                out = []
                s.launch(out.append, 1)
                s.synchronize()
                q.put((out, len(mtia.snapshot()["segments"])))

            if __name__ == "__main__":
                pid = os.fork()
                if pid == 0:  # forked before init: its own runtime, seeing only its own blocks
                    s = m.Stream(); out = []
                    s.launch(out.append, 2); s.synchronize()
                    a = mtia.zeros(100)
                    ok = out == [2] and [b["address"] for g in mtia.snapshot()["segments"]
                                         for b in g["blocks"] if b["state"] == "active_allocated"] == [a.data_ptr()]
                    os._exit(0 if ok else 1)
                assert os.waitpid(pid, 0)[1] == 0
                m.init()
                keep = mtia.zeros(100)
                ctx = mp.get_context("spawn")
                q = ctx.Queue()
                p = ctx.Process(target=child, args=(q,))
                p.start()
                print("spawned", q.get(timeout=20))
                p.join(20)
                print("exitcode", p.exitcode)
            """
            % ROOT
        )
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=40)
    assert result.returncode == 0, result.stderr
    assert "spawned ([1], 0)" in result.stdout  # the spawned child sees none of the parent's segments
    assert "exitcode 0" in result.stdout


# --- F10 -----------------------------------------------------------------------------------------
def test_F10_fork_while_a_worker_holds_the_allocator_and_queue_locks_does_not_deadlock() -> None:
    result = run_python(
        """
        import gc, os, sys, threading, time
        import mtia_async as mtia
        import mtia_async.sync as m
        from mtia_async._core.runtime import get_runtime

        s = m.Stream()
        keep = mtia.zeros(1024)  # a parent array the child drops
        dev = get_runtime().devices[0]
        held, release = threading.Event(), threading.Event()

        def hold_locks():  # mid-kernel, a worker holds the allocator, stream and device locks
            with dev.allocator._lock, s._impl.lock, dev.lock:
                held.set()
                release.wait(10)

        s.launch(hold_locks)
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:
            codes = []
            for call in (m.current_stream, lambda: mtia.empty(10), m.synchronize, mtia.memory_stats,
                         mtia.snapshot, lambda: s.launch(print), lambda: keep.numpy()):
                try:
                    call()
                    codes.append("ok")
                except RuntimeError as exc:
                    codes.append("spawn" if "'spawn' start method" in str(exc) else repr(exc))
            mtia.empty_cache()
            del keep  # its free must not wait on the allocator lock the dead worker held
            gc.collect()
            print("child", codes, flush=True)
            sys.exit(0)  # a normal exit: atexit hooks and finalizers run
        release.set()
        _, status = os.waitpid(pid, 0)
        s.synchronize()
        print("parent ok", status)
        """,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert f"child {['spawn'] * 7}" in result.stdout
    assert "parent ok 0" in result.stdout
    assert "Exception ignored" not in result.stderr


# --- F11 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("queue_bad_call", "cause"),
    [
        ("mtia.set_device(99)", "out of index range"),
        (  # a valid state for device 1, which no longer exists at init
            "mtia.set_rng_state(np.zeros(16, np.uint8), device=1); mtia.configure(device_count=1)",
            "out of index range",
        ),
    ],
    ids=["set_device(99)", "set_rng_state-on-a-device-gone-at-init"],
)
def test_F11_bad_queued_call_raises_deferred_error_with_call_site_at_init(queue_bad_call: str, cause: str) -> None:
    """A *corrupt* state is refused at the call already (B9): stronger than failing lazily."""
    result = run_python(
        f"""
        import numpy as np
        import mtia_async as mtia

        def queue_bad_call():
            {queue_bad_call}

        queue_bad_call()
        assert not mtia.is_initialized()
        try:
            mtia.init()
        except mtia.DeferredMtiaCallError as exc:
            print("message:", exc)
            print("cause:", repr(exc.__cause__))
        print("initialized", mtia.is_initialized())
        """,
        env={"MTIA_ASYNC_DEVICE_COUNT": "2"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "failed lazily at initialization" in out
    assert "originally invoked at" in out and "in queue_bad_call" in out
    assert cause in out and "cause: ValueError" in out
    assert out.rstrip().endswith("initialized False")


def test_F11_corrupt_rng_state_before_init_is_refused_at_the_call() -> None:
    result = run_python(
        """
        import numpy as np
        import mtia_async as mtia
        for bad in (np.zeros(15, np.uint8), np.zeros(16, np.float32), "state"):
            try:
                mtia.set_rng_state(bad)
            except (TypeError, ValueError) as exc:
                print(type(exc).__name__)
        print("initialized", mtia.is_initialized())
        mtia.init()  # nothing was queued: init succeeds
        print("initialized", mtia.is_initialized())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ValueError", "TypeError", "TypeError", "initialized", "False", "initialized", "True"]


# --- F12 -----------------------------------------------------------------------------------------
def test_F12_first_use_from_8_threads_and_8_tasks_initialises_exactly_once() -> None:
    result = run_python(
        """
        import asyncio, threading
        import mtia_async as mtia
        import mtia_async.sync as m
        from mtia_async.testing import init_count

        barrier = threading.Barrier(9)
        seen = []

        def thread_main():
            barrier.wait(5)
            seen.append((m.current_stream().device_index, m.is_initialized()))

        async def task_main():
            await asyncio.sleep(0)
            seen.append((mtia.current_stream().device_index, mtia.is_initialized()))

        async def tasks():
            barrier.wait(5)
            await asyncio.gather(*(task_main() for _ in range(8)))

        threads = [threading.Thread(target=thread_main) for _ in range(8)]
        for t in threads:
            t.start()
        asyncio.run(tasks())
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)
        print("inits", init_count(), "seen", sorted(seen) == [(0, True)] * 16)
        """,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert "inits 1 seen True" in result.stdout


def test_F12_queued_call_reentering_lazy_init_does_not_deadlock() -> None:
    result = run_python(
        """
        import mtia_async as m
        from mtia_async._core.runtime import queue_call
        from mtia_async.testing import init_count
        seen = []
        queue_call(lambda rt: seen.append((m.current_stream().stream_id, m.get_rng_state().size)))
        m.init()
        print("seen", seen, m.is_initialized(), init_count())
        """,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert "seen [(0, 16)] True 1" in result.stdout


# --- F13 -----------------------------------------------------------------------------------------
def test_F13_oom_observers_run_outside_the_lock_and_the_device_is_usable_after() -> None:
    with fresh_runtime(device_count=1, device_memory="64MiB", workers=2):
        alloc = get_runtime().devices[0].allocator
        seen: list[tuple[int, int]] = []

        def reading_observer(device: int, size: int, allocated: int, free: int) -> None:
            stats = mtia.memory_stats()
            snap = mtia.snapshot()
            check_invariants(stats, snap)
            result: list[bool] = []
            other = threading.Thread(target=lambda: result.append(alloc.stats_and_snapshot() is not None))
            other.start()
            join_all([other], timeout=5)  # another thread gets the lock: the observer does not hold it
            assert result == [True], "the allocator lock is held while observers run"
            seen.append((stats["num_ooms"], len(snap["segments"])))

        def raising_observer(*args: int) -> None:
            raise RuntimeError("observer broke")

        mtia.attach_out_of_memory_observer(raising_observer)
        mtia.attach_out_of_memory_observer(reading_observer)
        host = np.arange(MiB, dtype=np.float32)
        x = mtia.asarray(host)  # 4 MiB in a 20 MiB segment
        hold = mtia.empty(30 * MiB, dtype=np.uint8)  # a 30 MiB segment: 50 of 64 MiB reserved
        mtia_sync.synchronize()
        before = mtia.memory_stats()
        with pytest.raises(mtia.OutOfMemoryError, match="Tried to allocate 40.00 MiB") as info:
            mtia.empty(40 * MiB, dtype=np.uint8)
        assert "total capacity of 64.00 MiB" in str(info.value)
        assert any("observer broke" in note for note in info.value.__notes__)
        assert seen == [(before["num_ooms"] + 1, 2)]  # ran once, after num_ooms was counted
        after = mtia.memory_stats()
        assert after["num_ooms"] == before["num_ooms"] + 1
        y = x * 2  # a kernel on a buffer made before the OOM
        np.testing.assert_array_equal(y.numpy(), host * 2)
        del hold
        gc.collect()
        again = mtia.empty(40 * MiB, dtype=np.uint8)  # the same request succeeds after freeing
        assert again.nbytes == 40 * MiB
        assert mtia.memory_stats()["num_ooms"] == before["num_ooms"] + 1
        del again, x, y
