"""The stream sanitizer and freed memory: use after free, record_stream, the allocator's reuse.

The allocator reuses a block on its allocating stream only, and with ``record_stream``
only once the recorded streams' work at the free is done. A DeviceArray passed to a
kernel stays allocated until that kernel ran (the FIFO holds it), so these tests let the
other stream's kernel finish (a ``threading.Event`` it sets: nothing the sanitizer sees)
before dropping the array: its memory is then reused at once, as on hardware it would
be even while the kernel runs.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from _support import fill_one, race, source_lines

import mtia_async.sync as mtia
from mtia_async._sanitizer import active


pytestmark = pytest.mark.usefixtures("sanitizer_enabled")  # tests/conftest.py


def _used_on(stream: Any, x: Any, record: bool = False) -> None:
    """``stream`` writes ``x`` (maybe record_stream-ed); return once that kernel has run."""
    done = threading.Event()
    stream.launch(fill_one, x)
    if record:
        x.record_stream(stream)
    stream.launch(done.set)
    assert done.wait(10)


def test_freeing_without_record_stream_is_a_use_after_free_at_the_reuse() -> None:
    d, s = mtia.current_stream(), mtia.Stream()
    x = mtia.empty(1000)  # allocated for the default stream
    mtia.synchronize()
    _used_on(s, x)
    ptr = x.data_ptr()
    del x  # no record_stream: the block goes back to the default stream at once
    y = mtia.empty(1000)
    assert y.data_ptr() == ptr  # the same memory
    err = race("use-after-free", lambda: d.launch(fill_one, y))
    assert err.access == "write" and err.previous_access == "write"
    assert err.previous_stream == f"stream {s.stream_id} (mtia:0)" and err.previous_kernel.endswith("fill_one")
    assert "stream.launch(fill_one, x)" in source_lines(err.previous_stack)
    assert "err = race(\"use-after-free\", lambda: d.launch(fill_one, y))" in source_lines(err.stack)
    message = str(err)
    assert message.startswith("use-after-free on DeviceArray(shape=(1000,), dtype=float32, device='mtia:0')")
    assert "but this memory was freed and reallocated while kernel" in message and "call its record_stream()" in message
    race("use-after-free", lambda: y + 1)  # any access, read or write, until ordered
    d.wait_stream(s)
    d.launch(fill_one, y)  # ordered now
    mtia.synchronize()


@pytest.mark.parametrize("fix", ["record_stream", "wait_stream", "synchronize"])
def test_the_fixes_report_nothing(fix: str) -> None:
    d, s = mtia.current_stream(), mtia.Stream()
    x = mtia.empty(1000)
    mtia.synchronize()
    _used_on(s, x, record=fix == "record_stream")
    if fix == "wait_stream":
        d.wait_stream(s)
    elif fix == "synchronize":
        s.synchronize()
    del x
    y = mtia.empty(1000)
    d.launch(fill_one, y)
    np.testing.assert_array_equal(y.numpy(), np.ones(1000))


def test_record_stream_defers_the_reuse_while_the_other_stream_is_held() -> None:
    d, s = mtia.current_stream(), mtia.Stream()
    x = mtia.empty(1000)
    mtia.synchronize()
    gate = threading.Event()
    s.launch(gate.wait, 10.0)
    try:
        s.launch(fill_one, x)
        x.record_stream(s)
        ptr = x.data_ptr()
        del x  # still held by s's FIFO, and pending free behind s's work
        y = mtia.empty(1000)
        assert y.data_ptr() != ptr  # not reused: nothing can race
        d.launch(fill_one, y)
    finally:
        gate.set()
    mtia.synchronize()


def test_the_allocators_stream_ordered_reuse_reports_nothing() -> None:
    d = mtia.current_stream()
    for _ in range(50):  # temporaries freed and reused on one stream
        x = mtia.ones(256) * 2.0
        y = np.exp(x) + x
        del x
    two = np.full(256, 2.0, dtype=np.float32)
    np.testing.assert_array_equal(y.numpy(), np.exp(two) + two)
    s = mtia.Stream()
    with mtia.stream(s):  # another stream: its own blocks, reused by it
        for _ in range(20):
            z = mtia.zeros(256) + 1
        np.testing.assert_array_equal(z.numpy(), np.ones(256))
    d.synchronize()


def test_reused_memory_used_on_another_stream_needs_ordering_after_the_old_work() -> None:
    d, s = mtia.current_stream(), mtia.Stream()
    x = mtia.zeros(1000)  # written on the default stream
    done = threading.Event()
    d.launch(done.set)
    assert done.wait(10)  # zeros() ran (the FIFO no longer holds x); nothing the sanitizer sees
    ptr = x.data_ptr()
    del x
    y = mtia.empty(1000)  # the same block, handed to the default stream again
    assert y.data_ptr() == ptr
    race("use-after-free", lambda: s.launch(fill_one, y))  # s may run before zeros() did
    s.wait_stream(d)
    s.launch(fill_one, y)
    mtia.synchronize()


def test_a_smaller_allocation_in_freed_memory_inherits_only_what_overlaps_it() -> None:
    d, s = mtia.current_stream(), mtia.Stream()
    x = mtia.empty(4096)
    mtia.synchronize()
    done = threading.Event()
    s.launch(fill_one, x[3072:])  # s writes only the last quarter
    s.launch(done.set)
    assert done.wait(10)
    ptr = x.data_ptr()
    del x  # merged back with the rest of its segment: the next allocations split it
    a = mtia.empty(1024)  # the first quarter: s never touched it
    b = mtia.empty(3072)
    assert a.data_ptr() == ptr and b.data_ptr() == ptr + 4096
    d.launch(fill_one, a)
    err = race("use-after-free", lambda: d.launch(fill_one, b))
    assert err.previous_address == (ptr + 3 * 4096, ptr + 4 * 4096)
    mtia.synchronize()


def test_a_released_segment_forgets_its_freed_memory() -> None:
    s = mtia.Stream()
    x = mtia.empty(1 << 20)  # a large block, its own segment
    mtia.synchronize()
    _used_on(s, x)
    del x
    mtia.empty_cache()  # the segment goes back: its memory is new when reserved again
    y = mtia.empty(1 << 20)
    mtia.current_stream().launch(fill_one, y)
    mtia.synchronize()


def test_frees_on_a_worker_thread_are_seen() -> None:
    d, s = mtia.current_stream(), mtia.Stream()
    x = mtia.empty(2000)
    ptr = x.data_ptr()
    mtia.synchronize()
    done = threading.Event()
    s.launch(fill_one, x)
    gate = threading.Event()
    s.launch(gate.wait, 10.0)
    s.launch(done.set)
    del x  # the last reference is s's FIFO: the worker frees it after the kernel
    gate.set()
    assert done.wait(10)
    y = mtia.empty(2000)
    if y.data_ptr() == ptr:
        race("use-after-free", lambda: d.launch(fill_one, y))
    else:  # the worker's free was not settled yet: the memory is new
        d.launch(fill_one, y)
    mtia.synchronize()


def test_history_stays_bounded() -> None:
    s = mtia.Stream()
    x = mtia.zeros(4096)
    mtia.synchronize()
    with mtia.stream(s):
        for i in range(2000):
            x[i % 512 : i % 512 + 8] = float(i)  # 512 distinct slices, no host wait
    san = active()
    assert san is not None
    cell = san.shadow.cells[x.data_ptr()]
    assert len(cell.records) <= 64
    s.synchronize()
    for _ in range(200):
        y = x + 1
        del y
    assert sum(len(v) for v in san.shadow.dead.values()) <= 64
