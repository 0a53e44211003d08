"""The completion primitive: marks in a stream's FIFO, the failures they carry, and firing.

A :class:`Mark` is a point in a stream's FIFO. The worker that reaches it stamps the
time, records whether the work before it failed (a :class:`Failure`), sets ``done`` and
fires the waiters registered on it. A waiter is one of:

* ``(loop, future)`` — an asyncio task awaiting; fired with one
  ``loop.call_soon_threadsafe`` per loop (guarded: a closed loop's waiters are
  dropped, never invoked);
* a plain callable run on the worker thread (a trio token's ``run_sync_soon``, a
  blocking waiter's ``Lock.release``, a parked stream being made ready again, an
  allocator's pending free).

So a wait costs one cross-thread wake-up, whatever the number of kernels behind the
mark, and a wait on a mark that is already done costs none.

Beside marks, two other FIFO items: :class:`WaitOn` (later work on this stream waits
for a mark, maybe of another stream) and :class:`Clear` (a reported failure is no
longer carried by the marks enqueued after it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._exceptions import MTIAError

if TYPE_CHECKING:
    from .stream import StreamImpl

__all__ = ["Clear", "Failure", "Failures", "Mark", "WaitOn", "Waiter", "block_on", "fire", "safe_str"]

Waiter = Any  # (loop, future) tuple or a zero-argument callable


class Failure:
    """A kernel failure on a stream.

    Only the failed kernel is affected (its outputs are undefined); the work behind it
    runs. Every mark the stream reaches from then on carries the failure, so every wait
    covering it raises ``KernelError``, until a wait reports it: reporting enqueues a
    ``Clear`` item, and marks after it no longer carry the failure. ``kernel`` is None
    for a failure of the runtime itself (a dead device, a shutdown, a bug in the
    runtime): waits raise ``exc`` as is.
    """

    __slots__ = ("stream", "exc", "kernel", "reported", "wire_id")

    def __init__(self, stream: StreamImpl, exc: BaseException, kernel: str | None) -> None:
        self.stream = stream
        self.exc = exc
        self.kernel = kernel
        self.reported = False
        # The number a cluster session's client knows this failure by (``_cluster/session.py``),
        # kept on the failure itself: an ``id()`` is reused once the failure is gone.
        self.wire_id: int | None = None

    def message(self) -> str:
        s = self.stream
        return (
            f"kernel {self.kernel} failed on device {s.device.index}, stream {s.stream_id}: "
            f"{type(self.exc).__name__}: {safe_str(self.exc)}"
        )

    def report(self) -> None:
        """Close the failure: work launched from now on runs again."""
        s = self.stream
        with s.lock:
            if self.reported:
                return
            self.reported = True
        s.device.forget_failure(self)
        try:
            s.push_special(Clear(self))
        except (RuntimeError, MTIAError):
            pass  # the stream is closed (shutdown, fork, failed device): nothing runs anyway


Failures = tuple[Failure, ...]
"""The failures a mark carries: those not yet reported when its stream reached it."""


def safe_str(obj: object) -> str:
    """``str(obj)``, or a placeholder when that raises: user objects must not break bookkeeping."""
    try:
        return str(obj)
    except Exception as exc:
        return f"<{type(obj).__name__}: str() raised {type(exc).__name__}>"


class Mark:
    """A point in a stream's FIFO that waits, events and frees attach to."""

    __slots__ = ("stream", "t_ns", "failures", "done", "_waiters", "__weakref__")

    def __init__(self, stream: StreamImpl) -> None:
        self.stream = stream
        self.t_ns = 0
        self.failures: Failures = ()
        self.done = False
        self._waiters: list[Waiter] | None = None

    def add_waiter(self, waiter: Waiter) -> bool:
        """Register ``waiter``; return False (and register nothing) when already done.

        A mark of a closed stream (shut down, forked, failed device) that nothing will
        ever reach completes here with the stream's error instead.
        """
        stream = self.stream
        with stream.lock:
            if self.done:
                return False
            if stream.closed is not None:
                failure = Failure(stream, stream.closed, None)
                failure.reported = True
                self.failures = (failure,)
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

    def finish(self, failures: Failures, t_ns: int, token: list[bool] | None = None) -> list[Waiter] | None:
        """Mark done (by the worker that reached it); return the waiters to fire.

        ``token``: the stream's token, when the mark is its last item: given back before
        ``done`` is set, so whoever sees the mark done also sees the stream idle
        (``query()`` True unless new work came). Both happen under the stream's lock, and
        every ``finish`` takes it, so a later mark of the stream (drained by another
        worker that took the token meanwhile) cannot be done before this one.
        """
        self.t_ns = t_ns
        self.failures = failures
        with self.stream.lock:
            if token is not None:
                token.append(True)
            self.done = True
            waiters = self._waiters
            self._waiters = None
        return waiters

    def complete(self, failures: Failures, t_ns: int) -> None:
        """Mark done and fire the waiters."""
        waiters = self.finish(failures, t_ns)
        if waiters:
            fire(waiters)

    def pinned(self) -> Mark:
        """The mark a stream's wait holds on to: this one.

        (An event recorded in a graph answers for the graph's latest replay: its mark
        returns that replay's mark, so a wait never follows a later replay.)
        """
        return self

    # The allocator's marker protocol: done / add_done_callback / wait.
    def add_done_callback(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once the mark is done (now, if it already is)."""
        if self.done or not self.add_waiter(fn):  # done never reverts: no lock needed to see it
            fn()

    def wait(self) -> None:
        """Block until done, without raising the work's failure."""
        if not self.done:
            block_on(self)


class WaitOn:
    """A FIFO item: later work on this stream waits for ``mark``."""

    __slots__ = ("mark",)

    def __init__(self, mark: Mark) -> None:
        self.mark = mark


class Clear:
    """A FIFO item: the reported ``failure`` is not carried by the marks enqueued after it."""

    __slots__ = ("failure",)

    def __init__(self, failure: Failure) -> None:
        self.failure = failure


def fire(waiters: list[Waiter]) -> None:
    """Wake every waiter: one ``call_soon_threadsafe`` per event loop.

    The callables are the runtime's own (a lock release, a trio wake-up, a stream made
    ready, an allocator callback). If one raises, every other waiter is still woken,
    then the first error is raised: it is a bug of the runtime, and the worker that
    fires turns it into a failure of the stream rather than hiding it.
    """
    loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] | None = None
    error: BaseException | None = None
    for waiter in waiters:
        if type(waiter) is tuple:
            loop, fut = waiter
            if loops is None:
                loops = {}
            loops.setdefault(loop, []).append(fut)
        else:
            try:
                waiter()
            except BaseException as exc:  # wake the others first; raised below
                if error is None:
                    error = exc
    if loops:
        for loop, futs in loops.items():
            if loop.is_closed():
                continue  # the loop is gone: drop the wake-up (anyio#1265)
            try:
                loop.call_soon_threadsafe(_resolve, futs)
            except RuntimeError:
                pass  # closed between the check and the call
    if error is not None:
        raise error


def _resolve(futs: list[asyncio.Future[None]]) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_result(None)


def block_on(mark: Mark) -> None:
    """Block the calling thread until ``mark`` is done (interruptible by signals on POSIX)."""
    lock = threading.Lock()
    lock.acquire()
    release = lock.release
    if mark.add_waiter(release):
        try:
            lock.acquire()
        except BaseException:
            mark.remove_waiter(release)
            raise
