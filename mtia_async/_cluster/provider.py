"""The device provider the runtime calls when its configuration names a Dask cluster.

Registered in the core at import (``set_device_provider``) and called only when the
``cluster`` setting is used: only then are ``distributed`` and the rest of this package
imported, so a local runtime pays nothing for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._config import Config
    from .._core.device import DeviceImpl
    from .._core.runtime import Closer, Runtime

__all__ = ["cluster_devices"]


def cluster_devices(runtime: Runtime, config: Config) -> tuple[list[DeviceImpl], Closer]:
    """Reach the cluster and build one RemoteDevice per (worker, local device).

    Raises:
        ImportError: Dask's ``distributed`` is not installed.
        ConnectionError: the cluster cannot be reached within ``cluster_timeout`` seconds.
        RuntimeError: a worker runs another version of mtia_async.
    """
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"configure(cluster={config.cluster!r}) needs Dask's distributed: pip install 'mtia_async[dask]'"
        ) from exc
    from .connection import Connection
    from .device import RemoteDevice

    conn = Connection(config)
    dpw = config.devices_per_worker
    conn.open(dpw, config.workers, config.device_memory)
    devices: list[DeviceImpl] = []
    for i, link in enumerate(conn.links):
        for k in range(dpw):
            dev = RemoteDevice(runtime, i * dpw + k, link, k, config.workers, config.device_memory)
            link.devices[dev.index] = dev
            devices.append(dev)
    conn.start()
    return devices, conn.close
