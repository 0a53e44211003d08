"""The allocation history of ``record_memory_history``: settings, trace entries, Python frames.

Frames are ``{"filename", "line", "name"}`` dicts, innermost first, without the
package's own frames; the trace of a device is a ring buffer of dict entries in the
form of ``torch.cuda.memory._snapshot()["device_traces"]``.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from types import FrameType
from typing import Any

__all__ = ["TRACE_ACTIONS", "Frames", "Trace", "capture_frames", "history_settings", "trace_entry"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_MAX_FRAMES = 32

Frames = list[dict[str, Any]]

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
        max_entries: an int from 0 (unbounded) to ``sys.maxsize``.
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
    if type(max_entries) is not int or not 0 <= max_entries <= sys.maxsize:
        raise ValueError(
            f"max_entries must be an int from 0 to {sys.maxsize} (0 keeps every entry), got {max_entries!r}"
        )
    level = {None: 0, "state": 1, "all": 2}[enabled]
    return level, max_entries or None, context is not None, skip


def trace_entry(action: str, addr: int, size: int, stream: int, frames: Frames | None) -> dict[str, Any]:
    """Return one entry of ``device_traces`` (``time_us``: microseconds since the epoch).

    Args:
        action: one of ``TRACE_ACTIONS``.
        addr: the block or segment address; for ``"oom"``, the free bytes of the device,
            stored under torch's key ``"device_free"`` instead of ``"addr"``.
        size: bytes.
        stream: the stream id.
        frames: Python frames (None: none).
    """
    return {
        "action": action,
        "device_free" if action == "oom" else "addr": addr,
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
