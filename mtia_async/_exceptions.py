"""The exceptions of mtia_async, in one place.

::

    Exception
    └── MTIAError                       base of everything the runtime raises itself
        ├── KernelError                 a kernel raised; chained ``from`` its own exception
        ├── DeviceFailedError           a worker thread of the device died; the device is unusable
        ├── DeferredMtiaCallError       a call queued before initialisation failed at init
        ├── OutOfMemoryError            also a ``MemoryError``: the device allocator is exhausted
        └── UnsynchronizedAccessError   the stream sanitizer: a launch races with another stream's kernel

    Warning
    └── RuntimeWarning
        └── SanitizerWarning            the stream sanitizer in ``mode="warn"``: the same report, not raised

Bad arguments raise the builtin ``TypeError`` / ``ValueError`` at the call; a call that
would deadlock (a blocking wait on an event-loop thread or inside a kernel) raises
``RuntimeError``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DeferredMtiaCallError",
    "DeviceFailedError",
    "KernelError",
    "MTIAError",
    "OutOfMemoryError",
    "SanitizerWarning",
    "UnsynchronizedAccessError",
]


class MTIAError(Exception):
    """Base class of the errors raised by the mtia_async runtime."""


class KernelError(MTIAError):
    """A kernel raised; this is raised at every wait that depends on it.

    The kernel's own exception is ``__cause__``, with its original traceback.
    """


class DeviceFailedError(MTIAError):
    """A device's worker thread died; pending and later waits on it raise this."""


class DeferredMtiaCallError(MTIAError):
    """A call queued before initialisation failed when the runtime initialised.

    The message names the original error and the call site where it was queued.
    """


class OutOfMemoryError(MTIAError, MemoryError):
    """The device allocator could not satisfy a request.

    Attributes:
        device: device index.
        requested: bytes asked for (after rounding).
        capacity: device capacity in bytes.
        free: bytes the device could still reserve.
        allocated: bytes in live allocations.
        reserved: bytes held in segments by the caching allocator.
    """

    def __init__(
        self,
        message: str,
        *,
        device: int = 0,
        requested: int = 0,
        capacity: int = 0,
        free: int = 0,
        allocated: int = 0,
        reserved: int = 0,
    ) -> None:
        super().__init__(message)
        self.device = device
        self.requested = requested
        self.capacity = capacity
        self.free = free
        self.allocated = allocated
        self.reserved = reserved

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "device": self.device,
            "requested": self.requested,
            "capacity": self.capacity,
            "free": self.free,
            "allocated": self.allocated,
            "reserved": self.reserved,
        }
        return (_rebuild_oom, (self.args[0] if self.args else "", kwargs))


class UnsynchronizedAccessError(MTIAError):
    """A kernel's access to device memory races with an earlier kernel's on another stream.

    Raised by the stream sanitizer (``mtia_async.sanitizer``) at the launch that races;
    nothing is enqueued. The message shows both kernels, both streams and both launch
    stack traces. Fields that are not known are empty.

    Attributes:
        kind: ``"read-after-write"``, ``"write-after-read"``, ``"write-after-write"`` or
            ``"use-after-free"`` (the memory was freed and reallocated while the earlier
            kernel, on the old array, was not ordered before the new one).
        array: the array the new kernel accesses, as ``DeviceArray(shape=..., dtype=..., device=...)``.
        address: the device byte range ``(start, end)`` the new kernel may touch.
        stream, kernel, stack: the new launch's stream, kernel name and stack (one
            string per line, outermost frame first; library frames trimmed).
        access: ``"read"`` or ``"write"``, what the new kernel does.
        previous_array, previous_address, previous_stream, previous_kernel,
        previous_stack, previous_access: the same of the earlier launch.
    """

    _FIELDS = (
        "kind", "array", "address", "stream", "kernel", "stack", "access", "previous_array",
        "previous_address", "previous_stream", "previous_kernel", "previous_stack", "previous_access",
    )  # fmt: skip

    def __init__(
        self,
        message: str,
        *,
        kind: str = "",
        array: str = "",
        address: tuple[int, int] = (0, 0),
        stream: str = "",
        kernel: str = "",
        stack: tuple[str, ...] = (),
        access: str = "",
        previous_array: str = "",
        previous_address: tuple[int, int] = (0, 0),
        previous_stream: str = "",
        previous_kernel: str = "",
        previous_stack: tuple[str, ...] = (),
        previous_access: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.array = array
        self.address = address
        self.stream = stream
        self.kernel = kernel
        self.stack = stack
        self.access = access
        self.previous_array = previous_array
        self.previous_address = previous_address
        self.previous_stream = previous_stream
        self.previous_kernel = previous_kernel
        self.previous_stack = previous_stack
        self.previous_access = previous_access

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {name: getattr(self, name) for name in self._FIELDS}
        return (_rebuild_race, (self.args[0] if self.args else "", fields))


class SanitizerWarning(RuntimeWarning):
    """The stream sanitizer's report in ``mode="warn"``: the racing kernel is enqueued anyway."""


def fresh_copy(exc: BaseException) -> BaseException:
    """A new exception like ``exc`` (same type, message and cause) to raise at another wait.

    Raising the stored object itself from several threads would grow one shared traceback.
    An exception type that cannot be rebuilt from its message gives a ``RuntimeError``
    saying so, chained from ``exc``.
    """
    try:
        copy = type(exc)(str(exc))
    except Exception:
        copy = RuntimeError(f"{type(exc).__name__} (see __cause__)")
        copy.__cause__ = exc
        return copy
    copy.__cause__ = exc.__cause__
    return copy


def _rebuild_oom(message: str, kwargs: dict[str, int]) -> OutOfMemoryError:
    return OutOfMemoryError(message, **kwargs)


def _rebuild_race(message: str, fields: dict[str, Any]) -> UnsynchronizedAccessError:
    return UnsynchronizedAccessError(message, **fields)
