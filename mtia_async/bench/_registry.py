"""The suites: name, entry point, one-line summary, and how long each takes.

To add a suite, write ``run_<name>(ctx: Context) -> list[Row]`` in a ``suites_*.py``
module and add one ``Suite(...)`` line to ``_ALL`` below (the order is the run order).
``seconds`` is the rough duration of a full and a ``--quick`` run on the standard
2-core machine: the progress display's ETA uses it before the suite has run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._harness import Context, Row
from .suites_cluster import run_cluster
from .suites_compute import run_kernels, run_overlap
from .suites_core import run_await, run_launch, run_sync
from .suites_graphs import run_graphs
from .suites_latency import run_responsiveness
from .suites_memory import run_dispatch, run_memory, run_rng
from .suites_ops import run_ops
from .suites_profiler import run_profiler
from .suites_sanitizer import run_sanitizer
from .suites_service import run_service

__all__ = ["SUITES", "Suite"]


@dataclass(frozen=True)
class Suite:
    """A named group of measurements."""

    name: str
    run: Callable[[Context], list[Row]]
    summary: str
    seconds: tuple[float, float] = (30.0, 5.0)  # (full, quick), for the ETA
    caption: str = ""  # printed under the results table when the suite ran


_ALL = (
    Suite("launch", run_launch, "launch cost on the caller, launch+drain, no-op throughput", (10, 5),
          "launch: no-op kernels; 'stream held': the stream waits on an event, so only the caller's cost counts."),
    Suite("sync", run_sync, "drained/pending synchronize vs ping-pong, event query/record", (8, 5)),
    Suite("await", run_await, "launch + await vs to_thread / run_in_executor / anyio", (11, 4)),
    Suite("overlap", run_overlap, "1/2/4 streams of exp and copy kernels vs bare threads", (12, 4),
          "overlap: exp = s.launch(np.exp, X, out=Y) on 64K float32 DeviceArrays, copy = np.copyto of 8 MiB; "
          "threads = bare threading.Threads making the same calls."),
    Suite("kernels", run_kernels, "np.add of 1K/1M/16M through a stream vs direct numpy", (10, 3)),
    Suite("memory", run_memory, "cached allocate + free vs numpy.empty (and torch.empty)", (9, 4)),
    Suite("ops", run_ops, "host cost per op on 16 floats vs torch; numpy functions; deep queues; worker", (150, 16),
          "ops: 16 float32, per op: launch + its share of one final synchronize(); the baseline is PyTorch CPU "
          "eager (1 thread) unless the row names another; launch at depth: s.launch(np.exp, X, out=Y) on a "
          "held stream."),
    Suite("dispatch", run_dispatch, "a + b, a @ b, reductions by size vs numpy (and torch)", (40, 10)),
    Suite("rng", run_rng, "device randn(1M) vs numpy Philox", (8, 4)),
    Suite("responsiveness", run_responsiveness, "1 ms heartbeat's longest gap while streams work", (22, 8),
          "responsiveness: the longest gap between wake-ups of a 1 ms heartbeat task; baseline: the same "
          "heartbeat on an idle loop."),
    Suite("graphs", run_graphs, "graph replay of 100 kernels vs eager; replay() cost; an MLP step", (20, 5)),
    Suite("profiler", run_profiler, "per-kernel cost of a recording profile, bytes per record", (12, 5)),
    Suite("sanitizer", run_sanitizer, "extra per launch, sanitizer on, at 10 and 100,000 prior launches", (40, 10)),
    Suite("cluster", run_cluster, "devices on a Dask LocalCluster of 2 workers: launch, await, to_host, 2 vs 1", (25, 15),
          "cluster: MTIA_ASYNC_CLUSTER's cluster (bench --cluster ADDRESS), else a LocalCluster of 2 worker "
          "processes; docs/cluster.md."),
    Suite("service", run_service, "HTTP inference service at 1/16/256 connections vs asyncio.to_thread", (145, 20),
          "service: examples/inference_service.py on 127.0.0.1 under an aiohttp client; docs/service.md."),
)

SUITES: dict[str, Suite] = {s.name: s for s in _ALL}
