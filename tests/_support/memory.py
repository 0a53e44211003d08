"""Sizes, and reading device memory's state: a block in the snapshot, peaks after a reset."""

from __future__ import annotations

from typing import Any

import mtia_async as mtia

__all__ = ["GiB", "KiB", "MiB", "assert_reset", "block_at", "block_state", "state_at"]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


def block_at(ptr: int) -> dict[str, Any] | None:
    """The ``snapshot()`` entry of the block at device address ``ptr`` (None: no segment holds it)."""
    for seg in mtia.snapshot()["segments"]:
        for block in seg["blocks"]:
            if block["address"] == ptr:
                return dict(block)
    return None


def block_state(ptr: int) -> tuple[str, int]:
    """``(state, size)`` of the block at ``ptr``; fails when there is none."""
    block = block_at(ptr)
    if block is None:
        raise AssertionError(f"no block at {ptr:#x}")
    return block["state"], block["size"]


def state_at(ptr: int) -> str:
    """The state of the block at ``ptr``, or ``"released"`` when no segment holds it."""
    block = block_at(ptr)
    return "released" if block is None else str(block["state"])


def assert_reset(before: dict[str, Any], after: dict[str, Any]) -> None:
    """After ``reset_peak_memory_stats``: every peak equals its current value, and
    everything else (current, allocated, freed, the counts) is as ``before``."""
    for key, value in after.items():
        if key.endswith(".peak"):
            assert value == after[key[: -len("peak")] + "current"], key
        elif key != "dram":
            assert value == before[key], key  # current, allocated, freed and the counts
