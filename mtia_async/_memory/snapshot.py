"""Snapshots in the form of ``torch.cuda.memory._snapshot()``, and writing them to files."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from typing import Any

from .stats import BLOCK_STATES

__all__ = ["allocator_settings", "dump_snapshot", "render_segment"]


def allocator_settings() -> dict[str, Any]:
    """Return a snapshot's ``allocator_settings``: torch's keys, with this allocator's values.

    The allocator has torch's defaults and no ``PYTORCH_CUDA_ALLOC_CONF`` options: no
    split-size limit (-1, as torch reports it), no garbage-collection threshold, no
    expandable segments, no power-of-two rounding divisions (16 intervals, 0 each).
    """
    return {
        "PYTORCH_CUDA_ALLOC_CONF": "",
        "max_split_size": -1,
        "garbage_collection_threshold": 0.0,
        "expandable_segments": False,
        "pinned_num_register_threads": 1,
        "release_lock_on_cudamalloc": False,
        "pinned_use_cuda_host_register": False,
        "roundup_power2_divisions": {str(1 << i): 0 for i in range(16)},
    }


def render_segment(device: int, seg: Any) -> dict[str, Any]:
    """Return one entry of a snapshot's ``segments``.

    Args:
        device: the device index.
        seg: an allocator segment (``ptr``, ``size``, ``sid``, ``key``, ``small``,
            ``frames``, ``head``: the first of its chunks, linked by ``next``).

    Returns:
        The segment dict of ``torch.cuda.memory._snapshot()``, blocks in address order.
    """
    blocks = []
    allocated = active = requested = 0
    chunk = seg.head
    while chunk is not None:
        state = chunk.state
        live = state != 0
        req = chunk.req if live else 0
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
        "segment_pool_id": seg.key if type(seg.key) is tuple else (0, 0),  # a graph pool's token
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
