"""torch habits that map: ``with s:`` on a Stream, ``mtia_async.memory`` as a submodule,
``python -m mtia_async --version``, and no traceback when stdout's reader goes away."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest

import mtia_async as mtia
import mtia_async.memory
import mtia_async.sync as mtia_sync
from _support import ROOT, run_module, run_python
from mtia_async.testing import fresh_runtime


# --- with s: ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("facade", [mtia, mtia_sync], ids=["async", "sync"])
def test_with_stream_makes_it_current_and_restores(facade: Any) -> None:
    m = facade
    s = m.Stream(device=1)
    before = m.current_stream()
    assert m.current_device() == 0
    with s as entered:
        assert entered is s
        assert m.current_device() == 1  # its device too, as torch
        assert m.current_stream() == s
        inner = m.Stream(device=1)
        with inner:
            assert m.current_stream() == inner
            out = mtia.ones(3) * 2  # operators enqueue on the current stream
        assert m.current_stream() == s
        assert out.device == 1
    assert m.current_stream() == before and m.current_device() == 0
    with pytest.raises(KeyError):
        with s:
            raise KeyError("inside")
    assert m.current_stream() == before  # restored on an exception too


async def test_with_stream_is_per_task() -> None:
    streams = [mtia.Stream() for _ in range(8)]
    seen: list[bool] = []
    gate = asyncio.Event()

    async def task(s: mtia.Stream) -> None:
        with s:
            await gate.wait()  # every task is inside its own block at once
            seen.append(mtia.current_stream() == s)
        seen.append(mtia.current_stream() == mtia.default_stream())

    tasks = [asyncio.create_task(task(s)) for s in streams]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(*tasks)
    assert seen == [True] * 16


def test_with_stream_of_a_shut_down_runtime_raises() -> None:
    s = mtia_sync.Stream()
    with fresh_runtime(device_count=1):
        with pytest.raises(ValueError, match="with-block"):
            with s:
                pass
        assert mtia_sync.current_stream().stream_id == 0


def test_exit_without_enter_raises() -> None:
    with pytest.raises(RuntimeError, match="without a matching __enter__"):
        mtia_sync.Stream().__exit__(None, None, None)


# --- mtia_async.memory -----------------------------------------------------------------------------
def test_memory_is_a_submodule_of_both_facades() -> None:
    mem = mtia_async.memory
    assert mtia.memory is mem and mtia_sync.memory is mem
    assert list(mem.__all__) == sorted(mem.__all__)
    for name in mem.__all__:
        assert getattr(mem, name) is getattr(mtia, name) is getattr(mtia_sync, name), name
    assert set(mem.__all__) >= {"memory_stats", "memory_allocated", "max_memory_allocated",
                                "reset_peak_memory_stats"}  # torch.mtia.memory's __all__ (2.13)
    # torch's private spellings, for memory-debugging scripts
    assert mem._record_memory_history is mem.record_memory_history
    assert mem._snapshot is mem.snapshot and mem._dump_snapshot is mem.dump_snapshot
    a = mtia.zeros(1024)
    assert mem.memory_allocated() == 4096
    assert "Allocated memory" in mem.memory_summary(abbreviated=True)
    del a


def test_memory_submodule_without_importing_it() -> None:
    result = run_python(
        """
        import mtia_async.sync as mtia
        x = mtia.zeros(10)
        print(mtia.memory.memory_allocated(), mtia.memory.__name__)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["512", "mtia_async.memory"]


# --- the command line ------------------------------------------------------------------------------
def test_version_flag() -> None:
    result = run_module(["--version"], timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mtia_async {mtia.__version__}\n"


def test_a_closed_stdout_ends_the_command_quietly() -> None:
    """``python -m mtia_async info | head``: the reader is gone before we write."""
    read, write = os.pipe()
    os.close(read)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTIA_ASYNC_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    try:
        result = subprocess.run([sys.executable, "-m", "mtia_async", "info"], stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=60, env=env, cwd=ROOT)
    finally:
        os.close(write)
    assert result.stderr == ""  # no BrokenPipeError traceback
    assert result.returncode == 1  # EPIPE, as Python's documentation advises


def test_a_reader_that_stops_early_sees_no_traceback() -> None:
    script = f"cd {ROOT} && {sys.executable} -m mtia_async info | head -n 1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    assert result.stdout.count("\n") == 1
