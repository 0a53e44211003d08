"""Statistics of the caching allocator: raw counters, and torch.cuda's statistics derived from them.

Each ``malloc`` and ``free`` moves a few raw counters (:class:`Counters`, one per pool
and one for both); the slowly moving statistics (segments, reserved bytes,
fragmentation) are :class:`PoolStat`. :func:`build_stats` derives ``memory_stats()``,
torch.cuda's flat keys and torch.mtia's ``"dram"`` dict, only when they are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["BLOCK_STATES", "FIELDS", "POOLS", "STAT_NAMES", "Counters", "PoolStat", "build_stats"]

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

class Counters:
    """The counters one pool (or both, for the peaks of "all") moves on malloc and free.

    ``count``/``nbytes``/``requested``: allocated blocks, their (rounded) bytes and the
    bytes asked for. ``pending_*``: the same for blocks whose free waits on other
    streams (``record_stream``). ``freed_*``: cumulative, at each free request (pools
    only; "all" sums the pools). ``peak_*``: the peaks of allocated blocks and bytes,
    of active ones (allocated + pending) and of requested bytes.
    """

    __slots__ = (
        "count",
        "nbytes",
        "requested",
        "pending_count",
        "pending_bytes",
        "pending_requested",
        "freed_count",
        "freed_bytes",
        "freed_requested",
        "peak_count",
        "peak_bytes",
        "peak_active_count",
        "peak_active_bytes",
        "peak_requested",
    )

    def __init__(self) -> None:
        self.count = self.nbytes = self.requested = 0
        self.pending_count = self.pending_bytes = self.pending_requested = 0
        self.freed_count = self.freed_bytes = self.freed_requested = 0
        self.peak_count = self.peak_bytes = self.peak_requested = 0
        self.peak_active_count = self.peak_active_bytes = 0

    def allocate(self, nbytes: int, requested: int) -> None:
        """A block of ``nbytes`` (``requested`` asked for) was handed out."""
        self.count += 1
        self.nbytes += nbytes
        self.requested += requested
        if (
            self.count > self.peak_count
            or self.nbytes > self.peak_bytes
            or self.requested > self.peak_requested
            or self.pending_count
        ):
            self.bump()

    def release(self, nbytes: int, requested: int, *, pending: bool = False) -> None:
        """An allocated block was freed, or (``pending``) its free waits on other streams."""
        self.count -= 1
        self.nbytes -= nbytes
        self.requested -= requested
        if pending:  # still active: only moves from allocated to pending
            self.pending_count += 1
            self.pending_bytes += nbytes
            self.pending_requested += requested

    def complete_pending(self, nbytes: int, requested: int) -> None:
        """A pending free completed: the block is no longer active."""
        self.pending_count -= 1
        self.pending_bytes -= nbytes
        self.pending_requested -= requested

    def count_free(self, nbytes: int, requested: int) -> None:
        """Count a free request in the cumulative ``freed_*`` counters (pools only)."""
        self.freed_count += 1
        self.freed_bytes += nbytes
        self.freed_requested += requested

    def bump(self) -> None:
        """Raise the peaks to the current values."""
        self.peak_count = max(self.peak_count, self.count)
        self.peak_bytes = max(self.peak_bytes, self.nbytes)
        self.peak_active_count = max(self.peak_active_count, self.count + self.pending_count)
        self.peak_active_bytes = max(self.peak_active_bytes, self.nbytes + self.pending_bytes)
        self.peak_requested = max(self.peak_requested, self.requested + self.pending_requested)

    def reset_peaks(self) -> None:
        """Set the peaks to the current values."""
        self.peak_count, self.peak_bytes = self.count, self.nbytes
        self.peak_requested = self.requested + self.pending_requested
        self.peak_active_count = self.count + self.pending_count
        self.peak_active_bytes = self.nbytes + self.pending_bytes

    def fields(self) -> dict[str, list[int]]:
        """Return ``[current, peak, allocated, freed]`` of each statistic they carry."""
        count, nbytes, pcount, pbytes = self.count, self.nbytes, self.pending_count, self.pending_bytes
        fcount, fbytes = self.freed_count, self.freed_bytes
        requested = self.requested + self.pending_requested
        return {
            "allocation": [count, self.peak_count, count + fcount, fcount],
            "active": [count + pcount, self.peak_active_count, count + fcount, fcount - pcount],
            "allocated_bytes": [nbytes, self.peak_bytes, nbytes + fbytes, fbytes],
            "active_bytes": [nbytes + pbytes, self.peak_active_bytes, nbytes + fbytes, fbytes - pbytes],
            "requested_bytes": [
                requested,
                self.peak_requested,
                self.requested + self.freed_requested,
                self.freed_requested - self.pending_requested,
            ],
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
