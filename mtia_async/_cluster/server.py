"""What the client installs on each Dask worker: two comm handlers and an inspection call.

``install(dask_worker)`` runs on every worker through ``Client.run`` (as Dask's own
extensions add handlers to a worker, e.g. its P2P shuffle): it adds

* ``mtia_async_session``: a client opens a comm to the worker and sends this op once;
  the handler then owns the comm for the life of the session (``session``), and the
  session ends, freeing everything, when the comm closes;
* ``mtia_async_fetch``: another worker reads device memory of a session here (a copy
  between devices of two workers goes worker to worker, never through the client).

The package must be importable on the workers (same version as the client's).
"""

from __future__ import annotations

import os
from typing import Any

from .session import SESSIONS, WorkerSession

__all__ = ["boot_id", "install", "package_version", "served_info", "sessions_info"]


def package_version() -> str:
    """The installed mtia_async's version (the client and its workers must agree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mtia_async")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without installing
        return "unknown"


async def session_handler(comm: Any, worker: Any = None, key: str = "", devices: Any = (), addresses: Any = None,
                          workers: int = 2, memory: int = 0) -> Any:  # fmt: skip
    """Run one client's session on this worker until its comm closes."""
    from distributed.core import Status

    addresses = {int(k): v for k, v in (addresses or {}).items()}
    session = WorkerSession(worker, comm, key, list(devices), addresses, workers, memory)
    SESSIONS[key, worker.address] = session
    await session.run()
    return Status.dont_reply


def fetch_handler(worker: Any, key: str = "", uid: int = 0, offset: int = 0, shape: Any = (), dtype: str = "",
                  strides: Any = None) -> Any:  # fmt: skip
    """Another worker reads device memory of session ``key``."""
    from distributed.protocol import to_serialize

    session = SESSIONS.get((key, worker.address))
    if session is None:
        raise RuntimeError(f"no mtia_async session {key!r} on this worker (its client disconnected)")
    return to_serialize(session.view_of(uid, offset, shape, dtype, strides))


def install(dask_worker: Any) -> dict[str, Any]:
    """Add the handlers to this worker (idempotent); return what the client checks."""
    async def mtia_async_session(comm: Any, **msg: Any) -> Any:
        return await session_handler(comm, worker=dask_worker, **msg)

    dask_worker.handlers["mtia_async_session"] = mtia_async_session
    dask_worker.extensions["mtia_async"] = _Goodbye(dask_worker)

    def mtia_async_fetch(**msg: Any) -> Any:
        return fetch_handler(dask_worker, **msg)

    dask_worker.handlers["mtia_async_fetch"] = mtia_async_fetch
    return {"version": package_version(), "pid": os.getpid(), "address": dask_worker.address, "boot": boot_id()}


def boot_id() -> str | None:
    """This machine's boot id (Linux): two processes that share it share ``perf_counter_ns``'s clock."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


class _Goodbye:
    """A worker extension: when the worker closes, its sessions tell their clients it was on purpose."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    async def close(self) -> None:
        sessions = [s for (_, address), s in list(SESSIONS.items()) if address == self.worker.address]
        for session in sessions:
            await session.goodbye()


def sessions_info(dask_worker: Any) -> dict[str, int]:
    """The live sessions of this worker and the device memory each holds, in bytes (tests, docs)."""
    return {key: session.nbytes() for (key, address), session in list(SESSIONS.items()) if address == dask_worker.address}


def served_info(dask_worker: Any) -> dict[str, int]:
    """The bytes each live session of this worker served to other workers' fetches (tests, docs)."""
    return {key: session.served for (key, address), session in list(SESSIONS.items()) if address == dask_worker.address}
