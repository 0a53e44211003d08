"""The ``graph(...)`` context manager's work, and ``is_current_stream_capturing()``.

Each facade wraps :class:`GraphContext` (``_facade/graphs.py``): on entry it waits for
the device (blocking or awaited, the one part that differs), then :meth:`begin`
empties the cache, makes the capture stream current (for this task or thread) and
begins the capture; :meth:`end` ends it and restores the previous stream. An exception
in the body discards the capture (as ``reset()`` does) and propagates unchanged.

Without ``stream=``, a device's captures use one side stream of its own, made on
first use (torch.cuda's choice; torch.mtia's ``graph`` captures on the stream current
at its first use). A capture records everything enqueued on its stream, whatever
task or thread enqueues it, so capturing on a stream others use (the default stream)
would capture their work too.
"""

from __future__ import annotations

import weakref
from contextvars import Token
from typing import TYPE_CHECKING, Any

from .. import _forksafe as forksafe
from .._core.context import current_stream_impl, reset_context, set_current_stream
from .._core.runtime import get_runtime, state
from .._core.stream import StreamHandle, stale_runtime_error
from .graph import MTIAGraph
from .pools import PoolToken, check_pool

if TYPE_CHECKING:
    from .._core.device import DeviceImpl
    from .._core.stream import StreamImpl

__all__ = ["GraphContext", "default_capture_stream", "is_current_stream_capturing"]

_side_streams: weakref.WeakKeyDictionary[DeviceImpl, StreamImpl] = weakref.WeakKeyDictionary()
_side_lock = forksafe.lock()


def default_capture_stream(dev: DeviceImpl) -> StreamImpl:
    """The stream ``graph(...)`` captures on when given none: one per device, made on first use."""
    with _side_lock:
        s = _side_streams.get(dev)
        if s is None:
            s = _side_streams[dev] = dev.new_stream(0)
        return s


def is_current_stream_capturing() -> bool:
    """True while the current stream (of the current device) captures a graph (torch.cuda's name).

    A stream that joined a capture (it waited on an event recorded in it) captures too.
    Does not initialise the runtime (False before).
    """
    if state.runtime is None:
        return False
    return current_stream_impl().capture is not None


class GraphContext:
    """What both facades' ``graph(mtia_graph, pool=None, stream=None)`` do (see the module docstring).

    Raises:
        TypeError: ``mtia_graph`` is not an ``MTIAGraph``, ``stream`` not a Stream, or
            ``pool`` not a pool token.
        ValueError: ``pool`` was never given by ``graph_pool_handle()`` or ``pool()``.
    """

    def __init__(self, mtia_graph: MTIAGraph, pool: PoolToken | None = None, stream: Any = None) -> None:
        if not isinstance(mtia_graph, MTIAGraph):
            raise TypeError(f"graph() expects an MTIAGraph, got {type(mtia_graph).__name__} {mtia_graph!r:.60}")
        check_pool(pool)
        if stream is not None and not isinstance(stream, StreamHandle):
            raise TypeError(f"graph(stream=...) expects a mtia_async Stream or None, got {type(stream).__name__} {stream!r:.60}")
        self.mtia_graph = mtia_graph
        self.pool = pool
        self.stream = stream
        self._tokens: list[Token[Any]] = []

    def capture_stream(self) -> StreamImpl:
        """The stream the capture will use: ``stream``, or the current device's side stream."""
        if self.stream is not None:
            impl: StreamImpl = self.stream._impl
            if impl.device.runtime is not state.runtime:
                raise stale_runtime_error("graph(stream=...)")
            return impl
        get_runtime()
        return default_capture_stream(current_stream_impl().device)

    def begin(self, s: StreamImpl) -> None:
        """After the device sync: empty the cache, make ``s`` current, begin the capture."""
        s.device.allocator.empty_cache()
        token = set_current_stream(s, select_device=True)
        try:
            self.mtia_graph.capture_begin(self.pool)
        except BaseException:
            reset_context(token)
            raise
        self._tokens.append(token)

    def end(self, failed: bool) -> None:
        """End the capture (discard it if the body ``failed``); restore the previous stream."""
        token = self._tokens.pop()
        try:
            if failed:
                self.mtia_graph.reset()
            else:
                self.mtia_graph.capture_end()
        finally:
            reset_context(token)
