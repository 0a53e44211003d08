"""Waiting on marks: from an asyncio task, a trio task, or a blocked thread; raising failures.

Every wait is a wait on one or more :class:`~mtia_async._core.mark.Mark`; a mark that
is already done costs no hop. The blocking waits refuse to run where they would
deadlock or stall a loop (``check_may_block``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from .._exceptions import KernelError, fresh_copy
from .._thread_role import blocking_refused, flags, may_block, running_async_library
from .instrument import instruments
from .mark import Failure, Mark, block_on

_perf_ns = time.perf_counter_ns

__all__ = [
    "check_may_block",
    "raise_failure",
    "raise_failures",
    "wait_done_async",
    "wait_mark_async",
    "wait_mark_blocking",
    "wait_marks_async",
    "wait_marks_blocking",
]


def raise_failure(mark: Mark) -> None:
    """Raise ``KernelError`` if the work before ``mark`` failed, and report the failures."""
    if mark.failures:
        raise_failures([mark])


def raise_failures(marks: list[Mark]) -> None:
    """Raise one error for every failure the ``marks`` carry (all are reported).

    A failure of the runtime itself (a crashed device, a shutdown) is raised as is. One
    kernel failure is a ``KernelError`` chained from its kernel's exception; several are
    one ``KernelError`` chained from an ``ExceptionGroup`` of them, so none is lost.
    """
    failures: list[Failure] = []
    for mark in marks:
        for failure in mark.failures:
            if all(failure is not f for f in failures):
                failures.append(failure)
    if not failures:
        return
    for failure in failures:
        failure.report()
    runtime = [f for f in failures if f.kernel is None]
    if runtime:  # not a kernel: the device failed or the runtime shut down
        raise fresh_copy(runtime[0].exc)
    if len(failures) == 1:
        raise KernelError(failures[0].message()) from failures[0].exc
    lines = "\n".join(f"  - {f.message()}" for f in failures)
    group = ExceptionGroup(
        "kernel failures", [f.exc if isinstance(f.exc, Exception) else KernelError(repr(f.exc)) for f in failures]
    )
    raise KernelError(f"{len(failures)} kernels failed:\n{lines}") from group


def _check_may_await() -> None:
    if flags.worker:
        raise RuntimeError(
            "an mtia_async wait cannot run inside a kernel (not even in an event loop the kernel starts): a kernel "
            "waiting on its device would deadlock it; record an event and await it from the host instead"
        )


async def wait_marks_async(marks: list[Mark], what: str = "synchronize()") -> None:
    """Await every mark (even after one failed), then raise their failures."""
    _check_may_await()
    started = _perf_ns() if instruments.active else 0
    for mark in marks:
        if not mark.done:
            await _wait_async_raw(mark)
    if instruments.active:
        instruments.host_wait(marks, started, what)
    raise_failures(marks)


def wait_marks_blocking(marks: list[Mark], what: str) -> None:
    """Block until every mark is done, then raise their failures."""
    check_may_block(what)
    started = _perf_ns() if instruments.active else 0
    for mark in marks:
        if not mark.done:
            block_on(mark)
    if instruments.active:
        instruments.host_wait(marks, started, what)
    raise_failures(marks)


async def wait_mark_async(mark: Mark, what: str = "await") -> None:
    """Await ``mark`` in the running trio or asyncio loop; raise its failures if any.

    Cancellation raises at once and unregisters the waiter; the work still runs.

    Args:
        mark: what to wait for.
        what: the wait, as the instruments name it (``"Stream.synchronize()"``, ...).

    Raises:
        RuntimeError: inside a kernel, or with no trio or asyncio loop running.
    """
    _check_may_await()
    if instruments.active:
        started = _perf_ns()
        if not mark.done:
            await _wait_async_raw(mark)
        instruments.host_wait((mark,), started, what)
    elif not mark.done:
        await _wait_async_raw(mark)
    if mark.failures:
        raise_failures([mark])


async def wait_done_async(mark: Mark) -> None:
    """Await ``mark`` in the running trio or asyncio loop without raising its failures.

    For a wait that is not the user's (the profiler's exit waits for the work it saw):
    the failures are left for the user's own waits to report.

    Raises:
        RuntimeError: inside a kernel, or with no trio or asyncio loop running.
    """
    _check_may_await()
    if not mark.done:
        await _wait_async_raw(mark)


async def _wait_async_raw(mark: Mark) -> None:
    library = running_async_library()
    if library == "trio":  # first: a trio task in guest mode also sees an asyncio loop
        await _wait_trio(mark)
    elif library == "asyncio":
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut)
        if mark.add_waiter(entry):
            try:
                await fut
            except BaseException:
                mark.remove_waiter(entry)
                raise
    else:
        raise RuntimeError(
            "mtia_async awaitables must be awaited inside a running asyncio or trio event loop "
            "(for example under asyncio.run(), trio.run() or anyio.run()); from plain threads "
            "use mtia_async.sync"
        )


async def _wait_trio(mark: Mark) -> None:
    trio: Any = sys.modules["trio"]
    token = trio.lowlevel.current_trio_token()
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


def check_may_block(what: str) -> None:
    """Raise ``RuntimeError`` where a blocking wait would deadlock or stall a loop.

    Checked on every blocking call, drained or not, so misuse fails deterministically.

    Args:
        what: the blocking call, for the message (e.g. ``"Stream.synchronize()"``).
    """
    if not may_block():
        raise RuntimeError(blocking_refused(f"mtia_async.sync {what}"))


def wait_mark_blocking(mark: Mark | None, what: str) -> None:
    """Block the calling thread until ``mark`` (None: nothing) is done; raise its failures."""
    if not may_block():
        check_may_block(what)  # raises, naming why
    if mark is not None:
        if instruments.active:
            started = _perf_ns()
            if not mark.done:
                block_on(mark)
            instruments.host_wait((mark,), started, what)
        elif not mark.done:
            block_on(mark)
        if mark.failures:
            raise_failures([mark])
