"""Suite ``cluster``: devices held by Dask workers (docs/cluster.md), with Dask's own calls as baselines.

The suite runs on the cluster ``MTIA_ASYNC_CLUSTER`` names (``bench --cluster ADDRESS``),
else on a ``LocalCluster`` of 2 worker processes it starts (on 127.0.0.1) and stops.
Rows (goal 15 of the performance goals):

* ``cluster.launch``: 10,000 no-op launches on a remote stream, then ``synchronize()``,
  per kernel (the batched path: launches never wait on the network), against the same
  on a local device (measured first, in the same run); ``cluster.launch_arrays``: the
  same with a kernel given a DeviceArray, whose launch is pickled (no goal: the general
  cost, beside the no-op's, which travels unpickled);
* ``cluster.await``: launch one kernel and await it (one round trip), against an awaited
  ``Client.submit`` of the same no-op (a Dask task through the scheduler);
* ``cluster.to_host``: ``numpy()`` of an 8 MiB DeviceArray against ``Client.gather`` of an
  8 MiB numpy array held by a worker, straight from the worker (``direct=True``: Dask's
  fastest way to bring those bytes back; its default from a client goes through the
  scheduler);
* ``cluster.two_devices``: ``np.exp`` on 1M float32, 200 kernels per device, on 2 devices
  (2 workers) at once against 1; ``cluster.two_workers_bare``: the same calls run straight
  on the same workers as Dask tasks, 2 at once against 1 (no goal: what the machine
  allows in this run, the ceiling of ``two_devices``).
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._harness import Baseline, Context, Row

__all__ = ["run_cluster"]

_ns = time.perf_counter_ns


def noop() -> None:
    """The no-op kernel (pickled by reference: it lives in this module, which workers import)."""


def touch(v: object) -> None:
    """A no-op kernel given a DeviceArray (its launch carries the array's handle)."""


def exp_loop(count: int) -> None:
    """``np.exp`` on 1M float32, ``count`` times, straight on a worker (a Dask task): the machine's ceiling."""
    import numpy as np

    x = np.ones(1 << 20, np.float32)
    y = np.empty_like(x)
    for _ in range(count):
        np.exp(x, out=y)


@contextmanager
def _cluster() -> Iterator[Any]:
    """The cluster to measure: ``MTIA_ASYNC_CLUSTER``'s, else a LocalCluster of 2 workers."""
    address = os.environ.get("MTIA_ASYNC_CLUSTER", "").strip()
    if address:
        yield address
        return
    from distributed import LocalCluster

    with warnings.catch_warnings():  # no dashboard; the scheduler's HTTP routes move off a busy 8787, and say so
        warnings.filterwarnings("ignore", message="Port 8787 is already in use")
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)  # fmt: skip
    try:
        yield cluster
    finally:
        cluster.close(timeout=30)


def _launches(stream: Any, n: int, kernel: Any, *args: Any) -> float:
    """``n`` launches of ``kernel(*args)`` on ``stream``, then its ``synchronize()``: microseconds per kernel."""
    launch = stream.launch
    t0 = _ns()
    for _ in range(n):
        launch(kernel, *args)
    stream.synchronize()
    return (_ns() - t0) / n / 1e3


def run_cluster(ctx: Context) -> list[Row]:
    """The four figures of goal 15 on a cluster of 2 workers (see the module docstring)."""
    from distributed import Client

    import mtia_async as amtia
    import mtia_async.sync as mtia
    from mtia_async.testing import fresh_runtime

    suite = "cluster"
    n = ctx.n(10_000, 2_000)
    with fresh_runtime(cluster=None, device_count=1, workers=1):  # the same launches on a local device: baseline
        local_stream = mtia.Stream(0)
        local_samples = ctx.measure("cluster launch (local baseline)",
                                    {"local": lambda: _launches(local_stream, n, noop)})["local"]

    with _cluster() as cluster, fresh_runtime(cluster=cluster, workers=1, device_memory="2GiB"), \
            Client(cluster, set_as_default=False, timeout=30) as client:  # fmt: skip
        if mtia.device_count() < 2:
            raise RuntimeError(f"the cluster suite needs 2 workers; the cluster has {mtia.device_count()}")
        s = mtia.Stream(0)

        x = mtia.empty(16, device=0)
        mtia.synchronize(0)
        launch_groups = ctx.measure("cluster launch", {"remote": lambda: _launches(s, n, noop),
                                                       "arrays": lambda: _launches(s, n, touch, x)})
        launch_samples = launch_groups["remote"]

        k = ctx.n(50, 10)

        async def awaited() -> float:
            t0 = _ns()
            for _ in range(k):
                s2.launch(noop)
                await s2.synchronize()
            return (_ns() - t0) / k / 1e6

        s2 = amtia.Stream(1)

        async def await_group() -> dict[str, list[float]]:
            return await ctx.measure_async("cluster await", {"remote": awaited, "dask": dask_submit})

        def dask_submit_sync() -> float:
            t0 = _ns()
            for _ in range(k):
                client.submit(noop, pure=False).result(timeout=30)
            return (_ns() - t0) / k / 1e6

        async def dask_submit() -> float:
            return await asyncio.to_thread(dask_submit_sync)

        await_samples = asyncio.run(await_group())

        import numpy as np

        host = np.random.default_rng(0).random(2 << 20, dtype=np.float32)  # 8 MiB
        with mtia.device(0):
            a = mtia.asarray(host)
            mtia.synchronize()
            worker = sorted(client.scheduler_info()["workers"])[0]
            future = client.scatter(host, workers=[worker], direct=True)

            def to_host() -> float:
                t0 = _ns()
                a.numpy()
                return (_ns() - t0) / 1e6

            def gather() -> float:
                t0 = _ns()
                client.gather(future, direct=True)
                return (_ns() - t0) / 1e6

            copies = ctx.measure("cluster to_host", {"to_host": to_host, "gather": gather})
        np.testing.assert_array_equal(a.numpy(), host)
        future.release()

        kernels = ctx.n(200, 20)
        xs = [mtia.ones(1 << 20, device=d) for d in (0, 1)]
        ys = [mtia.empty(1 << 20, device=d) for d in (0, 1)]
        streams = [mtia.Stream(0), mtia.Stream(1)]

        def rate(count: int) -> float:
            t0 = _ns()
            for _ in range(kernels):
                for i in range(count):
                    streams[i].launch(np.exp, xs[i], out=ys[i])
            for i in range(count):
                streams[i].synchronize()
            return count * kernels / (_ns() - t0) * 1e9

        workers = sorted(client.scheduler_info()["workers"])[:2]  # device d is held by the d-th (sorted) worker

        def bare_rate(count: int) -> float:
            t0 = _ns()
            futures = [client.submit(exp_loop, kernels, workers=[workers[i]], allow_other_workers=False, pure=False)
                       for i in range(count)]  # fmt: skip
            client.gather(futures)
            return count * kernels / (_ns() - t0) * 1e9

        compute = ctx.measure("cluster two devices", {
            "two": lambda: rate(2), "one": lambda: rate(1), "bare2": lambda: bare_rate(2), "bare1": lambda: bare_rate(1),
        })  # fmt: skip

    return [
        Row("cluster.launch", suite, f"{n:,} no-op launches + synchronize", "us", samples=launch_samples, batch=n,
            baseline=Baseline("the same on a local device", local_samples),
            note="per kernel, on a remote stream: batched, pickled at the launch"),
        Row("cluster.launch_arrays", suite, f"{n:,} f(DeviceArray) launches + sync", "us",
            samples=launch_groups["arrays"], batch=n,
            note="per kernel: the launch is pickled (cloudpickle) at the launch; no goal"),
        Row("cluster.await", suite, "launch + await one kernel", "ms", samples=await_samples["remote"],
            baseline=Baseline("Client.submit(noop).result()", await_samples["dask"]), batch=k,
            note="one round trip to the worker; the baseline is a Dask task through the scheduler"),
        Row("cluster.to_host", suite, "numpy() of 8 MiB", "ms", samples=copies["to_host"],
            baseline=Baseline("Client.gather(direct=True) of 8 MiB", copies["gather"])),
        Row("cluster.two_devices", suite, "np.exp 1M float32: 2 devices vs 1", "1/s", "higher",
            samples=compute["two"], baseline=Baseline("1 device", compute["one"]), batch=kernels,
            note="2 Dask workers, one device each, driven from one caller"),
        Row("cluster.two_workers_bare", suite, "the same np.exp as Dask tasks: 2 vs 1", "1/s", "higher",
            samples=compute["bare2"], baseline=Baseline("1 worker", compute["bare1"]), batch=kernels,
            note="the machine's ceiling for two_devices: the same calls run straight on the same workers"),
    ]
