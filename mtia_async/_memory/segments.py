"""The segment cache of one device: reserving and releasing segments, best fit, split, merge.

The base of :class:`~mtia_async._memory.allocator.CachingAllocator`: the layout of the
device memory and the statistics that move only with it (segments, reserved bytes,
fragmentation). It takes no lock and knows nothing of streams' work: the allocator
calls it with its lock held, after bringing the cache to its coalesced form.

Free chunks merge lazily: a free only marks its chunk (``_unmerged``); merges happen
before a best-fit search, before statistics or a snapshot are read, on ``empty_cache``
and on OOM, so what is observed is torch's coalesced layout.
"""

from __future__ import annotations

from bisect import bisect_left, insort

import numpy as np

from .blocks import (
    DEAD,
    Backing,
    FREE,
    MIN_BLOCK,
    SMALL_SIZE,
    AddressSpace,
    Chunk,
    Frames,
    PoolKey,
    Segment,
    StreamPools,
    segment_size,
)
from .history import Trace, trace_entry
from .stats import PoolStat
from .summary import human_size

__all__ = ["SegmentCache"]


class SegmentCache:
    """The segments of one device and their free chunks (not thread-safe: see the subclass).

    Args:
        device: the device index; its addresses start at ``(device + 1) << 40``.
        capacity: device memory in bytes; reserved bytes never exceed it.
        backing: where segments' memory lives (default: a host numpy array each).
    """

    def __init__(self, device: int, capacity: int, backing: Backing | None = None) -> None:
        self.device = device
        self.capacity = capacity
        self._backing = backing  # None: host numpy memory; else where the device memory lives
        self._streams: dict[PoolKey, StreamPools] = {}  # stream id, or graph pool token -> its free chunks
        self._live_pools: dict[tuple[int, int], int] = {}  # graph pools in use -> their users (kept by empty_cache)
        self._segments: dict[int, Segment] = {}  # address -> segment
        self._unmerged: list[Chunk] = []  # freed chunks not yet merged with free neighbours
        self._space = AddressSpace(device)
        self._slow = {
            name: PoolStat() for name in ("segment", "reserved_bytes", "inactive_split", "inactive_split_bytes")
        }
        self._counts = dict.fromkeys(
            ("num_alloc_retries", "num_ooms", "num_device_alloc", "num_device_free", "num_sync_all_streams"), 0
        )
        self._trace: Trace | None = None  # record_memory_history("all")
        self._why = ""  # why the last new segment failed, beyond capacity

    def _reserved(self) -> int:
        cur = self._slow["reserved_bytes"].cur
        return cur[0] + cur[1]

    def _take_chunk(self, size: int, rsize: int, key: PoolKey, sid: int, frames: Frames | None) -> Chunk | None:
        """Best fit among the free chunks of ``key``, else a new segment; split to ``rsize``.

        ``key`` is the allocating stream's id ``sid``, or the pool of the graph it captures.
        Call on the coalesced cache (no chunk waiting to merge). None if nothing fits.
        """
        pools = self._streams.get(key)
        if pools is None:
            pools = self._streams[key] = StreamPools()
        small = rsize <= SMALL_SIZE
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
            chunk = self._new_segment(segment_size(size, rsize), key, sid, pools, small, frames)
            if chunk is None:
                return None
        rest = chunk.size - rsize
        if rest >= MIN_BLOCK if small else rest > SMALL_SIZE:
            tail = Chunk(self, chunk.seg, chunk.ptr + rsize, rest)
            tail.prev, tail.next = chunk, chunk.next
            if chunk.next is not None:
                chunk.next.prev = tail
            chunk.next = tail
            chunk.size = rsize
            self._insert_free(tail)
        return chunk

    def _new_segment(
        self, seg_size: int, key: PoolKey, sid: int, pools: StreamPools, small: bool, frames: Frames | None
    ) -> Chunk | None:
        if self._reserved() + seg_size > self.capacity:
            return None
        addr = self._space.take(seg_size)
        if addr is None:
            self._why = " (the device address space is exhausted)"
            return None
        try:
            host = np.empty(seg_size, dtype=np.uint8) if self._backing is None else self._backing.reserve(addr, seg_size)
        except MemoryError:  # reported as the device being out of memory
            self._space.give(addr, seg_size)
            self._why = f" (the host could not back a segment of {human_size(seg_size)})"
            return None
        seg = Segment(addr, seg_size, host, sid, small, pools, key)
        seg.frames = frames
        seg.head = chunk = Chunk(self, seg, addr, seg_size)
        self._segments[addr] = seg
        self._streams[key] = pools
        pools.nseg += 1
        self._slow["segment"].add(not small, 1)
        self._slow["reserved_bytes"].add(not small, seg_size)
        self._counts["num_device_alloc"] += 1
        if self._trace is not None:
            self._trace.append(trace_entry("segment_alloc", addr, seg_size, sid, frames))
        return chunk

    def _insert_free(self, chunk: Chunk) -> None:
        bucket = chunk.buckets.get(chunk.size)
        if bucket is None:
            bucket = chunk.buckets[chunk.size] = {}
            pools = chunk.seg.pools
            insort(pools.small_sizes if chunk.seg.small else pools.large_sizes, chunk.size)
        bucket[chunk] = None

    def _coalesce(self, chunk: Chunk) -> Chunk:
        """Merge the free ``chunk`` with its free neighbours, which die; return it."""
        prev, nxt = chunk.prev, chunk.next
        if (prev is None or prev.state != FREE) and (nxt is None or nxt.state != FREE):
            return chunk
        del chunk.buckets[chunk.size][chunk]
        while prev is not None and prev.state == FREE:
            del prev.buckets[prev.size][prev]
            prev.state, prev.view = DEAD, None
            chunk.ptr = prev.ptr
            chunk.view = None  # its start moved: a view built for the old start is stale
            chunk.size += prev.size
            prev = prev.prev
        while nxt is not None and nxt.state == FREE:
            del nxt.buckets[nxt.size][nxt]
            nxt.state, nxt.view = DEAD, None
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
            if chunk.state == FREE:
                self._coalesce(chunk)

    def _release_segment(self, seg: Segment) -> None:
        chunk = seg.head
        del chunk.buckets[chunk.size][chunk]
        chunk.state, chunk.view = DEAD, None  # the cached view holds the host memory: let it go
        del self._segments[seg.ptr]
        if self._backing is not None:
            self._backing.release(seg.ptr, seg.size, seg.host)
        seg.host = None
        self._space.give(seg.ptr, seg.size)
        seg.pools.nseg -= 1
        if seg.pools.nseg == 0 and self._streams.get(seg.key) is seg.pools:
            del self._streams[seg.key]
        self._slow["segment"].sub(not seg.small, 1)
        self._slow["reserved_bytes"].sub(not seg.small, seg.size)
        self._counts["num_device_free"] += 1
        if self._trace is not None:
            self._trace.append(trace_entry("segment_free", seg.ptr, seg.size, seg.sid, seg.frames))

    def _release_free_segments(self, key: PoolKey | None = None) -> None:
        """Release every segment that is one free chunk (call on the coalesced cache).

        The segments of a graph pool in use stay (a graph replays into them); with
        ``key``, only that stream's or pool's segments are released.
        """
        live = self._live_pools
        for seg in list(self._segments.values()):
            if seg.head.state == FREE and seg.head.next is None:
                if seg.key in live if key is None else seg.key != key:
                    continue
                self._release_segment(seg)

    def _sample_fragmentation(self) -> None:
        counts, sizes = [0, 0], [0, 0]
        for seg in self._segments.values():
            if seg.head.next is None:
                continue  # a whole-segment block is not split
            large = int(not seg.small)
            chunk: Chunk | None = seg.head
            while chunk is not None:
                if chunk.state == FREE:
                    counts[large] += 1
                    sizes[large] += chunk.size
                chunk = chunk.next
        self._slow["inactive_split"].observe(*counts)
        self._slow["inactive_split_bytes"].observe(*sizes)
