"""Shadow memory: who last wrote and read each piece of device memory, on which stream, at which epoch.

A **cell** shadows one allocation: the block of a base ``DeviceArray``, keyed by its
device address (``Block.ptr``; addresses are unique across devices). It holds a short
list of **access records**, one per recent access that a later access might conflict
with. A record is a tuple (fields below): the byte range the kernel touched, its exact
layout when that range has holes (a strided view), the stream (its sanitizer serial)
and the stream's epoch at that launch, whether it wrote, the cell's generation, and
the kernel and launch stack a report shows.

What an access keeps (so a check costs the same however long the history):

* a write drops every record it covers that is ordered before it (same stream, or
  ordered by events and host waits): a later access that conflicts with a dropped
  record conflicts with this write too, and is reported against it;
* a read drops the *reads* it covers that are ordered before it (never a write: a
  later read must still be checked against it);
* a record the host knows completed (a host wait covered it) can conflict with
  nothing later and goes when the list grows past ``MAX_RECORDS``; past that the
  oldest go (a documented limit: an array touched in more than ``MAX_RECORDS``
  unordered pieces between host waits may hide a race).

Views alias their base: a view's access is the range ``[lowest, highest + itemsize)``
of its elements inside the base's cell. Two ranges that overlap are checked exactly
when either has holes (``numpy.shares_memory`` on stand-in arrays: only addresses and
strides, never the memory), so ``a[::2]`` and ``a[1::2]``, or two columns of a
matrix, are independent.

**Frees** (use after free). ``DeviceArray.__del__`` calls ``on_free`` on any thread,
possibly inside garbage collection while this thread holds the sanitizer's lock, so it
only queues ``(address, streams recorded with record_stream)``; the queue is drained
under the lock before the next allocation or launch is looked at (the free always
precedes any reuse of its memory). Draining drops what can no longer race: records
of a stream the array was ``record_stream``-ed on (the allocator reuses the block only
after that stream's work enqueued before the free is done) and records the host knows
completed. What is left makes the cell *dead*, filed under its segment: an allocation
overlapping it inherits those records into its own cell under a new generation, and
an access that conflicts with one is reported as a use after free. The allocator
reuses a block on its allocating stream only, so for a use on that stream the
inherited records are ordered by the stream itself ("stream-ordered reuse"); a use on
another stream must be ordered after them like any other access. A dead cell whose
segment was released (a new segment is new memory) is forgotten.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

import numpy as np

__all__ = [
    "DTYPE",
    "END",
    "EPOCH",
    "GEN",
    "KERNEL",
    "LAYOUT",
    "MAX_RECORDS",
    "SER",
    "SHAPE",
    "STACK",
    "START",
    "WRITE",
    "Cell",
    "Shadow",
    "covers",
    "exact_overlap",
    "owner_of",
    "prune",
    "recorded_streams",
    "segment_of",
    "span_of",
]

# The fields of an access record (a tuple).
START, END, LAYOUT, SER, EPOCH, WRITE, GEN, KERNEL, STACK, SHAPE, DTYPE = range(11)
Record = tuple[Any, ...]
Layout = tuple[tuple[int, ...], tuple[int, ...], int, int] | None  # shape, strides, itemsize, first byte

MAX_RECORDS = 64
MAX_DEAD_PER_SEGMENT = 64
_MAX_WORK = 100_000  # numpy.shares_memory's effort bound; beyond it two ranges count as overlapping


def segment_of(block: Any) -> object:
    """The allocator segment a block lies in."""
    return block._chunk.seg


def recorded_streams(block: Any) -> dict[int, Any] | None:
    """The streams ``record_stream`` marked a live block as used on (stream id -> stream), or None.

    Read at the free: the allocator replaces (never changes) the dict when the free completes.
    """
    uses: dict[int, Any] | None = block._chunk.uses
    return uses


class Cell:
    """The shadow of one allocation (a base array's block)."""

    __slots__ = ("start", "end", "seg", "records", "clear", "rclear", "gen")

    def __init__(self, start: int, end: int, seg: object, gen: int, records: list[Record]) -> None:
        self.start = start
        self.end = end
        self.seg = seg  # the allocator segment: dead cells are filed under it; released means forgotten
        self.records = records
        # What lets a launch skip the check (checker.py): ``clear`` is the serial of a stream
        # every record of the other streams is ordered before, ``rclear`` one every *write*
        # of the other streams is ordered before (0: none known). Clocks only grow and
        # records only go, so a memo stays true until another stream adds a record (any
        # record undoes ``clear``, a write also ``rclear``): checker.py keeps them so, and
        # whenever ``clear`` names a stream, ``rclear`` names the same one.
        self.clear = self.rclear = owner_of(records)
        self.gen = gen  # records of another generation belong to freed arrays


def owner_of(records: list[Record]) -> int:
    """The serial of the stream every record is of; 0 when they are of several (or none)."""
    owner = 0
    for r in records:
        if owner == 0:
            owner = r[SER]
        elif r[SER] != owner:
            return 0
    return owner


def span_of(a: Any, block: Any) -> tuple[int, int, Layout] | None:
    """The bytes a kernel touching ``a`` may touch: ``(start, end, layout)``, or None if empty.

    ``layout`` is None when every byte of ``[start, end)`` is an element's (a base array, a
    contiguous slice, a transpose), else what ``exact_overlap`` needs.
    """
    strides = a._strides
    ptr = block.ptr
    if strides is None:  # a base array: C-contiguous from its block's start
        return ptr, ptr + block.requested_size, None
    itemsize = a._dtype.itemsize
    first = lo = hi = ptr + a._offset
    count = 1
    shape = a._shape
    for n, st in zip(shape, strides):
        if n == 0:
            return None
        count *= n
        if st > 0:
            hi += (n - 1) * st
        else:
            lo += (n - 1) * st
    end = hi + itemsize
    if end - lo == count * itemsize:
        return lo, end, None
    return lo, end, (shape, strides, itemsize, first)


class _Interface:
    __slots__ = ("__array_interface__",)

    def __init__(self, interface: dict[str, Any]) -> None:
        self.__array_interface__ = interface


def _stand_in(start: int, end: int, layout: Layout) -> np.ndarray[Any, Any]:
    """An ndarray at the device address itself: numpy only does arithmetic on it, never reads it."""
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    if layout is None:
        shape, strides, typestr, first = (end - start,), (1,), "|u1", start
    else:
        shape, strides, itemsize, first = layout
        typestr = f"|V{itemsize}"
    interface = {"shape": shape, "strides": strides, "typestr": typestr, "data": (first, True), "version": 3}
    return np.asarray(_Interface(interface))


def exact_overlap(start: int, end: int, layout: Layout, other: Record) -> bool:
    """Whether an access and a record whose ranges overlap share a byte (either strided)."""
    if layout is None and other[LAYOUT] is None:
        return True
    a = _stand_in(start, end, layout)
    b = _stand_in(other[START], other[END], other[LAYOUT])
    try:
        return bool(np.shares_memory(a, b, max_work=_MAX_WORK))  # type: ignore[arg-type]  # any int works
    except np.exceptions.TooHardError:
        return True


def covers(start: int, end: int, layout: Layout, r: Record) -> bool:
    """Whether an access touches every byte record ``r`` touched."""
    if layout is None:
        return bool(start <= r[START] and r[END] <= end)
    return bool(r[START] == start and r[END] == end and r[LAYOUT] == layout)


class Shadow:
    """Every cell of the current runtime; owned by the sanitizer, used under its lock (but ``on_free``)."""

    def __init__(self) -> None:
        self.cells: dict[int, Cell] = {}  # block address -> the cell of the live array there
        self.dead: dict[object, list[Cell]] = {}  # segment -> cells of freed arrays with records left
        self.frees: deque[tuple[int, object, dict[int, Any] | None]] = deque()  # address, segment, recorded streams
        self._gens = itertools.count(1)

    def cell(self, block: Any, ser: int) -> Cell:
        """A new cell for a live block (on its first access, by stream ``ser``)."""
        ptr = block.ptr
        cell = self.cells[ptr] = Cell(ptr, ptr + block.requested_size, segment_of(block), next(self._gens), [])
        cell.clear = cell.rclear = ser
        return cell

    # --- frees and reuse ------------------------------------------------------------
    def drain_frees(self, protected_of: Any, host: dict[int, int]) -> None:
        """Turn queued frees into dead cells (see the module docstring).

        Args:
            protected_of: maps the streams an array was ``record_stream``-ed on to their serials.
            host: what the host knows completed (serial -> epoch).
        """
        frees = self.frees
        while frees:
            try:
                ptr, seg, recorded = frees.popleft()
            except IndexError:  # pragma: no cover - another drain took it
                return
            cell = self.cells.get(ptr)
            if cell is None or cell.seg is not seg:
                continue
            del self.cells[ptr]
            if getattr(seg, "host", True) is None or not _outlive(cell, recorded, protected_of, host):
                continue  # its segment was released (new memory if reserved again), or nothing can race
            dead = self.dead.get(seg)
            if dead is None:
                self.dead[seg] = [cell]
            else:
                dead.append(cell)
                if len(dead) > MAX_DEAD_PER_SEGMENT:
                    self._compact(seg, dead, host)

    def allocated(self, block: Any, protected_of: Any, host: dict[int, int]) -> None:
        """A new allocation: the frees queued before it are done first; it inherits what overlaps it.

        The common case, the block freed last taken back at once at the same address and
        size (the allocator's own fast path), keeps the cell where it is.
        """
        frees = self.frees
        p = block.ptr
        if len(frees) == 1:
            freed, seg, recorded = frees[0]
            cell = self.cells.get(p) if freed == p else None
            if cell is not None and cell.seg is seg is block._chunk.seg and cell.end == p + block.requested_size:
                frees.popleft()
                records = cell.records
                if recorded is None and len(records) == 1:  # a temporary's one write, the commonest: inlined
                    r = records[0]
                    if r[EPOCH] > host.get(r[SER], 0):
                        cell.gen = next(self._gens)
                        return
                if _outlive(cell, recorded, protected_of, host):
                    cell.gen = next(self._gens)
                else:
                    del self.cells[p]
                return
        if frees:
            self.drain_frees(protected_of, host)
        if self.dead:
            self.reuse(block)

    def _compact(self, seg: object, dead: list[Cell], host: dict[int, int]) -> None:
        """Drop the completed records of a segment's dead cells; keep the newest ``MAX_DEAD_PER_SEGMENT``."""
        kept: list[Cell] = []
        for c in dead:
            c.records = [r for r in c.records if r[EPOCH] > host.get(r[SER], 0)]
            _owned(c)
            if c.records:
                kept.append(c)
        dead[:] = kept[-MAX_DEAD_PER_SEGMENT:]  # the oldest go (a documented limit)
        if not dead:
            del self.dead[seg]

    def reuse(self, block: Any) -> None:
        """A new allocation: give it the records of the dead cells it overlaps, under a new generation."""
        seg = segment_of(block)  # live: the block was just taken from it
        dead = self.dead.get(seg)
        if not dead:
            return
        p = block.ptr
        q = p + block.requested_size
        last = dead[-1]
        if last.start == p and last.end == q:  # the block freed last, again: the common case
            dead.pop()
            if not dead:
                del self.dead[seg]
            last.gen = next(self._gens)
            self.cells[p] = last
            return
        inherited: list[Record] = []
        kept: list[Cell] = []
        for c in dead:
            if c.start < q and c.end > p:
                inherited += [r for r in c.records if r[START] < q and r[END] > p]
                if p <= c.start and c.end <= q:
                    continue  # wholly reused: nothing of it is left for another allocation
            kept.append(c)
        if kept:
            dead[:] = kept
        else:
            del self.dead[seg]
        if inherited:
            self.cells[p] = Cell(p, q, seg, next(self._gens), inherited)

    def forget_segments(self) -> None:
        """Drop the dead cells of released segments."""
        for seg in [s for s in self.dead if getattr(s, "host", True) is None]:
            del self.dead[seg]


def _outlive(cell: Cell, recorded: dict[int, Any] | None, protected_of: Any, host: dict[int, int]) -> bool:
    """Keep, of a freed array's records, those that may still race with a reuse; True if any is left."""
    protected = protected_of(recorded.values()) if recorded else ()
    records = cell.records
    keep = [r for r in records if r[SER] not in protected and r[EPOCH] > host.get(r[SER], 0)]
    if len(keep) != len(records):
        cell.records = keep
        _owned(cell)
    return bool(keep)


def _owned(cell: Cell) -> None:
    """Records went: if those left are of one stream, that stream is clear of the others (none left)."""
    owner = owner_of(cell.records)
    if owner:
        cell.clear = cell.rclear = owner


def prune(records: list[Record], host: dict[int, int]) -> list[Record]:
    """Bound a cell's records: those the host knows completed go, then the oldest."""
    kept = [r for r in records if r[EPOCH] > host.get(r[SER], 0)]
    return kept[-MAX_RECORDS:]

