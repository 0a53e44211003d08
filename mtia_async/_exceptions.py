"""The exceptions of mtia_async, in one place.

::

    Exception
    └── MTIAError                       base of everything the runtime raises itself
        ├── KernelError                 a kernel raised; chained ``from`` its own exception
        ├── DeviceFailedError           a worker thread of the device died; the device is unusable
        ├── DeferredMtiaCallError       a call queued before initialisation failed at init
        └── OutOfMemoryError            also a ``MemoryError``: the device allocator is exhausted

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
