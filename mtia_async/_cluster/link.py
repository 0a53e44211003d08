"""Link: the client's side of one Dask worker's session (one comm, one writer, one reader).

Threads: every method named ``*_threadsafe`` or documented "any thread" only appends to
a deque and wakes the link; everything else runs on the connection's I/O thread
(``mtia_async-cluster-io``), which owns the comm and all the state below.

Client -> worker, one **frame** per write (built when the writer gets to it, so what
accumulates while a write is in progress goes in the next one):

* ``defs``: kernels pickled once (``wire``), before any batch that uses them;
* ``res``: segments to back (``backing``);
* ``xd``: marks of other devices that a stream of this worker waits for, now done;
* ``b``: batches ``(device, stream, priority, seq, items)``; each stream's batches are
  numbered and the worker applies them in ``seq`` order whatever order they arrive in
  (a reorder buffer): FIFO never depends on the transport;
* ``g``: ops that must wait until every batch sent before them has arrived (segment
  releases, forgotten kernels, acknowledged marks), with the ``seq`` of each stream
  they wait for.

Worker -> client: events in the order they happened on the worker: failure
definitions (``f``), read data (``r``), marks reached (``m``: time, failures, and for a
batch's last mark the batch it ends), and, when the worker could not send a reply, the
reason it ends the session (``x``: the link fails as for a dead worker).

A read's box stays in ``reads`` until its bytes come, or until the batch that carried it
is done without them (its copy failed on the worker: the caller's wait raises that
``KernelError``); a read's bytes always come before the end of its batch.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cloudpickle
import numpy as np

from .._core.mark import Clear, Failure, Mark, WaitOn
from .._log import emit
from .device import ReadItem
from .wire import handle_of

if TYPE_CHECKING:
    from .._core.stream import StreamImpl
    from .connection import Connection
    from .device import RemoteDevice, RemoteQueue

__all__ = ["Link", "RemoteError", "pickle_failures", "unpickle_failures"]

MAX_BATCH = 4096  # items per batch: a long queue goes out as several batches of one frame
_mids = itertools.count(1)
_xids = itertools.count(1)
_rids = itertools.count(1)


class RemoteError(Exception):
    """A kernel's exception that could not be brought back as itself (it did not unpickle)."""


def pickle_failures(failures: tuple[Failure, ...]) -> bytes:
    """``[(kernel, exception)]`` of a mark's failures, for a worker waiting on it."""
    items = [(f.kernel, f.exc) for f in failures]
    try:
        return cloudpickle.dumps(items, protocol=5)  # type: ignore[no-any-return]
    except Exception:  # an exception that does not pickle: its type, message and notes as text
        return cloudpickle.dumps(  # type: ignore[no-any-return]
            [(k, RemoteError("\n".join([f"{type(e).__name__}: {e}", *getattr(e, "__notes__", ())]))) for k, e in items],
            protocol=5,
        )


def unpickle_failures(blob: bytes) -> list[tuple[str | None, BaseException]]:
    try:
        items: list[tuple[str | None, BaseException]] = cloudpickle.loads(blob)
        return items
    except Exception as exc:
        return [("<unknown>", RemoteError(f"a failure could not be unpickled: {type(exc).__name__}: {exc}"))]


class Link:
    """The client's side of one worker session; see the module docstring."""

    def __init__(self, conn: Connection, address: str, comm: Any) -> None:
        self.conn = conn
        self.address = address
        self.comm = comm
        self.loop: asyncio.AbstractEventLoop = conn.loop
        self.devices: dict[int, RemoteDevice] = {}
        self.failed: str | None = None
        self.closing = False  # the worker said it is closing: its loss is no crash
        # any thread -> the I/O thread
        self.wanted: deque[tuple[RemoteQueue, StreamImpl | None]] = deque()
        self.defs: deque[tuple[int, bytes]] = deque()
        self.sent_kernels: set[int] = set()
        self.reserves: deque[tuple[int, int, int]] = deque()
        self.releases: deque[int] = deque()
        self.forgets: deque[int] = deque()
        self.xdone: deque[tuple[int, int, bytes]] = deque()
        self.reads: dict[int, list[np.ndarray[Any, Any]]] = {}  # read id -> the reader's box
        # the profiler's records of kernels out on the worker, with the ring their timings go to
        self.timings: dict[int, tuple[tuple[Any, ...], Callable[[tuple[Any, ...]], None]]] = {}
        self.offset = 0  # add to the worker's perf_counter_ns() to get ours (0 on the same host)
        self._wake_pending = False
        # the I/O thread only
        self.event = asyncio.Event()
        self.held: dict[tuple[int, int], tuple[RemoteQueue, StreamImpl]] = {}
        self.marks: dict[int, Mark] = {}  # mid -> a client mark the worker will complete
        self.mids: dict[Mark, int] = {}  # the mid given to a mark (before or when it is sent)
        self.failures: dict[int, Failure] = {}  # fid -> failure (until reported)
        self.fids: dict[int, int] = {}  # id(failure) -> fid
        self.acks: list[int] = []
        self.open: dict[tuple[int, int], RemoteQueue] = {}  # streams with batches not done
        self.reorder: random.Random | None = None  # tests: deliver batches out of order
        self.late: list[Any] = []  # batches the reorder test holds back for a later frame
        self.shuffled = 0  # frames whose batches went out in another order than they were made
        self.tasks: list[asyncio.Task[None]] = []

    # --- any thread ------------------------------------------------------------------------
    def wake_threadsafe(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                pass  # the loop is closed: the runtime shut down

    def _wake(self) -> None:
        self._wake_pending = False
        self.event.set()

    def request(self, q: RemoteQueue, stream: StreamImpl | None) -> None:
        """Drain ``q`` soon; with ``stream``, the link takes the stream (its token is ours)."""
        self.wanted.append((q, stream))
        self.wake_threadsafe()

    def kernel_id(self, fn: Callable[..., object]) -> int:
        """The id of kernel ``fn``, pickled once per connection and sent once to this worker."""
        kid, blob = self.conn.kernel(fn)
        if kid not in self.sent_kernels:
            self.sent_kernels.add(kid)
            self.defs.append((kid, blob))
        return kid

    def reserve(self, device: int, uid: int, size: int) -> None:
        self.reserves.append((device, uid, size))
        self.wake_threadsafe()  # backed at once (rare: segments are cached), not at first use

    def release(self, uid: int) -> None:
        self.releases.append(uid)
        self.wake_threadsafe()

    def forget_kernel(self, kid: int) -> None:
        if kid in self.sent_kernels:
            self.sent_kernels.discard(kid)
            self.forgets.append(kid)

    def new_read(self, box: list[np.ndarray[Any, Any]]) -> int:
        """A read id whose reply goes in ``box`` (its item: an array of the result's shape and dtype)."""
        rid = next(_rids)
        self.reads[rid] = box
        return rid

    def ext_done(self, xid: int, mark: Mark) -> None:
        """A mark another stream of this worker waits for is done (any thread)."""
        self.xdone.append((xid, mark.t_ns, pickle_failures(mark.failures)))
        self.wake_threadsafe()

    # --- the writer (I/O thread) -------------------------------------------------------------
    async def writer(self) -> None:
        try:
            while True:
                await self.event.wait()
                self.event.clear()
                frame = self._frame()
                if frame:
                    await self.comm.write(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fail(f"the connection to its Dask worker {self.address} broke ({type(exc).__name__}: {exc})", exc)

    def _frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {}
        if self.defs:
            frame["defs"] = _drain(self.defs)
        if self.reserves:
            frame["res"] = _drain(self.reserves)
        if self.xdone:
            frame["xd"] = _drain(self.xdone)
        batches: list[Any] = []
        while self.wanted:
            q, stream = self.wanted.popleft()
            if stream is not None:
                self.held[q.key] = (q, stream)
            self._drain_queue(q, batches)
        if self.reorder is not None:
            batches = self._shuffle(batches)
        if batches:
            frame["b"] = batches
        gated = [_drain(self.releases), _drain(self.forgets), self.acks]
        self.acks = []
        if any(gated):
            frame["g"] = [[[[k[0], k[1], q.seq] for k, q in self.open.items()], *gated]]
        return frame

    def _shuffle(self, batches: list[Any]) -> list[Any]:
        rng = self.reorder
        assert rng is not None
        pool = self.late + batches
        before = list(pool)
        rng.shuffle(pool)
        keep = [b for b in pool if rng.random() < 0.3]
        self.late = keep
        self.shuffled += keep != [] or any(a is not b for a, b in zip(before, pool))
        if keep:
            self.loop.call_later(0.002, self.event.set)
        return [b for b in pool if all(b is not k for k in keep)]

    def _drain_queue(self, q: RemoteQueue, batches: list[Any]) -> None:
        q.flush_pending = False
        pop = q.popleft
        while q:
            items: list[Any] = []
            refs: list[Any] = []
            while q and len(items) < MAX_BATCH:
                first = pop()
                second = pop()
                if first is None:
                    self._encode(second, items, refs)
                else:
                    items.append(first if first.__class__ is tuple else ("K", first))  # "T": profiled
                    if second:
                        refs.append(second)
            if not items:
                continue
            q.seq += 1
            q.inflight.append((q.seq, refs))
            self.open[q.key] = q
            batches.append((q.key[0], q.key[1], q.priority, q.seq, items))
        if q.seq == q.done and q.key in self.held:
            self._maybe_release(q)  # nothing was out and nothing came: give the token back

    def _encode(self, item: Any, items: list[Any], refs: list[Any]) -> None:
        kind = type(item)
        if kind is Mark:
            mid = self.mids.get(item)
            if mid is None:
                mid = self.mids[item] = next(_mids)
            self.marks[mid] = item
            items.append(("M", mid))
        elif kind is WaitOn:
            self._encode_wait(item.mark, items)
        elif kind is Clear:
            fid = self.fids.pop(id(item.failure), None)
            if fid is not None:
                self.failures.pop(fid, None)
                items.append(("C", fid))
        else:  # ReadItem: kept (with its array) until its batch is done
            refs.append(item)
            items.append(("R", item.rid, handle_of(item.array)))

    def _encode_wait(self, mark: Mark, items: list[Any]) -> None:
        source = mark.stream.device
        if not mark.done and getattr(source, "link", None) is self:
            mid = self.mids.get(mark)
            if mid is None:
                mid = self.mids[mark] = next(_mids)
            items.append(("W", mid))  # the worker completes it itself: no round trip
            return
        if mark.done and not mark.failures:
            return
        xid = next(_xids)
        items.append(("X", xid))
        if not mark.add_waiter(lambda: self.ext_done(xid, mark)):
            self.ext_done(xid, mark)

    # --- the reader (I/O thread) ---------------------------------------------------------------
    async def reader(self) -> None:
        try:
            while True:
                msg = await self.comm.read()
                self._replies(msg["e"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.closing:
                self.fail(f"its Dask worker {self.address} closed", None)
            else:
                self.fail(f"its Dask worker {self.address} died or disconnected ({type(exc).__name__}: {exc})", exc)

    def _replies(self, events: list[Any]) -> None:
        for ev in events:
            kind = ev[0]
            if kind == "m":
                self._mark_reached(ev[1], ev[2], ev[3], ev[4])
            elif kind == "r":
                box = self.reads.pop(ev[1], None)
                if box is not None:
                    self._received(box, np.asarray(ev[2]))
            elif kind == "f":
                self._failure(ev[1], ev[2], ev[3], ev[4], ev[5])
            elif kind == "bye":  # the worker is closing on purpose (its cluster is shutting down)
                self.closing = True
            elif kind == "x":  # the worker could not send a reply: it ends the session, whose state is lost
                why = f"its Dask worker {self.address} could not send a reply and ended the session ({ev[1]})"
                self.fail(why, RemoteError(ev[1]))
            elif kind == "t":  # a profiled kernel ran: note it as the profiler's worker wrapper does
                timing = self.timings.pop(ev[1], None)
                if timing is not None:
                    rec, done = timing
                    done((rec, ev[2] + self.offset, ev[3] + self.offset, (f"{ev[4]} @ {self.address}", ev[5]), ev[6]))

    @staticmethod
    def _received(box: list[np.ndarray[Any, Any]], data: np.ndarray[Any, Any]) -> None:
        """Put a read's bytes in its box: the received array itself when the caller may own it.

        Dask deserialises into buffers of its own; a writable, C-contiguous array of the
        right dtype is handed over as it is (no copy of the bytes), anything else is copied.
        """
        host = box[0]
        if data.dtype == host.dtype and data.size == host.size and data.flags.writeable and data.flags.c_contiguous:
            box[0] = data.reshape(host.shape)
        else:
            np.copyto(host, data.reshape(host.shape), casting="no")

    def _failure(self, fid: int, dev: int, sid: int, kernel: str | None, blob: bytes) -> None:
        items = unpickle_failures(blob)
        exc = items[0][1]
        held = self.held.get((dev, sid))
        device = self.devices[dev]
        stream = held[1] if held is not None else device.streams.get(sid)
        if stream is None:
            return  # the stream was dropped with nothing out: nobody can wait for it
        failure = Failure(stream, exc, kernel)
        self.failures[fid] = failure
        self.fids[id(failure)] = fid
        with device.lock:
            device.unreported[id(failure)] = failure

    def _mark_reached(self, mid: int | None, t_ns: int, fids: list[int], batch: Any) -> None:
        failures = tuple(self.failures[f] for f in fids if f in self.failures)
        mark = None
        if mid is not None:
            mark = self.marks.pop(mid, None)
            self.acks.append(mid)
            if mark is not None:
                self.mids.pop(mark, None)
                mark.stream.unreported = tuple(f for f in failures if not f.reported)
        if batch is not None:
            held = self.held.get((batch[0], batch[1]))
            if held is not None:
                q, stream = held
                if mid is None:
                    stream.unreported = tuple(f for f in failures if not f.reported)
                self._batch_done(q, batch[2])
        if mark is not None:  # after the token went back (as a local worker does): a woken waiter sees query()
            mark.complete(failures, t_ns + self.offset)
        if self.acks and len(self.acks) > 256:
            self.event.set()

    def _batch_done(self, q: RemoteQueue, seq: int) -> None:
        q.done = seq
        inflight = q.inflight
        reads = self.reads
        while inflight and inflight[0][0] <= seq:
            refs = inflight.popleft()[1]  # drops the arrays it kept alive: their memory may be freed now
            if reads:  # a read of the batch whose bytes did not come never will (its copy failed)
                for ref in refs:
                    if ref.__class__ is ReadItem:
                        reads.pop(ref.rid, None)
        if q.done == q.seq:
            self.open.pop(q.key, None)
            self._maybe_release(q)

    def _maybe_release(self, q: RemoteQueue) -> None:
        """Nothing of ``q`` is out: give the token back, unless work came meanwhile."""
        if not q:
            entry = self.held.pop(q.key, None)
            q.token.append(True)
            if not q:
                return
            try:
                q.token.pop()  # a launch raced the hand-back: take the stream again
            except IndexError:
                return  # the racing launcher took the token and handed the stream to us
            if entry is not None:
                self.held[q.key] = entry
        q.flush_pending = True
        self.wanted.append((q, None))
        self.event.set()

    # --- failure ----------------------------------------------------------------------------------
    def fail(self, why: str, cause: BaseException | None) -> None:
        """The worker is gone: fail its devices and every mark it would have completed."""
        if self.failed is not None:
            return
        self.failed = why
        level = "info" if self.closing else "error"  # a cluster closed on purpose is no error
        emit(level, "cluster_worker_lost", worker=self.address, error=why)
        for dev in self.devices.values():
            dev.fail_remote(why, cause, level)
        reason = next(iter(self.devices.values())).crash if self.devices else None
        marks, self.marks = self.marks, {}
        for mark in marks.values():
            failure = Failure(mark.stream, reason or RuntimeError(why), None)
            failure.reported = True
            mark.complete((failure,), 0)
        self.held.clear()
        self.open.clear()
        self.reads.clear()
        self.timings.clear()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


def _drain(d: deque[Any]) -> list[Any]:
    out = []
    while d:
        out.append(d.popleft())
    return out

