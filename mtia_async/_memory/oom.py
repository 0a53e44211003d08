"""Out of memory: checking requested sizes, the error, its message and the observers."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import SupportsIndex

import numpy as np

from .._exceptions import OutOfMemoryError
from .blocks import Observer
from .summary import human_size

__all__ = ["check_size", "oom_message", "out_of_memory"]


def check_size(size: object) -> int:
    """Return a requested size in bytes as an int.

    Raises:
        TypeError: not an int (a bool, a float or a str included).
        ValueError: negative.
    """
    if isinstance(size, (bool, np.bool_)):
        raise TypeError(f"size must be an int number of bytes, got bool {size!r}; pass an int such as 8")
    try:
        if not isinstance(size, SupportsIndex):
            raise TypeError
        n = operator.index(size)
    except TypeError:
        raise TypeError(
            f"size must be an int number of bytes, got {type(size).__name__} {size!r}; pass an int such as 8"
        ) from None
    if n < 0:
        raise ValueError(f"size must be >= 0 bytes, got {n!r}; pass a number of bytes from 0 to 2**60 - 1")
    return n


def out_of_memory(
    message: str,
    device: int,
    requested: int,
    capacity: int,
    reserved: int,
    allocated: int,
    observers: Sequence[Observer],
    seg_size: int,
) -> OutOfMemoryError:
    """Call the observers (without the allocator's lock), then return the error to raise.

    An observer that raises does not stop the others: its exception is carried by the
    error (a note, and ``__context__``), never dropped.
    """
    free = capacity - reserved
    error = OutOfMemoryError(
        message,
        device=device,
        requested=requested,
        capacity=capacity,
        free=free,
        allocated=allocated,
        reserved=reserved,
    )
    failures: list[Exception] = []
    for observer in observers:
        try:
            observer(device, seg_size, allocated, free)
        except Exception as exc:  # carried by the OutOfMemoryError, never dropped
            failures.append(exc)
            error.add_note(f"out-of-memory observer {observer!r} raised {type(exc).__name__}: {exc}")
    if failures:
        error.__context__ = failures[0] if len(failures) == 1 else ExceptionGroup("OOM observers failed", failures)
    return error


def oom_message(
    device: int, capacity: int, asked: int, request: int, free: int, allocated: int, reserved: int, why: str = ""
) -> str:
    """Return the ``OutOfMemoryError`` message, in torch's words.

    Args:
        device: the device index.
        capacity: device capacity in bytes.
        asked: bytes of the segment that could not be reserved.
        request: bytes the caller asked for.
        free: capacity not reserved.
        allocated: bytes in live allocations.
        reserved: bytes held in segments.
        why: an extra reason (such as the host failing to back the segment).

    Returns:
        "MTIA out of memory. Tried to allocate ..." with the capacity, free, allocated
        and reserved memory, and how to fix it.
    """
    what = human_size(asked) + ("" if asked == request else f" (a segment for a request of {human_size(request)})")
    return (
        f"MTIA out of memory. Tried to allocate {what}{why}. Device {device} has a total capacity of "
        f"{human_size(capacity)} of which {human_size(free)} is free. Of the allocated memory "
        f"{human_size(allocated)} is allocated by mtia_async, and {human_size(reserved - allocated)} is reserved "
        "by mtia_async but unallocated. Free device arrays you no longer need (drop their references), or give "
        "the device more memory with configure(device_memory=...) / MTIA_ASYNC_DEVICE_MEMORY."
    )
