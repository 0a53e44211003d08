"""The async facade's classes and waiting functions: every wait is ``await``-ed."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from .._core.wait import wait_mark_async, wait_marks_async
from .common import StreamBase, device_sync_marks, stream_getters
from .event import EventBase

__all__ = ["Event", "Stream", "current_stream", "default_stream", "synchronize"]


class Event(EventBase):
    """A marker in a stream's work: record, query, wait, time, and ``await``.

    Args:
        enable_timing: record timestamps so ``elapsed_time`` works.
        blocking: accepted for torch compatibility (waits never spin here).
        interprocess: must be False.
    """

    __slots__ = ()

    async def synchronize(self) -> None:
        """Wait until the recorded work is done (at once if never recorded).

        Raises:
            KernelError: a kernel before the record failed.
        """
        mark = self._mark
        if mark is not None:
            await wait_mark_async(mark, "Event.synchronize()")

    def __await__(self) -> Generator[Any, None, None]:
        """``await e`` is ``await e.synchronize()``."""
        return self.synchronize().__await__()


class Stream(StreamBase[Event]):
    """An in-order queue of kernels on one device; see the module docs.

    Args:
        device: None (current), an int, ``"mtia:N"`` or a device object.
        priority: 0 (normal) to -3 (highest); out-of-range values are clamped.
    """

    __slots__ = ()
    _event_class = Event

    async def synchronize(self) -> None:
        """Wait until all work enqueued on this stream so far is done.

        Costs no thread hop on a drained stream.

        Raises:
            KernelError: a kernel failed; the stream runs work launched after this wait.
        """
        mark = self._impl.sync_mark()
        if mark is not None:
            await wait_mark_async(mark, "Stream.synchronize()")


current_stream, default_stream = stream_getters(Stream)


async def synchronize(device: object = None) -> None:
    """Wait for all work on every stream of ``device`` (default: current device).

    Raises:
        KernelError: one or more kernels failed (all are reported, none lost).
    """
    await wait_marks_async(device_sync_marks(device))
