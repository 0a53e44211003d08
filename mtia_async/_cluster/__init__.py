"""Devices on a Dask cluster: the same user code, with each device held by a Dask worker.

Layer 5 (a feature on the core). Importing this package registers the device provider
in the core and imports nothing else: ``distributed`` and the modules below load only
when a runtime is initialised with the ``cluster`` setting. docs/cluster.md tells the
whole story; in brief, from the bottom up:

==================  ==================================================================
``backing``         the client's phantom memory of a remote device (address ranges only)
``wire``            launches pickled at the launch (cloudpickle, handles), unpickled on the worker
``device``          ``RemoteDevice`` and the FIFO of its streams (``RemoteQueue``)
``link``            the client's side of one worker session: frames, batches, replies
``session``         the worker's side: a private local runtime running what arrives
``server``          the handlers installed on each worker
``connection``      the client's I/O thread, Dask client, kernel registry
``provider``        what the runtime calls at init
==================  ==================================================================
"""

from __future__ import annotations

from .._core.runtime import set_device_provider
from .provider import cluster_devices

__all__ = ["cluster_devices"]

set_device_provider(cluster_devices)
