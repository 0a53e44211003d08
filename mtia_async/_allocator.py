"""The caching allocator of one device, after PyTorch's ``CUDACachingAllocator.cpp``.

Policy (as torch): sizes round up to 512 B; requests <= 1 MiB come from the small pool
in 2 MiB segments, larger ones from the large pool in 20 MiB segments (requests under
10 MiB) or in segments rounded up to 2 MiB; best fit on the allocating stream;
splitting (small pool: remainder >= 512 B; large pool: remainder > 1 MiB) and
coalescing; a freed block is reused only by its allocating stream; ``record_stream``
defers reuse until the recorded streams' work queued before the free is done; before
``OutOfMemoryError`` it waits for pending frees, releases the cache and retries.

Speed (a cached malloc + free pair costs ~1 us): free chunks sit in per-stream,
per-pool buckets of one exact size. A free merges no neighbours at once: the chunk is
marked for merging, and merges happen before a best-fit search, before statistics or a
snapshot are read, on ``empty_cache`` and on OOM, so what is observed is torch's
coalesced layout. The last block freed is settled lazily: a ``malloc`` of the same size
on the same stream that comes next takes it back, leaving every current statistic as it
was before that free, so only the cumulative counters move. Each call moves a few raw
counters; the torch statistics are derived when read (``_memhistory.build_stats``).

Threads: one ``RLock`` guards all state. ``free`` may come from any thread, also from a
``__del__`` that garbage collection runs while this thread is inside the allocator:
such a re-entrant call (seen as ``_busy``) is validated, queued, and done as soon as the
outer call releases the lock. Marker callbacks (worker threads) take the lock briefly.
Observers, ``Stream.marker()`` and blocking waits run with the lock released.

Statistics (``memory_stats``): torch.cuda's flat keys, sorted: ``allocation``,
``segment``, ``active``, ``inactive_split``, ``allocated_bytes``, ``reserved_bytes``,
``active_bytes``, ``inactive_split_bytes``, ``requested_bytes`` for each of ``all``,
``small_pool``, ``large_pool`` and each of ``current``, ``peak``, ``allocated``,
``freed``; ``oversize_allocations.*`` and ``oversize_segments.*`` (always 0:
``max_split_size`` is unlimited, reported as -1 like torch); ``num_alloc_retries``;
``num_ooms``; ``num_device_alloc``/``num_device_free`` (segments reserved/released);
``num_sync_all_streams`` (OOM retries that waited for pending frees; ``empty_cache``
never waits, so never counts). Then torch.mtia's ``"dram"`` dict:
``allocated_bytes``/``peak_bytes`` are ``allocated_bytes.all.current``/``.peak``,
``reserved_bytes``/``peak_reserved_bytes`` are ``reserved_bytes.all.current``/``.peak``,
``num_allocs``/``num_frees`` are ``allocation.all.allocated``/``.freed``, ``num_ooms``.
Fragmentation (``inactive_split*``) is measured on the coalesced layout, so its peak,
allocated and freed are sampled when statistics are read and on ``empty_cache``.

Deviations from torch: a request of 10 MiB - 511 .. 10 MiB - 1 bytes gets a 20 MiB
segment (the boundary table of the spec; torch rounds first, then gives 10 MiB); among
several cached blocks that fit, the one reused may differ (newest, not lowest address).
"""

from __future__ import annotations

import operator
import threading
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, SupportsIndex

import numpy as np
import numpy.typing as npt

from ._exceptions import OutOfMemoryError
from ._wait import in_worker_thread
from ._memhistory import (
    Counters,
    PoolStat,
    build_stats,
    Trace,
    capture_frames,
    format_summary,
    history_settings,
    oom_message,
    render_segment,
    trace_entry,
)
from ._memhistory import check_invariants as _check_invariants
from ._memhistory import dump_snapshot as dump_snapshot
from ._memhistory import human_size as human_size

__all__ = ["Block", "CachingAllocator", "Marker", "StreamLike", "_check_invariants", "dump_snapshot", "human_size"]

_MIN_BLOCK = 512
_SMALL_SIZE = 1 << 20  # the largest small-pool request
_SMALL_BUFFER = 2 << 20
_LARGE_BUFFER = 20 << 20
_MIN_LARGE_ALLOC = 10 << 20
_ROUND_LARGE = 2 << 20
_ONE_EB = 1 << 60
_FREE, _ALLOC, _PENDING, _DEAD = range(4)  # chunk states (0-2 name snapshot block states)

Frames = list[dict[str, Any]]
Observer = Callable[[int, int, int, int], object]


class Marker(Protocol):
    """A point in a stream's work, from ``Stream.marker()``."""

    @property
    def done(self) -> bool:
        """True once all work queued on the stream before the marker has run."""

    def add_done_callback(self, fn: Callable[[], None], /) -> None:
        """Call ``fn()`` once when done (at once, in the caller, if already done)."""

    def wait(self) -> None:
        """Block until done."""


class StreamLike(Protocol):
    """What the allocator needs of a stream."""

    @property
    def stream_id(self) -> int:
        """Identifies the stream within its device."""

    def marker(self) -> Marker:
        """Return a marker after the work queued so far."""


class _StreamPools:
    """One stream's free chunks: per pool, buckets of one exact size, and their sizes sorted."""

    __slots__ = ("small", "large", "small_sizes", "large_sizes", "nseg")

    def __init__(self) -> None:
        self.small: dict[int, dict[_Chunk, None]] = {}
        self.large: dict[int, dict[_Chunk, None]] = {}
        self.small_sizes: list[int] = []
        self.large_sizes: list[int] = []
        self.nseg = 0


class _Segment:
    """A piece of device memory reserved at once, backed by one host array."""

    __slots__ = ("ptr", "size", "host", "sid", "small", "pools", "head", "frames")

    def __init__(
        self, ptr: int, size: int, host: npt.NDArray[np.uint8], sid: int, small: bool, pools: _StreamPools
    ) -> None:
        self.ptr = ptr
        self.size = size
        self.host: npt.NDArray[np.uint8] | None = host
        self.sid = sid
        self.small = small
        self.pools = pools
        self.head: _Chunk
        self.frames: Frames | None = None


class _Chunk:
    """A contiguous piece of a segment: free, allocated, pending free, or merged away."""

    __slots__ = (
        "owner",
        "seg",
        "ptr",
        "size",
        "buckets",
        "prev",
        "next",
        "state",
        "handle",
        "req",
        "dirty",
        "uses",
        "markers",
        "frames",
        "release_after",
    )

    def __init__(self, owner: CachingAllocator, seg: _Segment, ptr: int, size: int) -> None:
        self.owner = owner
        self.seg = seg
        self.ptr = ptr
        self.size = size
        self.buckets = seg.pools.small if seg.small else seg.pools.large
        self.prev: _Chunk | None = None
        self.next: _Chunk | None = None
        self.state = _FREE
        self.handle: Block | None = None  # the live Block; None when free or being freed
        self.req = 0  # requested bytes, kept while the free is pending
        self.dirty = False  # on the merge list
        self.uses: dict[int, StreamLike] | None = None  # record_stream: stream_id -> stream
        self.markers: list[Marker] | None = None
        self.frames: Frames | None = None
        self.release_after = False  # empty_cache was asked while its free was pending


class Block:
    """One allocation, what a DeviceArray holds; ``malloc`` makes a new one each time."""

    __slots__ = ("ptr", "size", "requested_size", "stream", "_chunk", "__weakref__")

    def __init__(self, ptr: int, size: int, requested_size: int, stream: StreamLike, chunk: _Chunk) -> None:
        self.ptr = ptr  # device address, as data_ptr() and snapshots show it
        self.size = size  # bytes held (rounded)
        self.requested_size = requested_size
        self.stream = stream  # the allocating stream
        self._chunk = chunk

    @property
    def buffer(self) -> npt.NDArray[np.uint8]:
        """The host memory behind the block: a 1-D uint8 view of ``size`` bytes."""
        seg = self._chunk.seg
        if seg.host is None:
            raise ValueError(f"{self!r} was freed and its segment released: its memory is gone")
        start = self.ptr - seg.ptr
        return seg.host[start : start + self.size]

    def __repr__(self) -> str:
        return f"<Block ptr={self.ptr:#x} size={self.size} requested_size={self.requested_size}>"


class _AddressSpace:
    """Device addresses of one device; released ranges are reused first-fit."""

    __slots__ = ("top", "limit", "holes")

    def __init__(self, device: int) -> None:
        self.top = (device + 1) << 40  # segment sizes are multiples of 2 MiB: all stay aligned
        self.limit = self.top + (1 << 40)
        self.holes: list[list[int]] = []  # sorted [address, size]

    def take(self, size: int) -> int | None:
        for i, hole in enumerate(self.holes):
            if hole[1] >= size:
                addr = hole[0]
                hole[0] += size
                hole[1] -= size
                if hole[1] == 0:
                    del self.holes[i]
                return addr
        if self.top + size > self.limit:
            return None
        addr, self.top = self.top, self.top + size
        return addr

    def give(self, addr: int, size: int) -> None:
        holes = self.holes
        i = bisect_left(holes, [addr, 0])
        holes.insert(i, [addr, size])
        if i + 1 < len(holes) and addr + size == holes[i + 1][0]:
            holes[i][1] += holes.pop(i + 1)[1]
        if i > 0 and holes[i - 1][0] + holes[i - 1][1] == addr:
            holes[i - 1][1] += holes.pop(i)[1]
            i -= 1
        if holes[i][0] + holes[i][1] == self.top:
            self.top = holes.pop(i)[0]


def _segment_size(size: int, rsize: int) -> int:
    if rsize <= _SMALL_SIZE:
        return _SMALL_BUFFER
    if size < _MIN_LARGE_ALLOC:
        return _LARGE_BUFFER
    return -(-rsize // _ROUND_LARGE) * _ROUND_LARGE


class CachingAllocator:
    """The caching allocator of one device; thread-safe (see the module docstring).

    Args:
        device: the device index; its addresses start at ``(device + 1) << 40``.
        capacity: device memory in bytes; reserved bytes never exceed it.
    """

    def __init__(self, device: int, capacity: int) -> None:
        self.device = device
        self.capacity = capacity
        self._lock = threading.RLock()
        self._busy = False  # a call is mid-change (read and written by the lock holder only)
        self._deferred: deque[tuple[_Chunk, Block | None]] = deque()  # re-entrant frees/markers
        self._stash: Block | None = None  # the last block freed, not yet settled
        self._streams: dict[int, _StreamPools] = {}
        self._segments: dict[int, _Segment] = {}
        self._unmerged: list[_Chunk] = []  # freed chunks not yet merged with free neighbours
        self._pending: dict[_Chunk, None] = {}  # frees waiting for recorded streams
        self._small, self._large, self._all = Counters(), Counters(), Counters()
        self._slow = {
            name: PoolStat() for name in ("segment", "reserved_bytes", "inactive_split", "inactive_split_bytes")
        }
        self._counts = dict.fromkeys(
            ("num_alloc_retries", "num_ooms", "num_device_alloc", "num_device_free", "num_sync_all_streams"), 0
        )
        self._space = _AddressSpace(device)
        self._observers: list[Observer] = []
        self._context = 0  # history: 0 off, 1 frames on live blocks ("state"), 2 and a trace ("all")
        self._trace: Trace | None = None
        self._frames = True  # record_memory_history(context=None) turns frame capture off
        self._why = ""  # why the last new segment failed, beyond capacity

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
        if size.__class__ is not int or size <= 0 or size >= _ONE_EB:
            size = self._checked_size(size)
            if size == 0:
                return None
        try:
            sid = stream.stream_id
        except AttributeError:
            raise TypeError(f"stream must be a Stream of mtia:{self.device}, got {type(stream).__name__}") from None
        frames = self._capture() if self._context else None
        lock = self._lock
        lock.acquire()
        self._busy = True
        try:
            last = self._stash
            if last is not None:
                self._stash = None
                chunk = last._chunk
                if last.requested_size == size and (last.stream is stream or chunk.seg.sid == sid):
                    # Take back the block just freed: every current statistic returns to its
                    # value before that free (so no peak moves); count the free that happened.
                    csize = chunk.size
                    st = self._small if csize <= _SMALL_SIZE else self._large
                    st.fn += 1
                    st.fb += csize
                    st.fr += size
                    chunk.frames = None
                    block = chunk.handle = Block(chunk.ptr, csize, size, stream, chunk)
                    return block
                self._settle(last, None)
            rsize = (size + 511) & -512
            found: _Chunk | None = None
            pools = self._streams.get(sid)
            if pools is not None:
                bucket = (pools.small if rsize <= _SMALL_SIZE else pools.large).get(rsize)
                if bucket:
                    found = bucket.popitem()[0]
            if found is None:
                found = self._alloc_slow(size, rsize, sid, frames)
            if found is not None:
                return self._hand_out(found, size, stream, frames)
        finally:
            self._busy = False
            lock.release()
            if self._deferred:
                self._drain_deferred()
        return self._malloc_retry(size, stream, frames)

    def _hand_out(self, chunk: _Chunk, size: int, stream: StreamLike, frames: Frames | None) -> Block:
        csize = chunk.size
        chunk.state = _ALLOC
        chunk.frames = frames
        block = chunk.handle = Block(chunk.ptr, csize, size, stream, chunk)
        st = self._small if csize <= _SMALL_SIZE else self._large
        st.n += 1
        st.b += csize
        st.r += size
        if st.n > st.pk_n or st.b > st.pk_b or st.r > st.pk_r or st.pn:
            st.bump()
        st = self._all
        st.n += 1
        st.b += csize
        st.r += size
        if st.n > st.pk_n or st.b > st.pk_b or st.r > st.pk_r or st.pn:
            st.bump()
        if self._trace is not None:
            self._trace.append(trace_entry("alloc", chunk.ptr, size, chunk.seg.sid, frames))
        return block

    def _checked_size(self, size: object) -> int:
        if isinstance(size, (bool, np.bool_)):
            raise TypeError(f"size must be an int number of bytes, got bool {size!r}; pass an int such as 8")
        try:
            if not isinstance(size, SupportsIndex):
                raise TypeError
            n = operator.index(size)
        except TypeError:
            raise TypeError(
                f"size must be an int number of bytes, got {type(size).__name__} {size!r}; pass an int such as 8"
            ) from None
        if n < 0:
            raise ValueError(f"size must be >= 0 bytes, got {n!r}; pass a number of bytes from 0 to 2**60 - 1")
        if n >= _ONE_EB:
            with self._locked():
                reserved, allocated = self._reserved(), self._small.b + self._large.b
            raise OutOfMemoryError(
                "MTIA out of memory. Tried to allocate more than 1EB memory.",
                device=self.device,
                requested=n,
                capacity=self.capacity,
                free=self.capacity - reserved,
                allocated=allocated,
                reserved=reserved,
            )
        return n

    def _reserved(self) -> int:
        cur = self._slow["reserved_bytes"].cur
        return cur[0] + cur[1]

    def _alloc_slow(self, size: int, rsize: int, sid: int, frames: Frames | None) -> _Chunk | None:
        """Best fit in the coalesced cache, else a new segment; None if neither fits."""
        if self._pending:
            self._reclaim_done()
        if self._unmerged:
            self._coalesce_all()
        pools = self._streams.get(sid)
        if pools is None:
            pools = self._streams[sid] = _StreamPools()
        small = rsize <= _SMALL_SIZE
        buckets, sizes = (pools.small, pools.small_sizes) if small else (pools.large, pools.large_sizes)
        chunk = None
        i = bisect_left(sizes, rsize)
        while i < len(sizes):
            bucket = buckets[sizes[i]]
            if bucket:
                chunk = bucket.popitem()[0]
                break
            del buckets[sizes[i]], sizes[i]  # an empty bucket
        if chunk is None:
            chunk = self._new_segment(_segment_size(size, rsize), sid, pools, small, frames)
            if chunk is None:
                return None
        rest = chunk.size - rsize
        if rest >= _MIN_BLOCK if small else rest > _SMALL_SIZE:
            tail = _Chunk(self, chunk.seg, chunk.ptr + rsize, rest)
            tail.prev, tail.next = chunk, chunk.next
            if chunk.next is not None:
                chunk.next.prev = tail
            chunk.next = tail
            chunk.size = rsize
            self._insert_free(tail)
        return chunk

    def _new_segment(
        self, seg_size: int, sid: int, pools: _StreamPools, small: bool, frames: Frames | None
    ) -> _Chunk | None:
        if self._reserved() + seg_size > self.capacity:
            return None
        addr = self._space.take(seg_size)
        if addr is None:
            self._why = " (the device address space is exhausted)"
            return None
        try:
            host = np.empty(seg_size, dtype=np.uint8)
        except MemoryError:  # reported as the device being out of memory
            self._space.give(addr, seg_size)
            self._why = f" (the host could not back a segment of {human_size(seg_size)})"
            return None
        seg = _Segment(addr, seg_size, host, sid, small, pools)
        seg.frames = frames
        seg.head = chunk = _Chunk(self, seg, addr, seg_size)
        self._segments[addr] = seg
        self._streams[sid] = pools
        pools.nseg += 1
        self._slow["segment"].add(not small, 1)
        self._slow["reserved_bytes"].add(not small, seg_size)
        self._counts["num_device_alloc"] += 1
        if self._trace is not None:
            self._trace.append(trace_entry("segment_alloc", addr, seg_size, sid, frames))
        return chunk

    def _malloc_retry(self, size: int, stream: StreamLike, frames: Frames | None) -> Block:
        """Wait for pending frees, release the cache and retry; else notify observers and raise."""
        markers: list[Marker] = []
        if not in_worker_thread():  # a worker must not wait: the work it waits for may be its own
            with self._lock:
                markers = [m for chunk in self._pending if chunk.markers for m in chunk.markers]
            for marker in markers:
                if not marker.done:
                    marker.wait()
        rsize, sid = (size + 511) & -512, stream.stream_id
        with self._locked():
            self._counts["num_alloc_retries"] += 1
            self._counts["num_sync_all_streams"] += bool(markers)
            self._why = ""
            chunk = self._alloc_slow(size, rsize, sid, frames)  # frees that completed may fit it
            if chunk is None:
                self._release_cached()
                self._why = ""
                chunk = self._alloc_slow(size, rsize, sid, frames)
            if chunk is not None:
                return self._hand_out(chunk, size, stream, frames)
            self._counts["num_ooms"] += 1
            seg_size, reserved, allocated = _segment_size(size, rsize), self._reserved(), self._small.b + self._large.b
            free = self.capacity - reserved
            if self._trace is not None:
                self._trace.append(trace_entry("oom", free, rsize, sid, frames))
            message = oom_message(self.device, self.capacity, seg_size, size, free, allocated, reserved, self._why)
            observers = list(self._observers)
        error = OutOfMemoryError(
            message,
            device=self.device,
            requested=rsize,
            capacity=self.capacity,
            free=free,
            allocated=allocated,
            reserved=reserved,
        )
        failures: list[Exception] = []
        for observer in observers:
            try:
                observer(self.device, seg_size, allocated, free)
            except Exception as exc:  # carried by the OutOfMemoryError, never dropped
                failures.append(exc)
                error.add_note(f"out-of-memory observer {observer!r} raised {type(exc).__name__}: {exc}")
        if failures:
            error.__context__ = failures[0] if len(failures) == 1 else ExceptionGroup("OOM observers failed", failures)
        raise error

    # --- freeing ---------------------------------------------------------------------
    def free(self, block: Block) -> None:
        """Return ``block`` to the cache (once its recorded streams' work is done, if any).

        Safe from any thread, also from a ``__del__`` that garbage collection runs while
        this thread is inside the allocator (the free then completes when that call ends).

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
        chunk.state = _FREE
        csize, req = chunk.size, block.requested_size
        st = self._small if csize <= _SMALL_SIZE else self._large
        st.n -= 1
        st.b -= csize
        st.r -= req
        st.fn += 1
        st.fb += csize
        st.fr += req
        st = self._all
        st.n -= 1
        st.b -= csize
        st.r -= req
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

    def _free_pending(self, block: Block, chunk: _Chunk) -> None:
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
            chunk.handle, chunk.uses, chunk.state, chunk.markers = None, None, _PENDING, markers
            chunk.req = req = block.requested_size
            self._pending[chunk] = None
            csize = chunk.size
            pool = self._small if csize <= _SMALL_SIZE else self._large
            pool.fn += 1
            pool.fb += csize
            pool.fr += req
            for st in (pool, self._all):  # from allocated to pending: "active" does not change
                st.n -= 1
                st.b -= csize
                st.r -= req
                st.pn += 1
                st.pb += csize
                st.pr += req
            if self._trace is not None:
                self._trace.append(trace_entry("free_requested", chunk.ptr, req, chunk.seg.sid, frames))
        callback = partial(self._on_marker, chunk)
        for marker in markers:
            marker.add_done_callback(callback)

    def _defer_free(self, block: Block, chunk: _Chunk) -> None:
        """Queue a free re-entered from this thread's own call (a ``__del__`` run by GC)."""
        if chunk.handle is not block or chunk.owner is not self:
            raise self._invalid(block)
        chunk.handle = None  # claimed: a second free fails at once
        self._deferred.append((chunk, block))

    def _drain_deferred(self) -> None:
        deferred = self._deferred
        while deferred:
            try:
                chunk, block = deferred.popleft()
            except IndexError:
                return
            if block is None:
                self._on_marker(chunk)
            else:
                chunk.handle = block
                self.free(block)

    def _on_marker(self, chunk: _Chunk) -> None:
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
            if chunk.state == _PENDING and markers is not None and all(m.done for m in markers):
                self._complete(chunk)

    def _reclaim_done(self) -> None:
        for chunk in list(self._pending):
            if chunk.markers is not None and all(m.done for m in chunk.markers):
                self._complete(chunk)

    def _complete(self, chunk: _Chunk) -> None:
        """Finish a pending free: the block joins its pool, and maybe leaves the device."""
        del self._pending[chunk]
        chunk.state, chunk.markers = _FREE, None
        csize, req = chunk.size, chunk.req
        for st in (self._small if csize <= _SMALL_SIZE else self._large, self._all):
            st.pn -= 1
            st.pb -= csize
            st.pr -= req
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
        self._lock = threading.RLock()
        self._busy = False
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
    def _insert_free(self, chunk: _Chunk) -> None:
        bucket = chunk.buckets.get(chunk.size)
        if bucket is None:
            bucket = chunk.buckets[chunk.size] = {}
            pools = chunk.seg.pools
            insort(pools.small_sizes if chunk.seg.small else pools.large_sizes, chunk.size)
        bucket[chunk] = None

    def _coalesce(self, chunk: _Chunk) -> _Chunk:
        """Merge the free ``chunk`` with its free neighbours, which die; return it."""
        prev, nxt = chunk.prev, chunk.next
        if (prev is None or prev.state != _FREE) and (nxt is None or nxt.state != _FREE):
            return chunk
        del chunk.buckets[chunk.size][chunk]
        while prev is not None and prev.state == _FREE:
            del prev.buckets[prev.size][prev]
            prev.state = _DEAD
            chunk.ptr = prev.ptr
            chunk.size += prev.size
            prev = prev.prev
        while nxt is not None and nxt.state == _FREE:
            del nxt.buckets[nxt.size][nxt]
            nxt.state = _DEAD
            chunk.size += nxt.size
            nxt = nxt.next
        chunk.prev, chunk.next = prev, nxt
        if prev is None:
            chunk.seg.head = chunk
        else:
            prev.next = chunk
        if nxt is not None:
            nxt.prev = chunk
        self._insert_free(chunk)
        return chunk

    def _coalesce_all(self) -> None:
        unmerged, self._unmerged = self._unmerged, []
        for chunk in unmerged:
            chunk.dirty = False
            if chunk.state == _FREE:
                self._coalesce(chunk)

    def _release_segment(self, seg: _Segment) -> None:
        chunk = seg.head
        del chunk.buckets[chunk.size][chunk]
        chunk.state = _DEAD
        del self._segments[seg.ptr]
        seg.host = None
        self._space.give(seg.ptr, seg.size)
        seg.pools.nseg -= 1
        if seg.pools.nseg == 0 and self._streams.get(seg.sid) is seg.pools:
            del self._streams[seg.sid]
        self._slow["segment"].sub(not seg.small, 1)
        self._slow["reserved_bytes"].sub(not seg.small, seg.size)
        self._counts["num_device_free"] += 1
        if self._trace is not None:
            self._trace.append(trace_entry("segment_free", seg.ptr, seg.size, seg.sid, seg.frames))

    def _release_cached(self) -> None:
        """Release every segment with no block in use."""
        if self._pending:
            self._reclaim_done()
        if self._unmerged:
            self._coalesce_all()
        for seg in list(self._segments.values()):
            if seg.head.state == _FREE and seg.head.next is None:
                self._release_segment(seg)

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
        if self._pending:
            self._reclaim_done()
        if self._unmerged:
            self._coalesce_all()
        self._sample_fragmentation()

    def _sample_fragmentation(self) -> None:
        counts, sizes = [0, 0], [0, 0]
        for seg in self._segments.values():
            if seg.head.next is None:
                continue  # a whole-segment block is not split
            large = int(not seg.small)
            chunk: _Chunk | None = seg.head
            while chunk is not None:
                if chunk.state == _FREE:
                    counts[large] += 1
                    sizes[large] += chunk.size
                chunk = chunk.next
        self._slow["inactive_split"].observe(*counts)
        self._slow["inactive_split_bytes"].observe(*sizes)

    def _locked(self) -> _Section:
        return _Section(self)

    # --- statistics ------------------------------------------------------------------
    def memory_stats(self) -> dict[str, Any]:
        """Return torch.cuda's flat statistics and torch.mtia's ``"dram"`` dict.

        Returns:
            The keys described in the module docstring, sorted, then ``"dram"``.
        """
        with self._locked():
            self._refresh()
            return build_stats(self._small, self._large, self._all, self._slow, self._counts)

    def reset_peak_memory_stats(self) -> None:
        """Set every peak to its current value; nothing else changes."""
        with self._locked():
            self._refresh()
            for counters in (self._small, self._large, self._all):
                counters.reset_peaks()
            for stat in self._slow.values():
                stat.reset_peaks()

    def mem_get_info(self) -> tuple[int, int]:
        """Return ``(free, total)`` in bytes: the capacity, less what is reserved, and the capacity."""
        with self._locked():
            if self._pending:
                self._reclaim_done()
            return self.capacity - self._reserved(), self.capacity

    def memory_summary(self) -> str:
        """Return ``memory_stats()`` as the table of ``torch.cuda.memory_summary()``."""
        return format_summary(self.memory_stats(), self.device)

    def attach_out_of_memory_observer(self, observer: Observer) -> None:
        """Call ``observer(device, alloc_size, device_allocated, device_free)`` before each OOM.

        ``alloc_size`` is the segment that could not be reserved, ``device_allocated`` the
        bytes in live allocations, ``device_free`` the capacity not reserved. It runs
        without the allocator lock, so it may read statistics or take a snapshot; if it
        raises, the OutOfMemoryError is raised all the same, carrying that error.

        Args:
            observer: a callable taking four ints.

        Raises:
            TypeError: ``observer`` is not callable.
        """
        if not callable(observer):
            raise TypeError(f"observer must be callable, got {type(observer).__name__} {observer!r}")
        with self._lock:
            self._observers.append(observer)

    # --- history and snapshots -------------------------------------------------------
    def _capture(self) -> list[dict[str, Any]]:
        return capture_frames() if self._frames else []

    def record_memory_history(
        self,
        enabled: str | None = "all",
        stacks: str = "python",
        max_entries: int = 0,
        context: str | None = "all",
        skip_actions: list[str] | None = None,
    ) -> None:
        """Start, change or stop recording the allocation history.

        Args:
            enabled: ``"all"``: a trace of every action, and the stacks of live blocks;
                ``"state"``: only the stacks of live blocks; None: stop, clear the trace.
            stacks: ``"python"`` or ``"all"`` (the same here: there are no C++ frames).
            max_entries: keep only the newest N trace entries; 0 keeps them all.
            context: None records no Python frames; ``"all"``, ``"alloc"`` and
                ``"state"`` (torch's values) record them.
            skip_actions: trace actions to leave out (e.g. ``["free_requested"]``).

        Raises:
            ValueError: an argument is not an allowed value (nothing changes).
        """
        level, maxlen, frames, skip = history_settings(enabled, stacks, max_entries, context, skip_actions)
        with self._locked():
            self._context = level
            self._frames = frames
            self._trace = Trace(self._trace or (), maxlen, skip) if level == 2 else None

    def snapshot(self) -> dict[str, Any]:
        """Return this device's ``torch.cuda.memory._snapshot()``.

        Returns:
            ``{"segments": [...], "device_traces": [[...]]}``, of plain Python values.
        """
        with self._locked():
            self._refresh()
            return self._snapshot()

    def stats_and_snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(memory_stats(), snapshot())`` taken at one instant."""
        with self._locked():
            self._refresh()
            return build_stats(self._small, self._large, self._all, self._slow, self._counts), self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        segments = [render_segment(self.device, self._segments[addr]) for addr in sorted(self._segments)]
        trace: list[dict[str, Any]] = []
        if self._trace is not None:
            active = sum(seg["active_size"] for seg in segments)
            self._trace.append(trace_entry("snapshot", 0, active, 0, None))
            trace = [dict(entry) for entry in self._trace]
        return {"segments": segments, "device_traces": [trace]}


def _ignore(*args: object) -> None:
    """What ``free`` and ``record_stream`` do in a forked child (see ``after_fork_in_child``)."""


class _Section:
    """``with allocator._locked():`` holds the lock, marks it busy, settles the last free."""

    __slots__ = ("allocator",)

    def __init__(self, allocator: CachingAllocator) -> None:
        self.allocator = allocator

    def __enter__(self) -> None:
        allocator = self.allocator
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
