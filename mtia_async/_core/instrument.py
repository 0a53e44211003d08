"""Instruments: what the profiler, the stream sanitizer and graph capture see of the runtime.

Off (the default) every hot path pays one attribute read, ``instruments.active``; the
tools that observe the runtime switch it on while they are in use:

* **observers** (the profiler, the sanitizer): :class:`Observer` subclasses added with
  :meth:`Instruments.add`. They see every launch with its exact access sets (which
  arrays the kernel reads and writes; views alias their base's memory), every event
  record and stream wait, every completed host wait, every allocation and free. An
  observer may raise at a launch (the sanitizer's race report: nothing is enqueued) or
  replace the kernel the FIFO gets (the profiler's timing wrapper). A launch reaches
  them as plain arguments, not an object: the hook runs at every launch, and building
  a :class:`Launch` for it cost ~0.2 us (a capture, which keeps its launches, gets one).
* **captures** (graphs): a stream whose ``capture`` is set records, instead of running,
  what is enqueued on it; :meth:`Instruments.capturing` counts them so the flag stays
  on while any stream captures.

Every place that enqueues a kernel says what it reads and writes: ``launch_on`` (the
public ``launch``: DeviceArray arguments read and written unless ``reads=``/``writes=``
say otherwise), operator and ufunc dispatch, reductions, copies, fills, ``__setitem__``
and the random kernels. The objects in ``reads``/``writes`` are DeviceArrays (this
layer does not look at them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import _forksafe as forksafe

if TYPE_CHECKING:
    from .mark import Mark
    from .stream import StreamImpl

__all__ = ["Capture", "Instruments", "Launch", "Observer", "instruments"]

Kernel = Callable[..., object]
_perf = time.perf_counter_ns


class Launch:
    """One kernel launched on a capturing stream, as its capture keeps it.

    Attributes:
        stream: the stream it is enqueued on.
        kernel, args: what runs (``kernel(*args)`` in a worker).
        reads, writes: the arrays the kernel reads and writes.
        t_ns: ``time.perf_counter_ns()`` at the launch (the clock events use).
    """

    __slots__ = ("stream", "kernel", "args", "reads", "writes", "t_ns")

    def __init__(self, stream: StreamImpl, kernel: Kernel, args: tuple[Any, ...],
                 reads: Sequence[Any], writes: Sequence[Any]) -> None:  # fmt: skip
        self.stream = stream
        self.kernel = kernel
        self.args = args
        self.reads = reads
        self.writes = writes
        self.t_ns = time.perf_counter_ns()


class Observer:
    """Base of the runtime's observers: every hook is a no-op unless overridden.

    Hooks run on the thread that causes the event (a launch on the launching thread, a
    free wherever the array dies, possibly a worker), and must not wait on a device.
    """

    def on_launch(self, stream: StreamImpl, kernel: Kernel, args: tuple[Any, ...], reads: Sequence[Any],
                  writes: Sequence[Any], t_ns: int) -> tuple[Kernel, tuple[Any, ...]] | None:  # fmt: skip
        """``kernel(*args)`` is about to be enqueued on ``stream`` (launched at ``t_ns``, the events' clock).

        ``reads``/``writes``: the arrays it reads and writes. Raise to refuse the launch
        (nothing is enqueued); return ``(kernel, args)`` to replace what the FIFO gets (a
        wrapper that times the kernel, say: later observers see the replacement).
        """
        return None

    def on_record(self, stream: StreamImpl, mark: Mark) -> None:
        """An event was recorded on ``stream`` (``mark`` completes when its work is done)."""

    def on_wait(self, stream: StreamImpl, mark: Mark) -> None:
        """Later work on ``stream`` waits for ``mark`` (``wait_event``, ``Event.wait``, ``wait_stream``)."""

    def on_host_wait(self, marks: Sequence[Mark], started_ns: int, what: str) -> None:
        """A host wait on ``marks`` completed (synchronize, ``to_host``, ...); it began at ``started_ns``."""

    def on_alloc(self, array: Any, stream: StreamImpl) -> None:
        """A DeviceArray's memory was allocated for ``stream``."""

    def on_free(self, array: Any) -> None:
        """A DeviceArray's memory is being returned to its allocator."""


class Capture:
    """Base of a stream's capture (graphs): what the instrumented paths hand it instead of running.

    A stream captures while its ``capture`` attribute is set (see
    :meth:`Instruments.capturing`). Every method may raise to refuse the operation.
    """

    def launch(self, launch: Launch) -> None:
        """Record a kernel launched on the capturing stream (it does not run now)."""
        raise NotImplementedError

    def launch_random(self, launch: Launch, generator: Any, blocks: int) -> None:
        """Record a random kernel: each replay reserves ``blocks`` of ``generator``'s counter.

        ``launch.args`` is ``(out, *params)``: the kernel runs as ``kernel(out, key,
        start, *params)`` with the key and the first counter value of the replay's
        reservation (``_random/kernels.py``). Nothing is reserved at the capture.
        """
        raise NotImplementedError

    def record(self, stream: StreamImpl) -> Mark:
        """Record an event on the capturing stream; return the mark the event holds."""
        raise NotImplementedError

    def wait(self, stream: StreamImpl, mark: Mark) -> None:
        """The capturing stream's later work waits for ``mark``."""
        raise NotImplementedError

    def forbidden(self, stream: StreamImpl, what: str) -> BaseException:
        """The error for an operation a capture cannot hold (a synchronize, a host copy)."""
        return RuntimeError(f"{what} is not allowed while stream {stream.stream_id} captures a graph")


class Instruments:
    """The process-wide registry of observers and captures (one instance, ``instruments``).

    ``active`` is True while any observer is added or any stream captures; the hot
    paths read only it. Adding and removing take a lock; the hooks run without it on
    a snapshot of the observers.
    """

    __slots__ = ("active", "observers", "_captures", "_lock")

    def __init__(self) -> None:
        self.active = False
        self.observers: tuple[Observer, ...] = ()
        self._captures = 0
        self._lock = forksafe.lock()

    def add(self, observer: Observer) -> None:
        """Start calling ``observer``'s hooks."""
        with self._lock:
            self.observers = (*self.observers, observer)
            self.active = True

    def remove(self, observer: Observer) -> None:
        """Stop calling ``observer``'s hooks (no-op if it was not added)."""
        with self._lock:
            self.observers = tuple(o for o in self.observers if o is not observer)
            self.active = bool(self.observers) or self._captures > 0

    def capturing(self, stream: StreamImpl, capture: Capture | None) -> None:
        """Set (a capture object) or clear (None) ``stream``'s capture."""
        with self._lock:
            before = stream.capture
            stream.capture = capture
            self._captures += (capture is not None) - (before is not None)
            self.active = bool(self.observers) or self._captures > 0

    # --- the hooks (called only while active) -----------------------------------------
    def launch(self, stream: StreamImpl, kernel: Kernel, args: tuple[Any, ...],
               reads: Sequence[Any], writes: Sequence[Any]) -> None:  # fmt: skip
        """Enqueue ``kernel(*args)`` on ``stream`` past the observers, or hand it to its capture."""
        capture = stream.capture
        if capture is not None:
            capture.launch(Launch(stream, kernel, args, reads, writes))
            return
        t_ns = _perf()
        for observer in self.observers:
            item = observer.on_launch(stream, kernel, args, reads, writes, t_ns)
            if item is not None:
                kernel, args = item
        stream.q.extend((kernel, args))
        if stream.token:
            stream.kick()

    def record(self, stream: StreamImpl, mark: Mark) -> None:
        """An event was recorded."""
        for observer in self.observers:
            observer.on_record(stream, mark)

    def wait(self, stream: StreamImpl, mark: Mark) -> None:
        """A stream waits for a mark."""
        for observer in self.observers:
            observer.on_wait(stream, mark)

    def host_wait(self, marks: Sequence[Mark], started_ns: int, what: str) -> None:
        """A host wait completed."""
        for observer in self.observers:
            observer.on_host_wait(marks, started_ns, what)

    def alloc(self, array: Any, stream: StreamImpl) -> None:
        """Memory was allocated for an array."""
        for observer in self.observers:
            observer.on_alloc(array, stream)

    def free(self, array: Any) -> None:
        """An array's memory is being freed."""
        for observer in self.observers:
            observer.on_free(array)


instruments = Instruments()
"""The runtime's one registry; ``instruments.active`` is the flag the hot paths read."""
