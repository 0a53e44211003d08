"""The blocking facade's classes and waiting functions (``mtia_async.sync``).

Only the waiting calls differ from the async facade: here they block the calling
thread. Calling one from an event-loop thread, a trio task or inside a kernel raises
``RuntimeError`` instead of deadlocking.
"""

from __future__ import annotations

from .._arrays.functions.indexing import getitem as getitem
from .._arrays.functions.sized import argwhere as argwhere
from .._arrays.functions.sized import flatnonzero as flatnonzero
from .._arrays.functions.sized import histogram as histogram
from .._arrays.functions.sized import nonzero as nonzero
from .._arrays.functions.sized import unique as unique
from .._core.wait import wait_mark_blocking, wait_marks_blocking
from .common import StreamBase, device_sync_marks, stream_getters
from .event import EventBase

__all__ = [
    "Event",
    "Stream",
    "argwhere",
    "current_stream",
    "default_stream",
    "flatnonzero",
    "getitem",
    "histogram",
    "nonzero",
    "synchronize",
    "unique",
]


class Event(EventBase):
    """A marker in a stream's work (blocking facade); see ``mtia_async.Event``."""

    __slots__ = ()

    def synchronize(self) -> None:
        """Block until the recorded work is done (at once if never recorded).

        Raises:
            KernelError: a kernel before the record failed.
            RuntimeError: called on an event-loop thread or inside a kernel.
        """
        wait_mark_blocking(self._mark, "Event.synchronize()")


class Stream(StreamBase[Event]):
    """An in-order queue of kernels on one device (blocking facade)."""

    __slots__ = ()
    _event_class = Event

    def synchronize(self) -> None:
        """Block until all work enqueued on this stream so far is done.

        Raises:
            KernelError: a kernel failed; the stream runs work launched after this wait.
            RuntimeError: called on an event-loop thread or inside a kernel.
        """
        wait_mark_blocking(self._impl.sync_mark(), "Stream.synchronize()")


current_stream, default_stream = stream_getters(Stream)


def synchronize(device: object = None) -> None:
    """Block until all work on every stream of ``device`` (default: current) is done.

    Raises:
        KernelError: one or more kernels failed (all are reported, none lost).
        RuntimeError: called on an event-loop thread or inside a kernel.
    """
    wait_marks_blocking(device_sync_marks(device), "synchronize()")
