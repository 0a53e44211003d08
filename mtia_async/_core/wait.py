"""Waiting on marks: from an asyncio task, a trio task, or a blocked thread; raising failures.

Every wait is a wait on one or more :class:`~mtia_async._core.mark.Mark`; a mark that
is already done costs no hop. The blocking waits refuse to run where they would
deadlock or stall a loop (``check_may_block``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from .._exceptions import KernelError, fresh_copy
from .._worker_flag import flags as _thread_flags
from .mark import Failure, Mark, block_on

__all__ = [
    "check_may_block",
    "raise_failure",
    "raise_failures",
    "wait_mark_async",
    "wait_mark_blocking",
    "wait_marks_async",
    "wait_marks_blocking",
]

def raise_failure(mark: Mark) -> None:
    """Raise ``KernelError`` if the work before ``mark`` failed, and report the failure."""
    failure = mark.error
    if failure is not None:
        _raise_one(failure)


def _raise_one(failure: Failure) -> None:
    failure.report()
    exc = failure.exc
    if failure.kernel is None:  # not a kernel: the device failed or the runtime shut down
        raise fresh_copy(exc)
    raise KernelError(failure.message()) from exc


def raise_failures(marks: list[Mark]) -> None:
    """Raise one ``KernelError`` for every failure behind ``marks`` (all are reported).

    One failure is chained from its kernel's exception; several from an
    ``ExceptionGroup`` of them, so none is lost.
    """
    failures: list[Failure] = []
    for mark in marks:
        failure = mark.error
        if failure is not None and all(failure is not f for f in failures):
            failures.append(failure)
    if not failures:
        return
    runtime = [f for f in failures if f.kernel is None]
    if len(failures) == 1 or runtime:
        _raise_one((runtime or failures)[0])
    for failure in failures:
        failure.report()
    lines = "\n".join(f"  - {f.message()}" for f in failures)
    group = ExceptionGroup("kernel failures", [f.exc if isinstance(f.exc, Exception) else KernelError(repr(f.exc)) for f in failures])
    raise KernelError(f"{len(failures)} kernels failed:\n{lines}") from group


async def wait_marks_async(marks: list[Mark]) -> None:
    """Await every mark (even after one failed), then raise their failures."""
    for mark in marks:
        if not mark.done:
            await _wait_async_raw(mark)
    raise_failures(marks)


def wait_marks_blocking(marks: list[Mark], what: str) -> None:
    """Block until every mark is done, then raise their failures."""
    check_may_block(what)
    for mark in marks:
        if not mark.done:
            block_on(mark)
    raise_failures(marks)


def _trio_token() -> Any:
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None


async def wait_mark_async(mark: Mark) -> None:
    """Await ``mark`` in the running asyncio or trio loop; raise its failure if any.

    Cancellation raises at once and unregisters the waiter; the work still runs.
    """
    if not mark.done:
        await _wait_async_raw(mark)
    raise_failure(mark)


async def _wait_async_raw(mark: Mark) -> None:
    loop = asyncio._get_running_loop()
    if loop is not None:
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut)
        if mark.add_waiter(entry):
            try:
                await fut
            except BaseException:
                mark.remove_waiter(entry)
                raise
    else:
        await _wait_trio(mark)


async def _wait_trio(mark: Mark) -> None:
    token = _trio_token()
    if token is None:
        raise RuntimeError(
            "mtia_async awaitables must be awaited inside a running asyncio or trio event loop "
            "(for example under asyncio.run(), trio.run() or anyio.run()); from plain threads "
            "use mtia_async.sync"
        )
    import trio

    event = trio.Event()

    def wake() -> None:
        try:
            token.run_sync_soon(event.set)
        except trio.RunFinishedError:
            pass

    if mark.add_waiter(wake):
        try:
            await event.wait()
        except BaseException:
            mark.remove_waiter(wake)
            raise


def _in_trio() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    in_trio_run = getattr(trio.lowlevel, "in_trio_run", None)
    if in_trio_run is not None:
        return bool(in_trio_run())
    return _trio_token() is not None  # pragma: no cover - trio < 0.24


def check_may_block(what: str) -> None:
    """Raise ``RuntimeError`` where a blocking wait would deadlock or stall a loop.

    Checked on every blocking call, drained or not, so misuse fails deterministically.

    Args:
        what: the blocking call, for the message (e.g. ``"Stream.synchronize()"``).
    """
    if asyncio._get_running_loop() is not None:
        raise RuntimeError(
            f"mtia_async.sync {what} cannot be called from the event loop thread: it would block "
            f"the loop; use `await` with the mtia_async (async) API instead"
        )
    if _thread_flags.worker:
        raise RuntimeError(
            f"mtia_async.sync {what} cannot be called from inside a kernel: a kernel waiting on "
            "its device would deadlock it; record an event and wait on it from the host instead"
        )
    if _in_trio():
        raise RuntimeError(
            f"mtia_async.sync {what} cannot be called from a trio task: this is a blocking "
            "function; use `await` with the mtia_async (async) API instead"
        )


def wait_mark_blocking(mark: Mark | None, what: str) -> None:
    """Block the calling thread until ``mark`` (None: nothing) is done; raise its failure."""
    check_may_block(what)
    if mark is not None:
        if not mark.done:
            block_on(mark)
        raise_failure(mark)
