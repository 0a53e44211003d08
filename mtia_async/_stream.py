"""StreamImpl: one stream's FIFO, its drain token and its failure state (both facades).

Ownership: ``q`` (a deque) takes appends from any thread and pops from the one worker
holding the stream's token; ``fail`` is written only by that worker and read
lock-free; ``lock`` guards marks' waiter lists and failure reports. The drain itself
lives in ``_device.py``.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import threading
import types
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._exceptions import MTIAError, fresh_copy
from ._wait import Mark

if TYPE_CHECKING:
    from ._device import DeviceImpl

__all__ = [
    "HIGHEST_PRIORITY",
    "LOWEST_PRIORITY",
    "Clear",
    "DeadQueue",
    "Failure",
    "StreamHandle",
    "StreamImpl",
    "WaitOn",
    "check_kernel",
    "foreign_runtime_error",
]

# As in CUDA, a lower number is a higher priority; out-of-range values are clamped.
LOWEST_PRIORITY = 0
HIGHEST_PRIORITY = -3

_BAD_FLAGS = inspect.CO_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
_FunctionType = types.FunctionType
_stream_ids = itertools.count(1)


class Failure:
    """A kernel failure on a stream.

    From the failed kernel on, the stream's work is skipped and every wait on it raises
    ``KernelError``, until a wait reports the failure: reporting enqueues a ``Clear``
    item, and work enqueued after it runs again. ``kernel`` is None for a failure of
    the runtime itself (a dead device, a shutdown): waits raise ``exc`` as is.
    """

    __slots__ = ("stream", "exc", "kernel", "reported")

    def __init__(self, stream: StreamImpl, exc: BaseException, kernel: str | None) -> None:
        self.stream = stream
        self.exc = exc
        self.kernel = kernel
        self.reported = False

    def message(self) -> str:
        s = self.stream
        return (
            f"kernel {self.kernel} failed on device {s.device.index}, stream {s.stream_id}: "
            f"{type(self.exc).__name__}: {self.exc}"
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
            pass  # the stream is dead (shutdown, fork, failed device): nothing runs anyway


def foreign_runtime_error(what: str) -> ValueError:
    """The error for mixing objects of two runtimes (the older one was shut down)."""
    return ValueError(
        f"{what} and the waiting stream belong to two mtia_async runtimes, one of them shut down (for "
        "example by mtia_async.testing.fresh_runtime()); waiting across them would silently do nothing: "
        "make both in the current runtime"
    )


def kernel_name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None and isinstance(fn, functools.partial):
        return f"partial({kernel_name(fn.func)})"
    return str(name) if name else repr(fn)


def check_kernel(kernel: object) -> None:
    """Raise ``TypeError`` unless ``kernel`` is a plain (non-async, non-generator) callable."""
    if type(kernel) is _FunctionType:
        if not kernel.__code__.co_flags & _BAD_FLAGS:
            return
    elif callable(kernel):
        target: Any = kernel
        while isinstance(target, functools.partial):
            target = target.func
        if not (
            inspect.iscoroutinefunction(target)
            or inspect.isgeneratorfunction(target)
            or inspect.isasyncgenfunction(target)
            or inspect.iscoroutinefunction(getattr(target, "__call__", None))
        ):
            return
    else:
        raise TypeError(
            f"kernel must be a callable (a numpy function, a def, a lambda), got "
            f"{type(kernel).__name__} {kernel!r:.80}"
        )
    raise TypeError(
        f"kernel {kernel_name(kernel)!r} is an async def or generator function; kernels run "
        "synchronously in a worker thread: pass a plain function (await the stream instead)"
    )


class StreamHandle:
    """Base of both facades' ``Stream`` classes: a handle on a ``StreamImpl``."""

    __slots__ = ("_impl",)
    _impl: StreamImpl


class WaitOn:
    """A FIFO item: later work on this stream waits for ``mark``."""

    __slots__ = ("mark",)

    def __init__(self, mark: Mark) -> None:
        self.mark = mark


class Clear:
    """A FIFO item: the reported ``failure`` stops poisoning work enqueued after it."""

    __slots__ = ("failure",)

    def __init__(self, failure: Failure) -> None:
        self.failure = failure


class DeadQueue(deque[Any]):
    """Replaces a stream's FIFO once the stream can run nothing more: adding work raises."""

    def __init__(self, reason: BaseException) -> None:
        super().__init__()
        self.reason = reason

    def extend(self, items: object) -> None:
        raise fresh_copy(self.reason)

    extendleft = extend


class StreamImpl:
    """The state of one stream; facade ``Stream`` objects wrap it.

    Lock-free hot path (each step one atomic C call under the GIL): ``launch`` extends
    the deque ``q`` by the pair ``kernel, args`` (one ``extend`` call, so pairs from
    concurrent launchers never interleave; and no per-item tuple survives, so a deep
    queue adds no objects for the garbage collector to scan) and, only if the
    ``token`` list holds the token (the stream is idle), pops it and hands the stream
    to its device. Whoever holds the token owns
    the drain; the worker gives it back when it finds ``q`` empty, then re-checks ``q``
    so a racing launch is never stranded.
    """

    __slots__ = (
        "device",
        "stream_id",
        "priority",
        "lock",
        "q",
        "token",
        "fail",
        "dead",
        "__weakref__",
    )

    def __init__(self, device: DeviceImpl, priority: int, stream_id: int | None = None) -> None:
        self.device = device
        self.stream_id = next(_stream_ids) if stream_id is None else stream_id
        self.priority = min(LOWEST_PRIORITY, max(HIGHEST_PRIORITY, priority))
        self.lock = threading.Lock()  # guards marks' waiter lists and failure reports
        self.q: deque[Any] = deque()  # flat: kernel, args, kernel, args, ...
        self.token = [True]
        self.fail: Failure | None = None  # written by the draining worker only
        self.dead: BaseException | None = None

    def __repr__(self) -> str:
        return f"<stream {self.stream_id} on mtia:{self.device.index}, priority {self.priority}>"

    # --- enqueueing (any thread) -------------------------------------------------
    def launch(self, kernel: Callable[..., object], args: tuple[Any, ...]) -> None:
        """Append ``kernel(*args)`` to the FIFO (the kernel was checked by the caller)."""
        self.q.extend((kernel, args))
        if self.token:
            self.kick()

    def kick(self) -> None:
        """Take the token if it is free and hand the stream to its device."""
        try:
            self.token.pop()
        except IndexError:
            return  # another launcher or the worker holds it
        self.device.make_ready(self)

    def push_special(self, item: Mark | WaitOn | Clear) -> None:
        self.q.extend((None, item))
        if self.token:
            self.kick()

    def record_mark(self) -> Mark:
        """Enqueue and return a mark: it completes once all work enqueued so far is done."""
        mark = Mark(self)
        self.push_special(mark)
        return mark

    def wait_mark(self, mark: Mark) -> None:
        """Make later work on this stream wait until ``mark`` is done (never blocks).

        Raises:
            ValueError: ``mark`` belongs to another runtime (one that was shut down).
        """
        if mark.stream.device.runtime is not self.device.runtime:
            raise foreign_runtime_error("the event or stream waited for")
        if mark.done and mark.error is None:
            return
        self.push_special(WaitOn(mark))

    # --- observing (any thread, lock-free) ---------------------------------------
    def query(self) -> bool:
        """True when every item enqueued so far has been processed."""
        return bool(self.token) and not self.q

    def sync_mark(self) -> Mark | None:
        """Return a mark to wait on for "all work so far", or None when already drained.

        A drained stream with an unreported failure gets a completed, failed mark so the
        wait raises it (no hop either way).
        """
        if self.token and not self.q:
            failure = self.fail
            if failure is None or failure.reported:
                if self.dead is not None:
                    raise self.dead_error()
                return None
            mark = Mark(self)
            mark.done = True
            mark.error = failure
            return mark
        return self.record_mark()

    def dead_error(self) -> BaseException:
        assert self.dead is not None
        return fresh_copy(self.dead)

    def marker(self) -> Mark:
        """The allocator's marker: done once all work enqueued so far has run.

        A dead stream (runtime shut down, device failed, forked child) runs nothing more:
        its marker is done at once, so freeing an array recorded on it never raises.
        """
        if (self.token and not self.q) or self.dead is not None:
            mark = Mark(self)
            mark.done = True
            return mark
        return self.record_mark()
