"""Fixtures only (helpers live in ``tests/_support``; tests never import this module).

Every test runs against a fresh runtime (``mtia_async.testing.fresh_runtime``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _support import GiB, FakeStream, local_cluster

from mtia_async._memory import CachingAllocator
from mtia_async.testing import check_invariants, fresh_runtime, worker_threads


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    """A fresh two-device runtime per test; worker threads must all be gone after it."""
    with fresh_runtime(device_count=2, device_memory="1GiB", workers=2):
        yield
    assert worker_threads() == [], "worker threads outlived the runtime"


@pytest.fixture
def alloc() -> Iterator[Any]:
    """A 1 GiB caching allocator on its own (no runtime); its invariants are checked after the test."""
    allocator = CachingAllocator(0, 1 * GiB)
    yield allocator
    stats, snap = allocator.stats_and_snapshot()
    check_invariants(stats, snap)


@pytest.fixture
def s0() -> FakeStream:
    """A drained fake stream with id 0, for ``alloc``."""
    return FakeStream(0)


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """One real Dask ``LocalCluster(processes=True, host="127.0.0.1", dashboard_address=None)`` of 2 worker
    processes for the whole session (tests/test_cluster*.py), closed (workers stopped) at its end."""
    cluster = local_cluster()
    try:
        yield cluster
    finally:
        cluster.close(timeout=30)


@pytest.fixture
def sanitizer_enabled() -> Iterator[None]:
    """The stream sanitizer on (mode raise) for the test (test_sanitizer*.py use it for every test)."""
    from mtia_async import sanitizer

    sanitizer.enable()
    try:
        yield
    finally:
        sanitizer.disable()


@pytest.fixture
def remote(dask_cluster: Any) -> Iterator[Any]:
    """A fresh runtime whose devices are the session cluster's (one per worker); yields the cluster."""
    import mtia_async.sync as mtia

    with fresh_runtime(cluster=dask_cluster, workers=2, device_memory="1GiB", cluster_timeout=60):
        mtia.init()
        yield dask_cluster
