"""The mark of an event recorded while a stream captures a graph.

``Event.record`` on a capturing stream gets a :class:`CapturedMark` from the capture.
While the capture runs, its ``capture`` slot names the capture: a stream that waits on
it joins the capture (CUDA's fork), and asking whether it is done (``query()``, a
synchronize, ``elapsed_time``) is refused, because nothing has run. Once the capture
ends (``capture`` is None) the mark answers for the graph's latest replay: each
``replay()`` gives it a fresh :class:`~mtia_async._core.mark.Mark` on the replay's
stream (``current``), which the replay completes when it gets to the record's place,
so the event can be waited on and timed like any other. Before the first replay it is
done (nothing to wait for) and has no time.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .._core.mark import Failures, Mark, Waiter

if TYPE_CHECKING:
    from .._core.stream import StreamImpl
    from .capture import GraphCapture

__all__ = ["CapturedMark"]

class CapturedMark(Mark):
    """An event's mark recorded in a graph (see the module docstring).

    Attributes:
        capture: the capture it belongs to while it runs; None once it ended.
        current: the mark of the latest replay (None before the first).
        node: its place in the capture's dependency graph.
    """

    __slots__ = ("capture", "current", "node")

    def __init__(self, stream: StreamImpl, capture: GraphCapture, node: int) -> None:  # no Mark.__init__:
        self.stream = stream  # its state is the replays' (properties below)
        self._waiters = None
        self.capture: GraphCapture | None = capture
        self.current: Mark | None = None
        self.node = node

    # The state a Mark keeps in slots is the latest replay's here.
    @property
    def done(self) -> bool:
        capture = self.capture
        if capture is not None:
            if sys._getframe(1).f_code.co_name == "__repr__":
                return False  # printing an event must not break the capture
            raise capture.forbidden(self.stream, "query(), synchronize() or elapsed_time() of an event recorded during the capture")
        current = self.current
        return current is None or current.done

    @done.setter
    def done(self, value: bool) -> None:
        raise AttributeError("the state of an event recorded in a graph belongs to the graph's replays")

    @property
    def failures(self) -> Failures:
        current = self.current
        return () if current is None else current.failures

    @failures.setter
    def failures(self, value: Failures) -> None:
        raise AttributeError("the state of an event recorded in a graph belongs to the graph's replays")

    @property
    def t_ns(self) -> int:
        current = self.current
        if current is None:
            raise RuntimeError(
                "the event was recorded in a graph that has not been replayed since: it has no time yet "
                "(replay() the graph, wait for the event, then ask elapsed_time())"
            )
        return current.t_ns

    @t_ns.setter
    def t_ns(self, value: int) -> None:
        raise AttributeError("the state of an event recorded in a graph belongs to the graph's replays")

    def pinned(self) -> Mark:
        """The latest replay's mark (a done mark before the first replay)."""
        current = self.current
        if current is not None:
            return current
        mark = Mark(self.stream)
        mark.done = True
        return mark

    def add_waiter(self, waiter: Waiter) -> bool:
        current = self.current
        return False if current is None else current.add_waiter(waiter)

    def remove_waiter(self, waiter: Waiter) -> None:
        current = self.current
        if current is not None:
            current.remove_waiter(waiter)

    def finish(self, failures: Failures, t_ns: int, token: list[bool] | None = None) -> list[Waiter] | None:
        raise AssertionError("a captured mark is never in a FIFO: its replays' marks are")
