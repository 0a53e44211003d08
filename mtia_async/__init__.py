"""mtia_async: the torch.mtia accelerator API, emulated in software, async-first.

``import mtia_async as mtia`` gives the async facade (every wait is awaited);
``import mtia_async.sync as mtia`` gives the blocking one. See README.md and docs/.
This module only re-exports: the names both facades share come from
``_facade/shared.py``; the waiting ones from ``_facade/aio.py``.
"""

from __future__ import annotations

from ._facade import set_public_module as _set_public_module
from ._facade.aio import Event as Event
from ._facade.aio import Stream as Stream
from ._facade.aio import current_stream as current_stream
from ._facade.aio import default_stream as default_stream
from ._facade.aio import synchronize as synchronize
from ._facade.aio import argwhere as argwhere
from ._facade.aio import flatnonzero as flatnonzero
from ._facade.aio import getitem as getitem
from ._facade.aio import histogram as histogram
from ._facade.aio import nonzero as nonzero
from ._facade.aio import unique as unique
from ._facade.graphs import AsyncGraph as graph
from ._facade.shared import *  # noqa: F403  (the never-waiting names, listed once there)
from . import memory as memory  # the submodule, as torch.mtia.memory (not in __all__)
from . import profiler as profiler  # the submodule, as torch.profiler (not in __all__)
from . import sanitizer as sanitizer  # the stream sanitizer's submodule (not in __all__)

__version__ = "0.1.0"

__all__ = [
    "DeferredMtiaCallError",
    "DeviceArray",
    "DeviceFailedError",
    "Event",
    "Generator",
    "KernelError",
    "MTIAError",
    "MTIAGraph",
    "OutOfMemoryError",
    "SanitizerWarning",
    "Stream",
    "StreamContext",
    "UnsynchronizedAccessError",
    "arange",
    "argwhere",
    "asarray",
    "attach_out_of_memory_observer",
    "bernoulli",
    "configure",
    "current_device",
    "current_stream",
    "default_stream",
    "device",
    "device_count",
    "dump_snapshot",
    "empty",
    "empty_cache",
    "eye",
    "flatnonzero",
    "full",
    "get_device_capability",
    "get_device_properties",
    "get_rng_state",
    "get_rng_state_all",
    "getitem",
    "graph",
    "graph_pool_handle",
    "histogram",
    "identity",
    "init",
    "initial_seed",
    "is_available",
    "is_bf16_supported",
    "is_current_stream_capturing",
    "is_initialized",
    "launch",
    "linspace",
    "manual_seed",
    "manual_seed_all",
    "max_memory_allocated",
    "max_memory_reserved",
    "mem_get_info",
    "memory_allocated",
    "memory_reserved",
    "memory_stats",
    "memory_summary",
    "nonzero",
    "normal",
    "ones",
    "rand",
    "randint",
    "randn",
    "randperm",
    "record_memory_history",
    "reset_peak_memory_stats",
    "seed",
    "seed_all",
    "set_debug_logging",
    "set_device",
    "set_rng_state",
    "set_rng_state_all",
    "set_stream",
    "snapshot",
    "stream",
    "synchronize",
    "uniform",
    "unique",
    "zeros",
]

_set_public_module(globals(), __all__, "mtia_async")
