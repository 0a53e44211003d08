"""A real Dask ``LocalCluster`` for the cluster tests (never a mock of Dask).

    from _support import local_cluster

    cluster = local_cluster()   # 2 worker processes on 127.0.0.1, no dashboard
    ...
    cluster.close(timeout=30)
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["local_cluster"]


def local_cluster() -> Any:
    """``LocalCluster(processes=True, host="127.0.0.1", dashboard_address=None)`` of 2 one-thread workers.

    With ``dashboard_address=None`` there is no dashboard, but the scheduler still serves its
    HTTP routes: on 8787 when it is free, else on another port, with a ``UserWarning`` and a
    ``ResourceWarning`` for the socket its failed attempt dropped (errors under the suite's
    ``filterwarnings = error``). Another test session on this machine may hold 8787, so those
    two warnings are ignored while the cluster starts (in the cluster's loop thread too:
    ``catch_warnings`` changes the process's filters, and the start blocks until it is done).
    """
    from distributed import LocalCluster

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port 8787 is already in use")
        warnings.filterwarnings("ignore", message="unclosed <socket.socket", category=ResourceWarning)
        return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address=None)  # fmt: skip
