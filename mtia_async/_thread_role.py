"""What kind of thread is calling: a kernel worker, an event loop's, a trio task's (a leaf).

A worker thread must never wait on its own device (it could be waiting for work queued
behind the kernel it is running), an event-loop thread or a trio task must never block
(the loop would stall), and an ``await`` must be served by the library actually running
the task. These questions are answered here, cheaply, for the waits of the core and for
the allocator's out-of-memory retry.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any, Literal

__all__ = ["blocking_refused", "flags", "in_worker_thread", "mark_worker_thread", "may_block", "running_async_library"]


class _Flags(threading.local):
    worker = False


flags = _Flags()
"""Per-thread flags; ``flags.worker`` is True on kernel worker threads (one attribute read)."""


def mark_worker_thread() -> None:
    """Flag the calling thread as a kernel worker (waits there raise)."""
    flags.worker = True


def in_worker_thread() -> bool:
    """True on a kernel worker thread, where waiting for a stream could wait for itself."""
    return flags.worker


def _in_trio_task(trio: Any) -> bool:
    try:
        return bool(trio.lowlevel.in_trio_task())
    except AttributeError:  # pragma: no cover - trio < 0.23
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            return False
        return True


def running_async_library() -> Literal["trio", "asyncio"] | None:
    """The async library running the calling task: trio first (also in guest mode on asyncio)."""
    trio = sys.modules.get("trio")  # not imported: no trio task (the common case, one dict lookup)
    if trio is not None and _in_trio_task(trio):
        return "trio"
    if asyncio._get_running_loop() is not None:
        return "asyncio"
    return None


def may_block() -> bool:
    """True where a blocking wait is allowed: :func:`blocking_refused` would give no reason.

    The check every blocking call makes first (~0.2 us: no message is built unless refused).
    """
    return not flags.worker and running_async_library() is None


def blocking_refused(what: str) -> str | None:
    """Why ``what`` (a call that may block) must not block on this thread, or None.

    Args:
        what: the call, for the message (e.g. ``"mtia_async.sync Stream.synchronize()"``).
    """
    if flags.worker:
        return (
            f"{what} cannot be called from inside a kernel: a kernel waiting on its device would "
            "deadlock it; record an event and wait on it from the host instead"
        )
    library = running_async_library()
    if library == "trio":
        return (
            f"{what} cannot be called from a trio task: this is a blocking function; use `await` with "
            "the mtia_async (async) API instead"
        )
    if library == "asyncio":
        return (
            f"{what} cannot be called from the event loop thread: it would block the loop; use `await` "
            "with the mtia_async (async) API instead"
        )
    return None
