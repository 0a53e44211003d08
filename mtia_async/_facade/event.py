"""EventBase: torch.Event semantics over a stream mark (shared by both facades).

An event holds the mark of its latest ``record()``. ``query()`` reads the mark's
``done`` flag (no hop); waiting is the facade's business (``await`` or block). The
timestamp is taken by the worker when it reaches the mark, not at enqueue.
"""

from __future__ import annotations

from .._core.context import stream_impl_of
from .._core.mark import Mark
from .._core.stream import StreamHandle

__all__ = ["EventBase"]


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"Event({name}=...) must be a bool, got {type(value).__name__} {value!r:.60}")
    return value


class EventBase:
    """State and never-waiting methods of an event; see ``mtia_async.Event``."""

    __slots__ = ("enable_timing", "blocking", "interprocess", "_mark", "__weakref__")

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False) -> None:
        self.enable_timing = _check_bool("enable_timing", enable_timing)
        self.blocking = _check_bool("blocking", blocking)
        if _check_bool("interprocess", interprocess):
            raise ValueError(
                "Event(interprocess=True) is not supported: emulated devices live in one process; "
                "use interprocess=False"
            )
        self.interprocess = False
        self._mark: Mark | None = None

    @property
    def device_index(self) -> int | None:
        """The device of the stream this event was last recorded on (None if never recorded)."""
        mark = self._mark
        return None if mark is None else mark.stream.device.index

    def record(self, stream: StreamHandle | None = None) -> None:
        """Capture the work enqueued so far on ``stream`` (default: the current stream).

        Raises:
            TypeError: ``stream`` is not a Stream.
            ValueError: the event was recorded on another device before (a record in a
                runtime since shut down does not count).
        """
        impl = stream_impl_of(stream, "Event.record(stream)")
        old = self._mark
        if old is not None and old.stream.device is not impl.device and old.stream.device.runtime is impl.device.runtime:
            raise ValueError(
                f"Event was recorded on mtia:{old.stream.device.index} and cannot be recorded on a "
                f"stream of mtia:{impl.device.index}; create a new Event for that device"
            )
        self._mark = impl.record_event()

    def query(self) -> bool:
        """True when the recorded work is done, or the event was never recorded."""
        mark = self._mark
        return mark is None or mark.done

    def wait(self, stream: StreamHandle | None = None) -> None:
        """Make later work on ``stream`` (default: current) wait for this event; never blocks.

        Raises:
            TypeError: ``stream`` is not a Stream.
            ValueError: the event was recorded in another (shut down) runtime.
        """
        impl = stream_impl_of(stream, "Event.wait(stream)")
        mark = self._mark
        if mark is not None:
            impl.wait_mark(mark)

    def elapsed_time(self, end_event: EventBase) -> float:
        """Milliseconds between this event and ``end_event``; never blocks.

        Raises:
            TypeError: ``end_event`` is not an Event.
            ValueError: either event lacks ``enable_timing=True`` or was never recorded.
            RuntimeError: either event has not completed, or they are on different devices.
        """
        if not isinstance(end_event, EventBase):
            raise TypeError(f"elapsed_time() expects an Event, got {type(end_event).__name__} {end_event!r:.60}")
        if not (self.enable_timing and end_event.enable_timing):
            raise ValueError(
                "Both events must be created with argument 'enable_timing=True' to measure elapsed time"
            )
        start, end = self._mark, end_event._mark
        if start is None or end is None:
            raise ValueError("Both events must be recorded before calculating elapsed time")
        if start.stream.device is not end.stream.device:
            raise RuntimeError(
                f"elapsed_time() needs events on the same device, got mtia:{start.stream.device.index} "
                f"and mtia:{end.stream.device.index}"
            )
        if not (start.done and end.done):
            raise RuntimeError(
                "Both events must be completed before calculating elapsed time; synchronize the "
                "later event first (query() is False)"
            )
        return (end.t_ns - start.t_ns) / 1e6

    def __bool__(self) -> bool:
        raise TypeError("an Event has no truth value; use event.query() to ask whether it completed")

    def __repr__(self) -> str:
        mark = self._mark
        where = "unrecorded" if mark is None else f"recorded on {mark.stream!r}, done={mark.done}"
        return f"<{type(self).__module__}.{type(self).__qualname__} timing={self.enable_timing} {where}>"
