"""Graph pool tokens: ``graph_pool_handle()`` and each graph's private pool.

A token is torch's ``MempoolId_t``: a pair of ints. ``graph_pool_handle()`` gives
``(0, n)``, a graph capturing without ``pool`` gets a private ``(n, 0)``; ``(0, 0)``
means "no pool given". The allocator keeps a pool's memory while graphs use it
(``_memory/pools.py``); a pool belongs to the device of the first capture into it
while any graph uses it.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from .._core.runtime import state

if TYPE_CHECKING:
    from .._core.device import DeviceImpl

__all__ = ["PoolToken", "check_pool", "graph_pool_handle", "pool_device", "private_pool"]

PoolToken = tuple[int, int]
_ids = itertools.count(1)
_last = 0  # the largest id handed out: tokens above it were never issued


def _next() -> int:
    global _last
    n = next(_ids)  # atomic under the GIL
    _last = max(_last, n)
    return n


def graph_pool_handle() -> PoolToken:
    """Return a new memory pool token to share between graphs (torch.mtia's ``graph_pool_handle``).

    Pass it as ``pool=`` to ``MTIAGraph.capture_begin`` or ``graph(...)`` of each graph
    that should allocate from the same pool. Does not initialise the runtime.
    """
    return (0, _next())


def private_pool() -> PoolToken:
    """A new private pool token (a graph capturing without ``pool``)."""
    return (_next(), 0)


def check_pool(pool: object) -> PoolToken | None:
    """Validate a ``pool`` argument: None or ``(0, 0)`` (a new private pool) or an issued token.

    Raises:
        TypeError: not None and not a tuple of two ints.
        ValueError: a tuple that no ``graph_pool_handle()`` or ``MTIAGraph.pool()`` gave.
    """
    if pool is None:
        return None
    if (
        type(pool) is not tuple
        or len(pool) != 2
        or any(type(x) is not int for x in pool)
    ):
        raise TypeError(
            f"pool must be None or a pool token from graph_pool_handle() or another graph's pool() "
            f"(a tuple of two ints), got {type(pool).__name__} {pool!r:.60}"
        )
    a, b = pool
    if a == b == 0:
        return None
    if not ((a == 0 and 0 < b <= _last) or (b == 0 and 0 < a <= _last)):
        raise ValueError(
            f"pool {pool!r} was not given by graph_pool_handle() or a graph's pool(); pass one of those "
            "(or None for a private pool)"
        )
    return (a, b)


def pool_device(pool: PoolToken) -> DeviceImpl | None:
    """The device whose graphs use ``pool`` now (None: no graph uses it)."""
    rt = state.runtime
    if rt is None:
        return None
    for dev in rt.devices:
        alloc = getattr(dev, "_allocator", None)  # None: no memory yet (and no pool)
        if alloc is not None and alloc.pool_users(pool):
            return dev
    return None
