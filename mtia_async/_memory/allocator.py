"""The caching allocator of one device, after PyTorch's ``CUDACachingAllocator.cpp``.

Policy as torch's (docs/memory.md has the table): 512-byte rounding, small and large
pools, best fit on the allocating stream with splitting and coalescing (the base class,
``segments.SegmentCache``), reuse only by the allocating stream, ``record_stream``
deferring reuse until the recorded streams' work queued before the free is done, and
before ``OutOfMemoryError`` a wait for pending frees, a release of the cache, a retry.

Speed (a cached malloc + free pair costs ~1 us): the last block freed is settled lazily;
a ``malloc`` of the same size on the same stream that comes next takes it back, leaving
every current statistic as it was before that free, so only the cumulative counters
move. Each call moves a few raw counters; torch's statistics are derived when read.

Threads: one ``RLock`` guards all state. One queue, ``_deferred``, holds the work that
must not take the lock where it arrives, done by the next call that holds it: a ``free``
re-entered from this thread's own call (a ``__del__`` run by garbage collection while the
thread is inside the allocator) and a marker callback arriving then; and a ``free`` on a
kernel worker thread (the last reference to an array died in a queued kernel): taking
the lock there made workers and callers fight over it at every op (GIL switch-interval
stalls of ~5 ms). Such a free is validated and claimed when it arrives (a second free
fails at once). Observers, ``Stream.marker()`` and blocking waits run without the lock.

Deviations from torch: a request of 10 MiB - 511 .. 10 MiB - 1 bytes gets a 20 MiB
segment (the boundary table of the spec; torch rounds first, then gives 10 MiB); among
several cached blocks that fit, the one reused may differ (newest, not lowest address).
"""

from __future__ import annotations

from collections import deque
from functools import partial

from .. import _forksafe as forksafe
from .._thread_role import may_block
from .._thread_role import flags as _thread_flags
from .blocks import (
    ALLOC,
    Backing,
    FREE,
    ONE_EB,
    PENDING,
    SMALL_SIZE,
    Block,
    Chunk,
    Frames,
    Marker,
    Observer,
    PoolKey,
    StreamLike,
    segment_size,
)
from .history import trace_entry
from .pools import GraphPools
from .stats import Counters
from .oom import check_size, oom_message, out_of_memory
from .summary import human_size

__all__ = ["CachingAllocator"]


class CachingAllocator(GraphPools):
    """The caching allocator of one device; thread-safe (see the module docstring).

    Args:
        device: the device index; its addresses start at ``(device + 1) << 40``.
        capacity: device memory in bytes; reserved bytes never exceed it.
        backing: where segments' memory lives (default: host numpy arrays; a cluster
            device's lives on its worker).
    """

    def __init__(self, device: int, capacity: int, backing: Backing | None = None) -> None:
        super().__init__(device, capacity, backing)
        self._lock = forksafe.rlock()
        self._busy = False  # a call is mid-change (read and written by the lock holder only)
        self._deferred: deque[tuple[Chunk, Block | None]] = deque()  # see the module docstring
        self._draining = forksafe.lock()  # held by the one thread doing the deferred work
        self._stash: Block | None = None  # the last block freed, not yet settled
        self._pending: dict[Chunk, None] = {}  # frees waiting for recorded streams
        self._small, self._large, self._all = Counters(), Counters(), Counters()
        self._observers: list[Observer] = []
        self._context = 0  # history: 0 off, 1 frames on live blocks ("state"), 2 and a trace ("all")
        self._frames = True  # record_memory_history(context=None) turns frame capture off

    def __repr__(self) -> str:
        return f"<CachingAllocator mtia:{self.device} capacity={human_size(self.capacity)}>"

    # --- allocation ------------------------------------------------------------------
    def malloc(self, size: int, stream: StreamLike) -> Block | None:
        """Allocate ``size`` bytes for use on ``stream``.

        Args:
            size: bytes, an int >= 0; 0 gives None (the null handle) and changes nothing.
            stream: the allocating stream; once freed, the block is reused only by it.

        Returns:
            A new :class:`Block`, or None when ``size`` is 0.

        Raises:
            TypeError: ``size`` is not an int (a bool included), or ``stream`` is no stream.
            ValueError: ``size`` is negative.
            OutOfMemoryError: the device cannot hold it, even after waiting for pending
                frees and releasing the cache; always for ``size >= 2**60``.
        """
        if self._deferred:
            self._drain_deferred()  # frees queued by workers: their memory may fit this request
        if size.__class__ is not int or size <= 0 or size >= ONE_EB:
            size = self._checked_size(size)
            if size == 0:
                return None
        try:
            key = stream.pool  # its id, or the pool of the graph it captures
        except AttributeError:
            key = self._key_of(stream)  # a stream without a pool attribute (pools.py)
        frames = self._capture() if self._context else None
        lock = self._lock
        lock.acquire()
        self._busy = True
        try:
            last = self._stash
            if last is not None:
                self._stash = None
                chunk = last._chunk
                if last.requested_size == size and chunk.key == key:
                    # Take back the block just freed: every current statistic returns to its
                    # value before that free (so no peak moves); count the free that happened.
                    # A new Block, so a stale handle cannot free the new owner's memory.
                    csize = chunk.size
                    st = self._small if csize <= SMALL_SIZE else self._large
                    st.freed_count += 1
                    st.freed_bytes += csize
                    st.freed_requested += size
                    chunk.frames = None
                    chunk.req = size
                    block = chunk.handle = Block(chunk.ptr, csize, size, stream, chunk)
                    return block
                self._settle(last, None)
            rsize = (size + 511) & -512
            found: Chunk | None = None
            pools = self._streams.get(key)
            if pools is not None:
                bucket = (pools.small if rsize <= SMALL_SIZE else pools.large).get(rsize)
                if bucket:
                    found = bucket.popitem()[0]
            if found is None:
                found = self._alloc_slow(size, rsize, key, stream.stream_id, frames)
            if found is not None:
                return self._hand_out(found, size, stream, frames)
        finally:
            self._busy = False
            lock.release()
            if self._deferred:
                self._drain_deferred()
        return self._malloc_retry(size, stream, frames)

    def _hand_out(self, chunk: Chunk, size: int, stream: StreamLike, frames: Frames | None) -> Block:
        csize = chunk.size
        chunk.state = ALLOC
        chunk.frames = frames
        chunk.req = size
        block = chunk.handle = Block(chunk.ptr, csize, size, stream, chunk)
        (self._small if csize <= SMALL_SIZE else self._large).allocate(csize, size)
        self._all.allocate(csize, size)
        if self._trace is not None:
            self._trace.append(trace_entry("alloc", chunk.ptr, size, chunk.seg.sid, frames))
        return block

    def _checked_size(self, size: object) -> int:
        n = check_size(size)
        if n >= ONE_EB:
            with self._locked():
                reserved, allocated = self._reserved(), self._small.nbytes + self._large.nbytes
            raise out_of_memory(
                "MTIA out of memory. Tried to allocate more than 1EB memory.",
                self.device, n, self.capacity, reserved, allocated, [], 0,
            )
        return n

    def _alloc_slow(self, size: int, rsize: int, key: PoolKey, sid: int, frames: Frames | None) -> Chunk | None:
        """Best fit in the reclaimed, coalesced cache, else a new segment; None if neither fits."""
        self._tidy()
        return self._take_chunk(size, rsize, key, sid, frames)

    def _tidy(self) -> None:
        """Reclaim the pending frees whose streams' work is done, then merge free neighbours."""
        if self._pending:
            self._reclaim_done()
        if self._unmerged:
            self._coalesce_all()

    def _malloc_retry(self, size: int, stream: StreamLike, frames: Frames | None) -> Block:
        """Wait for pending frees, release the cache and retry; else notify observers and raise.

        Pending frees are waited for only where blocking is allowed: never on a kernel
        worker (the work it would wait for may be its own), an event-loop thread or in a
        trio task (the loop would stall); there the error says what is pending instead.
        """
        markers: list[Marker] = []
        may_wait = may_block()
        if may_wait:
            with self._lock:
                markers = [m for chunk in self._pending if chunk.markers for m in chunk.markers]
            for marker in markers:
                if not marker.done:
                    marker.wait()
        rsize, key, sid = (size + 511) & -512, self._key_of(stream), stream.stream_id
        with self._locked():
            self._counts["num_alloc_retries"] += 1
            self._counts["num_sync_all_streams"] += bool(markers)
            self._why = ""
            chunk = self._alloc_slow(size, rsize, key, sid, frames)  # frees that completed may fit it
            if chunk is None:
                self._release_cached()
                self._why = ""
                chunk = self._alloc_slow(size, rsize, key, sid, frames)
            if chunk is not None:
                return self._hand_out(chunk, size, stream, frames)
            self._counts["num_ooms"] += 1
            seg_size, reserved = segment_size(size, rsize), self._reserved()
            allocated = self._small.nbytes + self._large.nbytes
            free = self.capacity - reserved
            if self._trace is not None:
                self._trace.append(trace_entry("oom", free, rsize, sid, frames))
            message = oom_message(self.device, self.capacity, seg_size, size, free, allocated, reserved, self._why)
            if not may_wait and self._pending:
                message += self._pending_note()
            observers = list(self._observers)
        raise out_of_memory(message, self.device, rsize, self.capacity, reserved, allocated, observers, seg_size)

    def _pending_note(self) -> str:
        """What the OOM message adds when memory waits for other streams and this thread may not."""
        nbytes = sum(chunk.size for chunk in self._pending)
        streams = sorted({sid for chunk in self._pending for sid in (chunk.uses or ())})
        return (
            f" {human_size(nbytes)} are pending free until the work queued on stream(s) "
            f"{', '.join(map(str, streams))} of mtia:{self.device} is done (record_stream); an allocation "
            "never waits for it on an event-loop thread, in a trio task or in a kernel: await those "
            "streams' synchronize() (or synchronize() of the device), then allocate again."
        )

    # --- freeing ---------------------------------------------------------------------
    def free(self, block: Block) -> None:
        """Return ``block`` to the cache (once its recorded streams' work is done, if any).

        Safe from any thread, also from a ``__del__`` that garbage collection runs while
        this thread is inside the allocator, and from a kernel worker thread (both are
        queued and done by the next call that holds the lock; see the module docstring).

        Args:
            block: a live block from :meth:`malloc` of this allocator.

        Raises:
            TypeError: ``block`` is not a Block.
            ValueError: "invalid device pointer": freed already, or from another allocator.
        """
        try:
            chunk = block._chunk
        except AttributeError:
            raise TypeError(
                f"invalid device pointer: expected a Block returned by malloc(), got {type(block).__name__} {block!r}"
            ) from None
        if _thread_flags.worker:
            self._defer_free(block, chunk)  # see the module docstring: never the lock here
            return
        if chunk.uses is not None:
            return self._free_pending(block, chunk)
        lock = self._lock
        lock.acquire()
        if self._busy:
            try:
                self._defer_free(block, chunk)
            finally:
                lock.release()
            return
        self._busy = True
        try:
            if chunk.handle is not block or chunk.owner is not self:
                raise self._invalid(block)
            chunk.handle = None
            if self._context:
                self._settle(block, self._capture() if self._trace is not None else None)
            else:
                last = self._stash
                self._stash = block
                if last is not None:
                    self._settle(last, None)
        finally:
            self._busy = False
            lock.release()
        if self._deferred:
            self._drain_deferred()

    def _settle(self, block: Block, frames: Frames | None) -> None:
        """Complete a free without recorded streams: the block joins its size bucket."""
        chunk = block._chunk
        chunk.state = FREE
        csize, req = chunk.size, block.requested_size
        pool = self._small if csize <= SMALL_SIZE else self._large
        pool.release(csize, req)
        pool.count_free(csize, req)
        self._all.release(csize, req)
        bucket = chunk.buckets.get(csize)
        if bucket is None:
            self._insert_free(chunk)
        else:
            bucket[chunk] = None
        if not chunk.dirty:
            chunk.dirty = True
            self._unmerged.append(chunk)
        if self._trace is not None:
            self._trace.append(trace_entry("free_requested", chunk.ptr, req, chunk.seg.sid, frames))
            self._trace.append(trace_entry("free_completed", chunk.ptr, req, chunk.seg.sid, frames))

    def _free_pending(self, block: Block, chunk: Chunk) -> None:
        """Free a block used on other streams: it waits for markers taken on them now."""
        with self._lock:
            if self._busy:
                self._defer_free(block, chunk)
                return
            if chunk.handle is not block or chunk.owner is not self:
                raise self._invalid(block)
            streams = list(chunk.uses.values()) if chunk.uses else []
        markers = [s.marker() for s in streams]  # outside our lock: it takes the stream's
        frames = self._capture() if self._trace is not None else None
        with self._locked():
            if chunk.handle is not block:
                raise self._invalid(block)  # another thread freed it meanwhile
            chunk.handle, chunk.state, chunk.markers = None, PENDING, markers  # uses: kept until complete
            req = chunk.req
            self._pending[chunk] = None
            csize = chunk.size
            pool = self._small if csize <= SMALL_SIZE else self._large
            pool.count_free(csize, req)
            for st in (pool, self._all):  # from allocated to pending: "active" does not change
                st.release(csize, req, pending=True)
            if self._trace is not None:
                self._trace.append(trace_entry("free_requested", chunk.ptr, req, chunk.seg.sid, frames))
        callback = partial(self._on_marker, chunk)
        for marker in markers:
            marker.add_done_callback(callback)

    def _defer_free(self, block: Block, chunk: Chunk) -> None:
        """Validate and claim a free, and queue it for the next call holding the lock.

        Until it is done the chunk stays allocated (and its statistics unchanged): what
        is observed meanwhile (a snapshot taken under the lock) reads its requested size
        from the chunk, not from the handle, which is cleared here, without the lock.
        """
        if chunk.handle is not block or chunk.owner is not self:
            raise self._invalid(block)
        chunk.handle = None  # claimed: a second free fails at once
        self._deferred.append((chunk, block))

    def _drain_deferred(self) -> None:
        """Do the queued frees and marker callbacks (those queued when the drain starts).

        One thread drains at a time, and the frees it does never start a drain of their
        own (``_draining`` is held): no recursion however long the queue. An item queued
        again meanwhile (this thread is inside the allocator after all) stays for the
        next call rather than looping here.
        """
        if not self._draining.acquire(False):
            return  # another drain is running (maybe this thread's own, further up)
        try:
            deferred = self._deferred
            for _ in range(len(deferred)):
                try:
                    chunk, block = deferred.popleft()
                except IndexError:
                    return
                if block is None:
                    self._on_marker(chunk)
                else:
                    chunk.handle = block
                    self.free(block)
        finally:
            self._draining.release()

    def _on_marker(self, chunk: Chunk) -> None:
        """A marker of a pending free is done (called once per marker, often on a worker)."""
        lock = self._lock
        lock.acquire()
        if self._busy:
            self._deferred.append((chunk, None))
            lock.release()
            return
        lock.release()
        with self._locked():
            markers = chunk.markers
            if chunk.state == PENDING and markers is not None and all(m.done for m in markers):
                self._complete(chunk)

    def _reclaim_done(self) -> None:
        for chunk in list(self._pending):
            if chunk.markers is not None and all(m.done for m in chunk.markers):
                self._complete(chunk)

    def _complete(self, chunk: Chunk) -> None:
        """Finish a pending free: the block joins its pool, and maybe leaves the device."""
        del self._pending[chunk]
        chunk.state, chunk.markers, chunk.uses = FREE, None, None
        csize, req = chunk.size, chunk.req
        for st in (self._small if csize <= SMALL_SIZE else self._large, self._all):
            st.complete_pending(csize, req)
        if self._trace is not None:
            self._trace.append(trace_entry("free_completed", chunk.ptr, req, chunk.seg.sid, chunk.frames))
        self._insert_free(chunk)
        chunk = self._coalesce(chunk)
        if chunk.release_after:
            chunk.release_after = False
            if chunk.prev is None and chunk.next is None:
                self._release_segment(chunk.seg)

    def after_fork_in_child(self) -> None:
        """Make this allocator (the parent's copy) inert in a forked child.

        At the fork a parent thread may have held the lock, or been halfway through a
        change (a worker completing a pending free): the child must neither wait on that
        lock nor trust that state. The runtime refuses new work in the child, so all that
        can still reach this allocator is the free of a parent array the child drops; it
        is ignored (the memory is the child's copy and goes with the process).
        """
        self._busy = False  # its locks are re-initialised by _forksafe
        self._deferred.clear()
        self.free = _ignore  # type: ignore[method-assign,assignment]
        self.record_stream = _ignore  # type: ignore[method-assign,assignment]

    @staticmethod
    def _invalid(block: object) -> ValueError:
        return ValueError(
            f"invalid device pointer: {block!r} is not a live allocation of this device (freed already, or "
            "allocated on another device); free each block exactly once, on the allocator that made it"
        )

    def record_stream(self, block: Block, stream: StreamLike) -> None:
        """Mark ``block`` as used on ``stream``: its free will wait for that stream's work.

        Args:
            block: a live block of this allocator.
            stream: a stream of this device; the allocating stream is a no-op.

        Raises:
            TypeError: ``block`` is not a Block, or ``stream`` has no ``stream_id``.
            ValueError: "invalid device pointer": ``block`` is not live here.
        """
        if not isinstance(block, Block):
            raise TypeError(f"invalid device pointer: expected a Block, got {type(block).__name__} {block!r}")
        sid = getattr(stream, "stream_id", None)
        if type(sid) is not int:
            raise TypeError(f"stream must be a Stream of mtia:{self.device}, got {type(stream).__name__}")
        chunk = block._chunk
        with self._lock:
            if chunk.handle is not block or chunk.owner is not self:
                raise self._invalid(block)
            if sid != chunk.seg.sid:
                if chunk.uses is None:
                    chunk.uses = {}
                chunk.uses[sid] = stream

    # --- the cache -------------------------------------------------------------------
    def _release_cached(self) -> None:
        """Release every segment with no block in use."""
        self._tidy()
        self._release_free_segments()

    def empty_cache(self) -> None:
        """Release every cached segment with no block in use; never waits.

        A segment kept only by pending frees (``record_stream``) is released once the
        recorded streams' work is done, unless it was reused meanwhile.
        """
        with self._locked():
            self._release_cached()
            for chunk in self._pending:
                chunk.release_after = True
            self._sample_fragmentation()

    def _refresh(self) -> None:
        """Bring the state to the form it is observed in: reclaimed, coalesced, sampled."""
        self._tidy()
        self._sample_fragmentation()

    def _locked(self) -> _Section:
        return _Section(self)


def _ignore(*args: object) -> None:
    """What ``free`` and ``record_stream`` do in a forked child (see ``after_fork_in_child``)."""


class _Section:
    """``with allocator._locked():`` holds the lock, marks it busy, settles the last free."""

    __slots__ = ("allocator",)

    def __init__(self, allocator: CachingAllocator) -> None:
        self.allocator = allocator

    def __enter__(self) -> None:
        allocator = self.allocator
        if allocator._deferred:
            allocator._drain_deferred()  # queued frees first: what is read or changed includes them
        allocator._lock.acquire()
        if allocator._busy:
            allocator._lock.release()
            raise RuntimeError(
                "the allocator was re-entered from inside one of its own calls (a finalizer or observer "
                "calling it while it runs); only free() may be called that way"
            )
        allocator._busy = True
        last = allocator._stash
        if last is not None:
            allocator._stash = None
            allocator._settle(last, None)

    def __exit__(self, *exc_info: object) -> None:
        allocator = self.allocator
        allocator._busy = False
        allocator._lock.release()
        if allocator._deferred:
            allocator._drain_deferred()
