"""mtia_async: the torch.mtia accelerator API, emulated in software, async-first.

``import mtia_async as mtia`` gives the async facade (every wait is awaited);
``import mtia_async.sync as mtia`` gives the blocking one. See README.md and docs/.
"""

from __future__ import annotations

from ._api import StreamContext as StreamContext
from ._api import configure as configure
from ._api import current_device as current_device
from ._api import device as device
from ._api import device_count as device_count
from ._api import get_device_capability as get_device_capability
from ._api import get_device_properties as get_device_properties
from ._api import init as init
from ._api import is_available as is_available
from ._api import is_bf16_supported as is_bf16_supported
from ._api import is_initialized as is_initialized
from ._api import launch as launch
from ._api import set_device as set_device
from ._api import set_stream as set_stream
from ._api import stream as stream
from ._array import DeviceArray as DeviceArray
from ._factories import asarray as asarray
from ._factories import empty as empty
from ._factories import full as full
from ._factories import ones as ones
from ._factories import zeros as zeros
from ._memory import attach_out_of_memory_observer as attach_out_of_memory_observer
from ._memory import dump_snapshot as dump_snapshot
from ._memory import empty_cache as empty_cache
from ._memory import max_memory_allocated as max_memory_allocated
from ._memory import max_memory_reserved as max_memory_reserved
from ._memory import mem_get_info as mem_get_info
from ._memory import memory_allocated as memory_allocated
from ._memory import memory_reserved as memory_reserved
from ._memory import memory_stats as memory_stats
from ._memory import memory_summary as memory_summary
from ._memory import record_memory_history as record_memory_history
from ._memory import reset_peak_memory_stats as reset_peak_memory_stats
from ._memory import snapshot as snapshot
from ._random import Generator as Generator
from ._random import get_rng_state as get_rng_state
from ._random import get_rng_state_all as get_rng_state_all
from ._random import initial_seed as initial_seed
from ._random import manual_seed as manual_seed
from ._random import manual_seed_all as manual_seed_all
from ._random import seed as seed
from ._random import seed_all as seed_all
from ._random import set_rng_state as set_rng_state
from ._random import set_rng_state_all as set_rng_state_all
from ._random_kernels import bernoulli as bernoulli
from ._random_kernels import normal as normal
from ._random_kernels import rand as rand
from ._random_kernels import randint as randint
from ._random_kernels import randn as randn
from ._random_kernels import randperm as randperm
from ._random_kernels import uniform as uniform
from ._async import Event as Event
from ._async import Stream as Stream
from ._async import current_stream as current_stream
from ._async import default_stream as default_stream
from ._async import synchronize as synchronize
from ._exceptions import DeferredMtiaCallError as DeferredMtiaCallError
from ._exceptions import DeviceFailedError as DeviceFailedError
from ._exceptions import KernelError as KernelError
from ._exceptions import MTIAError as MTIAError
from ._exceptions import OutOfMemoryError as OutOfMemoryError
from ._log import set_debug_logging as set_debug_logging

__version__ = "0.1.0"

__all__ = [
    "DeferredMtiaCallError",
    "DeviceArray",
    "DeviceFailedError",
    "Event",
    "Generator",
    "KernelError",
    "MTIAError",
    "OutOfMemoryError",
    "Stream",
    "StreamContext",
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
    "full",
    "get_device_capability",
    "get_device_properties",
    "get_rng_state",
    "get_rng_state_all",
    "init",
    "initial_seed",
    "is_available",
    "is_bf16_supported",
    "is_initialized",
    "launch",
    "manual_seed",
    "manual_seed_all",
    "max_memory_allocated",
    "max_memory_reserved",
    "mem_get_info",
    "memory_allocated",
    "memory_reserved",
    "memory_stats",
    "memory_summary",
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
    "zeros",
]


def _fixup_module_metadata() -> None:
    # Show public names as mtia_async.X, not the private module they live in (as trio does).
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("mtia_async._"):
            try:
                obj.__module__ = "mtia_async"
            except (AttributeError, TypeError):  # pragma: no cover - builtins
                pass


_fixup_module_metadata()
del _fixup_module_metadata
