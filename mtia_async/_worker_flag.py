"""Which threads are kernel workers (a leaf: imports nothing of the package).

A worker thread must never block on its own device (it could be waiting for work queued
behind the kernel it is running), and what the last reference to a ``DeviceArray``
frees on a worker is handed back to the caller's side rather than taking the
allocator's lock there. Both need one question answered cheaply: "am I a worker?".
"""

from __future__ import annotations

import threading

__all__ = ["flags", "in_worker_thread", "mark_worker_thread"]


class _Flags(threading.local):
    worker = False


flags = _Flags()
"""Per-thread flags; ``flags.worker`` is True on kernel worker threads (one attribute read)."""


def mark_worker_thread() -> None:
    """Flag the calling thread as a kernel worker (blocking waits there raise)."""
    flags.worker = True


def in_worker_thread() -> bool:
    """True on a kernel worker thread, where waiting for a stream could wait for itself."""
    return flags.worker
