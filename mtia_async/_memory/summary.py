"""Memory text for people: byte counts and torch's summary table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .stats import FIELDS

__all__ = ["format_summary", "human_size"]

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


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


def format_summary(stats: Mapping[str, Any], device: int, abbreviated: bool = False) -> str:
    """Render ``memory_stats()`` as the table of ``torch.cuda.memory_summary()``.

    Args:
        stats: a ``memory_stats()`` dict.
        device: the device index shown in the title.
        abbreviated: as torch, only the ``all`` row of each metric (no per-pool rows).

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
        pools = [("all", title)]
        if not abbreviated:
            pools += [("large_pool", "    from large pool"), ("small_pool", "    from small pool")]
        for pool, label in pools:
            lines.append(row(label, [int(stats[f"{key}.{pool}.{f}"]) for f in FIELDS], in_bytes))
    lines.append("-" * width)
    for key, title in (("oversize_allocations", "Oversize allocations"), ("oversize_segments", "Oversize segments")):
        lines.append(row(title, [int(stats[f"{key}.{f}"]) for f in FIELDS], False))
    lines.append("=" * width)
    return "".join(f"|{line:<{width}}|\n" for line in lines)
