"""The stream sanitizer on and off, and where it is used: environment, facades, trio, threads, graphs.

Off by default (a fresh interpreter shows it), ``MTIA_ASYNC_SANITIZE`` at each runtime
initialisation, ``enable()``/``disable()`` at any time; the async facade and trio; threads
launching at once; a graph replay is one launch with the union of the captured accesses;
copies between devices order their streams.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
from _support import fill_one, held, join_all, race, run_python

import mtia_async as amtia
import mtia_async.sync as mtia
from mtia_async import SanitizerWarning, sanitizer
from mtia_async._core.instrument import instruments


pytestmark = pytest.mark.usefixtures("sanitizer_enabled")  # tests/conftest.py


_RACE = """
    import numpy as np
    import mtia_async.sync as mtia
    from mtia_async._core.instrument import instruments
    {before}
    x = mtia.zeros(16)
    s = mtia.Stream()
    try:
        with mtia.stream(s):
            x + 1
        print("no report", mtia.sanitizer.is_enabled(), instruments.active)
    except mtia.UnsynchronizedAccessError as exc:
        print("raised", exc.kind)
    mtia.synchronize()
"""


def _run(env: dict[str, str], before: str = "") -> str:
    proc = run_python(_RACE.format(before=before), env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_off_by_default_and_then_the_instruments_stay_off() -> None:
    assert _run({}) == "no report False False"


@pytest.mark.parametrize(("value", "expected"), [("1", "raised read-after-write"), ("raise", "raised read-after-write"),
                                                 ("0", "no report False False"), ("", "no report False False")])  # fmt: skip
def test_the_environment_variable_turns_it_on_at_init(value: str, expected: str) -> None:
    assert _run({"MTIA_ASYNC_SANITIZE": value}) == expected


def test_the_environment_variable_in_warn_mode() -> None:
    proc = run_python(
        """
        import warnings
        import mtia_async.sync as mtia
        assert not mtia.sanitizer.is_enabled()  # read when the runtime initialises
        mtia.init()
        assert mtia.sanitizer.is_enabled()
        x = mtia.zeros(4)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with mtia.stream(mtia.Stream()):
                x + 1
        print([w.category.__name__ for w in caught])
        """,
        env={"MTIA_ASYNC_SANITIZE": "warn"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['SanitizerWarning']"


def test_a_bad_environment_value_never_breaks_import_and_init_names_it() -> None:
    proc = run_python(
        """
        import mtia_async.sync as mtia
        try:
            mtia.init()
        except ValueError as exc:
            print(exc)
        print(mtia.is_initialized(), mtia.sanitizer.is_enabled())
        """,
        env={"MTIA_ASYNC_SANITIZE": "yes please"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "MTIA_ASYNC_SANITIZE='yes please' is not a stream sanitizer setting; use 1 (UnsynchronizedAccessError at "
        "the launch that races), warn (SanitizerWarning instead) or 0 (off)",
        "False False",
    ]


def test_disable_lasts_until_the_next_runtime_initialises_with_the_variable_set() -> None:
    before = """
    mtia.init()
    mtia.sanitizer.disable()
    from mtia_async.testing import fresh_runtime
    with fresh_runtime():
        mtia.init()
        print("a new runtime:", mtia.sanitizer.is_enabled())
    mtia.init()
    mtia.sanitizer.disable()
    """
    assert _run({"MTIA_ASYNC_SANITIZE": "1"}, before).splitlines() == [
        "a new runtime: True",
        "no report False False",  # the same runtime as the disable()
    ]


def test_enable_checks_its_argument_and_changes_nothing_on_a_bad_one() -> None:
    with pytest.raises(TypeError, match=r"enable\(mode=...\) takes 'raise' or 'warn', got int 1"):
        sanitizer.enable(mode=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"enable\(mode='loud'\) is not a mode; use 'raise' .* or 'warn'"):
        sanitizer.enable(mode="loud")
    assert sanitizer.is_enabled()
    x = mtia.zeros(4)
    race("write-after-write", lambda: mtia.Stream().launch(fill_one, x))  # still raising
    mtia.synchronize()


def test_a_runtime_shut_down_is_not_kept_alive_by_what_the_sanitizer_saw() -> None:
    import gc
    import weakref

    from mtia_async._core.runtime import state
    from mtia_async._sanitizer import active
    from mtia_async.testing import fresh_runtime

    s = mtia.Stream()
    x = mtia.zeros(1000)
    s.wait_stream(mtia.current_stream())
    ran = threading.Event()
    s.launch(fill_one, x)
    s.launch(ran.set)
    assert ran.wait(10)
    del x  # freed with s's write unordered: a dead cell, filed under its allocator segment
    big = mtia.ones(1 << 20)  # and a live cell
    sanitizer_now = active()
    assert sanitizer_now is not None and sanitizer_now.shadow.dead and sanitizer_now.shadow.cells
    assert state.runtime is not None
    devices = [weakref.ref(d) for d in state.runtime.devices]
    del big, s
    with fresh_runtime(device_count=1):  # the old runtime shut down; the new one not initialised yet
        gc.collect()
        assert [d() for d in devices] == [None, None]  # its devices (and their memory) are gone
        assert sanitizer.is_enabled() and not sanitizer_now.shadow.cells and not sanitizer_now.shadow.dead
        y = mtia.zeros(8)  # the next runtime is checked
        race("write-after-write", lambda: mtia.Stream().launch(fill_one, y))
        mtia.synchronize()


def test_disable_and_enable_at_any_time() -> None:
    s = mtia.Stream()
    x = mtia.zeros(8)
    sanitizer.disable()
    assert not sanitizer.is_enabled() and not instruments.active
    s.launch(fill_one, x)  # not checked
    sanitizer.disable()  # a no-op
    sanitizer.enable()
    assert sanitizer.is_enabled() and instruments.active
    s.launch(fill_one, x)  # history starts now: nothing known to race with
    race("write-after-write", lambda: mtia.current_stream().launch(fill_one, x))
    mtia.synchronize()


# --- the async facade and trio -------------------------------------------------------------
async def test_async_facade_races_and_awaited_waits() -> None:
    s, t = amtia.Stream(), amtia.Stream()
    x = amtia.zeros(64)
    with amtia.stream(t):
        race("read-after-write", lambda: x + 1)
    await amtia.current_stream().synchronize()  # a completed host wait orders it
    with amtia.stream(t):
        y = x + 1
    e = t.record_event()
    await e  # awaiting an event is a host wait too
    with amtia.stream(s):
        z = y * 2
        np.testing.assert_array_equal(await z.to_host(), np.full(64, 2.0))


async def test_a_cancelled_wait_orders_nothing() -> None:
    s, t = amtia.Stream(), amtia.Stream()
    x = amtia.empty(64)
    await amtia.synchronize()
    with held(s):
        s.launch(fill_one, x)
        task = asyncio.ensure_future(s.synchronize())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with amtia.stream(t):
            race("read-after-write", lambda: x + 1)
    await amtia.synchronize()


async def _ordered_async(order: str) -> None:
    """The default stream writes x; t reads it after ``order`` (the async facade, asyncio or trio)."""
    d, t = amtia.current_stream(), amtia.Stream()
    x = amtia.zeros(64)
    if order == "wait_event":
        t.wait_event(d.record_event())
    elif order == "event_wait":
        e = amtia.Event()
        e.record(d)
        e.wait(t)
    elif order == "wait_stream":
        t.wait_stream(d)
    elif order == "stream_synchronize":
        await d.synchronize()
    elif order == "await_event":
        await d.record_event()
    elif order == "device_synchronize":
        await amtia.synchronize()
    elif order == "to_host":
        await x.to_host()
    with amtia.stream(t):
        y = x + 1.0
    d.wait_stream(t)
    x[...] = 2.0  # after t's read
    assert (await y.to_host()).tolist() == [1.0] * 64
    assert (await x.to_host()).tolist() == [2.0] * 64


_ASYNC_ORDERS = ["wait_event", "event_wait", "wait_stream", "stream_synchronize", "await_event",
                 "device_synchronize", "to_host"]  # fmt: skip


@pytest.mark.parametrize("order", _ASYNC_ORDERS)
async def test_async_facade_correct_patterns_report_nothing(order: str) -> None:
    await _ordered_async(order)


def test_trio_correct_patterns_report_nothing() -> None:
    import trio

    async def main() -> None:
        for order in _ASYNC_ORDERS:
            await _ordered_async(order)

    trio.run(main)


def test_trio() -> None:
    import trio

    async def main() -> None:
        s = amtia.Stream()
        x = amtia.zeros(16)
        with amtia.stream(s):
            race("read-after-write", lambda: x + 1)
        s.wait_stream(amtia.current_stream())
        with amtia.stream(s):
            y = x + 1
            assert (await y.to_host()).tolist() == [1.0] * 16

    trio.run(main)


# --- threads -------------------------------------------------------------------------------
def test_threads_launching_at_once_with_their_own_streams_report_nothing() -> None:
    source = mtia.ones(1024)
    mtia.synchronize()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            s = mtia.Stream()
            with mtia.stream(s):
                acc = mtia.zeros(1024)
                for _ in range(100):
                    acc += source  # each thread reads the shared source, writes its own acc
                e = s.record_event()
            e.synchronize()
            assert acc.numpy()[0] == 100.0  # copied on the default stream, after the host wait
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    join_all(threads)
    assert errors == []


def test_a_race_between_two_threads_is_reported_in_the_later_one() -> None:
    x = mtia.zeros(64)
    mtia.synchronize()
    first = threading.Event()
    caught: list[str] = []

    def writer() -> None:
        s = mtia.Stream()
        s.launch(fill_one, x)
        first.set()

    def reader() -> None:
        assert first.wait(10)
        with mtia.stream(mtia.Stream()):
            try:
                x + 1
            except amtia.UnsynchronizedAccessError as exc:
                caught.append(exc.kind)

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for th in threads:
        th.start()
    join_all(threads)
    assert caught == ["read-after-write"]
    mtia.synchronize()


# --- graphs and devices --------------------------------------------------------------------
def test_a_graph_replay_is_one_launch_with_the_union_of_its_accesses() -> None:
    x, y = mtia.zeros(32), mtia.zeros(32)
    mtia.synchronize()
    g = mtia.MTIAGraph()
    with mtia.graph(g):
        t = x * 2.0
        y[...] = t + 1.0  # the graph reads x, writes t and y
    mtia.synchronize()
    s, r = mtia.Stream(), mtia.Stream()
    x[...] = 3.0  # written on the default stream
    with mtia.stream(s):
        err = race("read-after-write", g.replay)
    assert err.array == "DeviceArray(shape=(32,), dtype=float32, device='mtia:0')"
    s.wait_stream(mtia.current_stream())
    with mtia.stream(s):
        g.replay()  # ordered now
    with mtia.stream(r):
        race("write-after-write", g.replay)  # two replays on two streams share the graph's memory
    r.wait_stream(s)
    with mtia.stream(r):
        g.replay()
        np.testing.assert_array_equal(y.numpy(), np.full(32, 7.0))


def test_copies_between_devices_order_their_streams() -> None:
    x = mtia.ones(64)
    y = x.to(1)  # waits for x's stream, runs on device 1's current stream
    with mtia.device(1):
        z = y * 2
        race("write-after-write", lambda: mtia.Stream(1).launch(fill_one, y))  # the copy wrote y
    back = z.to(0)
    np.testing.assert_array_equal(back.numpy(), np.full(64, 2.0))
    mtia.synchronize()
    mtia.synchronize(1)


def test_warn_mode_in_another_thread_names_that_threads_line() -> None:
    sanitizer.enable(mode="warn")
    x = mtia.zeros(4)
    records: list[Any] = []

    def other() -> None:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with mtia.stream(mtia.Stream()):
                x + 1  # the line the warning names
            records.extend(caught)

    th = threading.Thread(target=other)
    th.start()
    join_all([th])
    assert [w.category for w in records] == [SanitizerWarning]
    assert records[0].filename == __file__
    mtia.synchronize()


# --- docs/sanitizer.md and the bench suite -------------------------------------------------------
def _page() -> str:
    import os

    from _support import ROOT

    with open(os.path.join(ROOT, "docs", "sanitizer.md"), encoding="utf-8") as f:
        return f.read()


def test_the_docs_page_runs_and_shows_what_its_code_prints(tmp_path: Any) -> None:
    import os
    import re
    import sys

    from _support import ROOT, run_process

    env = {k: v for k, v in os.environ.items() if not k.startswith("MTIA_ASYNC_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    page = _page()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    texts = re.findall(r"```text\n(.*?)```", page, flags=re.S)
    assert len(blocks) == 4 and len(texts) == 2
    outputs = []
    for i, block in enumerate(blocks):  # each in a fresh interpreter, from a file (stacks show its lines)
        path = os.path.join(str(tmp_path), "missing_wait.py" if i == 0 else f"block{i}.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(block)
        result = run_process([sys.executable, path], timeout=60, env=env)
        assert result.returncode == 0, (i, result.stderr)
        outputs.append(result.stdout.replace(f'File "{tmp_path}{os.sep}', 'File "'))
    # bug 1: the report shown on the page is the one the code prints, word for word
    assert outputs[0] == texts[0] + "[3. 3. 3.]\n"
    assert outputs[1] == texts[1]  # bug 2: use after free
    assert outputs[2] == "write-after-write between stream 1 (mtia:0) and stream 2 (mtia:0)\n[2. 2. 2. 2. 4. 4. 4. 4.]\n"
    assert outputs[3].splitlines()[0].startswith("read-after-write on DeviceArray(shape=(4,)")
    assert outputs[3].splitlines()[1:] == ["[4. 4. 4. 4.] [5. 5. 5. 5.]", "False"]


def test_the_bench_suite_measures_on_and_off_and_leaves_the_sanitizer_as_it_was(monkeypatch: Any) -> None:
    import math

    from mtia_async.bench import suites_sanitizer
    from mtia_async.bench._harness import Context

    monkeypatch.setattr(suites_sanitizer, "LONG_QUICK", 500)  # a short "long" history: this checks the plumbing
    sanitizer.enable(mode="raise")
    rows = suites_sanitizer.run_sanitizer(Context(quick=True, reps=2, min_time=0.002))
    assert sanitizer.is_enabled()  # on before, on after
    keys = [r.key for r in rows]
    for op in ("launch_noop", "launch_exp_da", "add", "exp", "sum"):
        assert [k for k in keys if k.startswith(f"sanitizer.{op}.")] == [
            f"sanitizer.{op}.off", f"sanitizer.{op}.on", f"sanitizer.{op}.extra", f"sanitizer.{op}.extra_long"]
    for row in rows:
        assert len(row.samples) == 2 and all(math.isfinite(x) for x in row.samples), row.key
        if row.key.endswith("extra") or row.key.endswith("extra_long"):
            assert row.goal is not None and row.goal.limit == 2.0 and row.goal.ref == 14
    by_key = {r.key: r for r in rows}
    on, off, extra = by_key["sanitizer.add.on"], by_key["sanitizer.add.off"], by_key["sanitizer.add.extra"]
    assert on.baseline is not None and on.baseline.samples == off.samples
    assert extra.samples == [a - b for a, b in zip(on.samples, off.samples)]
    assert "history 500" in by_key["sanitizer.add.extra_long"].name
    sanitizer.disable()
    suites_sanitizer.run_sanitizer(Context(quick=True, reps=1, min_time=0.002))
    assert not sanitizer.is_enabled()  # off before, off after


def test_the_sanitized_pass_fails_a_test_that_swallows_a_report(tmp_path: Any) -> None:
    import os
    import sys

    from _support import ROOT, run_process

    (tmp_path / "test_project.py").write_text(
        "import mtia_async.sync as mtia\n"
        "from mtia_async import MTIAError, sanitizer\n"
        "def test_swallowed():\n"
        "    x = mtia.zeros(16)\n"
        "    try:\n"
        "        with mtia.stream(mtia.Stream()):\n"
        "            x + 1  # a race the test hides\n"
        "    except MTIAError:\n"
        "        pass\n"
        "    mtia.synchronize()\n"
        "def test_on_purpose():\n"
        "    sanitizer.enable()\n"
        "    x = mtia.zeros(16)\n"
        "    try:\n"
        "        with mtia.stream(mtia.Stream()):\n"
        "            x + 1\n"
        "    except MTIAError:\n"
        "        pass\n"
        "    mtia.synchronize()\n"
        "def test_ordered():\n"
        "    x = mtia.zeros(16)\n"
        "    s = mtia.Stream()\n"
        "    s.wait_stream(mtia.current_stream())\n"
        "    with mtia.stream(s):\n"
        "        x + 1\n"
        "    mtia.synchronize()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTIA_ASYNC_")}
    env["PYTHONPATH"] = os.path.join(ROOT, "tests") + os.pathsep + ROOT
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-p",
            "_support.sanitized_run", str(tmp_path / "test_project.py")]  # fmt: skip
    result = run_process(args, timeout=120, env={**env, "MTIA_ASYNC_SANITIZE": "1"}, cwd=str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ERROR test_project.py::test_swallowed - Failed: the stream sanitizer reported" in result.stdout
    assert "x + 1  # a race the test hides" in result.stdout  # the report, with its stack
    assert "3 passed, 1 error" in result.stdout  # test_swallowed passed, then errors at its teardown
    result = run_process(args, timeout=120, env=env, cwd=str(tmp_path))  # without the variable: refused
    assert result.returncode != 0 and "needs MTIA_ASYNC_SANITIZE=1" in result.stderr
