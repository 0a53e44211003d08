"""Statistics, history, snapshots and the summary of the caching allocator.

The parts of the memory API that count or render, kept apart from the cache itself
(``_allocator.py``):

* :class:`Counters` and :class:`PoolStat` hold raw counters; :func:`build_stats`
  derives torch.cuda's flat statistics from them when they are read;
* :func:`history_settings`, :func:`trace_entry` and :func:`capture_frames` implement
  ``record_memory_history`` (frames as ``{"filename", "line", "name"}`` dicts);
* :func:`render_segment` gives a segment in the form of ``torch.cuda.memory._snapshot()``;
* :func:`human_size`, :func:`oom_message` and :func:`format_summary` write for people;
* :func:`dump_snapshot` writes a snapshot as a pickle (what pytorch.org/memory_viz
  opens) or as JSON;
* :func:`check_invariants` asserts the catalogue's invariants M5 (statistics) and M6
  (snapshots); the reliability suites reuse it.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from collections.abc import Mapping
from types import FrameType
from collections import deque
from typing import Any

__all__ = [
    "Counters",
    "PoolStat",
    "build_stats",
    "capture_frames",
    "check_invariants",
    "dump_snapshot",
    "format_summary",
    "history_settings",
    "human_size",
    "oom_message",
    "render_segment",
    "trace_entry",
]

STAT_NAMES = (
    "allocation",
    "segment",
    "active",
    "inactive_split",
    "allocated_bytes",
    "reserved_bytes",
    "active_bytes",
    "inactive_split_bytes",
    "requested_bytes",
)
POOLS = ("all", "small_pool", "large_pool")
FIELDS = ("current", "peak", "allocated", "freed")
BLOCK_STATES = ("inactive", "active_allocated", "active_pending_free")  # by chunk state 0, 1, 2

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_MAX_FRAMES = 32
_SMALL_SEGMENT = 2 << 20

Frames = list[dict[str, Any]]


# --- counters and the statistics derived from them -------------------------------------
class Counters:
    """The counters one pool (or both, for the peaks of "all") moves on malloc and free."""

    __slots__ = ("n", "b", "r", "pn", "pb", "pr", "fn", "fb", "fr", "pk_n", "pk_b", "pk_an", "pk_ab", "pk_r")

    def __init__(self) -> None:
        self.n = self.b = self.r = 0  # allocated blocks, their bytes, their requested bytes
        self.pn = self.pb = self.pr = 0  # the same for blocks whose free is pending
        self.fn = self.fb = self.fr = 0  # cumulative at each free request (pools only; "all" sums them)
        self.pk_n = self.pk_b = self.pk_an = self.pk_ab = self.pk_r = 0  # peaks

    def bump(self) -> None:
        """Raise the peaks to the current values."""
        self.pk_n = max(self.pk_n, self.n)
        self.pk_b = max(self.pk_b, self.b)
        self.pk_an = max(self.pk_an, self.n + self.pn)
        self.pk_ab = max(self.pk_ab, self.b + self.pb)
        self.pk_r = max(self.pk_r, self.r + self.pr)

    def reset_peaks(self) -> None:
        """Set the peaks to the current values."""
        self.pk_n, self.pk_b, self.pk_r = self.n, self.b, self.r + self.pr
        self.pk_an, self.pk_ab = self.n + self.pn, self.b + self.pb

    def fields(self) -> dict[str, list[int]]:
        """Return ``[current, peak, allocated, freed]`` of each statistic they carry."""
        n, b, fn, fb, pn, pb = self.n, self.b, self.fn, self.fb, self.pn, self.pb
        return {
            "allocation": [n, self.pk_n, n + fn, fn],
            "active": [n + pn, self.pk_an, n + fn, fn - pn],
            "allocated_bytes": [b, self.pk_b, b + fb, fb],
            "active_bytes": [b + pb, self.pk_ab, b + fb, fb - pb],
            "requested_bytes": [self.r + self.pr, self.pk_r, self.r + self.fr, self.fr - self.pr],
        }


class PoolStat:
    """A slowly moving statistic (segments, reserved bytes, fragmentation) of both pools."""

    __slots__ = ("cur", "peak", "alloc", "all_peak")

    def __init__(self) -> None:
        self.cur = [0, 0]  # [small pool, large pool]
        self.peak = [0, 0]
        self.alloc = [0, 0]
        self.all_peak = 0

    def add(self, large: bool, n: int) -> None:
        """Increase the current value of one pool by ``n``."""
        i = int(large)
        self.cur[i] += n
        self.alloc[i] += n
        self.peak[i] = max(self.peak[i], self.cur[i])
        self.all_peak = max(self.all_peak, self.cur[0] + self.cur[1])

    def sub(self, large: bool, n: int) -> None:
        """Decrease the current value of one pool by ``n``."""
        self.cur[int(large)] -= n

    def observe(self, small: int, large: int) -> None:
        """Move to the values just measured (fragmentation is sampled, not counted)."""
        for i, value in enumerate((small, large)):
            if value > self.cur[i]:
                self.add(bool(i), value - self.cur[i])
            else:
                self.sub(bool(i), self.cur[i] - value)

    def reset_peaks(self) -> None:
        """Set the peaks to the current values."""
        self.peak = list(self.cur)
        self.all_peak = self.cur[0] + self.cur[1]

    def fields(self) -> list[list[int]]:
        """Return ``[current, peak, allocated, freed]`` for all, small_pool, large_pool."""
        per = [[self.cur[i], self.peak[i], self.alloc[i], self.alloc[i] - self.cur[i]] for i in (0, 1)]
        total = [per[0][k] + per[1][k] for k in range(4)]
        total[1] = self.all_peak
        return [total, per[0], per[1]]


def build_stats(
    small: Counters, large: Counters, both: Counters, slow: Mapping[str, PoolStat], counts: Mapping[str, int]
) -> dict[str, Any]:
    """Derive ``memory_stats()`` from the raw counters.

    Args:
        small: counters of the small pool.
        large: counters of the large pool.
        both: counters of both pools, whose peaks are those of "all".
        slow: ``segment``, ``reserved_bytes``, ``inactive_split``, ``inactive_split_bytes``.
        counts: ``num_*`` event counts.

    Returns:
        torch.cuda's flat keys, sorted, then the ``"dram"`` dict of torch.mtia.
    """
    result: dict[str, Any] = {}
    per_stat = {name: stat.fields() for name, stat in slow.items()}
    small_fields, large_fields, both_fields = small.fields(), large.fields(), both.fields()
    for name, s in small_fields.items():
        total = [a + b for a, b in zip(s, large_fields[name])]
        total[1] = both_fields[name][1]
        per_stat[name] = [total, s, large_fields[name]]
    for name, pools in per_stat.items():
        for pool, values in zip(POOLS, pools):
            for field, value in zip(FIELDS, values):
                result[f"{name}.{pool}.{field}"] = value
    for name in ("oversize_allocations", "oversize_segments"):  # max_split_size is unlimited
        for field in FIELDS:
            result[f"{name}.{field}"] = 0
    result.update(counts)
    result["max_split_size"] = -1  # torch's value when max_split_size is not set
    result = dict(sorted(result.items()))
    result["dram"] = {
        "allocated_bytes": result["allocated_bytes.all.current"],
        "peak_bytes": result["allocated_bytes.all.peak"],
        "reserved_bytes": result["reserved_bytes.all.current"],
        "peak_reserved_bytes": result["reserved_bytes.all.peak"],
        "num_allocs": result["allocation.all.allocated"],
        "num_frees": result["allocation.all.freed"],
        "num_ooms": result["num_ooms"],
    }
    return result


# --- history and snapshots -------------------------------------------------------------
TRACE_ACTIONS = ("alloc", "free_requested", "free_completed", "segment_alloc", "segment_free", "oom", "snapshot")


class Trace(deque[dict[str, Any]]):
    """The trace of one device: a ring buffer (``maxlen``) that drops ``skip`` actions."""

    def __init__(self, entries: Any, maxlen: int | None, skip: frozenset[str]) -> None:
        super().__init__(entries, maxlen=maxlen)
        self.skip = skip

    def append(self, entry: dict[str, Any]) -> None:
        if entry["action"] not in self.skip:
            super().append(entry)


def history_settings(
    enabled: object, stacks: object, max_entries: object, context: object = "all", skip_actions: object = None
) -> tuple[int, int | None, bool, frozenset[str]]:
    """Check the arguments of ``record_memory_history``.

    Args:
        enabled: ``"all"``, ``"state"`` or None.
        stacks: ``"python"`` or ``"all"``.
        max_entries: an int >= 0.
        context: which events keep Python frames, as torch: ``"all"``, ``"alloc"``,
            ``"state"`` (frames are kept), or None (no frames at all).
        skip_actions: trace actions not to record (a list of names from ``TRACE_ACTIONS``).

    Returns:
        ``(level, maxlen, frames, skip)``: level 0 records nothing, 1 keeps the stacks of
        live blocks, 2 also keeps a trace; ``maxlen`` bounds the trace (None: unbounded);
        ``frames``: capture Python frames; ``skip``: actions left out of the trace.

    Raises:
        ValueError: an argument is none of its allowed values.
    """
    if context not in ("all", "alloc", "state", None):
        raise ValueError(f"context must be 'all', 'alloc', 'state' or None, got {context!r}")
    if skip_actions is None:
        skip: frozenset[str] = frozenset()
    elif isinstance(skip_actions, (list, tuple, set, frozenset)) and all(a in TRACE_ACTIONS for a in skip_actions):
        skip = frozenset(skip_actions)
    else:
        raise ValueError(f"skip_actions must be a list of {', '.join(TRACE_ACTIONS)}; got {skip_actions!r}")
    if enabled not in ("all", "state", None):
        raise ValueError(f"enabled must be 'all', 'state' or None (to stop), got {enabled!r}")
    if stacks not in ("python", "all"):
        raise ValueError(f"stacks must be 'python' or 'all', got {stacks!r}")
    if type(max_entries) is not int or max_entries < 0:
        raise ValueError(f"max_entries must be an int >= 0 (0 keeps every entry), got {max_entries!r}")
    level = {None: 0, "state": 1, "all": 2}[enabled]
    return level, max_entries or None, context is not None, skip


def trace_entry(action: str, addr: int, size: int, stream: int, frames: Frames | None) -> dict[str, Any]:
    """Return one entry of ``device_traces`` (``time_us``: microseconds since the epoch)."""
    return {
        "action": action,
        "addr": addr,
        "size": size,
        "stream": stream,
        "time_us": time.time_ns() // 1000,
        "frames": frames or [],
    }


def capture_frames() -> Frames:
    """Return the caller's Python stack, innermost first, without mtia_async's own frames.

    Returns:
        At most 32 ``{"filename": str, "line": int, "name": str}`` dicts.
    """
    frames: Frames = []
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and len(frames) < _MAX_FRAMES:
        code = frame.f_code
        if not code.co_filename.startswith(_PACKAGE_DIR):
            frames.append({"filename": code.co_filename, "line": frame.f_lineno, "name": code.co_name})
        frame = frame.f_back
    return frames


def render_segment(device: int, seg: Any) -> dict[str, Any]:
    """Return one entry of a snapshot's ``segments``.

    Args:
        device: the device index.
        seg: an allocator segment (``ptr``, ``size``, ``sid``, ``small``, ``frames``,
            ``head``: the first of its chunks, linked by ``next``).

    Returns:
        The segment dict of ``torch.cuda.memory._snapshot()``, blocks in address order.
    """
    blocks = []
    allocated = active = requested = 0
    chunk = seg.head
    while chunk is not None:
        state = chunk.state
        live = state != 0
        req = (chunk.handle.requested_size if state == 1 else chunk.req) if live else 0
        frames = list(chunk.frames or ()) if live else []
        blocks.append(
            {
                "address": chunk.ptr,
                "size": chunk.size,
                "requested_size": req,
                "state": BLOCK_STATES[state],
                "frames": frames,
            }
        )
        if live:
            active += chunk.size
            requested += req
            if state == 1:
                allocated += chunk.size
        chunk = chunk.next
    return {
        "device": device,
        "address": seg.ptr,
        "total_size": seg.size,
        "allocated_size": allocated,
        "active_size": active,
        "requested_size": requested,
        "stream": seg.sid,
        "segment_type": "small" if seg.small else "large",
        "segment_pool_id": (0, 0),
        "is_expandable": False,
        "frames": list(seg.frames or ()),
        "blocks": blocks,
    }


def dump_snapshot(snapshot: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a snapshot to ``path``: a pickle for ``.pickle``/``.pkl``, JSON for ``.json``.

    The pickle (protocol 4) is what https://pytorch.org/memory_viz opens.

    Args:
        snapshot: the dict returned by ``snapshot()``.
        path: the file to write; its suffix chooses the format.

    Raises:
        ValueError: the suffix is none of ``.pickle``, ``.pkl``, ``.json``.
    """
    name = os.fspath(path)
    if name.lower().endswith((".pickle", ".pkl")):
        with open(name, "wb") as f:
            pickle.dump(dict(snapshot), f, protocol=4)
    elif name.lower().endswith(".json"):
        with open(name, "w", encoding="utf-8") as f:
            json.dump(snapshot, f)
    else:
        raise ValueError(
            f"cannot tell the snapshot format from the path {name!r}: use a name ending in "
            "'.pickle' or '.pkl' (for pytorch.org/memory_viz) or '.json'"
        )


# --- text for people -------------------------------------------------------------------
def human_size(n: int) -> str:
    """Format a byte count with binary units.

    Args:
        n: bytes (a negative value keeps its sign).

    Returns:
        ``"512 B"`` below 1 KiB, else two decimals of the largest unit that fits:
        ``"2.00 MiB"``, ``"1.50 GiB"``, ``"8.00 EiB"``.
    """
    if n < 0:
        return "-" + human_size(-n)
    if n < 1024:
        return f"{n} B"
    value = float(n)
    unit = _UNITS[0]
    for unit in _UNITS:
        value /= 1024.0
        if value < 1024.0:
            break
    return f"{value:.2f} {unit}"


def oom_message(
    device: int, capacity: int, asked: int, request: int, free: int, allocated: int, reserved: int, why: str = ""
) -> str:
    """Return the ``OutOfMemoryError`` message, in torch's words.

    Args:
        device: the device index.
        capacity: device capacity in bytes.
        asked: bytes of the segment that could not be reserved.
        request: bytes the caller asked for.
        free: capacity not reserved.
        allocated: bytes in live allocations.
        reserved: bytes held in segments.
        why: an extra reason (such as the host failing to back the segment).

    Returns:
        "MTIA out of memory. Tried to allocate ..." with the capacity, free, allocated
        and reserved memory, and how to fix it.
    """
    what = human_size(asked) + ("" if asked == request else f" (a segment for a request of {human_size(request)})")
    return (
        f"MTIA out of memory. Tried to allocate {what}{why}. Device {device} has a total capacity of "
        f"{human_size(capacity)} of which {human_size(free)} is free. Of the allocated memory "
        f"{human_size(allocated)} is allocated by mtia_async, and {human_size(reserved - allocated)} is reserved "
        "by mtia_async but unallocated. Free device arrays you no longer need (drop their references), or give "
        "the device more memory with configure(device_memory=...) / MTIA_ASYNC_DEVICE_MEMORY."
    )


def format_summary(stats: Mapping[str, Any], device: int) -> str:
    """Render ``memory_stats()`` as the table of ``torch.cuda.memory_summary()``.

    Args:
        stats: a ``memory_stats()`` dict.
        device: the device index shown in the title.

    Returns:
        The table, 77 characters wide, each line ending with a newline.
    """
    width = 75
    rows = [
        ("allocated_bytes", "Allocated memory", True),
        ("active_bytes", "Active memory", True),
        ("requested_bytes", "Requested memory", True),
        ("reserved_bytes", "Reserved memory", True),
        ("inactive_split_bytes", "Non-releasable memory", True),
        ("allocation", "Allocations", False),
        ("active", "Active allocs", False),
        ("segment", "Reserved segments", False),
        ("inactive_split", "Non-releasable allocs", False),
    ]

    def row(label: str, values: list[int], in_bytes: bool) -> str:
        cells = [f"{human_size(v) if in_bytes else v:>10}" for v in values]
        return f" {label:<21} | " + " | ".join(cells) + " "

    lines = ["=" * width, f"{f'MTIA memory summary, device ID {device}':^{width}}", "-" * width]
    ooms, retries = f"MTIA OOMs: {stats['num_ooms']}", f"alloc retries: {stats['num_alloc_retries']}"
    lines.append(f"{ooms:^37}|{retries:^37}")
    lines += [
        "=" * width,
        f" {'Metric':<21} | {'Cur Usage':>10} | {'Peak Usage':>10} | {'Tot Alloc':>10} | {'Tot Freed':>10} ",
    ]
    for key, title, in_bytes in rows:
        lines.append("-" * width)
        for pool, label in (
            ("all", title),
            ("large_pool", "    from large pool"),
            ("small_pool", "    from small pool"),
        ):
            lines.append(row(label, [int(stats[f"{key}.{pool}.{f}"]) for f in FIELDS], in_bytes))
    lines.append("-" * width)
    for key, title in (("oversize_allocations", "Oversize allocations"), ("oversize_segments", "Oversize segments")):
        lines.append(row(title, [int(stats[f"{key}.{f}"]) for f in FIELDS], False))
    lines.append("=" * width)
    return "".join(f"|{line:<{width}}|\n" for line in lines)


# --- invariants (catalogue M5 and M6) --------------------------------------------------
def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _check_stats(stats: Mapping[str, Any]) -> None:
    for name in STAT_NAMES:
        for field in FIELDS:
            total, small, large = (stats[f"{name}.{pool}.{field}"] for pool in POOLS)
            if field == "peak":  # peaks of the pools need not coincide in time
                _check(
                    max(small, large) <= total <= small + large, f"{name}.all.peak {total} vs pools {small}, {large}"
                )
            else:
                _check(total == small + large, f"{name}.all.{field} = {total} but small + large = {small + large}")
        for pool in POOLS:
            cur, peak, alloc, freed = (stats[f"{name}.{pool}.{f}"] for f in FIELDS)
            key = f"{name}.{pool}"
            _check(peak >= cur >= 0, f"{key}: expected peak >= current >= 0, got peak {peak}, current {cur}")
            _check(cur == alloc - freed, f"{key}: current {cur} != allocated {alloc} - freed {freed}")
    for pool in POOLS:
        allocated, active, requested, reserved, split = (
            stats[f"{name}.{pool}.current"]
            for name in ("allocated_bytes", "active_bytes", "requested_bytes", "reserved_bytes", "inactive_split_bytes")
        )
        _check(
            allocated <= active <= reserved,
            f"{pool}: allocated {allocated} <= active {active} <= reserved {reserved} fails",
        )
        _check(requested <= active, f"{pool}: requested_bytes {requested} > active_bytes {active}")
        _check(active + split <= reserved, f"{pool}: active {active} + inactive_split {split} > reserved {reserved}")
        _check(stats[f"allocation.{pool}.current"] <= stats[f"active.{pool}.current"], f"{pool}: allocations > active")
    dram = stats["dram"]
    for key, flat in (
        ("allocated_bytes", "allocated_bytes.all.current"),
        ("peak_bytes", "allocated_bytes.all.peak"),
        ("reserved_bytes", "reserved_bytes.all.current"),
        ("peak_reserved_bytes", "reserved_bytes.all.peak"),
        ("num_allocs", "allocation.all.allocated"),
        ("num_frees", "allocation.all.freed"),
    ):
        _check(dram[key] == stats[flat], f"dram.{key} = {dram[key]} but {flat} = {stats[flat]}")


def _check_snapshot(snapshot: Mapping[str, Any]) -> None:
    end = -1
    for seg in snapshot["segments"]:
        addr, total = seg["address"], seg["total_size"]
        where = f"segment {addr:#x}"
        _check(addr >= end, f"{where} overlaps the previous segment (which ends at {end:#x})")
        end = addr + total
        if seg["segment_type"] == "small":
            _check(total == _SMALL_SEGMENT, f"{where}: small segment of {total} bytes, expected 2 MiB")
        cursor, sizes, allocated, active, requested = addr, 0, 0, 0, 0
        for block in seg["blocks"]:
            size, req, state = block["size"], block["requested_size"], block["state"]
            _check(block["address"] == cursor, f"{where}: block at {block['address']:#x}, expected {cursor:#x}")
            _check(size > 0 and size % 512 == 0, f"{where}: block size {size} is not a positive multiple of 512")
            _check(0 <= req <= size, f"{where}: requested_size {req} not within [0, size {size}]")
            _check(state in BLOCK_STATES, f"{where}: unknown block state {state!r}")
            cursor += size
            sizes += size
            if state != "inactive":
                active += size
                requested += req
                allocated += size if state == "active_allocated" else 0
        _check(sizes == total, f"{where}: block sizes add up to {sizes}, total_size is {total}")
        for key, value in (("allocated_size", allocated), ("active_size", active), ("requested_size", requested)):
            _check(seg[key] == value, f"{where}: {key} is {seg[key]} but its blocks add up to {value}")


def _check_both(stats: Mapping[str, Any], snapshot: Mapping[str, Any]) -> None:
    for pool, kind in (("all", None), ("small_pool", "small"), ("large_pool", "large")):
        segs = [s for s in snapshot["segments"] if kind is None or s["segment_type"] == kind]
        blocks = [b for s in segs for b in s["blocks"]]
        live = [b for b in blocks if b["state"] == "active_allocated"]
        split_free = [b for s in segs if len(s["blocks"]) > 1 for b in s["blocks"] if b["state"] == "inactive"]
        expected = {
            "segment": len(segs),
            "reserved_bytes": sum(s["total_size"] for s in segs),
            "allocation": len(live),
            "allocated_bytes": sum(b["size"] for b in live),
            "active": sum(1 for b in blocks if b["state"] != "inactive"),
            "active_bytes": sum(s["active_size"] for s in segs),
            "requested_bytes": sum(s["requested_size"] for s in segs),
            "inactive_split": len(split_free),
            "inactive_split_bytes": sum(b["size"] for b in split_free),
        }
        for name, value in expected.items():
            got = stats[f"{name}.{pool}.current"]
            _check(got == value, f"{name}.{pool}.current is {got} but the snapshot shows {value}")


def check_invariants(stats: Mapping[str, Any] | None, snapshot: Mapping[str, Any] | None) -> None:
    """Assert the invariants M5 (statistics) and M6 (snapshot) of the reliability catalogue.

    ``current == allocated - freed`` assumes the accumulated counters were never reset
    (this allocator offers no such reset). Pass both dicts only when they describe the
    same moment (``CachingAllocator.stats_and_snapshot()``, or no allocator activity in
    between): they are then checked against each other.

    Args:
        stats: a ``memory_stats()`` dict, or None to skip its checks.
        snapshot: a ``snapshot()`` dict, or None to skip its checks.

    Raises:
        AssertionError: an invariant fails; the message says which, with the values.
    """
    if stats is not None:
        _check_stats(stats)
    if snapshot is not None:
        _check_snapshot(snapshot)
    if stats is not None and snapshot is not None:
        _check_both(stats, snapshot)
