"""The never-waiting API shared by both facades: devices, streams, contexts.

Everything here behaves identically in ``mtia_async`` and ``mtia_async.sync``; the
facades add only their waiting methods (``await`` or block) and their own classes.
``StreamBase`` is generic in the facade's ``Event`` class, and ``stream_getters``
makes a facade's ``current_stream``/``default_stream`` for its ``Stream`` class, so
neither is written twice.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any, Generic, Protocol, Self, TypeVar

from .._arrays.bind import launch_on
from .._core.context import (
    current_device_index,
    current_stream_impl,
    parse_device,
    reset_context,
    resolve_device,
    set_current_device,
    set_current_stream,
)
from .._core.instrument import instruments
from .._core.mark import Mark
from .._core.runtime import configure, get_runtime, init, is_initialized, peek_config, state
from .._core.stream import (
    _BAD_FLAGS,
    _PLAIN_KINDS,
    StreamHandle,
    StreamImpl,
    check_kernel,
    foreign_runtime_error,
    stale_runtime_error,
)
from .._exceptions import fresh_copy
from .event import EventBase

__all__ = [
    "StreamBase",
    "StreamContext",
    "StreamGetter",
    "configure",
    "current_device",
    "device",
    "device_count",
    "device_sync_marks",
    "get_device_capability",
    "get_device_properties",
    "init",
    "is_available",
    "is_bf16_supported",
    "is_initialized",
    "launch",
    "set_device",
    "set_stream",
    "stream",
    "stream_getters",
]

CAPABILITY = (2, 0)
_FunctionType = types.FunctionType
E = TypeVar("E", bound=EventBase)
S = TypeVar("S", bound="StreamBase[Any]")
S_co = TypeVar("S_co", bound="StreamBase[Any]", covariant=True)
_WITH_TOKENS: ContextVar[tuple[Token[Any], ...]] = ContextVar("mtia_async_stream_with", default=())


class StreamBase(StreamHandle, Generic[E]):
    """State and never-waiting methods of a stream; see ``mtia_async.Stream``."""

    __slots__ = ()
    _event_class: type[E]

    def __new__(cls: type[S], device: object = None, priority: int = 0) -> S:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(
                f"Stream(priority=...) must be an int (0 = normal, -3 = highest), got "
                f"{type(priority).__name__} {priority!r:.60}"
            )
        rt = get_runtime()
        index = resolve_device(device, rt)
        return cls._wrap(rt.devices[index].new_stream(priority))

    @classmethod
    def _wrap(cls: type[S], impl: StreamImpl) -> S:
        obj = object.__new__(cls)
        obj._impl = impl
        return obj

    @property
    def device_index(self) -> int:
        """Index of the stream's device."""
        return self._impl.device.index

    @property
    def device_type(self) -> str:
        """Always ``"mtia"``."""
        return "mtia"

    @property
    def device(self) -> str:
        """The stream's device as a string, ``"mtia:N"``."""
        return f"mtia:{self._impl.device.index}"

    @property
    def stream_id(self) -> int:
        """The stream's id (0 for a device's default stream)."""
        return self._impl.stream_id

    @property
    def priority(self) -> int:
        """Priority, from 0 (normal) to -3 (highest); lower numbers run first."""
        return self._impl.priority

    def launch(self, kernel: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
        """Enqueue ``kernel(*args, **kwargs)``; it runs later in a worker thread, in FIFO order.

        Raises:
            TypeError: ``kernel`` is not a plain callable (async def and generator
                functions are refused here, in the caller).
        """
        if type(kernel) is not _FunctionType or kernel.__code__.co_flags & _BAD_FLAGS:
            if type(kernel) not in _PLAIN_KINDS:
                check_kernel(kernel)
        impl = self._impl
        if args or kwargs or instruments.active:
            launch_on(impl, kernel, args, kwargs)
            return
        impl.q.extend((kernel, args))  # StreamImpl.launch inlined for the no-argument kernel
        if impl.token:
            impl.kick()

    def query(self) -> bool:
        """True when all work enqueued on this stream so far is done; never waits.

        Raises:
            RuntimeError: the stream captures a graph (its work runs at the replays); the
                capture is invalidated.
        """
        return self._impl.query()

    def wait_event(self, event: EventBase) -> None:
        """Make later work on this stream wait for ``event``; never blocks the caller.

        Raises:
            TypeError: ``event`` is not an Event.
            ValueError: ``event`` was recorded in another (shut down) runtime.
        """
        if not isinstance(event, EventBase):
            raise TypeError(f"wait_event() expects a mtia_async Event, got {type(event).__name__} {event!r:.60}")
        mark = event._mark
        if mark is not None:
            self._impl.wait_mark(mark)

    def wait_stream(self, stream: StreamBase[Any]) -> None:
        """Make later work on this stream wait for all work enqueued on ``stream`` so far.

        Raises:
            TypeError: ``stream`` is not a Stream.
            ValueError: ``stream`` belongs to another (shut down) runtime.
        """
        if not isinstance(stream, StreamBase):
            raise TypeError(f"wait_stream() expects a mtia_async Stream, got {type(stream).__name__} {stream!r:.60}")
        other = stream._impl
        if other is self._impl:
            return
        if other.device.runtime is not self._impl.device.runtime:
            raise foreign_runtime_error("the stream waited for")
        # From a capturing stream this forks the capture (an event recorded there); else
        # "all work enqueued on ``stream`` so far", which costs nothing when it is drained.
        mark = other.record_event() if other.capture is not None else other.sync_mark()
        if mark is not None:
            self._impl.wait_mark(mark)

    def record_event(self, event: E | None = None) -> E:
        """Record ``event`` (a new ``Event`` of this facade if None) on this stream and return it."""
        if event is None:
            event = self._event_class()
        elif not isinstance(event, EventBase):
            raise TypeError(f"record_event() expects an Event or None, got {type(event).__name__} {event!r:.60}")
        event.record(self)
        return event

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StreamBase):
            return self._impl.device.index == other._impl.device.index and self._impl.stream_id == other._impl.stream_id
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._impl.device.index, self._impl.stream_id))

    # ``with s:`` (torch.Stream is a context manager): the stream and its device become
    # current for this task/thread, restored on exit. The tokens live in a ContextVar,
    # one stack per task/thread, so one Stream object may be entered by many tasks at once.
    def __enter__(self) -> Self:
        """Make this stream (and its device) current until the ``with`` block ends."""
        token = set_current_stream(_live(self, "the stream of this with-block"), select_device=True)
        _WITH_TOKENS.set((*_WITH_TOKENS.get(), token))
        return self

    def __exit__(self, *exc: object) -> None:
        tokens = _WITH_TOKENS.get()
        if not tokens:
            raise RuntimeError("Stream.__exit__ without a matching __enter__ in this task/thread")
        _WITH_TOKENS.set(tokens[:-1])
        reset_context(tokens[-1])

    def __repr__(self) -> str:
        impl = self._impl
        return (
            f"<{type(self).__module__}.Stream device=mtia:{impl.device.index} "
            f"stream_id={impl.stream_id} priority={impl.priority}>"
        )


def launch(kernel: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
    """Enqueue ``kernel(*args, **kwargs)`` on the current stream (see ``Stream.launch``)."""
    if type(kernel) is not _FunctionType or kernel.__code__.co_flags & _BAD_FLAGS:
        if type(kernel) not in _PLAIN_KINDS:
            check_kernel(kernel)
    impl = current_stream_impl()
    if args or kwargs or instruments.active:
        launch_on(impl, kernel, args, kwargs)
        return
    impl.q.extend((kernel, args))  # StreamImpl.launch inlined for the no-argument kernel
    if impl.token:
        impl.kick()


# --- devices -------------------------------------------------------------------------
def device_count() -> int:
    """Return the number of emulated devices (does not initialise the runtime).

    Raises:
        ValueError: ``MTIA_ASYNC_DEVICE_COUNT`` holds a bad value.
    """
    return peek_config().device_count


def is_available() -> bool:
    """Return True: emulated devices are always available (does not initialise)."""
    return device_count() > 0


def current_device() -> int:
    """Return the index of the current device of this task/thread."""
    if state.bad_fork:
        get_runtime()
    return current_device_index()


def set_device(device: object) -> None:
    """Select the current device for this task/thread.

    Raises:
        ValueError: not a device, or out of range (before init the range is checked at init).
    """
    set_current_device(device)


def get_device_capability(device: object = None) -> tuple[int, int]:
    """Return the emulated capability ``(major, minor)``: bfloat16 needs (2, 0)."""
    resolve_device(device)
    return CAPABILITY


def get_device_properties(device: object = None) -> dict[str, Any]:
    """Return the device's properties: name, total_memory (bytes), workers, capability."""
    index = resolve_device(device)
    config = peek_config()
    rt = state.runtime
    failed = rt is not None and rt.devices[index].crash is not None
    return {
        "name": "mtia_async emulated MTIA (numpy)",
        "index": index,
        "total_memory": config.device_memory,
        "major": CAPABILITY[0],
        "minor": CAPABILITY[1],
        "multi_processor_count": config.workers,
        "workers": config.workers,
        "blas_threads": config.blas_threads,
        "failed": failed,
    }


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """Return True: bfloat16 is supported (through ml_dtypes)."""
    if not isinstance(including_emulation, bool):
        raise TypeError(f"including_emulation must be a bool, got {type(including_emulation).__name__}")
    return True


class device:
    """Context manager that selects a device for this task/thread, restoring it on exit.

    Args:
        device: None (no change), an int, ``"mtia"``, ``"mtia:N"`` or a device object.
    """

    def __init__(self, device: object) -> None:
        index = parse_device(device)
        self.idx = -1 if device is None else (current_device_index() if index is None else index)
        self._device = device
        self._tokens: list[Token[Any]] = []
        if index is not None and state.runtime is not None:
            resolve_device(device, state.runtime)

    @property
    def type(self) -> str:
        return "mtia"

    @property
    def index(self) -> int | None:
        return None if self.idx < 0 else self.idx

    def __enter__(self) -> device:
        if self._device is not None:
            self._tokens.append(set_current_device(self._device))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._device is not None:
            reset_context(self._tokens.pop())


# --- streams ---------------------------------------------------------------------------
def set_stream(stream: StreamBase[Any]) -> None:
    """Make ``stream`` the current stream of its device for this task/thread.

    Prefer ``with mtia.stream(s):``, which restores the previous stream.
    """
    if not isinstance(stream, StreamBase):
        raise TypeError(f"set_stream() expects a mtia_async Stream, got {type(stream).__name__} {stream!r:.60}")
    set_current_stream(_live(stream, "set_stream(): the stream"))


class StreamContext:
    """Context manager that selects ``stream`` (and its device) and restores both on exit.

    A None stream makes the context a no-op, as in torch.
    """

    def __init__(self, stream: StreamBase[Any] | None) -> None:
        if stream is not None and not isinstance(stream, StreamBase):
            raise TypeError(f"StreamContext expects a mtia_async Stream or None, got {type(stream).__name__} {stream!r:.60}")
        self.stream = stream
        self._tokens: list[Token[Any]] = []

    def __enter__(self) -> StreamBase[Any] | None:
        if self.stream is not None:
            impl = _live(self.stream, "the stream of this StreamContext")
            self._tokens.append(set_current_stream(impl, select_device=True))
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            reset_context(self._tokens.pop())


def _live(stream: StreamBase[Any], what: str) -> StreamImpl:
    """The stream's state, if it belongs to the current runtime (else ``ValueError``)."""
    impl = stream._impl
    if impl.device.runtime is not state.runtime:
        raise stale_runtime_error(what)
    return impl


def stream(stream: StreamBase[Any] | None) -> StreamContext:
    """Return a ``StreamContext`` selecting ``stream`` (``with mtia.stream(s): ...``)."""
    return StreamContext(stream)


def device_sync_marks(device: object = None) -> list[Mark]:
    """Marks covering all work enqueued so far on every stream of ``device``."""
    rt = get_runtime()
    dev = rt.devices[resolve_device(device, rt)]
    if dev.crash is not None:
        raise fresh_copy(dev.crash)
    marks = []
    for s in list(dev.streams.values()):
        mark = s.sync_mark()
        if mark is not None:
            marks.append(mark)
    return marks


class StreamGetter(Protocol[S_co]):
    """The type of a facade's ``current_stream`` and ``default_stream``."""

    def __call__(self, device: object = None) -> S_co: ...


def stream_getters(cls: type[S]) -> tuple[StreamGetter[S], StreamGetter[S]]:
    """A facade's ``current_stream`` and ``default_stream``, returning its ``Stream`` class."""

    def current_stream(device: object = None) -> S:
        """Return the current stream of ``device`` (default: the current device) for this task/thread."""
        return cls._wrap(current_stream_impl(device))

    def default_stream(device: object = None) -> S:
        """Return the default stream (``stream_id == 0``) of ``device``."""
        rt = get_runtime()
        return cls._wrap(rt.devices[resolve_device(device, rt)].default_stream)

    current_stream.__qualname__ = "current_stream"
    default_stream.__qualname__ = "default_stream"
    return current_stream, default_stream
