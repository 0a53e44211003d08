"""StreamImpl: one stream's FIFO, its drain token and its failure state (both facades).

Ownership: ``q`` (a deque) takes appends from any thread and pops from the one worker
holding the stream's token; ``unreported`` is written only by that worker and read
lock-free; ``lock`` guards marks' waiter lists and failure reports. The drain itself
lives in ``device.py``.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import types
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import _forksafe as forksafe
from .._exceptions import fresh_copy
from .instrument import Capture, instruments
from .mark import Clear, Failures, Mark, WaitOn

if TYPE_CHECKING:
    from .device import DeviceImpl

__all__ = [
    "HIGHEST_PRIORITY",
    "LOWEST_PRIORITY",
    "DeadQueue",
    "StreamHandle",
    "StreamImpl",
    "check_kernel",
    "describe_kernel",
    "foreign_runtime_error",
    "stale_runtime_error",
]

# As in CUDA, a lower number is a higher priority; out-of-range values are clamped.
LOWEST_PRIORITY = 0
HIGHEST_PRIORITY = -3

_BAD_FLAGS = inspect.CO_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE


def _plain_numpy_callables() -> list[object]:
    import numpy as np

    return [np.exp, np.copyto, np.add.reduce]


_FunctionType = types.FunctionType
_MethodType = types.MethodType
# Callables that can never be async or generator functions: builtins, numpy's ufuncs and
# array functions (numpy 2's dispatchers are a type of their own).
_PLAIN_KINDS = frozenset(
    {types.BuiltinFunctionType, types.MethodWrapperType, types.WrapperDescriptorType, types.MethodDescriptorType}
    | {type(f) for f in _plain_numpy_callables()}
)
_stream_ids = itertools.count(1)


def foreign_runtime_error(what: str, other: str = "the waiting stream") -> ValueError:
    """The error for mixing objects of two runtimes (the older one was shut down)."""
    return ValueError(
        f"{what} and {other} belong to two mtia_async runtimes, one of them shut down (for example by "
        "mtia_async.testing.fresh_runtime()); the objects of a shut-down runtime are unusable: make both "
        "in the current runtime"
    )


def stale_runtime_error(what: str) -> ValueError:
    """The error for using an object of a runtime that was shut down."""
    return ValueError(
        f"{what} belongs to a mtia_async runtime that was shut down (for example by "
        "mtia_async.testing.fresh_runtime()); its objects are unusable: make it again in the current runtime"
    )


def kernel_name(fn: object) -> str:
    """A kernel's name for messages: its ``__qualname__``, else ``__name__``, else its repr.

    Never raises: it runs on a worker while a failure is recorded, where a user object
    whose attribute lookup or ``repr`` raises must not take the device down.
    """
    try:
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
        if name is None and isinstance(fn, functools.partial):
            return f"partial({kernel_name(fn.func)})"
        return str(name) if name else repr(fn)
    except Exception:
        return f"<a {type(fn).__name__} object>"


def describe_kernel(fn: object, args: tuple[Any, ...]) -> str:
    """The name of the kernel a FIFO item ``(fn, args)`` runs, for messages (never raises).

    A callable that binds arguments for the user's kernel (``binds_kernel`` set: the
    launch runners of ``_arrays/bind.py``) runs ``args[0]``: the user's kernel is named.
    """
    try:
        if getattr(fn, "binds_kernel", False) and args:
            return kernel_name(args[0])
    except Exception:
        pass
    return kernel_name(fn)


def check_kernel(kernel: object) -> None:
    """Raise ``TypeError`` unless ``kernel`` is a plain (non-async, non-generator) callable.

    Fast for what kernels usually are: a ``def`` (one flag test, inlined by the callers),
    a numpy ufunc or function, a builtin, or a bound method or ``functools.partial`` of a
    ``def``; anything else takes ``inspect``'s checks.
    """
    kind = type(kernel)
    if kind in _PLAIN_KINDS:
        return
    if kind is _MethodType or kind is functools.partial:
        inner = kernel.__func__ if kind is _MethodType else kernel.func  # type: ignore[attr-defined]
        if type(inner) is _FunctionType and not inner.__code__.co_flags & _BAD_FLAGS:
            return
    if type(kernel) is _FunctionType:
        if not kernel.__code__.co_flags & _BAD_FLAGS:
            return
    elif callable(kernel):
        target: Any = kernel
        while isinstance(target, functools.partial):
            target = target.func
        try:
            call = getattr(target, "__call__", None)  # an instance: its __call__ decides
            if not any(
                test(t)
                for t in (target, call)
                for test in (inspect.iscoroutinefunction, inspect.isgeneratorfunction, inspect.isasyncgenfunction)
            ):
                return
        except Exception:  # a hostile __getattribute__: let it run; the worker refuses an async result
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
        "unreported",
        "closed",
        "capture",
        "pool",
        "__weakref__",
    )

    def __init__(self, device: DeviceImpl, priority: int, stream_id: int | None = None) -> None:
        self.device = device
        self.stream_id = next(_stream_ids) if stream_id is None else stream_id
        self.priority = min(LOWEST_PRIORITY, max(HIGHEST_PRIORITY, priority))
        self.lock = forksafe.lock()  # guards marks' waiter lists and failure reports
        self.q: deque[Any] = deque()  # flat: kernel, args, kernel, args, ...
        self.token = [True]
        self.unreported: Failures = ()  # failures not yet reported; written by the draining worker only
        self.closed: BaseException | None = None  # why the stream takes no more work (shutdown, fork, crash)
        self.capture: Capture | None = None  # set while the stream captures a graph (instrument.py)
        # What the allocator reuses memory under: this stream's id, or while it captures a
        # graph, the graph's pool token (the capture sets and restores it; _memory/pools.py).
        self.pool: int | tuple[int, int] = self.stream_id

    def __repr__(self) -> str:
        return f"<stream {self.stream_id} on mtia:{self.device.index}, priority {self.priority}>"

    # --- enqueueing (any thread) -------------------------------------------------
    def launch(
        self, kernel: Callable[..., object], args: tuple[Any, ...], reads: Sequence[Any] = (), writes: Sequence[Any] = ()
    ) -> None:
        """Append ``kernel(*args)`` to the FIFO (the kernel was checked by the caller).

        ``reads``/``writes``: the arrays the kernel reads and writes, for the instruments
        (the sanitizer checks them, a capture records them); one flag read when none is on.
        """
        if instruments.active:
            instruments.launch(self, kernel, args, reads, writes)
            return
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

    def record_mark(self, what: str = "a host wait") -> Mark:
        """Enqueue and return a mark: it completes once all work enqueued so far is done.

        For a host wait or a copy to the host (``what`` names it), which a capturing
        stream cannot hold: its capture refuses it.
        """
        if self.capture is not None:
            raise self.capture.forbidden(self, what)
        mark = Mark(self)
        self.push_special(mark)
        return mark

    def record_event(self) -> Mark:
        """Enqueue and return an event's mark (``Event.record``); a capture records it instead."""
        if instruments.active:
            capture = self.capture
            if capture is not None:
                return capture.record(self)
            mark = Mark(self)
            self.push_special(mark)
            instruments.record(self, mark)
            return mark
        mark = Mark(self)
        self.push_special(mark)
        return mark

    def wait_mark(self, mark: Mark) -> None:
        """Make later work on this stream wait until ``mark`` is done (never blocks).

        A capture (this stream's, or that of the captured event ``mark`` belongs to)
        records the wait instead: that is how another stream joins a capture.

        Raises:
            ValueError: ``mark`` belongs to another runtime (one that was shut down).
        """
        if mark.stream.device.runtime is not self.device.runtime:
            raise foreign_runtime_error("the event or stream waited for")
        if instruments.active:
            capture = self.capture if self.capture is not None else getattr(mark, "capture", None)
            if capture is not None:
                capture.wait(self, mark)
                return
            instruments.wait(self, mark)
        if mark.done and not mark.failures:
            return
        self.push_special(WaitOn(mark.pinned()))

    # --- observing (any thread, lock-free) ---------------------------------------
    def query(self) -> bool:
        """True when every item enqueued so far has been processed; a capturing stream refuses."""
        if self.capture is not None:  # its captured work runs only at replays (CUDA refuses too)
            raise self.capture.forbidden(self, "query() of a capturing stream")
        return bool(self.token) and not self.q

    def sync_mark(self) -> Mark | None:
        """Return a mark to wait on for "all work so far", or None when already drained.

        A drained stream with unreported failures gets a completed, failed mark so the
        wait raises them (no hop either way); so does any drained stream while the
        instruments are on (they see the host wait). A capturing stream refuses.
        """
        if self.capture is not None:
            raise self.capture.forbidden(self, "synchronize()")
        if self.token and not self.q:
            failures = self.unreported
            if failures:
                failures = tuple(f for f in failures if not f.reported)
            if not failures:
                if self.closed is not None:
                    raise self.closed_error()
                if not instruments.active:
                    return None
            mark = Mark(self)
            mark.done = True
            mark.failures = failures
            return mark
        return self.record_mark()

    def closed_error(self) -> BaseException:
        assert self.closed is not None
        return fresh_copy(self.closed)

    def marker(self) -> Mark:
        """The allocator's marker: done once all work enqueued so far has run.

        A closed stream (runtime shut down, device failed, forked child) runs nothing more:
        its marker is done at once, so freeing an array recorded on it never raises.
        """
        if (self.token and not self.q) or self.closed is not None:
            mark = Mark(self)
            mark.done = True
            return mark
        mark = Mark(self)  # not record_mark(): a capture does not hold the real queue's work
        self.push_special(mark)
        return mark
