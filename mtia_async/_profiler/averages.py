"""``key_averages()``: one row per kernel (and per user range and host wait) name, and torch's table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .events import ProfilerEvent

__all__ = ["SORT_KEYS", "EventAverage", "EventAverages", "averages", "format_time"]

SORT_KEYS = ("total_us", "mean_us", "min_us", "max_us", "queued_us", "count", "name")
_KINDS = ("kernel", "range", "host_wait")
_WIDTH = 12  # torch's column width
_MAX_NAME = 55  # torch's widest name column; longer names end in "..."


@dataclass(frozen=True)
class EventAverage:
    """Statistics of the events of one name and kind.

    Attributes:
        name: the kernel's name (``exp``, ``add``, ``my_kernel``), the range's, or the host wait's.
        kind: ``"kernel"``, ``"range"`` (``record_function``) or ``"host_wait"``.
        count: how many ran (kernels: how many were launched and finished in the session).
        total_us, mean_us, min_us, max_us: their durations, in microseconds.
        queued_us: kernels: the mean time from the launch call to the kernel's start, in
            microseconds (how long kernels waited in the stream's FIFO); None otherwise.
    """

    name: str
    kind: str
    count: int
    total_us: float
    mean_us: float
    min_us: float
    max_us: float
    queued_us: float | None


def format_time(us: float) -> str:
    """torch's format: ``541.000us``, ``9.411ms``, ``1.234s``."""
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


class EventAverages(list[EventAverage]):
    """The rows of ``key_averages()`` (a list), and ``table()`` to print them as torch.profiler does."""

    pending: int = 0
    dropped: bool = False

    def table(self, sort_by: str = "total_us", row_limit: int | None = None) -> str:
        """The rows as torch.profiler's ``key_averages().table()`` prints them.

        Args:
            sort_by: a field of the rows: ``total_us`` (the default), ``mean_us``,
                ``min_us``, ``max_us``, ``queued_us``, ``count`` (largest first) or
                ``name`` (alphabetical).
            row_limit: print at most this many rows; None (or torch's ``-1``) for all.

        Raises:
            ValueError: ``sort_by`` is not one of those, or ``row_limit`` is negative.
            TypeError: ``row_limit`` is not an int.
        """
        if sort_by not in SORT_KEYS:
            raise ValueError(f"sort_by must be one of {', '.join(map(repr, SORT_KEYS))}; got {sort_by!r}")
        if row_limit is not None:
            if type(row_limit) is not int:
                raise TypeError(f"row_limit must be an int or None, got {type(row_limit).__name__} {row_limit!r}")
            if row_limit < -1:
                raise ValueError(f"row_limit must be >= 0 (or None, or -1 as torch, for every row); got {row_limit}")
            if row_limit == -1:
                row_limit = None
        rows = sorted(self, key=_sort_key(sort_by))
        if row_limit is not None:
            rows = rows[:row_limit]
        return _render(rows, self)


def _sort_key(sort_by: str) -> Any:
    if sort_by == "name":
        return lambda r: (r.name, r.kind)
    if sort_by == "queued_us":
        return lambda r: (r.queued_us is None, -(r.queued_us or 0.0), r.name)
    return lambda r: (-getattr(r, sort_by), r.name, r.kind)


def _render(rows: list[EventAverage], everything: EventAverages) -> str:
    names = [r.name if len(r.name) <= _MAX_NAME else r.name[: _MAX_NAME - 3] + "..." for r in rows]
    name_width = min(max([len(n) for n in names] + [len("Name")]) + 4, _MAX_NAME)
    widths = [name_width] + [_WIDTH] * 8
    headers = ["Name", "Kind", "# of Calls", "Total", "Total %", "Avg", "Min", "Max", "Queued avg"]

    def line(cells: list[str]) -> str:
        return "".join(f"{c:>{w}}  " for c, w in zip(cells, widths))

    rule = "".join("-" * w + "  " for w in widths)
    totals = {kind: sum(r.total_us for r in everything if r.kind == kind) for kind in _KINDS}
    out = [rule, line(headers), rule]
    for name, r in zip(names, rows):
        share = r.total_us / totals[r.kind] * 100 if totals.get(r.kind) else 0.0
        out.append(line([
            name, r.kind, str(r.count), format_time(r.total_us), f"{share:.2f}%", format_time(r.mean_us),
            format_time(r.min_us), format_time(r.max_us), "-" if r.queued_us is None else format_time(r.queued_us),
        ]))  # fmt: skip
    out.append(rule)
    out.append(f"Kernel time total: {format_time(totals['kernel'])}")
    if totals["host_wait"]:
        out.append(f"Host wait time total: {format_time(totals['host_wait'])}")
    if everything.pending:
        out.append(f"Note: {everything.pending} kernel(s) launched in the session had not finished when "
                   "this was read; they are not counted (synchronize first, or use the context manager)")
    if everything.dropped:
        out.append("Note: the profile's buffer filled: the oldest events were dropped (profile(max_events=...))")
    return "\n".join(out) + "\n"


def averages(events: list[ProfilerEvent], pending: int, dropped: bool) -> EventAverages:
    """Group kernels, ranges and host waits by (name, kind); kernels first in the order seen."""
    groups: dict[tuple[str, str], list[ProfilerEvent]] = {}
    for e in events:
        if e.kind in _KINDS:
            groups.setdefault((e.name, e.kind), []).append(e)
    rows = EventAverages()
    for (name, kind), group in sorted(groups.items(), key=lambda kv: _KINDS.index(kv[0][1])):
        durs = [e.dur_us for e in group]
        queued = [q for q in (e.queued_us for e in group) if q is not None]
        rows.append(EventAverage(
            name, kind, len(group), sum(durs), sum(durs) / len(durs), min(durs), max(durs),
            sum(queued) / len(queued) if kind == "kernel" and queued else None))  # fmt: skip
    rows.pending = pending
    rows.dropped = dropped
    return rows
