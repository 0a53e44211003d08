"""Lifecycle in fresh interpreters: environment, fork, exit, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT, run_python


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MTIA_ASYNC_DEVICE_COUNT", "-1"),
        ("MTIA_ASYNC_DEVICE_COUNT", "two"),
        ("MTIA_ASYNC_DEVICE_COUNT", "100000"),
        ("MTIA_ASYNC_DEVICE_MEMORY", "lots"),
        ("MTIA_ASYNC_DEVICE_MEMORY", "8XB"),
        ("MTIA_ASYNC_DEVICE_MEMORY", "0"),
        ("MTIA_ASYNC_DEVICE_MEMORY", "999999TiB"),
        ("MTIA_ASYNC_WORKERS", "0"),
        ("MTIA_ASYNC_WORKERS", "1.5"),
        ("MTIA_ASYNC_WORKERS", "x" * 100_000),  # the kernel caps one env string at 128 KiB
    ],
    ids=lambda v: v if len(v) < 30 else f"{len(v)}-char-string",
)
def test_bad_env_var_never_breaks_import_and_init_names_it(var: str, value: str) -> None:
    result = run_python(
        """
        import mtia_async
        try:
            mtia_async.init()
        except ValueError as exc:
            print("ValueError:", str(exc)[:300])
        else:
            print("no error")
        print("initialized", mtia_async.is_initialized())
        """,
        env={var: value},
    )
    assert result.returncode == 0, result.stderr
    assert f"ValueError: {var}=" in result.stdout
    assert "initialized False" in result.stdout
    assert len(result.stdout) < 2000  # a 1 MB value is not echoed back


def test_env_vars_configure_the_runtime_and_empty_means_default() -> None:
    result = run_python(
        """
        import mtia_async as m
        print(m.device_count(), m.get_device_properties(2)["total_memory"], m.get_device_properties()["workers"])
        """,
        env={"MTIA_ASYNC_DEVICE_COUNT": "3", "MTIA_ASYNC_DEVICE_MEMORY": "512MiB", "MTIA_ASYNC_WORKERS": ""},
    )
    assert result.returncode == 0, result.stderr
    count, memory, workers = result.stdout.split()
    assert (count, memory) == ("3", str(512 << 20))
    assert int(workers) == max(2, os.cpu_count() or 2)


def test_fork_after_init_raises_clearly_in_the_child() -> None:
    result = run_python(
        """
        import os, time, threading
        import mtia_async.sync as m
        s = m.Stream()
        gate = threading.Event()
        s.launch(gate.wait, 2)          # a worker is busy mid-kernel at fork time
        pid = os.fork()
        if pid == 0:
            codes = []
            for call in (m.current_stream, m.synchronize, lambda: s.launch(print), s.synchronize, m.init):
                try:
                    call()
                    codes.append("ok")
                except RuntimeError as exc:
                    codes.append("spawn" if "'spawn' start method" in str(exc) else repr(exc))
            print("child", codes, m.is_initialized(), flush=True)
            os._exit(0)
        gate.set()
        _, status = os.waitpid(pid, 0)
        s.synchronize()
        print("parent ok", status)
        """,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert "child ['spawn', 'spawn', 'spawn', 'spawn', 'spawn'] False" in result.stdout
    assert "parent ok 0" in result.stdout


def test_fork_before_init_and_spawn_work(tmp_path: object) -> None:
    import pathlib

    script = pathlib.Path(str(tmp_path)) / "spawn_check.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, multiprocessing as mp
            sys.path.insert(0, %r)
            import mtia_async.sync as m

            def child(q):
                s = m.Stream()
                out = []
                s.launch(out.append, 1)
                s.synchronize()
                q.put(out)

            if __name__ == "__main__":
                pid = os.fork()
                if pid == 0:
                    s = m.Stream(); out = []
                    s.launch(out.append, 2); s.synchronize()
                    os._exit(0 if out == [2] else 1)
                assert os.waitpid(pid, 0)[1] == 0
                m.init()
                ctx = mp.get_context("spawn")
                q = ctx.Queue()
                p = ctx.Process(target=child, args=(q,))
                p.start()
                print("spawned", q.get(timeout=20))
                p.join(20)
            """
            % ROOT
        )
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=40)
    assert result.returncode == 0, result.stderr
    assert "spawned [1]" in result.stdout


@pytest.mark.parametrize(
    ("ending", "code"),
    [("pass", 0), ("import sys; sys.exit(0)", 0), ("raise SystemError('uncaught')", 1)],
)
def test_exit_with_queued_long_kernels_never_hangs(ending: str, code: int) -> None:
    t0 = time.monotonic()
    result = run_python(
        f"""
        import time, asyncio
        import mtia_async as m
        streams = [m.Stream() for _ in range(4)]
        for s in streams:
            for _ in range(100):
                s.launch(time.sleep, 1.0)
        {ending}
        """,
        timeout=10,
    )
    assert result.returncode == code, result.stderr
    assert "Fatal Python error" not in result.stderr
    assert time.monotonic() - t0 < 10


def test_exit_from_inside_asyncio_run_with_pending_waiters() -> None:
    result = run_python(
        """
        import asyncio, time
        import mtia_async as m

        async def main():
            s = m.Stream()
            s.launch(time.sleep, 5)
            asyncio.get_running_loop().create_task(s.synchronize())
            await asyncio.sleep(0.05)

        asyncio.run(main())
        print("done")
        """,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
    assert "Traceback" not in result.stderr


def test_sigint_during_blocking_synchronize() -> None:
    code = """
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
""" % ROOT
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert time.monotonic() - t0 < 1.5
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    assert "interrupted" in out
    again = run_python("import mtia_async.sync as m; s = m.Stream(); s.launch(print, 'ok'); s.synchronize()")
    assert again.returncode == 0 and "ok" in again.stdout


def test_deferred_call_reentering_init_does_not_deadlock() -> None:
    result = run_python(
        """
        import mtia_async as m
        from mtia_async._runtime import queue_call
        seen = []
        queue_call(lambda rt: seen.append(m.current_stream().stream_id))
        m.init()
        print("seen", seen, m.is_initialized())
        """,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert "seen [0] True" in result.stdout
