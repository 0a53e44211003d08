"""The capture of a graph: what a capturing stream records instead of running.

A :class:`GraphCapture` is the ``Capture`` (``_core/instrument.py``) set on the
capturing stream, and on every stream that joins it. The instrumented paths hand it
every kernel (with its exact reads and writes), random kernel, event record and
stream wait enqueued on those streams; it keeps them in the order they were made
(*host order*), which is a valid sequential order of the graph, and the
dependencies between them, to check at the end that every stream that joined was
joined back (CUDA's fork/join rule).

What a graph cannot hold is refused with ``forbidden()``: a ``RuntimeError`` naming
the operation and the capture, which also *invalidates* the capture: every later
operation on its streams raises, ``capture_end()`` raises, and only ``reset()`` (or
leaving a ``graph(...)`` block) clears it. Never a half-recorded graph.

Threads: the hooks run on whichever threads launch on the capturing streams; one
lock orders them. While any capture runs, an observer (:data:`guard`) refuses a copy
to the host, on any other stream, of memory a capture writes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _forksafe as forksafe
from .._arrays.array import DeviceArray
from .._arrays.transfer import copy_kernel, setitem_kernel
from .._core.instrument import Capture, Launch, Observer, instruments
from .._core.mark import Mark
from .marks import CapturedMark

if TYPE_CHECKING:
    from .._core.stream import StreamImpl
    from .._memory import Block
    from .pools import PoolToken

__all__ = ["GraphCapture", "RandomLaunch", "Step", "end_from_finalizer", "guard"]


class RandomLaunch:
    """A random kernel in a graph: each replay reserves ``blocks`` of ``generator``."""

    __slots__ = ("launch", "generator", "blocks")

    def __init__(self, launch: Launch, generator: Any, blocks: int) -> None:
        self.launch = launch
        self.generator = generator
        self.blocks = blocks


Step = Launch | RandomLaunch | CapturedMark
"""What a graph holds, in host order: kernels, random kernels, event records."""

_WHY = (
    ("query() of a capturing", "its captured work runs only when the graph is replayed, so there is nothing to ask"),
    ("query", "the event completes only when a replay gets to it"),
    ("synchronize", "a graph runs only when it is replayed, so there is no work to wait for"),
    ("asarray", "host data is copied at the call, so every replay would copy the same stale values: "
                "copy it into a DeviceArray before the capture and let the graph read that array"),
    ("host", "what a graph computes exists only after a replay: copy it after replay()"),
    ("replay", "a graph cannot be captured into another"),
    ("device", "a graph runs on the device of its capture"),
    ("another graph", "two captures cannot wait on each other"),
)  # fmt: skip


def _why(what: str) -> str:
    for word, reason in _WHY:
        if word in what:
            return reason
    return "a graph holds only device work"


def _extent(a: DeviceArray) -> tuple[int, int]:
    """The bytes of its block that ``a`` spans, from the block's start (a strided view: its bounds)."""
    strides = a._strides
    if strides is None:  # a base array
        return 0, a.nbytes
    lo = hi = a._offset
    for n, step in zip(a._shape, strides):
        if n == 0:
            return 0, 0
        if step > 0:
            hi += (n - 1) * step
        else:
            lo += (n - 1) * step
    return lo, hi + a._dtype.itemsize


class GraphCapture(Capture):
    """One capture in progress (see the module docstring).

    Args:
        label: the graph, for messages (``"MTIAGraph #3"``).
        origin: the stream ``capture_begin`` was called on.
        pool: the pool token its streams allocate from.
    """

    def __init__(self, label: str, origin: StreamImpl, pool: PoolToken) -> None:
        self.label = label
        self.origin = origin
        self.device = origin.device
        self.pool = pool
        self.lock = forksafe.lock()
        self.steps: list[Step] = []
        self.deps: list[tuple[int, ...]] = []  # per node: the nodes it comes after (-1: the start)
        self.tails: dict[StreamImpl, int] = {origin: -1}  # each capturing stream's last node
        self.externals: list[Mark] = []  # marks of work outside the graph that it waits for
        self.written: dict[Block, set[tuple[int, int]]] = {}  # the byte ranges its kernels write, per block (guard)
        self.error: RuntimeError | None = None  # what invalidated it
        self.ended = False

    # --- the Capture protocol (any thread launching on a capturing stream) -----------------
    def launch(self, launch: Launch) -> None:
        with self.lock:
            self._open(launch.stream)
            self._refuse_host_data(launch)
            self._node(launch.stream)
            self.steps.append(launch)
            self._note_writes(launch.writes)

    def launch_random(self, launch: Launch, generator: Any, blocks: int) -> None:
        with self.lock:
            self._open(launch.stream)
            self._node(launch.stream)
            self.steps.append(RandomLaunch(launch, generator, blocks))
            self._note_writes(launch.writes)

    def record(self, stream: StreamImpl) -> Mark:
        with self.lock:
            self._open(stream)
            mark = CapturedMark(stream, self, self._node(stream))
            self.steps.append(mark)
            return mark

    def wait(self, stream: StreamImpl, mark: Mark) -> None:
        with self.lock:
            if not self.ended:
                self._wait(stream, mark)
                return
        stream.wait_mark(mark)  # the capture ended meanwhile (another thread): an ordinary wait now

    def _wait(self, stream: StreamImpl, mark: Mark) -> None:
        other = getattr(mark, "capture", None)
        if stream.capture is not self:  # a stream waiting on an event recorded here joins (a fork)
            self._join(stream, mark)
            return
        self._open(stream)
        if other is self:
            self._node(stream, mark.node)  # type: ignore[attr-defined]  # a CapturedMark
        elif other is not None:
            raise self.forbidden(stream, f"waiting on an event recorded in the capture of another graph ({other.label})")
        else:
            pinned = mark.pinned()
            if not pinned.done or pinned.failures:
                self.externals.append(pinned)  # each replay waits for it first

    def forbidden(self, stream: StreamImpl, what: str) -> RuntimeError:
        """Invalidate the capture and return the error naming ``what`` and the capture."""
        error = RuntimeError(
            f"{what} is not allowed while stream {stream.stream_id} of mtia:{stream.device.index} captures "
            f"{self.label}: {_why(what)}. The capture is invalidated: capture_end() will raise; reset() the "
            "graph and capture again"
        )
        if self.error is None:
            self.error = error
        return error

    # --- the bookkeeping (under self.lock) ---------------------------------------------
    def _open(self, stream: StreamImpl) -> None:
        if self.error is not None:
            raise RuntimeError(
                f"stream {stream.stream_id} of mtia:{stream.device.index} captures {self.label}, whose capture was "
                f"invalidated by: {self.error}"
            )
        if self.ended:
            raise RuntimeError(
                f"the capture of {self.label} ended (capture_end() or reset() in another thread) while work was "
                f"enqueued on stream {stream.stream_id}: that work was neither captured nor run"
            )

    def _node(self, stream: StreamImpl, *after: int) -> int:
        """A new node on ``stream``, after its last one (and ``after``); return its index."""
        self.deps.append((self.tails[stream], *after))
        node = self.tails[stream] = len(self.deps) - 1
        return node

    def _note_writes(self, writes: Any) -> None:
        for a in writes:
            if type(a) is DeviceArray and a._block is not None:
                self.written.setdefault(a._block, set()).add(_extent(a))

    def writes_to(self, a: DeviceArray) -> bool:
        """Whether a kernel of this capture writes bytes ``a`` may touch."""
        ranges = self.written.get(a._block) if a._block is not None else None
        if not ranges:
            return False
        lo, hi = _extent(a)
        return any(start < hi and lo < end for start, end in tuple(ranges))  # a copy: other threads add

    def _join(self, stream: StreamImpl, mark: Mark) -> None:
        """``stream`` waits on ``mark``, recorded in this capture: it captures from now on."""
        if stream.capture is not None:
            raise self.forbidden(stream, f"a stream that captures another graph ({stream.capture!r}) joining")
        self._open(stream)
        if stream.device is not self.device:
            raise self.forbidden(
                stream, f"a stream of another device (mtia:{stream.device.index}) joining: copies and waits across "
                "devices"
            )
        stream.pool = self.pool
        instruments.capturing(stream, self)
        self.tails[stream] = -1
        self._node(stream, mark.node)  # type: ignore[attr-defined]  # a CapturedMark

    def _refuse_host_data(self, launch: Launch) -> None:
        """Refuse the copies that read or write host memory (``copy_kernel`` with a host side).

        A scalar written with ``a[...] = 0`` is a constant of the graph; host arrays are not.
        """
        kernel, args = launch.kernel, launch.args
        if kernel is copy_kernel:
            if type(args[1]) is np.ndarray:
                raise self.forbidden(launch.stream, "asarray() of host data (or a host array as an operand)")
            if type(args[0]) is np.ndarray:
                raise self.forbidden(launch.stream, "a copy to the host (to_host()/numpy())")
        elif kernel is setitem_kernel and type(args[1]) is np.ndarray and args[1].ndim:
            raise self.forbidden(launch.stream, "a[...] = <host array> (host data, as asarray() of host data)")

    # --- the end ------------------------------------------------------------------------
    def end(self) -> None:
        """Stop capturing on every stream; the captured events become replays' events."""
        with self.lock:
            self.ended = True
            streams = list(self.tails)
        for stream in streams:
            if stream.capture is self:
                instruments.capturing(stream, None)
                stream.pool = stream.stream_id
        for step in self.steps:
            if type(step) is CapturedMark:
                step.capture = None
        guard.remove(self)

    def unjoined(self) -> list[StreamImpl]:
        """The streams that joined but were not joined back into the origin stream."""
        seen: set[int] = set()
        todo = [self.tails[self.origin]]
        while todo:
            node = todo.pop()
            if node >= 0 and node not in seen:
                seen.add(node)
                todo.extend(self.deps[node])
        return [s for s, tail in self.tails.items() if s is not self.origin and tail not in seen]

    def __repr__(self) -> str:
        return f"<capture of {self.label} on stream {self.origin.stream_id}>"


def end_from_finalizer(capture: GraphCapture) -> None:
    """End ``capture`` from a finalizer (a graph dropped while capturing).

    The collector may run a finalizer on a thread that holds one of the locks ``end()``
    takes (an allocation inside a capture's hook): blocking there would deadlock. If
    any of them is held, a helper thread ends the capture as soon as it is released.
    """
    if capture.lock.locked() or guard.lock.locked() or instruments._lock.locked():
        threading.Thread(target=capture.end, name="mtia-graph-end", daemon=True).start()
    else:
        capture.end()


class _HostCopyGuard(Observer):
    """While captures run: refuse copying to the host, on any stream, memory they write."""

    def __init__(self) -> None:
        self.captures: tuple[GraphCapture, ...] = ()
        self.lock = threading.Lock()

    def add(self, capture: GraphCapture) -> None:
        with self.lock:
            if not self.captures:
                instruments.add(self)
            self.captures = (*self.captures, capture)

    def remove(self, capture: GraphCapture) -> None:
        with self.lock:
            if capture not in self.captures:
                return
            self.captures = tuple(c for c in self.captures if c is not capture)
            if not self.captures:
                instruments.remove(self)

    def on_launch(self, stream: StreamImpl, kernel: Any, args: tuple[Any, ...], reads: Sequence[Any],
                  writes: Sequence[Any], t_ns: int) -> None:  # fmt: skip
        if kernel is copy_kernel and type(args[0]) is np.ndarray:
            for capture in self.captures:
                for a in reads:
                    if type(a) is DeviceArray and capture.writes_to(a):
                        raise capture.forbidden(stream, "to_host()/numpy() of memory the capture writes")
        return None


guard = _HostCopyGuard()
"""The observer that refuses host copies of memory a running capture writes."""
