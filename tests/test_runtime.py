"""The runtime: lazy initialisation (exactly once, with its deferred calls), shutdown and
restart, fork, interpreter exit and signals, and a seeded soak of the whole runtime.
Init, fork, signal and exit scenarios run in fresh interpreters with timeouts.

Catalogue rows: F7, F8, F9, F10, F11, F12, L4, M2.
"""

from __future__ import annotations

import gc
import importlib.util
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import ROOT, Payload, join_all, run_process, run_python

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async.testing import fresh_runtime, reset_runtime, worker_threads


# --- shutdown with waiters pending ---------------------------------------------------------------
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


# --- cycles and restarts leave no threads (M2) ---------------------------------------------------
def test_M2_stream_and_event_cycles_and_runtime_restarts_leave_no_threads() -> None:
    """Also: kernels still queued at a shutdown are dropped with their arguments."""
    baseline_names = {t.name for t in threading.enumerate()}
    baseline_count = threading.active_count()
    refs: list[weakref.ref[Payload]] = []
    for _ in range(3):
        with fresh_runtime(device_count=2, workers=2):
            for i in range(1000):
                s = mtia_sync.Stream(device=i % 2)
                e = s.record_event()
                if i % 100 == 0:
                    s.launch(time.sleep, 0.001)
                    e.synchronize()
            keep = mtia.zeros(1000, device=1)
            mtia_sync.synchronize(0)
            mtia_sync.synchronize(1)
            assert len(worker_threads()) <= 4
            del keep
            gate = threading.Event()
            s.launch(gate.wait, 5)
            with s:  # each array is filled on s too, ahead of the kernel that takes it
                for _ in range(100):  # queued behind the gate when the runtime shuts down
                    payload = Payload()
                    refs.append(weakref.ref(payload))
                    s.launch(payload, mtia.zeros(10, device=s.device_index))
            del payload, s, e
            releaser = threading.Timer(0.05, gate.set)
            releaser.start()
        join_all([releaser])
        gc.collect()
        assert [r() for r in refs] == [None] * len(refs)
        assert worker_threads() == []
        assert mtia.memory_stats() == {}  # the next runtime starts from nothing
        assert threading.active_count() == baseline_count
    assert {t.name for t in threading.enumerate()} == baseline_names


def test_M2_arrays_that_outlive_their_runtime_free_quietly_and_shutdown_never_deadlocks() -> None:
    """Regression. After ``record_stream``, freeing an array whose runtime was shut down
    asked the dead stream for a marker: ``RuntimeError`` from ``__del__`` (or from the
    next runtime's ``memory_stats()``, for a block a worker dropped); and a shutdown that
    dropped a queued kernel holding such an array's last reference deadlocked (the
    finalizer ran under the stream's lock)."""
    with fresh_runtime(device_count=1, workers=2):
        s, side = mtia_sync.Stream(), mtia_sync.Stream()
        with mtia_sync.stream(s):
            kept = mtia.zeros(1000)  # outlives the runtime
            queued = mtia.zeros(1000)  # its last reference: a kernel still queued at shutdown
            dropped = mtia.zeros(1000)  # its last reference dropped on a worker thread
        for a in (kept, queued, dropped):
            a.record_stream(side)
        s.launch(np.add, dropped, 1, out=dropped)
        gate = threading.Event()
        side.launch(gate.wait, 5)
        side.wait_stream(s)  # the fill of queued comes first
        side.launch(np.add, queued, 1, out=queued)
        del queued, dropped, a
        s.synchronize()  # the worker dropped `dropped`; nothing has settled it yet
        releaser = threading.Timer(0.2, gate.set)
        releaser.start()
    join_all([releaser])
    mtia.configure(device_count=2, device_memory="1GiB", workers=2)
    del kept
    gc.collect()
    assert mtia.memory_stats() == {}  # settles the old runtime's blocks without raising
    mtia.init()
    assert mtia.memory_stats()["allocation.all.current"] == 0


# --- interpreter exit (F7) -----------------------------------------------------------------------
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


# --- signals (F8) --------------------------------------------------------------------------------
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


# --- fork (F9, F10) ------------------------------------------------------------------------------
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
    result = run_process([sys.executable, str(script)], timeout=40)
    assert result.returncode == 0, result.stderr
    assert "spawned ([1], 0)" in result.stdout  # the spawned child sees none of the parent's segments
    assert "exitcode 0" in result.stdout


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


# --- deferred calls at init (F11) ----------------------------------------------------------------
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


# --- init exactly once (F12) ---------------------------------------------------------------------
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


# --- the seeded soak (L4) ------------------------------------------------------------------------
def _load_soak() -> Any:
    path = Path(ROOT) / "benchmarks" / "soak.py"
    spec = importlib.util.spec_from_file_location("mtia_soak", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


@pytest.mark.timeout(120)
def test_L4_seeded_soak_holds_invariants_threads_tasks_and_rss() -> None:
    """The soak of ``benchmarks/soak.py``, in-process for 8 s (CI also runs it for 30 s).

    A shorter warm-up (3 s: the process's RSS settles within ~2 s of the first soak ops)
    and a checkpoint every second, so the after-warm-up rules (RSS within 5 %, constant
    thread and task counts) are applied at five checkpoints here too.
    """
    soak = _load_soak()
    lines: list[str] = []
    threads_before = threading.active_count()
    result = soak.Soak(8.0, seed=1234, report_every=1.0, warmup=3.0, out=lines.append).run()
    report = "\n".join(lines)
    assert result.ok, report
    assert len(result.checkpoints) >= 7, report
    assert result.ops > 2_000, report
    assert "soak passed" in lines[-1]
    # The soak's own threads are gone; only the runtime's workers may remain.
    assert threading.active_count() <= threads_before + 2 * mtia.get_device_properties()["workers"]


# Regression (issue 15, defect 7).
def test_fork_while_another_thread_initialises_does_not_deadlock_the_child() -> None:
    """A thread is inside init (holding the RNG defaults lock) when another thread forks."""
    result = run_python(
        """
        import os, threading
        import mtia_async.sync as mtia
        from mtia_async._random import generator
        held = threading.Event(); release = threading.Event()
        def mid_init():
            with generator._defaults_lock:  # what the init hook holds while it makes generators
                held.set(); release.wait(10)
        t = threading.Thread(target=mid_init); t.start(); held.wait(5)
        pid = os.fork()
        if pid == 0:
            mtia.manual_seed(1)
            x = mtia.randn(3).numpy()   # initialises the child's own runtime
            os._exit(0 if x.shape == (3,) else 3)
        release.set(); t.join()
        _, status = os.waitpid(pid, 0)
        print("CHILD", os.waitstatus_to_exitcode(status))
        """,
        timeout=30,
    )
    assert "CHILD 0" in result.stdout, (result.stdout, result.stderr)


# Regression (issue 15, defect 14).
def test_objects_of_a_shut_down_runtime_say_so() -> None:
    old_array = mtia_sync.zeros(4)
    old_stream = mtia_sync.Stream()
    with fresh_runtime(device_count=1):
        s = mtia_sync.Stream()
        with pytest.raises(ValueError, match="shut down"):
            s.launch(np.copyto, old_array, 1.0)
        new = mtia_sync.zeros(4)
        with pytest.raises(ValueError, match="shut down"):
            new.record_stream(old_stream)
        with pytest.raises(ValueError, match="shut down"):
            with mtia_sync.stream(old_stream):
                pass
        with pytest.raises(ValueError, match="shut down"):
            mtia_sync.set_stream(old_stream)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_timed_out_child_leaves_no_orphan_behind(tmp_path: Path) -> None:
    """The test harness itself: a hung forked grandchild must not outlive its test (one did, once)."""
    pid_file = tmp_path / "pid"
    with pytest.raises(subprocess.TimeoutExpired):
        run_python(
            f"""
            import os, time
            pid = os.fork()
            if pid == 0:
                time.sleep(120)
                os._exit(0)
            open({str(pid_file)!r}, "w").write(str(pid))
            time.sleep(120)
            """,
            timeout=3,
        )
    grandchild = int(pid_file.read_text())

    def gone() -> bool:
        try:
            with open(f"/proc/{grandchild}/status") as f:
                return "State:\tZ" in f.read()  # killed, waiting for init to reap it
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 10
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone()
