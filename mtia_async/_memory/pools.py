"""Graph memory pools: what a capturing stream allocates from, and when that memory goes.

While a stream captures a graph (``_graphs``), its ``pool`` attribute is the graph's
pool token instead of its stream id, so the allocator reuses, and reserves, segments
under that token: a graph's memory is kept apart from every stream's, and shared only
by the graphs that capture into the same pool (torch's private pools,
``segment_pool_id`` in snapshots). A pool is *live* while a graph uses it
(``retain_pool``/``release_pool`` count them): ``empty_cache()`` and the out-of-memory
retry leave its segments alone, because its graphs replay into them. When the last
user releases it, its free segments go at once (``reset()``) or at the next
``empty_cache()`` (a graph that was garbage collected); blocks still held by arrays
stay until those arrays are freed.
"""

from __future__ import annotations

from .blocks import PoolKey, StreamLike
from .views import AllocatorViews

__all__ = ["GraphPools"]


class GraphPools(AllocatorViews):
    """The graph pools of one device's caching allocator (its base class)."""

    def _tidy(self) -> None:
        """Reclaim completed pending frees and merge free neighbours (the allocator's)."""
        raise NotImplementedError

    def _key_of(self, stream: StreamLike) -> PoolKey:
        """What ``stream``'s allocations are reused by: its ``pool``, else its ``stream_id``.

        Raises:
            TypeError: ``stream`` is no stream.
        """
        key: PoolKey | None = getattr(stream, "pool", None)
        if key is None:
            key = getattr(stream, "stream_id", None)
        if type(key) is not int and type(key) is not tuple:
            raise TypeError(f"stream must be a Stream of mtia:{self.device}, got {type(stream).__name__}")
        return key

    def retain_pool(self, pool: tuple[int, int]) -> None:
        """One more graph uses ``pool``: its segments stay reserved until the last one is done."""
        with self._lock:
            self._live_pools[pool] = self._live_pools.get(pool, 0) + 1

    def release_pool(self, pool: tuple[int, int], now: bool = True) -> None:
        """A graph is done with ``pool``; when no graph uses it any more, its free segments go.

        Args:
            pool: a token given to ``retain_pool``.
            now: release the pool's free segments here (``reset()``); False leaves them to
                the next ``empty_cache()`` (a finalizer, which must not take the allocator).
        """
        with self._lock:
            users = self._live_pools.get(pool, 0) - 1
            if users > 0:
                self._live_pools[pool] = users
                return
            self._live_pools.pop(pool, None)
        if now:
            with self._locked():
                self._tidy()
                self._release_free_segments(pool)

    def pool_users(self, pool: tuple[int, int]) -> int:
        """How many graphs use ``pool`` (0: its free segments may be released)."""
        return self._live_pools.get(pool, 0)
