"""The stream sanitizer (docs/sanitizer.md): races caught at the launch, correct patterns left alone.

Every race kind with both launch stacks, whatever the timing (the earlier kernel still
held behind a gate, or already run); every correct pattern reports nothing; views and
overlapping slices; the report itself; mode "warn". Use after free and record_stream are
in ``test_sanitizer_memory.py``; turning it on and off, facades, trio, threads and graphs
in ``test_sanitizer_control.py``.
"""

from __future__ import annotations

import linecache
import pickle
import threading
import warnings
from typing import Any

import numpy as np
import pytest
from _support import fill_one, held, race, source_lines

import mtia_async.sync as mtia
from mtia_async import SanitizerWarning, UnsynchronizedAccessError, sanitizer
from mtia_async._sanitizer import active


pytestmark = pytest.mark.usefixtures("sanitizer_enabled")  # tests/conftest.py


def double(a: Any, out: Any) -> None:
    np.multiply(a, 2.0, out=out)


# --- the three kinds of data race, with both stacks ----------------------------------------
@pytest.mark.parametrize("timing", ["pending", "done"])
def test_read_after_write_is_caught_at_the_launch_whatever_the_timing(timing: str) -> None:
    s, t = mtia.Stream(), mtia.Stream()
    x = mtia.empty(256)
    ran = threading.Event()
    with held(s) as gate:
        s.launch(fill_one, x)  # the earlier launch
        s.launch(ran.set)
        if timing == "done":
            gate.set()
            assert ran.wait(10)  # the kernel ran; nothing the sanitizer sees orders it
        with mtia.stream(t):
            err = race("read-after-write", lambda: x + 1)  # the new launch
    assert err.access == "read" and err.previous_access == "write"
    assert err.stream == f"stream {t.stream_id} (mtia:0)" and err.previous_stream == f"stream {s.stream_id} (mtia:0)"
    assert err.kernel == "np.add" and err.previous_kernel.endswith("fill_one")
    assert "err = race(\"read-after-write\", lambda: x + 1)  # the new launch" in source_lines(err.stack)
    assert "s.launch(fill_one, x)  # the earlier launch" in source_lines(err.previous_stack)
    assert all("mtia_async/_" not in line for line in err.stack + err.previous_stack)  # library frames trimmed
    assert not any("pluggy" in line or "_pytest" in line for line in err.stack + err.previous_stack)  # the runner's
    assert err.stack[0].startswith(f'  File "{__file__}", line ')
    assert err.array == "DeviceArray(shape=(256,), dtype=float32, device='mtia:0')"
    assert err.address == (x.data_ptr(), x.data_ptr() + 1024) == err.previous_address
    message = str(err)
    assert message.startswith(
        f"read-after-write on DeviceArray(shape=(256,), dtype=float32, device='mtia:0'), device addresses "
        f"{x.data_ptr():#x}..{x.data_ptr() + 1024:#x} (1024 bytes):\n"
        f"  kernel np.add on stream {t.stream_id} (mtia:0) reads it, launched at\n"
    )
    assert f"  while kernel {err.previous_kernel} on stream {s.stream_id} (mtia:0) may still be writing it" in message
    assert f"Fix: make stream {t.stream_id} wait for stream {s.stream_id} first" in message
    mtia.synchronize()


def test_write_after_read_and_write_after_write() -> None:
    s, t = mtia.Stream(), mtia.Stream()
    x, y = mtia.zeros(64), mtia.empty(64)
    mtia.synchronize()
    with held(s):
        s.launch(double, x, y, reads=[x], writes=[y])  # s reads x, writes y
        err = race("write-after-read", lambda: t.launch(fill_one, x))  # t overwrites what s reads
        assert err.previous_access == "read" and err.access == "write"
        assert err.previous_kernel.endswith("double") and err.kernel.endswith("fill_one")
        earlier = "s.launch(double, x, y, reads=[x], writes=[y])  # s reads x, writes y"
        assert earlier in source_lines(err.previous_stack)
        assert 'err = race("write-after-read", lambda: t.launch(fill_one, x))  # t overwrites what s reads' in (
            source_lines(err.stack))
        assert "write-after-read on DeviceArray(shape=(64,)" in str(err) and "may still be reading it" in str(err)
        err = race("write-after-write", lambda: t.launch(fill_one, y))  # t writes what s writes
        assert err.previous_access == "write" and err.access == "write"
        assert earlier in source_lines(err.previous_stack)
        assert 'err = race("write-after-write", lambda: t.launch(fill_one, y))  # t writes what s writes' in (
            source_lines(err.stack))
        assert "may still be writing it" in str(err)
    mtia.synchronize()


def test_the_default_stream_counts_as_a_stream_and_launch_without_reads_writes_both() -> None:
    x = mtia.zeros(16)  # written on the default stream
    s = mtia.Stream()
    err = race("write-after-write", lambda: s.launch(np.exp, x, out=mtia.empty(16)))  # x: read and written
    assert err.previous_stream == "stream 0 (mtia:0, default)" and err.previous_kernel == "fill_kernel"
    err = race("read-after-write", lambda: s.launch(np.exp, x, out=mtia.empty(16), reads=[x], writes=[]))
    mtia.synchronize()


def test_a_refused_launch_changes_nothing() -> None:
    s = mtia.Stream()
    x = mtia.zeros(16)
    ran: list[int] = []
    race("write-after-write", lambda: s.launch(lambda a: ran.append(1), x))
    s.synchronize()
    assert ran == []  # nothing was enqueued
    s.wait_stream(mtia.current_stream())
    s.launch(lambda a: ran.append(2), x)  # now ordered: runs
    s.synchronize()
    assert ran == [2]


# --- correct patterns report nothing --------------------------------------------------------
def _producer_consumer(order: str) -> None:
    """Default stream writes x; stream t reads it after ``order``; then the default stream writes it again."""
    d = mtia.current_stream()
    t = mtia.Stream()
    x = mtia.zeros(128)
    if order == "wait_event":
        t.wait_event(d.record_event())
    elif order == "event_wait":
        e = mtia.Event()
        e.record(d)
        e.wait(t)
    elif order == "wait_stream":
        t.wait_stream(d)
    elif order == "stream_synchronize":
        d.synchronize()
    elif order == "event_synchronize":
        d.record_event().synchronize()
    elif order == "device_synchronize":
        mtia.synchronize()
    elif order == "numpy":
        x.numpy()
    with mtia.stream(t):
        y = x * 2.0
    d.wait_stream(t)
    x[...] = 3.0  # write after t's read: ordered by the wait above
    np.testing.assert_array_equal(y.numpy(), np.zeros(128))
    np.testing.assert_array_equal(x.numpy(), np.full(128, 3.0))


@pytest.mark.parametrize(
    "order",
    ["wait_event", "event_wait", "wait_stream", "stream_synchronize", "event_synchronize", "device_synchronize",
     "numpy"],
)  # fmt: skip
def test_ordered_accesses_report_nothing(order: str) -> None:
    _producer_consumer(order)


def test_same_stream_and_read_read_report_nothing() -> None:
    s, t = mtia.Stream(), mtia.Stream()
    x = mtia.zeros(64)
    mtia.synchronize()
    with held(s), held(t):
        for _ in range(3):
            s.launch(fill_one, x)  # one stream: ordered by its FIFO
        a, b = mtia.empty(64), mtia.empty(64)
    mtia.synchronize()
    with held(s), held(t):
        s.launch(double, x, a, reads=[x], writes=[a])
        t.launch(double, x, b, reads=[x], writes=[b])  # both only read x
    mtia.synchronize()
    np.testing.assert_array_equal(b.numpy(), np.full(64, 2.0))


def test_a_chain_of_waits_orders_transitively() -> None:
    a, b, c = mtia.Stream(), mtia.Stream(), mtia.Stream()
    x = mtia.empty(32)
    mtia.synchronize()
    a.launch(fill_one, x)
    b.wait_stream(a)
    e = b.record_event()
    c.wait_event(e)  # c after b after a
    with mtia.stream(c):
        y = x + 1
        np.testing.assert_array_equal(y.numpy(), np.full(32, 2.0))  # copied on c


def test_a_wait_covers_only_what_was_enqueued_before_the_event() -> None:
    s, t = mtia.Stream(), mtia.Stream()
    x, y = mtia.empty(32), mtia.empty(32)
    mtia.synchronize()
    with held(s):
        s.launch(fill_one, x)
        e = s.record_event()
        s.launch(fill_one, y)  # after the event
        t.wait_event(e)
        with mtia.stream(t):
            x + 1  # covered by the event
            race("read-after-write", lambda: y + 1)  # not covered
    mtia.synchronize()


def test_a_host_wait_covers_only_what_was_enqueued_before_it_started() -> None:
    s, t = mtia.Stream(), mtia.Stream()
    x, y = mtia.empty(32), mtia.empty(32)
    mtia.synchronize()
    with held(s) as gate:
        s.launch(fill_one, x)
        waiter = threading.Thread(target=s.synchronize)
        waiter.start()
        while waiter.is_alive() and not s._impl.q:  # wait for the synchronize's mark
            pass
        threading.Event().wait(0.05)  # its host wait has started
        s.launch(fill_one, y)  # enqueued while the host waits: after its mark
        gate.set()
        waiter.join(10)
    assert not waiter.is_alive()
    with mtia.stream(t):
        x + 1  # the host saw it complete
        race("read-after-write", lambda: y + 1)
    mtia.synchronize()


# --- views and overlapping slices ------------------------------------------------------------
def test_disjoint_slices_are_independent_and_overlapping_ones_race() -> None:
    s, t = mtia.Stream(), mtia.Stream()
    x = mtia.empty((10, 10))
    mtia.synchronize()
    with held(s), held(t):
        s.launch(fill_one, x[:5])
        t.launch(fill_one, x[5:])  # other rows
        t.launch(fill_one, x[5:, :3].T)  # a transposed view inside them
        err = race("write-after-write", lambda: t.launch(fill_one, x[4:6]))
        assert err.array == "DeviceArray(shape=(2, 10), dtype=float32, device='mtia:0')"
        assert err.address == (x.data_ptr() + 160, x.data_ptr() + 240)
        assert err.previous_address == (x.data_ptr(), x.data_ptr() + 200)
        race("read-after-write", lambda: t.launch(double, x[4].reshape(2, 5), mtia.empty((2, 5)),
                                                  reads=[x[4].reshape(2, 5)], writes=[]))  # fmt: skip
        race("read-after-write", lambda: t.launch(double, x, mtia.empty((10, 10)), reads=[x], writes=[]))
    mtia.synchronize()


def test_strided_views_race_only_when_they_share_an_element() -> None:
    s, t = mtia.Stream(), mtia.Stream()
    v = mtia.empty(100)
    m = mtia.empty((8, 8))
    mtia.synchronize()
    with held(s), held(t):
        s.launch(fill_one, v[::2])
        t.launch(fill_one, v[1::2])  # interleaved: no common element
        s.launch(fill_one, m[:, 0])
        t.launch(fill_one, m[:, 1])  # two columns
        t.launch(fill_one, m[::-1, 2])  # a reversed column
        race("write-after-write", lambda: t.launch(fill_one, v[::4]))
        race("write-after-write", lambda: t.launch(fill_one, m[3]))  # a row crosses column 0
        race("write-after-write", lambda: t.launch(fill_one, v[10:20]))  # contiguous over the even ones
    mtia.synchronize()


def test_operators_setitem_copies_reductions_and_random_kernels_have_exact_access_sets() -> None:
    s = mtia.Stream()
    x = mtia.zeros(16)
    o = mtia.empty(16)
    mtia.synchronize()
    with held(s):
        with mtia.stream(s):
            np.exp(x, out=o)  # s reads x, writes o
        x + 1  # the default stream reads x too: fine
        race("write-after-read", lambda: x.__setitem__(slice(0, 4), 2.0))
        race("read-after-write", lambda: o.sum())
        race("read-after-write", lambda: o.copy())
        race("write-after-write", lambda: np.add(x, 1, out=o))
        race("read-after-write", lambda: o[3:5].numpy())
    mtia.synchronize()
    mtia.manual_seed(0)
    with held(s):
        with mtia.stream(s):
            r = mtia.rand(16)  # a random kernel writing r on s
        race("read-after-write", lambda: r * 2)
    mtia.synchronize()


# --- mode "warn" -------------------------------------------------------------------------------
def test_warn_mode_warns_once_per_missing_wait_and_runs_the_kernel() -> None:
    sanitizer.enable(mode="warn")
    s = mtia.Stream()
    x = mtia.zeros(16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mtia.stream(s):
            y = x + 1  # warns here
            z = x + 2  # the same missing wait: not again
    assert [w.category for w in caught] == [SanitizerWarning]
    assert caught[0].filename == __file__
    assert linecache.getline(__file__, caught[0].lineno).strip() == "y = x + 1  # warns here"
    assert str(caught[0].message).startswith("read-after-write on DeviceArray(shape=(16,)")
    mtia.synchronize()
    np.testing.assert_array_equal(z.numpy(), np.full(16, 2.0))  # the kernels ran
    np.testing.assert_array_equal(y.numpy(), np.full(16, 1.0))


def test_warn_mode_under_a_filter_that_raises_refuses_the_launch() -> None:
    sanitizer.enable(mode="warn")
    x = mtia.zeros(8)
    ran: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", SanitizerWarning)
        with pytest.raises(SanitizerWarning, match="write-after-write"):
            mtia.Stream().launch(lambda a: ran.append(1), x)
    mtia.synchronize()
    assert ran == []


def test_enable_changes_the_mode_and_keeps_the_history() -> None:
    s = mtia.Stream()
    x = mtia.zeros(8)
    sanitizer.enable(mode="warn")
    sanitizer.enable(mode="raise")
    race("write-after-write", lambda: s.launch(fill_one, x))  # the write above is still known
    mtia.synchronize()


# --- what lets a launch skip the check (a cell's memos) never hides a later race ------------------
def test_repeated_reads_skip_the_check_until_another_stream_writes() -> None:
    s, t = mtia.Stream(), mtia.Stream()
    x = mtia.zeros(64)
    mtia.synchronize()
    with held(s), held(t):
        with mtia.stream(s):
            for _ in range(3):
                x + 1  # s reads x: checked once, then s is known clear of the other streams' writes
        t.wait_stream(s)
        t.launch(fill_one, x)  # t writes x, ordered after s's reads
        with mtia.stream(s):
            err = race("read-after-write", lambda: x + 1)  # s never waited for that write
    assert err.previous_stream == f"stream {t.stream_id} (mtia:0)"
    mtia.synchronize()


def test_repeated_writes_skip_the_check_until_another_stream_reads() -> None:
    s, t = mtia.Stream(), mtia.Stream()
    x = mtia.zeros(64)
    mtia.synchronize()
    with held(s), held(t):
        for _ in range(3):
            s.launch(fill_one, x)  # s writes x: checked once, then s is known clear of the others
        t.wait_stream(s)
        with mtia.stream(t):
            x + 1  # t reads x, ordered after s's writes
        err = race("write-after-read", lambda: s.launch(fill_one, x))  # s never waited for that read
    assert err.previous_stream == f"stream {t.stream_id} (mtia:0)"
    mtia.synchronize()


def test_another_streams_unordered_read_undoes_what_let_a_stream_skip_the_check() -> None:
    s, t = mtia.Stream(), mtia.Stream()
    x = mtia.zeros(64)
    mtia.synchronize()
    with held(s), held(t):
        with mtia.stream(s):
            for _ in range(3):
                x + 1  # s reads x: then s is known clear of every other stream's access to it
        with mtia.stream(t):
            x + 1  # t reads it too: no race, but unordered with s's reads
        err = race("write-after-read", lambda: s.launch(fill_one, x))  # s overwrites what t may still read
    assert err.previous_stream == f"stream {t.stream_id} (mtia:0)"
    mtia.synchronize()


def test_two_streams_reading_one_array_by_turns_keep_its_records_few() -> None:
    s, t = mtia.Stream(), mtia.Stream()
    x = mtia.zeros(64)
    mtia.synchronize()
    for _ in range(100):
        for stream in (s, t):
            with mtia.stream(stream):
                x + 1  # read-read: no race, and each stream's newest read covers its older ones
    running = active()
    assert running is not None
    cell = running.shadow.cells[x.data_ptr()]
    assert len(cell.records) <= 3, cell.records  # the zeros' write and one read per stream
    mtia.synchronize()


# --- the report --------------------------------------------------------------------------------
def test_the_error_is_an_mtia_error_and_pickles_with_its_fields() -> None:
    s = mtia.Stream()
    x = mtia.zeros(8)
    err = race("write-after-write", lambda: s.launch(fill_one, x))
    assert isinstance(err, mtia.MTIAError) and isinstance(err, UnsynchronizedAccessError)
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err)
    for name in ("kind", "array", "address", "stream", "kernel", "stack", "access", "previous_array",
                 "previous_address", "previous_stream", "previous_kernel", "previous_stack", "previous_access"):  # fmt: skip
        assert getattr(copy, name) == getattr(err, name), name
    mtia.synchronize()
