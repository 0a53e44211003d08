"""Crossing threads: how a worker's completion reaches a waiting task or thread.

A :class:`Mark` is a point in a stream's FIFO. The worker that reaches it stamps the
time, records whether the work before it failed, sets ``done`` and fires the waiters
registered on it. A waiter is one of:

* ``(loop, future)`` — an asyncio task awaiting; fired with one
  ``loop.call_soon_threadsafe`` per loop (guarded: a closed loop's waiters are
  dropped, never invoked);
* a plain callable run on the worker thread (a trio token's ``run_sync_soon``, a
  blocking waiter's ``Lock.release``, a parked stream being made ready again, an
  allocator's pending free).

So a wait costs one cross-thread wake-up, whatever the number of kernels behind the
mark, and a wait on a mark that is already done costs none.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._exceptions import KernelError, fresh_copy
from ._log import log

if TYPE_CHECKING:
    from ._stream import Failure, StreamImpl

__all__ = [
    "Mark",
    "check_may_block",
    "fire",
    "raise_failure",
    "raise_failures",
    "wait_mark_async",
    "wait_mark_blocking",
    "wait_marks_async",
    "wait_marks_blocking",
]

Waiter = Any  # (loop, future) tuple or a zero-argument callable

class _Local(threading.local):
    worker = False


_tls = _Local()


class Mark:
    """A point in a stream's FIFO that waits, events and frees attach to."""

    __slots__ = ("stream", "t_ns", "error", "done", "_waiters", "__weakref__")

    def __init__(self, stream: StreamImpl) -> None:
        self.stream = stream
        self.t_ns = 0
        self.error: Failure | None = None
        self.done = False
        self._waiters: list[Waiter] | None = None

    def add_waiter(self, waiter: Waiter) -> bool:
        """Register ``waiter``; return False (and register nothing) when already done.

        A mark of a dead stream (shut down, forked, failed device) that nothing will
        ever reach completes here with the stream's error instead.
        """
        stream = self.stream
        with stream.lock:
            if self.done:
                return False
            if stream.dead is not None:
                from ._stream import Failure

                self.error = Failure(stream, stream.dead, None)
                self.error.reported = True
                self.done = True
                return False
            if self._waiters is None:
                self._waiters = [waiter]
            else:
                self._waiters.append(waiter)
            return True

    def remove_waiter(self, waiter: Waiter) -> None:
        """Forget ``waiter`` (a cancelled wait); no-op if it already fired."""
        with self.stream.lock:
            waiters = self._waiters
            if waiters is not None:
                try:
                    waiters.remove(waiter)
                except ValueError:
                    pass

    def finish(self, error: Failure | None, t_ns: int) -> list[Waiter] | None:
        """Mark done (by the worker that reached it); return the waiters to fire."""
        self.t_ns = t_ns
        self.error = error
        with self.stream.lock:
            self.done = True
            waiters = self._waiters
            self._waiters = None
        return waiters

    def complete(self, error: Failure | None, t_ns: int) -> None:
        """Mark done and fire the waiters."""
        waiters = self.finish(error, t_ns)
        if waiters:
            fire(waiters)

    # The allocator's marker protocol: done / add_done_callback / wait.
    def add_done_callback(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once the mark is done (now, if it already is)."""
        if self.done or not self.add_waiter(fn):  # done never reverts: no lock needed to see it
            fn()

    def wait(self) -> None:
        """Block until done, without raising the work's failure."""
        if not self.done:
            _block(self)


def fire(waiters: list[Waiter]) -> None:
    """Wake every waiter: one ``call_soon_threadsafe`` per event loop."""
    loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] | None = None
    for waiter in waiters:
        if type(waiter) is tuple:
            loop, fut = waiter
            if loops is None:
                loops = {}
            loops.setdefault(loop, []).append(fut)
        else:
            try:
                waiter()
            except Exception as exc:  # our own callbacks; never let one stop the others
                log.error("waiter_failed", waiter=repr(waiter), error=repr(exc))
    if loops:
        for loop, futs in loops.items():
            if loop.is_closed():
                continue  # the loop is gone: drop the wake-up (anyio#1265)
            try:
                loop.call_soon_threadsafe(_resolve, futs)
            except RuntimeError:
                pass  # closed between the check and the call


def _resolve(futs: list[asyncio.Future[None]]) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_result(None)


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
            _block(mark)
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
    if _tls.worker:
        raise RuntimeError(
            f"mtia_async.sync {what} cannot be called from inside a kernel: a kernel waiting on "
            "its device would deadlock it; record an event and wait on it from the host instead"
        )
    if _in_trio():
        raise RuntimeError(
            f"mtia_async.sync {what} cannot be called from a trio task: this is a blocking "
            "function; use `await` with the mtia_async (async) API instead"
        )


def mark_worker_thread() -> None:
    """Flag the calling thread as a kernel worker (blocking waits there raise)."""
    _tls.worker = True


def in_worker_thread() -> bool:
    """True on a kernel worker thread, where waiting for a stream could wait for itself."""
    return _tls.worker


def _block(mark: Mark) -> None:
    lock = threading.Lock()
    lock.acquire()
    release = lock.release
    if mark.add_waiter(release):
        try:
            lock.acquire()  # interruptible by signals (KeyboardInterrupt) on POSIX
        except BaseException:
            mark.remove_waiter(release)
            raise


def wait_mark_blocking(mark: Mark | None, what: str) -> None:
    """Block the calling thread until ``mark`` (None: nothing) is done; raise its failure."""
    check_may_block(what)
    if mark is not None:
        if not mark.done:
            _block(mark)
        raise_failure(mark)
