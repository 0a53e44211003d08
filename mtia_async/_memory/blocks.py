"""The structures of the caching allocator: segments, chunks, blocks, device addresses.

A **segment** is device memory reserved at once, backed by one host ``numpy`` array. It
is cut into **chunks**, linked in address order (``prev``/``next``), each free,
allocated, pending free (``record_stream``) or merged away. A **block** is what
``malloc`` hands out (what a ``DeviceArray`` holds): a new object per allocation that
points at its chunk, so a stale block is recognised (``chunk.handle is not block``).
Free chunks sit in per-stream (:class:`StreamPools`; a graph's private pool has its own),
per-pool buckets of one exact size. The sizes follow PyTorch's
``CUDACachingAllocator.cpp`` (constants below).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALLOC",
    "Backing",
    "DEAD",
    "FREE",
    "LARGE_BUFFER",
    "MIN_BLOCK",
    "MIN_LARGE_ALLOC",
    "ONE_EB",
    "PENDING",
    "ROUND_LARGE",
    "SMALL_BUFFER",
    "SMALL_SIZE",
    "AddressSpace",
    "Block",
    "Chunk",
    "Frames",
    "Marker",
    "Observer",
    "PoolKey",
    "Segment",
    "StreamLike",
    "StreamPools",
    "segment_size",
]

MIN_BLOCK = 512
SMALL_SIZE = 1 << 20  # the largest small-pool request
SMALL_BUFFER = 2 << 20
LARGE_BUFFER = 20 << 20
MIN_LARGE_ALLOC = 10 << 20
ROUND_LARGE = 2 << 20
ONE_EB = 1 << 60
FREE, ALLOC, PENDING, DEAD = range(4)  # chunk states (0-2 name snapshot block states)

Frames = list[dict[str, Any]]
Observer = Callable[[int, int, int, int], object]
PoolKey = int | tuple[int, int]
"""What a segment's chunks are reused by: a stream id, or a graph pool's token."""


class Marker(Protocol):
    """A point in a stream's work, from ``Stream.marker()``."""

    @property
    def done(self) -> bool:
        """True once all work queued on the stream before the marker has run."""

    def add_done_callback(self, fn: Callable[[], None], /) -> None:
        """Call ``fn()`` once when done (at once, in the caller, if already done)."""

    def wait(self) -> None:
        """Block until done."""


class Backing(Protocol):
    """Where a device's segments live when not in this process (a cluster worker's memory).

    Called with the allocator's lock held: neither method may wait or call the allocator.
    """

    def reserve(self, addr: int, size: int) -> npt.NDArray[np.uint8]:
        """Back a new segment of ``size`` bytes at device address ``addr``.

        Returns the array that stands for its memory on this side (``Block.view`` builds
        views of it); raises ``MemoryError`` when it cannot be backed.
        """

    def release(self, addr: int, size: int, host: npt.NDArray[np.uint8] | None) -> None:
        """The segment at ``addr`` is released; ``host`` is what ``reserve`` returned."""


class StreamLike(Protocol):
    """What the allocator needs of a stream (one without ``pool`` is keyed by its ``stream_id``)."""

    @property
    def stream_id(self) -> int:
        """Identifies the stream within its device."""

    @property
    def pool(self) -> PoolKey:
        """What its allocations are reused by: its ``stream_id``, or the pool of the graph it captures."""

    def marker(self) -> Marker:
        """Return a marker after the work queued so far."""


class StreamPools:
    """One stream's free chunks: per pool, buckets of one exact size, and their sizes sorted."""

    __slots__ = ("small", "large", "small_sizes", "large_sizes", "nseg")

    def __init__(self) -> None:
        self.small: dict[int, dict[Chunk, None]] = {}
        self.large: dict[int, dict[Chunk, None]] = {}
        self.small_sizes: list[int] = []
        self.large_sizes: list[int] = []
        self.nseg = 0


class Segment:
    """A piece of device memory reserved at once, backed by one host array.

    ``sid`` is the stream that reserved it; ``key`` what its chunks are reused by: that
    stream (``key == sid``), or the graph pool it was reserved for (a token tuple).
    """

    __slots__ = ("ptr", "size", "host", "sid", "key", "small", "pools", "head", "frames")

    def __init__(
        self, ptr: int, size: int, host: npt.NDArray[np.uint8], sid: int, small: bool, pools: StreamPools,
        key: PoolKey,
    ) -> None:  # fmt: skip
        self.ptr = ptr
        self.size = size
        self.host: npt.NDArray[np.uint8] | None = host
        self.sid = sid
        self.key = key
        self.small = small
        self.pools = pools
        self.head: Chunk
        self.frames: Frames | None = None


class Chunk:
    """A contiguous piece of a segment: free, allocated, pending free, or merged away."""

    __slots__ = (
        "owner",
        "seg",
        "ptr",
        "size",
        "buckets",
        "key",
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
        "view",
    )

    def __init__(self, owner: object, seg: Segment, ptr: int, size: int) -> None:
        self.owner = owner
        self.seg = seg
        self.ptr = ptr
        self.size = size
        self.buckets = seg.pools.small if seg.small else seg.pools.large
        self.key = seg.key  # what reuses it (the malloc fast path reads it: one hop less than seg.key)
        self.prev: Chunk | None = None
        self.next: Chunk | None = None
        self.state = FREE
        self.handle: Block | None = None  # the live Block; None when free or being freed
        self.req = 0  # requested bytes of the allocation it holds (also while its free is pending)
        self.dirty = False  # on the merge list
        self.uses: dict[int, StreamLike] | None = None  # record_stream: stream_id -> stream
        self.markers: list[Marker] | None = None
        self.frames: Frames | None = None
        self.release_after = False  # empty_cache was asked while its free was pending
        self.view: Any = None  # the last whole-block ndarray: see Block.whole_view


class Block:
    """One allocation, what a DeviceArray holds; ``malloc`` makes a new one each time."""

    __slots__ = ("ptr", "size", "requested_size", "stream", "_chunk", "__weakref__")

    def __init__(self, ptr: int, size: int, requested_size: int, stream: StreamLike, chunk: Chunk) -> None:
        self.ptr = ptr  # device address, as data_ptr() and snapshots show it
        self.size = size  # bytes held (rounded)
        self.requested_size = requested_size
        self.stream = stream  # the allocating stream
        self._chunk = chunk

    def view(
        self, shape: tuple[int, ...], dtype: np.dtype[Any], offset: int = 0, strides: tuple[int, ...] | None = None
    ) -> np.ndarray[Any, Any]:
        """A numpy array of ``shape`` and ``dtype`` over the block's host memory, from ``offset`` bytes.

        One ndarray over the segment's host array (no intermediate slice): it keeps that
        memory alive even if the segment is released meanwhile.
        """
        seg = self._chunk.seg
        host = seg.host
        if host is None:
            raise ValueError(f"{self!r} was freed and its segment released: its memory is gone")
        return np.ndarray(shape, dtype, host, self.ptr - seg.ptr + offset, strides)

    def whole_view(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
        """``view(shape, dtype)`` of the block from its start, reused while it still matches.

        The last such view is kept on the chunk and handed out again for the next block of
        that chunk of the same shape and dtype (an operator's output reuses the chunk its
        predecessor freed: building the ndarray was a sixth of ``a + b``). A view someone
        reshaped or retyped in place no longer matches and is never reused (setting
        ``strides`` in place is deprecated by numpy 2.4, which warns).
        """
        chunk = self._chunk
        v: np.ndarray[Any, Any] | None = chunk.view
        if v is not None and v.shape == shape and v.dtype is dtype:
            return v
        v = chunk.view = self.view(shape, dtype)
        return v

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


class AddressSpace:
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


def segment_size(size: int, rsize: int) -> int:
    if rsize <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-rsize // ROUND_LARGE) * ROUND_LARGE
