"""The invariants of the reliability catalogue: M5 (statistics) and M6 (snapshots).

Public as ``mtia_async.testing.check_invariants``: the test suites, the soak and users'
own tests assert them on ``memory_stats()`` and ``snapshot()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .stats import BLOCK_STATES, FIELDS, POOLS, STAT_NAMES

__all__ = ["check_invariants"]

_SMALL_SEGMENT = 2 << 20


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
