"""Connection: the client's I/O thread, its Dask client, and one Link per worker.

Opened at runtime init (blocking, bounded by ``cluster_timeout``): a Dask ``Client``
(asynchronous, on our own event loop thread ``mtia_async-cluster-io``) finds the
workers and installs the handlers on them (``server.install`` through ``Client.run``);
then one comm per worker opens a session (``mtia_async_session``), tied to that comm,
and the Dask client is closed: the runtime needs no scheduler from then on.
Closed at runtime shutdown: the sessions' comms close (the workers free everything),
the loop stops and its thread is joined.

The connection also owns the kernel registry: each function is pickled once (by
value or reference, as cloudpickle decides) and known by an id; it is sent to a
worker before its first use there and forgotten there once the function object dies.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .link import Link
from .server import boot_id, install, package_version
from .wire import dumps_function

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["Connection", "scheduler_address"]

T = TypeVar("T")
_kids = itertools.count(1)


def scheduler_address(cluster: object) -> str:
    """The scheduler address of a ``cluster`` setting (an address, a Client or a cluster object)."""
    if isinstance(cluster, str):
        return cluster
    address = getattr(cluster, "scheduler_address", None)  # LocalCluster and other deploy.Cluster
    if address is None:
        scheduler = getattr(cluster, "scheduler", None)  # a Client: its scheduler rpc
        address = getattr(scheduler, "address", None)
    if not isinstance(address, str):
        raise ValueError(f"cluster={cluster!r} has no scheduler address (a closed Client or cluster?)")
    return address


async def _clock_offset(comm: Any, timeout: float) -> int:
    """What to add to the worker's ``perf_counter_ns()`` to get ours: the ping with the shortest round trip."""
    best: tuple[int, int] | None = None
    for _ in range(5):
        t0 = time.perf_counter_ns()
        await comm.write({"ping": 1})
        reply = await asyncio.wait_for(comm.read(), timeout)
        t1 = time.perf_counter_ns()
        worker_ns = int(reply["e"][0][1])
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, (t0 + t1) // 2 - worker_ns)
    assert best is not None
    return best[1]


def _forget(conn_ref: weakref.ref[Connection], kid: int) -> None:
    """Kernel ``kid`` died: its workers may forget it (any thread, the garbage collector's)."""
    conn = conn_ref()
    if conn is not None:
        for link in conn.links:
            link.forget_kernel(kid)


class Connection:
    """The client's side of the cluster; see the module docstring."""

    def __init__(self, config: Config) -> None:
        self.address = scheduler_address(config.cluster)
        self.timeout = float(config.cluster_timeout)
        self.key = secrets.token_hex(8)
        self.links: list[Link] = []
        self.client: Any = None
        self.closed = False
        self._kernels: weakref.WeakKeyDictionary[Callable[..., object], tuple[int, bytes]] = weakref.WeakKeyDictionary()
        self._kernel_lock = threading.Lock()
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run_loop, name="mtia_async-cluster-io", daemon=True)
        self.thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # --- opening ---------------------------------------------------------------------------------
    def open(self, devices_per_worker: int, workers: int, memory: int) -> list[str]:
        """Reach the cluster and open a session on every worker; return the workers' addresses.

        Raises:
            ConnectionError: the cluster cannot be reached (or has no worker) within the timeout.
            RuntimeError: a worker runs another version of mtia_async.
        """
        try:
            return self._call(self._open(devices_per_worker, workers, memory), self.timeout + 5)
        except Exception as exc:
            self.close(2.0)
            if isinstance(exc, RuntimeError):
                raise
            raise ConnectionError(
                f"mtia_async could not use the Dask cluster at {self.address!r} within {self.timeout:g} s "
                f"({type(exc).__name__}: {exc}); start it (`dask scheduler`, then `dask worker ADDRESS` on each "
                "host), or fix configure(cluster=...) / MTIA_ASYNC_CLUSTER, or raise cluster_timeout"
            ) from exc

    async def _open(self, devices_per_worker: int, workers: int, memory: int) -> list[str]:
        from distributed import Client
        from distributed.comm import connect

        deadline = time.monotonic() + self.timeout
        # Made first, started second: on a failure close() still has it to close (its __del__ would
        # otherwise try to, later, on a loop that is gone).
        self.client = client = Client(self.address, asynchronous=True, timeout=self.timeout, set_as_default=False)
        await asyncio.wait_for(client, self.timeout)
        await client.wait_for_workers(1, timeout=max(0.1, deadline - time.monotonic()))
        infos: dict[str, dict[str, Any]] = await asyncio.wait_for(
            client.run(install), max(0.1, deadline - time.monotonic())
        )
        mine = package_version()
        for address, info in infos.items():
            if info["version"] != mine:
                raise RuntimeError(
                    f"the Dask worker {address} runs mtia_async {info['version']}, this process {mine}: install the "
                    "same version on every worker"
                )
        addresses = sorted(infos)
        owners = {i * devices_per_worker + k: a for i, a in enumerate(addresses) for k in range(devices_per_worker)}
        for i, address in enumerate(addresses):
            comm = await connect(address, timeout=max(0.1, deadline - time.monotonic()), **client.connection_args)
            comm.allow_offload = False  # see WorkerSession.__init__: the same on both ends
            await comm.write({
                "op": "mtia_async_session", "reply": False, "key": self.key,
                "devices": [i * devices_per_worker + k for k in range(devices_per_worker)],
                "addresses": {str(k): v for k, v in owners.items()}, "workers": workers, "memory": memory,
            })  # fmt: skip
            hello = await asyncio.wait_for(comm.read(), max(0.1, deadline - time.monotonic()))
            if not (isinstance(hello, dict) and hello.get("ok")):
                raise RuntimeError(f"the Dask worker {address} refused the mtia_async session: {hello!r}")
            link = Link(self, address, comm)
            here = boot_id()
            if here is None or infos[address].get("boot") != here:  # another host: estimate our clocks' offset
                link.offset = await _clock_offset(comm, max(0.1, deadline - time.monotonic()))
            self.links.append(link)
        # The Dask client was needed to find and prepare the workers only: the sessions live on their
        # own comms. Closing it now spares the scheduler our heartbeats, and us its reconnection attempts
        # (and their error logs) when the scheduler goes away before the runtime does.
        self.client = None
        await asyncio.wait_for(client.close(), max(0.1, deadline - time.monotonic()))
        return addresses

    def start(self) -> None:
        """Start every link's reader and writer (once its devices exist)."""

        def start_tasks() -> None:
            for link in self.links:
                link.tasks = [self.loop.create_task(link.writer()), self.loop.create_task(link.reader())]

        self.loop.call_soon_threadsafe(start_tasks)

    # --- kernels ---------------------------------------------------------------------------------
    def kernel(self, fn: Callable[..., object]) -> tuple[int, bytes]:
        """``(id, pickle)`` of kernel ``fn``, pickled at its first use (any thread)."""
        entry = self._kernels.get(fn)
        if entry is None:
            blob = dumps_function(fn)  # TypeError when it cannot travel: raised at the launch
            with self._kernel_lock:
                entry = self._kernels.get(fn)
                if entry is None:
                    entry = self._kernels[fn] = (next(_kids), blob)
                    # Through a weak reference, and detached at close: a kernel that lives forever (a
                    # module's function) must not keep a closed connection, its links and devices alive.
                    self._finalizers.append(weakref.finalize(fn, _forget, weakref.ref(self), entry[0]))
        return entry

    # --- closing ---------------------------------------------------------------------------------
    def close(self, join_timeout: float | None) -> list[threading.Thread]:
        """Close the sessions (the workers free their memory), the Dask client and the loop."""
        if self.closed:
            return [self.thread] if self.thread.is_alive() else []
        self.closed = True
        for finalizer in self._finalizers:
            finalizer.detach()
        self._finalizers.clear()
        self._kernels = weakref.WeakKeyDictionary()
        wait = 2.0 if join_timeout is None else max(0.1, join_timeout)
        if self.loop.is_running():
            try:
                self._call(self._close(), wait)
            except BaseException:
                pass  # a worker that does not answer: the loop stops all the same
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                pass
        else:
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(wait if join_timeout is not None else 0.5)
        if not self.thread.is_alive():
            self.loop.close()
            return []
        return [self.thread]

    async def _close(self) -> None:
        for link in self.links:
            link.failed = "closed"  # its comm closing is not a worker failure
            for task in link.tasks:
                task.cancel()
        for link in self.links:
            try:
                await asyncio.wait_for(link.comm.close(), 1.0)
            except Exception:  # never BaseException: a GeneratorExit must end this coroutine
                link.comm.abort()
        if self.client is not None:
            try:
                await asyncio.wait_for(self.client.close(), 2.0)
            except Exception:
                pass
        tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
