"""Each facade's ``graph(...)`` context manager: the one graph name whose waiting differs.

Entering waits for the capture stream's device (torch.mtia's ``graph`` synchronizes
first): ``with`` blocks in ``mtia_async.sync``; ``async with`` awaits in
``mtia_async``, where a plain ``with`` raises. The rest is ``_graphs.GraphContext``.
"""

from __future__ import annotations

from typing import Any

from .._graphs import GraphContext
from . import aio, blocking

__all__ = ["AsyncGraph", "graph"]


class graph(GraphContext):
    """Capture the work of the block into ``mtia_graph`` (torch.mtia's ``graph``; blocking).

    On entry: synchronize the capture stream's device, ``empty_cache()``, make the
    capture stream current, ``mtia_graph.capture_begin(pool)``. On exit:
    ``capture_end()`` and the previous stream restored; an exception in the block
    discards the capture (as ``reset()``) and propagates.

    Args:
        mtia_graph: the ``MTIAGraph`` to capture into.
        pool: a pool token to share (``graph_pool_handle()``, another graph's ``pool()``).
        stream: the stream to capture on (default: a side stream of the current device).
    """

    def __enter__(self) -> None:
        s = self.capture_stream()
        blocking.synchronize(s.device.index)
        self.begin(s)

    def __exit__(self, exc_type: type[BaseException] | None, *rest: Any) -> None:
        self.end(exc_type is not None)


class AsyncGraph(GraphContext):
    """Capture the work of the block into ``mtia_graph``: ``async with mtia.graph(g):``.

    As ``mtia_async.sync.graph``, but entering awaits the device instead of blocking.

    Args:
        mtia_graph: the ``MTIAGraph`` to capture into.
        pool: a pool token to share (``graph_pool_handle()``, another graph's ``pool()``).
        stream: the stream to capture on (default: a side stream of the current device).
    """

    async def __aenter__(self) -> None:
        s = self.capture_stream()
        await aio.synchronize(s.device.index)
        self.begin(s)

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: Any) -> None:
        self.end(exc_type is not None)

    def __enter__(self) -> None:
        raise RuntimeError(
            "mtia_async.graph(...) waits for the device on entry: use `async with mtia_async.graph(g):` in async "
            "code (or mtia_async.sync.graph in blocking code)"
        )

    def __exit__(self, *exc: object) -> None:
        """Never reached: ``__enter__`` raises."""


AsyncGraph.__name__ = AsyncGraph.__qualname__ = "graph"  # it is mtia_async.graph
