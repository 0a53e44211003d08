"""The stream sanitizer on and off, and where it is used: environment, facades, trio, threads, graphs.

Off by default (a fresh interpreter shows it), ``MTIA_ASYNC_SANITIZE`` at each runtime
initialisation, ``enable()``/``disable()`` at any time; the async facade and trio; threads
launching at once; a graph replay is one launch with the union of the captured accesses;
copies between devices order their streams.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _support import held, join_all, race, run_python

import mtia_async as amtia
import mtia_async.sync as mtia
from mtia_async import SanitizerWarning, sanitizer
from mtia_async._core.instrument import instruments


@pytest.fixture(autouse=True)
def sanitized() -> Iterator[None]:
    sanitizer.enable()
    try:
        yield
    finally:
        sanitizer.disable()


def fill_one(a: Any) -> None:
    a.fill(1.0)


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
