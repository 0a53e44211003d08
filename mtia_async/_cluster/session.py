"""The worker's side of a client session: a local runtime that runs what the client sends.

A session lives as long as the comm its client opened (``server.session_handler``): when
the client disconnects (or its process dies), the session shuts its runtime down and
drops its segments, so no device memory outlives the client.

It reuses the local runtime as it is: a private ``Runtime`` with one local device per
remote device this worker holds, one local stream per client stream (created at its
first batch), the local drain loop, marks, waits and failures. The session only
translates:

* batches are applied in each stream's ``seq`` order (a reorder buffer), their items
  unpickled (``wire.loads``; a launch with scalar arguments only needs no unpickling)
  and launched on the local stream; a kernel that does not unpickle becomes a kernel
  failure in its place;
* a mark ``("M", mid)`` is a local event record whose completion is posted back (time
  on this worker's clock, failures); a wait ``("W", mid)`` on a mark of this session
  waits locally (a placeholder stands in when the wait arrives first); ``("X", xid)``
  waits for a mark of another worker, completed by an ``xd`` entry the client relays;
* failures are sent once, the exception pickled with its formatted traceback as a
  note (or, when it does not pickle, a ``RemoteError`` carrying the text), and
  reported locally when the client reports them (``("C", fid)``);
* segment memory is a ``uint8`` numpy array per segment uid; releases, forgotten
  kernels and acknowledged marks wait until the batches sent before them arrived; a
  segment the host could not allocate fails each launch or copy to the host that uses
  it as a kernel failure (``KernelError`` on the client), never the session;
* a reply that cannot be sent (it does not serialise) ends the session: what it held is
  lost, so the client is told why (``("x", reason)``) and fails the devices as for a dead
  worker; the error is logged here (``cluster_reply_failed``). The session also ends,
  logged, if its writer stops for any other reason: it never stops replying silently.

Threads: frames are applied on the Dask worker's event loop; kernels run on the local
devices' worker threads, which post replies (``post``: a deque append and, at most once
per write, a ``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from typing import Any

import cloudpickle
import numpy as np

from .._arrays.array import DeviceArray
from .._config import Config
from .._core.mark import Failure, Mark, safe_str
from .._core.runtime import Runtime
from .._core.stream import StreamImpl
from .._log import emit
from .link import unpickle_failures
from .standins import copy_to_host, exception_blob, kernel_did_not_unpickle, timed
from .wire import dtype_of, loads

__all__ = ["SESSIONS", "WorkerSession"]

SESSIONS: dict[tuple[str, str], WorkerSession] = {}
"""The live sessions of this worker process, by (session key, worker address)."""

_new_obj = object.__new__


def _worker_array(dev: Any, view: np.ndarray[Any, Any] | None, shape: tuple[int, ...], dtype: np.dtype[Any],
                  block: Any = None) -> DeviceArray:  # fmt: skip
    a: DeviceArray = _new_obj(DeviceArray)
    a._shape = shape
    a._dtype = dtype
    a._dev = dev
    a._block = block
    a._base = _SENTINEL if block is not None else None  # never freed through an allocator here
    a._offset = 0
    a._strides = None
    a._view = view
    return a


_SENTINEL: Any = _worker_array(None, None, (), np.dtype(np.uint8))


class _Fetch:
    """The memory of an array of another worker's device: fetched when a kernel first reads it."""

    def __init__(self, session: WorkerSession, address: str, pid: tuple[Any, ...]) -> None:
        self.session = session
        self.address = address
        self.pid = pid

    def view(self, *unused: object) -> np.ndarray[Any, Any]:
        from distributed.utils import sync

        worker = self.session.worker
        _, dev, uid, off, shape, code, strides = self.pid
        rpc = worker.rpc(self.address)
        data = sync(worker.loop, rpc.mtia_async_fetch, key=self.session.key, uid=uid, offset=off,
                    shape=shape, dtype=code, strides=strides)  # fmt: skip
        return np.asarray(data).reshape(tuple(shape))


class _Stream:
    __slots__ = ("local", "next", "pending")

    def __init__(self, local: StreamImpl) -> None:
        self.local = local
        self.next = 1
        self.pending: dict[int, list[Any]] = {}


class WorkerSession:
    """One client's devices on this worker; see the module docstring."""

    def __init__(self, worker: Any, comm: Any, key: str, devices: list[int], addresses: dict[int, str],
                 workers: int, memory: int) -> None:  # fmt: skip
        self.worker = worker
        self.comm = comm
        # Dask measures every message it writes (dask.sizeof, ~30 us for a small one) to decide whether
        # to (de)serialise it on another thread: a cost per message, and a thread hop for a big one,
        # for nothing here (frames are small lists; arrays travel as their own buffers, uncopied).
        comm.allow_offload = False
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.runtime = Runtime(Config(len(devices), memory, workers, 0), -1)
        self.local = {index: self.runtime.devices[i] for i, index in enumerate(devices)}
        self.addresses = addresses
        self.ext_stream = self.runtime.devices[0].new_stream(0)  # owns placeholders and relayed marks
        self.segs: dict[int, np.ndarray[Any, Any]] = {}
        self.kernels: dict[int, Any] = {}
        self.streams: dict[tuple[int, int], _Stream] = {}
        self.keys: dict[int, tuple[int, int]] = {}  # id(local stream) -> client (device, stream)
        self.marks: dict[int, Mark] = {}
        self.placeholders: dict[int, Mark] = {}
        self.ext: dict[int, Any] = {}  # xid -> a waiting Mark, or (t_ns, failures) when done first
        self.failures: dict[int, Failure] = {}
        self._fid_lock = threading.Lock()
        self._next_fid = 0
        self.gated: list[Any] = []
        self._made: set[int] = set()  # ids of the segment views the kernel being unpickled got
        self.outbox: deque[Any] = deque()
        self.served = 0  # bytes of device memory other workers fetched from this session (to(device))
        self._wake_pending = False
        self.writing = False
        self._ending: asyncio.Future[Any] | None = None  # the session ends: replies can no longer be sent
        self.event = asyncio.Event()
        # Reads send device memory uncopied through a comm's tornado stream (TCP, TLS), which says
        # when the bytes left; another comm (an in-process one hands over the object) gets a copy.
        self.zero_copy = hasattr(getattr(comm, "stream", None), "write")

    # --- lifetime (the worker's event loop) ------------------------------------------------------
    async def run(self) -> None:
        writer = asyncio.create_task(self._writer())
        writer.add_done_callback(self._writer_ended)
        try:
            await self.comm.write({"ok": True, "pid": os.getpid()})
            while True:
                frame = await self.comm.read()
                self.apply(frame)
        except Exception as exc:
            if not self.comm.closed():
                emit("error", "cluster_session_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            writer.cancel()
            self.close()

    def close(self) -> None:
        """Stop the local runtime and drop every segment: nothing outlives the client."""
        SESSIONS.pop((self.key, self.worker.address), None)
        self.runtime.shutdown(None)
        self.segs.clear()
        self.kernels.clear()
        self.marks.clear()
        self.placeholders.clear()
        self.failures.clear()
        self.streams.clear()
        if not self.comm.closed():
            self.comm.abort()

    def nbytes(self) -> int:
        return sum(seg.nbytes for seg in self.segs.values())

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        """The writer stopped: unless the session is ending anyway, end it, telling the client why."""
        if task.cancelled() or self.comm.closed() or self._ending is not None:
            return
        exc = task.exception()  # not a reply that failed to serialise (the writer ends those itself): a bug
        why = "its reply writer stopped" + (f": {type(exc).__name__}: {safe_str(exc)}" if exc is not None else "")
        self._ending = asyncio.ensure_future(self._end(why))

    async def _end(self, why: str) -> None:
        """Replies can no longer be sent: log why, tell the client (``("x", why)``), and end the session."""
        emit("error", "cluster_reply_failed", error=why, key=self.key)
        try:  # plain strings: this one serialises
            await asyncio.wait_for(self.comm.write({"e": [("x", why)]}), 5.0)
        except Exception:
            pass  # the comm is broken too: the client sees it close
        self.comm.abort()  # run() ends, and close() frees everything

    async def _writer(self) -> None:
        while True:
            await self.event.wait()
            self.event.clear()
            events = []
            sent: list[Mark] = []  # reads' marks in this message: done once its bytes left
            while self.outbox:
                event = self.outbox.popleft()
                if event.__class__ is Mark:
                    sent.append(event)
                else:
                    events.append(event)
            self.writing = True
            try:
                if events:
                    await self.comm.write({"e": events})
            except Exception as exc:
                if self.comm.closed():
                    return  # the client went away: run() ends the session
                # The events of this message are gone (marks reached, reads' bytes, failures): the client
                # cannot tell which waits they concerned, so the session ends as a dead worker's would.
                self._ending = asyncio.current_task()
                await self._end(f"a reply failed to serialise: {type(exc).__name__}: {safe_str(exc)}")
                return
            finally:
                self.writing = False
                if sent:
                    self._when_flushed(sent)

    def _when_flushed(self, marks: list[Mark]) -> None:
        """Complete ``marks`` once everything written so far is in the socket (the worker's loop)."""

        def done(*unused: object) -> None:
            now = time.perf_counter_ns()
            for mark in marks:
                mark.complete((), now)

        stream = getattr(self.comm, "stream", None) if self.zero_copy else None
        try:
            # Dask's comm hands the frames to the stream without waiting for them to leave; tornado's
            # write() returns a future done once every byte written before it is in the socket.
            waiter = stream.write(b"") if stream is not None else None
        except Exception:  # the stream closed: nothing holds the bytes any more
            waiter = None
        if waiter is None:
            done()
        else:
            waiter.add_done_callback(done)

    async def goodbye(self) -> None:
        """The worker is closing: tell the client (its devices fail, but as a close, not a crash)."""
        self.post(("bye",))
        for _ in range(100):  # at most ~1 s: the writer sends it with whatever was queued before
            if not self.outbox and not self.writing:
                return
            await asyncio.sleep(0.01)

    def post(self, *events: Any) -> None:
        """Queue replies (any thread; one ``extend``); the writer sends what accumulated in one message."""
        self.outbox.extend(events)
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                pass  # the worker's loop is closing

    def _wake(self) -> None:
        self._wake_pending = False
        self.event.set()

    # --- frames ------------------------------------------------------------------------------------
    def apply(self, frame: dict[str, Any]) -> None:
        if "ping" in frame:  # the client estimates the offset between our clocks
            self.post(("p", time.perf_counter_ns()))
        for kid, blob in frame.get("defs", ()):
            try:
                self.kernels[kid] = cloudpickle.loads(blob)
            except BaseException as exc:
                self.kernels[kid] = exc
        for dev, uid, size in frame.get("res", ()):
            try:
                self.segs[uid] = np.empty(size, dtype=np.uint8)
            except MemoryError as exc:  # each launch or copy to the host using it fails, naming the segment
                emit("error", "cluster_segment_not_backed", device=dev, segment=uid, size=size, error=safe_str(exc))
        for xid, t_ns, blob in frame.get("xd", ()):
            self._ext_done(xid, t_ns, blob)
        for dev, sid, prio, seq, items in frame.get("b", ()):
            self._batch(dev, sid, prio, seq, items)
        for entry in frame.get("g", ()):
            self.gated.append(entry)
        if self.gated:
            self._apply_gated()

    def _batch(self, dev: int, sid: int, prio: int, seq: int, items: list[Any]) -> None:
        key = (dev, sid)
        st = self.streams.get(key)
        if st is None:
            local = self.local[dev].new_stream(prio)
            st = self.streams[key] = _Stream(local)
            self.keys[id(local)] = key
        if seq != st.next:
            st.pending[seq] = items  # arrived early: it waits for those before it
            return
        while True:
            self._run(key, st.local, seq, items)
            st.next = seq = seq + 1
            next_items = st.pending.pop(seq, None)
            if next_items is None:
                break
            items = next_items
        if self.gated:
            self._apply_gated()

    def _apply_gated(self) -> None:
        keep = []
        for entry in self.gated:
            vector, releases, forgets, acks = entry
            if all((st := self.streams.get((d, s))) is not None and st.next > seq for d, s, seq in vector):
                for uid in releases:
                    self.segs.pop(uid, None)  # queued kernels hold views: the memory goes when they ran
                for kid in forgets:
                    self.kernels.pop(kid, None)
                for mid in acks:
                    self.marks.pop(mid, None)
            else:
                keep.append(entry)
        self.gated = keep

    def _run(self, key: tuple[int, int], ls: StreamImpl, seq: int, items: list[Any]) -> None:
        last = len(items) - 1
        for i, item in enumerate(items):
            tag = item[0]
            if tag == "K":
                ls.launch(*self._load(item[1]))
            elif tag == "F":  # a function with scalar arguments: nothing to unpickle
                ls.launch(*self._plain(item[1], item[2]))
            elif tag == "T":  # profiled on the client: timed here
                fn, args = self._load(item[2])
                ls.launch(timed, (fn, args, self.post, item[1]))
            elif tag == "M":
                self._watch(ls.record_event(), item[1], [key[0], key[1], seq] if i == last else None)
            elif tag == "W":
                mid = item[1]
                mark = self.marks.get(mid) or self.placeholders.get(mid)
                if mark is None:
                    mark = self.placeholders[mid] = Mark(self.ext_stream)
                ls.wait_mark(mark)
            elif tag == "X":
                ls.wait_mark(self._ext_mark(item[1]))
            elif tag == "C":
                failure = self.failures.pop(item[1], None)
                if failure is not None:
                    failure.report()
            else:  # "R": a copy to the host; the stream goes on once its bytes are on the wire
                try:
                    view = self.resolve(item[2])
                except BaseException as exc:  # its segment is not backed: this copy fails, as a kernel
                    exc.add_note("(raised while finding the array to copy to the host on the Dask worker)")
                    ls.launch(copy_to_host, (exc,))
                    continue
                sent = Mark(self.ext_stream)
                ls.launch(self._read_kernel, (item[1], view, sent))
                ls.wait_mark(sent)
        if not items or items[-1][0] != "M":
            self._watch(ls.record_event(), None, [key[0], key[1], seq])

    def _load(self, blob: bytes) -> tuple[Any, tuple[Any, ...]]:
        """A launch's ``(kernel, args)``; a kernel that raises what unpickling raised if it fails."""
        made = self._made = set()
        try:
            fn, args = loads(blob, self.resolve)
        except BaseException as exc:
            exc.add_note("(raised while unpickling the kernel on the Dask worker)")
            return kernel_did_not_unpickle, (exc,)
        for x in args:
            if type(x) is np.ndarray and id(x) not in made:
                x.flags.writeable = False  # a host array's copy: a write to it would be lost
        return fn, args

    def _plain(self, kid: int, args: list[Any]) -> tuple[Any, tuple[Any, ...]]:
        """The ``(kernel, args)`` of an ``("F", kid, args)`` launch: scalars, and handles (lists)."""
        try:
            fn = self.kernels.get(kid)
            if fn is None:
                raise KeyError(f"kernel {kid} was never sent to this worker")
            if isinstance(fn, BaseException):
                raise fn
            resolve = self.resolve
            return fn, tuple([resolve(a) if a.__class__ is list or a.__class__ is tuple else a for a in args])
        except BaseException as exc:
            if not any("unpickling the kernel" in n for n in getattr(exc, "__notes__", ())):
                exc.add_note("(raised while unpickling the kernel on the Dask worker)")
            return kernel_did_not_unpickle, (exc,)

    def _watch(self, mark: Mark, mid: int | None, batch: list[int] | None) -> None:
        placeholder = None
        if mid is not None:
            placeholder = self.placeholders.pop(mid, None)
            self.marks[mid] = mark

        def reached() -> None:
            self.post(("m", mid, mark.t_ns, self._fids(mark.failures), batch))
            if placeholder is not None:
                placeholder.complete(mark.failures, mark.t_ns)

        if not mark.add_waiter(reached):
            reached()

    def _fids(self, failures: tuple[Failure, ...]) -> list[int]:
        """The ids of ``failures``, posting the definition of each new one first (any thread)."""
        fids = []
        with self._fid_lock:
            for failure in failures:
                fid = failure.wire_id
                if fid is None:
                    self._next_fid += 1
                    fid = failure.wire_id = self._next_fid
                    self.failures[fid] = failure
                    key = self.keys.get(id(failure.stream), (-1, -1))
                    self.post(("f", fid, key[0], key[1], failure.kernel, exception_blob(failure)))
                fids.append(fid)
        return fids

    def _ext_mark(self, xid: int) -> Mark:
        state = self.ext.pop(xid, None)
        mark = Mark(self.ext_stream)
        if isinstance(state, tuple):
            mark.complete(state[1], state[0])
        else:
            self.ext[xid] = mark
        return mark

    def _ext_done(self, xid: int, t_ns: int, blob: bytes) -> None:
        failures = tuple(Failure(self.ext_stream, exc, kernel) for kernel, exc in unpickle_failures(blob)) if blob else ()
        state = self.ext.pop(xid, None)
        if isinstance(state, Mark):
            state.complete(failures, t_ns)
        else:
            self.ext[xid] = (t_ns, failures)

    def _read_kernel(self, rid: int, view: Any, sent: Mark) -> None:
        """Send ``view``'s bytes uncopied; the stream waits for ``sent``, done once they are in the socket.

        So no later work changes bytes the writer still holds (a copy engine's copy occupies its
        stream the same way). An in-process comm would hand the client this very memory: a copy.
        """
        from distributed.protocol import to_serialize

        try:
            data = view._np() if type(view) is DeviceArray else view
            if not self.zero_copy:
                data = data.copy(order="C")
            event = ("r", rid, to_serialize(data))
        except BaseException:
            sent.complete((), 0)
            raise
        self.post(event, sent)  # the writer takes both, or neither yet

    # --- handles -> worker objects -----------------------------------------------------------------
    def resolve(self, pid: Any) -> Any:
        tag = pid[0]
        if tag == "K":
            fn = self.kernels[pid[1]]
            if isinstance(fn, BaseException):
                raise fn
            return fn
        if tag == "U":
            return getattr(np, pid[1])
        if tag == "D":
            return dtype_of(pid[1])
        if tag == "E":
            return _worker_array(None, None, tuple(pid[1]), dtype_of(pid[2]))
        _, dev, uid, off, shape, code, strides = pid
        shape, dtype = tuple(shape), dtype_of(code)
        local = self.local.get(dev)
        if local is None:
            return _worker_array(None, None, shape, dtype, _Fetch(self, self.addresses[dev], pid))
        seg = self.segs.get(uid)
        if seg is None:
            raise MemoryError(f"the Dask worker holds no memory for segment {uid} of mtia:{dev} (it could not back it)")
        view = np.ndarray(shape, dtype, seg, off, None if strides is None else tuple(strides))
        if tag == "V":
            self._made.add(id(view))
            return view
        return _worker_array(local, view, shape, dtype)

    def view_of(self, uid: int, offset: int, shape: list[int], code: str, strides: list[int] | None) -> Any:
        """A contiguous copy (or view) of device memory, for another worker's fetch."""
        seg = self.segs[uid]
        view = np.ndarray(tuple(shape), dtype_of(code), seg, offset, None if strides is None else tuple(strides))
        self.served += view.nbytes
        return np.ascontiguousarray(view)
