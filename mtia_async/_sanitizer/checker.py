"""The stream sanitizer's observer: every launch checked against the shadow memory and the clocks.

``on_launch`` runs on the launching thread before the kernel is enqueued. It first
checks every access of the kernel (its exact ``reads`` and ``writes``, see
``_core/instrument.py``) and only then records them, so a refused launch (mode
``"raise"``) changes nothing: no epoch, no record, nothing enqueued. In mode
``"warn"`` the report is a ``SanitizerWarning`` and the launch goes on; it then counts
as ordered after the earlier kernel it was reported against, so one missing wait is
reported once, not at every later launch.

Threads: one re-entrant lock guards the clocks and the shadow memory; every hook but
``on_free`` takes it. ``on_free`` runs wherever an array dies, also inside garbage
collection on a thread that holds the lock, so it only appends to a queue (one atomic
``deque.append``) that the next allocation or launch drains under the lock.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import _forksafe as forksafe
from .._core.instrument import Observer
from .._exceptions import SanitizerWarning
from .clocks import RING, Clocks
from .report import Access, build_error
from .shadow import (
    EPOCH,
    LAYOUT,
    MAX_RECORDS,
    SER,
    START,
    END,
    WRITE,
    Cell,
    Record,
    Shadow,
    covers,
    exact_overlap,
    prune,
    span_of,
)
from .stacks import capture, kernel_label, user_depth

if TYPE_CHECKING:
    from .._core.mark import Mark
    from .._core.stream import StreamImpl

__all__ = ["MODES", "Sanitizer"]

MODES = ("raise", "warn")
_FunctionType = types.FunctionType


class Sanitizer(Observer):
    """Checks every launch for unsynchronized accesses to device memory (see the package docstring)."""

    def __init__(self, mode: str, runtime: object) -> None:
        self.mode = mode
        self.lock = forksafe.rlock()
        self.clocks = Clocks(runtime)
        self.shadow = Shadow()

    def reset(self, runtime: object) -> None:
        """Forget everything: a new runtime starts (its addresses and streams are new)."""
        with self.lock:
            self.clocks = Clocks(runtime)
            self.shadow = Shadow()

    # --- launches -----------------------------------------------------------------------
    def on_launch(self, stream: StreamImpl, kernel: Any, args: tuple[Any, ...], reads: Sequence[Any],
                  writes: Sequence[Any], t_ns: int) -> None:  # fmt: skip
        # The hot path, written for few bytecodes. A cell this stream is clear of (its
        # ``clear`` memo for a write, ``rclear`` for a read: every conflicting record of
        # the other streams is ordered before this stream's clock, shadow.Cell) needs no
        # check, and a base array's access covers its whole cell: that common case skips
        # the ranges. Record fields by index (shadow.py): 0 start, 1 end, 2 layout,
        # 3 stream serial, 4 epoch, 5 write.
        if not writes and not reads:
            return  # touches no device memory: nothing to check or record
        if stream.closed is not None:
            return  # it runs nothing more (a failed device, a shutdown): the launch raises that
        with self.lock:
            clocks = self.clocks
            clock = clocks.streams.get(id(stream))
            if clock is None:
                clock = clocks.clock(stream)
                if clock is None:
                    return  # a stream of a runtime shut down: the launch raises anyway
            shadow = self.shadow
            if shadow.frees:
                shadow.drain_frees(clocks.protected, clocks.host)
            cells = shadow.cells
            ser = clock.ser
            todo: list[Any] = []  # flat: array, cell, write, ...
            simple = True  # every access: a base array, in a cell this stream is clear of
            for a in writes:
                block = a._block
                if block is not None:
                    cell = cells.get(block.ptr)
                    if cell is None:
                        cell = shadow.cell(block, ser)
                    elif cell.clear != ser:
                        simple = False
                    if a._strides is not None:
                        simple = False
                    todo += (a, cell, True)
            if reads is not writes:
                for a in reads:
                    block = a._block
                    if block is None:
                        continue
                    for w in writes:
                        if w is a:
                            break  # a written array is checked as written
                    else:
                        cell = cells.get(block.ptr)
                        if cell is None:
                            cell = shadow.cell(block, ser)
                        elif cell.rclear != ser:
                            simple = False
                        if a._strides is not None:
                            simple = False
                        todo += (a, cell, False)
            if not todo:
                return
            stack = capture(id(kernel.__code__) if type(kernel) is _FunctionType else id(type(kernel)))
            label = kernel_label(kernel, args)
            if not simple:
                self._general(t_ns, clock, todo, label, stack)
                return None
            epoch = clock.epoch = clock.epoch + 1
            clock.times[epoch % RING] = t_ns
            i = 0
            for a in todo[::3]:
                cell = todo[i + 1]
                if todo[i + 2]:  # a write covering the cell, ordered after every record (memos stay: ser's)
                    cell.records = [(cell.start, cell.end, None, ser, epoch, True, cell.gen, label, stack,
                                     a._shape, a._dtype)]  # fmt: skip
                else:  # a read: it covers this stream's reads, not its writes (nor other streams' reads)
                    rec = (cell.start, cell.end, None, ser, epoch, False, cell.gen, label, stack, a._shape, a._dtype)
                    records = cell.records
                    if records and records[-1][3] == ser and not records[-1][5]:
                        records[-1] = rec  # the same stream's last read, again: the commonest
                    else:  # at most one read of this stream stays (records stay bounded)
                        records = cell.records = [r for r in records if r[5] or r[3] != ser]
                        records.append(rec)
                    if cell.clear != ser:
                        cell.clear = 0  # the holder is not known to be ordered after this read
                i += 3

    def _general(self, t_ns: int, clock: Any, todo: list[Any], label: Any, stack: Any) -> None:
        """A launch touching views, or memory other streams touched: check every access, then record."""
        clocks = self.clocks
        ser, vc, host = clock.ser, clock.vc, clocks.host
        spans: list[tuple[int, int, Any]] = []
        conflict: tuple[Any, int, int, bool, Record, Cell] | None = None
        for i in range(0, len(todo), 3):
            a, cell, write = todo[i], todo[i + 1], todo[i + 2]
            span = span_of(a, a._block)
            spans.append(span)  # type: ignore[arg-type]
            if span is None or conflict is not None:
                continue
            start, end, layout = span
            r = _conflict(cell.records, start, end, layout, write, ser, vc, host)
            if r is not None:
                conflict = (a, start, end, write, r, cell)
        if conflict is not None:
            self._report(conflict, clock.label, label, stack)  # raises in mode "raise"
            r = conflict[4]
            if r[EPOCH] > vc.get(r[SER], 0):
                vc[r[SER]] = r[EPOCH]  # reported once (see the module docstring)
        epoch = clock.epoch = clock.epoch + 1
        clock.times[epoch % RING] = t_ns
        for i in range(0, len(todo), 3):
            span = spans[i // 3]
            if span is None:
                continue
            a, cell, write = todo[i], todo[i + 1], todo[i + 2]
            start, end, layout = span
            _record(cell, (start, end, layout, ser, epoch, write, cell.gen, label, stack, a._shape, a._dtype),
                    ser, vc, host)  # fmt: skip

    def _report(self, conflict: tuple[Any, int, int, bool, Record, Cell], stream: str, label: Any, stack: Any) -> None:
        a, start, end, write, r, cell = conflict
        new = Access(a._shape, a._dtype, start, end, write, stream, label, stack)
        error = build_error(new, r, self.clocks.labels.get(r[SER], "an unknown stream"), cell.gen)
        if self.mode == "raise":
            raise error
        warnings.warn(SanitizerWarning(str(error)), stacklevel=user_depth(1))

    # --- ordering -----------------------------------------------------------------------
    def on_record(self, stream: StreamImpl, mark: Mark) -> None:
        with self.lock:
            self.clocks.record(stream, mark)

    def on_wait(self, stream: StreamImpl, mark: Mark) -> None:
        with self.lock:
            self.clocks.wait(stream, mark)

    def on_host_wait(self, marks: Sequence[Mark], started_ns: int, what: str) -> None:
        with self.lock:
            self.clocks.host_wait(marks, started_ns)

    # --- memory -------------------------------------------------------------------------
    def on_alloc(self, array: Any, stream: StreamImpl) -> None:
        shadow = self.shadow
        if not shadow.frees and not shadow.dead:
            return  # nothing freed that could be reused: the common case costs two reads
        block = array._block
        if block is None:
            return
        with self.lock:
            clocks = self.clocks
            runtime = clocks._runtime  # clocks.runtime, inlined
            if runtime is not None and array._dev.runtime is runtime():
                self.shadow.allocated(block, clocks.protected, clocks.host)
            elif self.shadow.frees:
                self.shadow.drain_frees(clocks.protected, clocks.host)

    def on_free(self, array: Any) -> None:
        block = array._block
        shadow = self.shadow
        if block.ptr in shadow.cells:  # never touched while on: nothing to remember (no lock: see above)
            chunk = block._chunk  # shadow.segment_of and recorded_streams, inlined
            shadow.frees.append((block.ptr, chunk.seg, chunk.uses))


def _conflict(records: list[Record], start: int, end: int, layout: Any, write: bool, ser: int,
              vc: dict[int, int], host: dict[int, int]) -> Record | None:  # fmt: skip
    """The first record of another stream that an access conflicts with and is not ordered after."""
    for r in records:
        rs = r[SER]
        if rs == ser or r[START] >= end or r[END] <= start or not (write or r[WRITE]):
            continue  # same stream, disjoint, or read after read
        e = r[EPOCH]
        if e <= vc.get(rs, 0) or e <= host.get(rs, 0):
            continue  # ordered: a wait, or a completed host wait
        if (layout is not None or r[LAYOUT] is not None) and not exact_overlap(start, end, layout, r):
            continue  # strided ranges that interleave
        return r
    return None


def _record(cell: Cell, rec: Record, ser: int, vc: dict[int, int], host: dict[int, int]) -> None:
    """Add an access record to its cell, dropping the records it makes redundant (shadow.py)."""
    records = cell.records
    start, end, layout, write = rec[START], rec[END], rec[LAYOUT], rec[WRITE]
    keep = []
    for r in records:
        if (write or not r[WRITE]) and covers(start, end, layout, r):
            rs = r[SER]
            if rs == ser or r[EPOCH] <= vc.get(rs, 0) or r[EPOCH] <= host.get(rs, 0):
                continue
        keep.append(r)
    keep.append(rec)
    records = cell.records = keep if len(keep) <= MAX_RECORDS else prune(keep, host)
    # The memos (shadow.Cell): this stream holds them if the records of the others are
    # ordered before it; another holder loses them to this record (``rclear`` only to a write).
    clear = rclear = True
    for r in records:
        rs = r[SER]
        if rs != ser and r[EPOCH] > vc.get(rs, 0) and r[EPOCH] > host.get(rs, 0):
            clear = False
            if r[WRITE]:
                rclear = False
                break
    cell.clear = ser if clear else 0
    if rclear:
        cell.rclear = ser
    elif write or cell.rclear == ser:
        cell.rclear = 0

