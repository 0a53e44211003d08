"""The profiler's observer: what it writes down while a profile records (the hot path).

Every hook appends one small tuple (a *raw record*) to a ring buffer, a ``deque`` with a
``maxlen``: appending is one atomic C call, from any thread, and a long session keeps
only the newest ``max_events`` records, so memory stays bounded. Raw records hold only
names, numbers, streams (``StreamImpl``) and marks: never a kernel or its arguments
(which may hold device memory). ``resolve.py`` turns them into events when read.

Kernel timing: ``on_launch`` replaces the FIFO item ``(kernel, args)`` by
``(_timed, (kernel, args, rec, done))``; the worker runs ``_timed``, which appends
``(rec, start_ns, end_ns, worker thread, failure or None)`` to the ring of finished
kernels (``done``: its ``append``). ``_timed`` binds its first argument
(``binds_kernel``), so a failure still names the user's kernel; for a kernel that binds
arguments itself (a launch runner), ``_timed_bound`` carries the user's kernel first.

A kernel's records hold only numbers and strings (the stream is named by its ``(device,
stream id)`` key, the streams themselves are kept once in ``keys``), so the garbage
collector stops tracking them at its first look: a profile holding 200,000 of them
costs its collections nothing (a list per record cost ~3,200 instructions per kernel in
collections, a quarter of the profiler's cost).

Raw record layouts (index 0 is the kind):

* ``KERNEL``:    name, (device index, stream id), launch_ns, launch thread, details (shapes,
  stack) or None
* ``RECORD``:    stream, mark, call_ns, thread
* ``WAIT``:      stream, mark, call_ns, thread
* ``HOST_WAIT``: what, marks, start_ns, end_ns, thread
* ``RANGE``:     name, start_ns, end_ns, thread
* ``MEMORY``:    device index, ns, allocated bytes, reserved bytes

A thread is a ``(name, native id)`` pair, made once per thread (a thread-local attribute,
read in ~30 ns; a thread ident would be reused by the next thread once one ends).
"""

from __future__ import annotations

import threading
import time
import types
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import _forksafe as forksafe
from .._core import runtime as _runtime
from .._core.instrument import Observer
from .._core.mark import safe_str
from .naming import INTERNAL, call_stack, input_shapes, launch_name, user_args

if TYPE_CHECKING:
    from .._core.mark import Mark
    from .._core.stream import StreamImpl

__all__ = ["HOST_WAIT", "KERNEL", "MEMORY", "RANGE", "RECORD", "WAIT", "MemoryRecorder", "Recorder"]

KERNEL, RECORD, WAIT, HOST_WAIT, RANGE, MEMORY = range(6)

_perf = time.perf_counter_ns
_FunctionType = types.FunctionType
_here = threading.local()  # .thread: the calling thread's (name, native id)


def this_thread() -> tuple[str, int]:
    """The calling thread as records name it: ``(name, native id)``."""
    try:
        who: tuple[str, int] = _here.thread
    except AttributeError:
        thread = threading.current_thread()
        who = _here.thread = (thread.name, thread.native_id or threading.get_ident())
    return who


Done = Callable[[tuple[Any, ...]], None]
"""The ring of finished kernels' ``append``: ``(rec, start_ns, end_ns, worker, failure)``."""


def _timed(kernel: Any, args: tuple[Any, ...], rec: tuple[Any, ...], done: Done) -> Any:
    """Run ``kernel(*args)`` on the worker; note its start, end, thread and failure in ``done``."""
    start = _perf()
    failure = None
    try:
        return kernel(*args)
    except BaseException as exc:
        failure = f"{type(exc).__name__}: {safe_str(exc)}"
        raise
    finally:
        end = _perf()
        try:
            who = _here.thread
        except AttributeError:
            who = this_thread()
        done((rec, start, end, who, failure))


def _timed_bound(user: Any, kernel: Any, args: tuple[Any, ...], rec: tuple[Any, ...], done: Done) -> Any:
    """``_timed`` for a kernel that binds arguments for ``user`` (named first, for failures)."""
    start = _perf()
    failure = None
    try:
        return kernel(*args)
    except BaseException as exc:
        failure = f"{type(exc).__name__}: {safe_str(exc)}"
        raise
    finally:
        end = _perf()
        try:
            who = _here.thread
        except AttributeError:
            who = this_thread()
        done((rec, start, end, who, failure))


# describe_kernel (the worker's name for a failing item) names args[0]: the user's kernel.
_timed.binds_kernel = True  # type: ignore[attr-defined]
_timed_bound.binds_kernel = True  # type: ignore[attr-defined]


class Recorder(Observer):
    """Writes raw records into a ring buffer while it is added to the instruments.

    Args:
        max_events: the ring's size; older records are dropped beyond it.
        record_shapes: note the shapes and dtypes of each kernel's arguments.
        with_stack: note the Python frames of each launch (outside mtia_async).
    """

    def __init__(self, max_events: int, record_shapes: bool, with_stack: bool) -> None:
        self.buffer: deque[tuple[Any, ...]] = deque(maxlen=max_events)
        self._append = append = self.buffer.append
        self.finished: deque[tuple[Any, ...]] = deque(maxlen=max_events)  # see _timed
        done = self.finished.append
        self.keys: dict[StreamImpl, tuple[int, int]] = {}  # the streams kernels were launched on
        keys = self.keys
        self.record_shapes = record_shapes
        self.with_stack = with_stack
        detail = self._detail if record_shapes or with_stack else None
        here = _here

        # The per-launch hook, a closure over its state (no method binding, no attribute
        # lookups on self); it shadows Observer.on_launch.
        def on_launch(stream: StreamImpl, kernel: Any, args: tuple[Any, ...], reads: Sequence[Any],
                      writes: Sequence[Any], t_ns: int) -> tuple[Any, tuple[Any, ...]]:  # fmt: skip
            try:
                who = here.thread
            except AttributeError:
                who = this_thread()
            binds = getattr(kernel, "binds_kernel", False)
            if binds or kernel.__class__ is not _FunctionType or kernel in INTERNAL:
                name = launch_name(kernel, args, binds)
            else:  # a plain def: the common case
                name = kernel.__qualname__
            key = keys.get(stream)
            if key is None:
                key = keys[stream] = (stream.device.index, stream.stream_id)
            rec = (KERNEL, name, key, t_ns, who, None if detail is None else detail(kernel, args, binds))
            append(rec)
            if binds:
                return _timed_bound, (args[0], kernel, args, rec, done)
            return _timed, (kernel, args, rec, done)

        self.on_launch = on_launch  # type: ignore[method-assign]

    def _detail(self, kernel: Any, args: tuple[Any, ...], binds: bool) -> dict[str, Any]:
        detail: dict[str, Any] = {}
        if self.record_shapes:
            detail.update(input_shapes(user_args(kernel, args, binds)))
        if self.with_stack:
            detail["Python stack"] = call_stack()
        return detail

    # --- the other hooks (on_launch is made in __init__) -----------------------------------
    def on_record(self, stream: StreamImpl, mark: Mark) -> None:
        self._append((RECORD, stream, mark, _perf(), this_thread()))

    def on_wait(self, stream: StreamImpl, mark: Mark) -> None:
        self._append((WAIT, stream, mark, _perf(), this_thread()))

    def on_host_wait(self, marks: Sequence[Mark], started_ns: int, what: str) -> None:
        self._append((HOST_WAIT, what, tuple(marks), started_ns, _perf(), this_thread()))

    def add_range(self, name: str, start_ns: int, end_ns: int) -> None:
        """A user range (``record_function``) closed on the calling thread."""
        self._append((RANGE, name, start_ns, end_ns, this_thread()))

    def streams(self) -> list[StreamImpl]:
        """The streams the records name (kernels, event records, waits): exit waits for their work."""
        seen: dict[StreamImpl, None] = dict.fromkeys(list(self.keys))
        for rec in list(self.buffer):
            kind = rec[0]
            if kind == RECORD or kind == WAIT:
                seen[rec[1]] = None
        return list(seen)


class MemoryRecorder(Recorder):
    """A :class:`Recorder` that also counts allocated and reserved bytes per device (``profile_memory``).

    Allocated bytes are counted here, from each allocation and free as the user's code
    makes them (exact samples at the start and the end, the sizes of the blocks in
    between), under the recorder's own lock; reserved bytes are read from the allocator
    without its lock (``reserved_unlocked``), so a free on a worker thread never takes it.
    Arrays of another runtime (one shut down, whose arrays die late) are not counted.
    """

    def __init__(self, max_events: int, record_shapes: bool, with_stack: bool) -> None:
        super().__init__(max_events, record_shapes, with_stack)
        self.allocated: dict[Any, int] = {}  # DeviceImpl -> bytes
        self._lock = forksafe.lock()  # re-made in a forked child: a parent thread may hold it at the fork

    def _count(self, array: Any, sign: int) -> None:
        block = array._block
        if block is None:
            return
        dev = array._dev
        if dev.runtime is not _runtime.state.runtime:
            return
        with self._lock:
            value = self.allocated.get(dev, 0) + sign * block.size
            self.allocated[dev] = value
            alloc = dev._allocator
            reserved = alloc.reserved_unlocked() if alloc is not None else 0
            self._append((MEMORY, dev.index, _perf(), value, reserved))

    def on_alloc(self, array: Any, stream: StreamImpl) -> None:
        self._count(array, 1)

    def on_free(self, array: Any) -> None:
        self._count(array, -1)

    def sample(self) -> None:
        """Exact allocated and reserved bytes of every device with an allocator (start and end)."""
        rt = _runtime.state.runtime
        if rt is None:
            return
        for dev in rt.devices:
            alloc = dev._allocator
            if alloc is not None:
                allocated, reserved = alloc.allocated_bytes(), alloc.reserved_unlocked()
                with self._lock:
                    self.allocated[dev] = allocated
                    self._append((MEMORY, dev.index, _perf(), allocated, reserved))
