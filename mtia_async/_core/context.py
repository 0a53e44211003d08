"""The current device and current stream: per asyncio task and per thread.

Both live in one ``ContextVar`` holding ``(generation, device_index, streams)``, where
``streams`` maps device index -> the current ``StreamImpl`` (None: the default stream).
asyncio copies the context into each task, and a new thread starts with an empty
context, so ``with stream(s)`` in one task or thread never changes another's choice,
and a new thread starts from device 0 and its default stream. ``generation`` ties the
value to one runtime: after a runtime is replaced (``mtia_async.testing``) stale
values are ignored.
"""

from __future__ import annotations

import re
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from .runtime import Runtime, get_runtime, peek_config, queue_call, state
from .stream import StreamHandle, StreamImpl

if TYPE_CHECKING:
    from .device import DeviceImpl

__all__ = [
    "DeviceLike",
    "SupportsDevice",
    "check_range",
    "current_device_index",
    "current_stream_impl",
    "parse_device",
    "reset_context",
    "resolve_device",
    "set_current_device",
    "set_current_stream",
    "stream_impl_of",
    "stream_of",
]

class SupportsDevice(Protocol):
    """A device object: ``torch.device("mtia", 0)``, ``mtia_async.device(0)``."""

    @property
    def type(self) -> str: ...

    @property
    def index(self) -> int | None: ...


DeviceLike: TypeAlias = "int | str | SupportsDevice | None"
"""A ``device`` argument: None (the current device), an int, ``"mtia"``, ``"mtia:N"`` or a device object."""

_Value = tuple[int, int, tuple[StreamImpl | None, ...]]
_ctx: ContextVar[_Value | None] = ContextVar("mtia_async_current", default=None)
_ctx_get = _ctx.get
_DEVICE_RE = re.compile(r"^mtia(?::(\d+))?$")


def _get() -> _Value | None:
    value = _ctx.get()
    if value is None or value[0] != state.generation:
        return None
    return value


def current_device_index() -> int:
    """The calling task's / thread's current device index (0 unless set)."""
    value = _ctx.get()
    if value is None or value[0] != state.generation:
        return 0
    return value[1]


def parse_device(device: object) -> int | None:
    """Parse a device argument into an index (None: the current device), no range check."""
    if device is None:
        return None
    if isinstance(device, bool):
        raise ValueError(f"Expected a mtia device index, got the bool {device!r}; pass an int such as 0")
    if isinstance(device, int):
        return device
    if isinstance(device, str):
        match = _DEVICE_RE.match(device.strip())
        if match is None:
            if ":" in device or device.startswith("mtia"):
                raise ValueError(
                    f"Invalid device string: {device!r}; expected 'mtia' or 'mtia:N' with N an int"
                )
            raise ValueError(f"Expected a mtia device, but got: {device!r}; pass 'mtia', 'mtia:N' or an int")
        return None if match.group(1) is None else int(match.group(1))
    dtype = getattr(device, "type", None)
    if isinstance(dtype, str):
        if dtype != "mtia":
            raise ValueError(f"Expected a mtia device, but got: {device!r} (type {dtype!r})")
        index = getattr(device, "index", None)
        if index is None or isinstance(index, int):
            return index
    raise ValueError(
        f"Expected a mtia device: None, an int, 'mtia', 'mtia:N' or a device object, got "
        f"{type(device).__name__} {device!r:.60}"
    )


def check_range(index: int, count: int, device: object) -> int:
    if not 0 <= index < count:
        raise ValueError(
            f"device {device!r} is out of index range: expected 0..{count - 1} "
            f"(device_count() == {count})"
        )
    return index


def resolve_device(device: object, rt: Runtime | None = None) -> int:
    """Validate a device argument and return its index.

    Raises:
        ValueError: not a device, or out of range (the message names the valid range).
    """
    index = parse_device(device)
    if index is None:
        index = current_device_index()
    count = rt.device_count if rt is not None else peek_config().device_count
    return check_range(index, count, device)


def set_current_device(device: object) -> Token[_Value | None]:
    """Select the current device for this task/thread; return a token to restore it.

    Before init the range check is queued (the device count may still change through
    ``configure()``) and runs at init.
    """
    index = parse_device(device)
    if index is None:
        index = current_device_index()
    rt = state.runtime
    if rt is not None:
        check_range(index, rt.device_count, device)
    else:
        if index < 0:
            check_range(index, 1, device)

        def check(runtime: Runtime, index: int = index, device: Any = device) -> None:
            check_range(index, runtime.device_count, device)

        queue_call(check)
    value = _get()
    streams = value[2] if value is not None else ()
    return _ctx.set((state.generation, index, streams))


def current_stream_impl(device: object = None) -> StreamImpl:
    """The current stream of ``device`` (default: the current device) for this task/thread."""
    rt = get_runtime()
    value = _ctx.get()
    if value is None or value[0] != rt.generation:
        index = 0 if device is None else resolve_device(device, rt)
        return rt.devices[index].default_stream
    index = value[1] if device is None else resolve_device(device, rt)
    streams = value[2]
    if index < len(streams):
        s = streams[index]
        if s is not None:
            return s
    return rt.devices[index].default_stream


def stream_impl_of(stream: object, what: str) -> StreamImpl:
    """The StreamImpl of a facade Stream, or the current stream for None."""
    if stream is None:
        return current_stream_impl()
    if isinstance(stream, StreamHandle):
        return stream._impl
    raise TypeError(f"{what} expects a mtia_async Stream or None, got {type(stream).__name__} {stream!r:.60}")


def set_current_stream(s: StreamImpl, *, select_device: bool = False) -> Token[_Value | None]:
    """Make ``s`` the current stream of its device (and optionally the current device)."""
    value = _get()
    index = s.device.index
    device = index if select_device else (value[1] if value is not None else 0)
    streams = list(value[2]) if value is not None else []
    if len(streams) <= index:
        streams += [None] * (index + 1 - len(streams))
    streams[index] = s
    return _ctx.set((s.device.runtime.generation, device, tuple(streams)))


def stream_of(dev: DeviceImpl) -> StreamImpl:
    """The calling task's / thread's current stream of ``dev`` (``current_stream_impl``, inlined).

    The hot path of every array operation: one ``ContextVar.get`` and a tuple index.
    """
    value = _ctx_get()
    if value is not None:
        streams = value[2]
        i = dev.index
        if i < len(streams):
            s = streams[i]
            if s is not None and value[0] == dev.runtime.generation:
                return s
    return dev.default_stream


def reset_context(token: Token[_Value | None]) -> None:
    """Restore the current device and streams saved by ``set_current_*`` (a context exit)."""
    _ctx.reset(token)
