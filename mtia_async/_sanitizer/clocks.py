"""Happens-before, as vector clocks: what each stream's next kernel is ordered after.

Every stream the sanitizer sees gets a serial number and an **epoch**, the count of its
launches that touch device memory. Its **clock** (``vc``, serial -> epoch) says, for
every other stream, up to which epoch that stream's kernels are ordered before this
stream's next kernel. An access recorded at ``(stream T, epoch e)`` is ordered before a
launch on stream S when ``T is S`` (stream order), or ``e <= S.vc[T]`` (S waited for
it: ``wait_event``, ``Event.wait``, ``wait_stream``, a copy between devices), or
``e <= host[T]``.

* ``Event.record`` on S snapshots S's clock with S's own epoch (``on_record``); a wait
  of T on that mark joins the snapshot into T's clock. A wait on a mark the sanitizer
  never saw recorded (``wait_stream`` makes its own; an event recorded before
  ``enable()``) joins the mark's stream's clock as it is at the wait.
* ``host`` is what the host knows completed: a completed host wait (stream, event or
  device ``synchronize``, ``to_host``/``numpy``) joins the snapshot of each mark it
  waited for, and every launch made after it, on any stream and thread, is ordered
  after that work. A wait's own mark (``synchronize()`` makes one at the call) is
  placed by time: the stream's epoch at the last launch made before the wait started
  (each stream keeps the times of its last ``RING`` launches), so launches that
  other tasks or threads make on that stream while it waits are not counted as done.

So a check is two dict lookups, whatever the length of the history.

Streams are keyed by ``id()`` while they live (a weak reference drops the entry when
the stream dies); serials are never reused, so a clock never confuses two streams.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._core.mark import Mark
    from .._core.stream import StreamImpl

__all__ = ["RING", "Clocks", "StreamClock"]

RING = 32  # launch times kept per stream, to place a host wait's own mark


class StreamClock:
    """One stream's position (``epoch``) and what it is ordered after (``vc``)."""

    __slots__ = ("ser", "epoch", "vc", "times", "label", "ref")

    def __init__(self, ser: int, label: str, ref: weakref.ref[StreamImpl]) -> None:
        self.ser = ser
        self.epoch = 0
        self.vc: dict[int, int] = {}
        self.times = [0] * RING  # times[epoch % RING]: perf_counter_ns of that launch
        self.label = label
        self.ref = ref

    def snapshot(self) -> dict[int, int]:
        """What a mark enqueued now is ordered after (this stream's epoch included)."""
        snap = dict(self.vc)
        snap[self.ser] = self.epoch
        return snap

    def epoch_at(self, t_ns: int) -> int:
        """The epoch of the last launch made before ``t_ns`` (as far as the ring remembers)."""
        epoch = self.epoch
        times = self.times
        low = max(0, epoch - RING + 1)
        for e in range(epoch, low - 1, -1):
            if e == 0 or times[e % RING] <= t_ns:
                return e
        return low - 1  # older than the ring: assume the rest was before (never reports a false race)


def _describe_stream(stream: StreamImpl) -> str:
    default = ", default" if stream.stream_id == 0 else ""
    return f"stream {stream.stream_id} (mtia:{stream.device.index}{default})"


class Clocks:
    """The clocks of the current runtime's streams, the host's knowledge, and the recorded marks."""

    def __init__(self, runtime: object) -> None:
        # Streams of another runtime (one shut down) are ignored. Weakly: a runtime shut down
        # must be free to go (its devices, their memory) before the next one initialises.
        self._runtime = weakref.ref(runtime) if runtime is not None else None
        self.streams: dict[int, StreamClock] = {}  # id(StreamImpl) -> clock, while it lives
        self.labels: dict[int, str] = {}  # serial -> "stream 3 (mtia:0)", kept for reports
        self.host: dict[int, int] = {}  # serial -> epoch the host knows completed
        self.marks: weakref.WeakKeyDictionary[Mark, dict[int, int]] = weakref.WeakKeyDictionary()
        self._serials = itertools.count(1)

    @property
    def runtime(self) -> object:
        """The runtime whose streams these clocks track (None: gone, or none when made)."""
        return None if self._runtime is None else self._runtime()

    def clock(self, stream: StreamImpl) -> StreamClock | None:
        """The stream's clock (made on first sight); None for a stream of another runtime."""
        clock = self.streams.get(id(stream))
        if clock is not None:
            return clock
        runtime = self.runtime
        if runtime is None or stream.device.runtime is not runtime:
            return None
        key = id(stream)
        streams = self.streams

        def forget(ref: weakref.ref[StreamImpl], key: int = key) -> None:
            entry = streams.get(key)
            if entry is not None and entry.ref is ref:
                del streams[key]

        ser = next(self._serials)
        clock = StreamClock(ser, _describe_stream(stream), weakref.ref(stream, forget))
        self.labels[ser] = clock.label
        streams[key] = clock
        return clock

    def protected(self, recorded: Sequence[Any]) -> set[int]:
        """The serials of the streams an array was ``record_stream``-ed on."""
        out = set()
        for stream in recorded:
            clock = self.streams.get(id(stream))
            if clock is not None:
                out.add(clock.ser)
        return out

    def record(self, stream: StreamImpl, mark: Mark) -> None:
        """``Event.record``: the mark is ordered after the stream's work so far and what it waited for."""
        clock = self.clock(stream)
        if clock is not None:
            self.marks[mark] = clock.snapshot()

    def _snapshot_of(self, mark: Mark, at_ns: int | None) -> dict[int, int] | None:
        snap = self.marks.get(mark)
        if snap is not None:
            return snap
        clock = self.streams.get(id(mark.stream))
        if clock is None:
            return None  # a stream that never touched memory: nothing to learn
        if at_ns is None:
            return clock.snapshot()
        snap = dict(clock.vc)
        snap[clock.ser] = clock.epoch_at(at_ns)
        return snap

    def wait(self, stream: StreamImpl, mark: Mark) -> None:
        """Later work on ``stream`` is ordered after ``mark``."""
        clock = self.clock(stream)
        snap = self._snapshot_of(mark, None)
        if clock is None or not snap:
            return
        _join(clock.vc, snap, clock.ser)

    def host_wait(self, marks: Sequence[Mark], started_ns: int) -> None:
        """The host saw ``marks`` complete: every later launch is ordered after them."""
        for mark in marks:
            snap = self._snapshot_of(mark, started_ns)
            if snap:
                _join(self.host, snap, 0)


def _join(into: dict[int, int], snap: dict[int, int], skip: int) -> None:
    get = into.get
    for ser, epoch in snap.items():
        if ser != skip and epoch > get(ser, 0):
            into[ser] = epoch

