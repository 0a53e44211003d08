"""The never-waiting names both facades export: one list, re-exported by both.

``mtia_async`` and ``mtia_async.sync`` each ``import *`` from here, then add their own
``Event``, ``Stream``, ``current_stream``, ``default_stream`` and ``synchronize`` (the
only names whose waiting differs). These are the very same objects in both facades.
"""

from __future__ import annotations

from .. import _cluster  # noqa: F401  # registers the cluster device provider (docs/cluster.md)
from .._arrays.array import DeviceArray as DeviceArray
from .._arrays.factories import asarray as asarray
from .._arrays.factories import empty as empty
from .._arrays.factories import full as full
from .._arrays.factories import ones as ones
from .._arrays.factories import zeros as zeros
from .._arrays.functions.creation import arange as arange
from .._arrays.functions.creation import eye as eye
from .._arrays.functions.creation import identity as identity
from .._arrays.functions.creation import linspace as linspace
from .._exceptions import DeferredMtiaCallError as DeferredMtiaCallError
from .._exceptions import DeviceFailedError as DeviceFailedError
from .._exceptions import KernelError as KernelError
from .._exceptions import MTIAError as MTIAError
from .._exceptions import OutOfMemoryError as OutOfMemoryError
from .._exceptions import SanitizerWarning as SanitizerWarning
from .._exceptions import UnsynchronizedAccessError as UnsynchronizedAccessError
from .._graphs import MTIAGraph as MTIAGraph
from .._graphs import graph_pool_handle as graph_pool_handle
from .._graphs import is_current_stream_capturing as is_current_stream_capturing
from .._log import set_debug_logging as set_debug_logging
from .._random.generator import Generator as Generator
from .._random.generator import get_rng_state as get_rng_state
from .._random.generator import get_rng_state_all as get_rng_state_all
from .._random.generator import initial_seed as initial_seed
from .._random.generator import manual_seed as manual_seed
from .._random.generator import manual_seed_all as manual_seed_all
from .._random.generator import seed as seed
from .._random.generator import seed_all as seed_all
from .._random.generator import set_rng_state as set_rng_state
from .._random.generator import set_rng_state_all as set_rng_state_all
from .._random.kernels import bernoulli as bernoulli
from .._random.kernels import normal as normal
from .._random.kernels import rand as rand
from .._random.kernels import randint as randint
from .._random.kernels import randn as randn
from .._random.kernels import randperm as randperm
from .._random.kernels import uniform as uniform
from .common import configure as configure
from .common import current_device as current_device
from .common import device as device
from .common import device_count as device_count
from .common import get_device_capability as get_device_capability
from .common import get_device_properties as get_device_properties
from .common import init as init
from .common import is_available as is_available
from .common import is_bf16_supported as is_bf16_supported
from .common import is_initialized as is_initialized
from .common import launch as launch
from .common import set_device as set_device
from .common import set_stream as set_stream
from .common import stream as stream
from .common import StreamContext as StreamContext
from .memory import attach_out_of_memory_observer as attach_out_of_memory_observer
from .memory import dump_snapshot as dump_snapshot
from .memory import empty_cache as empty_cache
from .memory import max_memory_allocated as max_memory_allocated
from .memory import max_memory_reserved as max_memory_reserved
from .memory import mem_get_info as mem_get_info
from .memory import memory_allocated as memory_allocated
from .memory import memory_reserved as memory_reserved
from .memory import memory_stats as memory_stats
from .memory import memory_summary as memory_summary
from .memory import record_memory_history as record_memory_history
from .memory import reset_peak_memory_stats as reset_peak_memory_stats
from .memory import snapshot as snapshot

__all__ = [
    "DeferredMtiaCallError",
    "DeviceArray",
    "DeviceFailedError",
    "Generator",
    "KernelError",
    "MTIAError",
    "MTIAGraph",
    "OutOfMemoryError",
    "SanitizerWarning",
    "StreamContext",
    "UnsynchronizedAccessError",
    "arange",
    "asarray",
    "attach_out_of_memory_observer",
    "bernoulli",
    "configure",
    "current_device",
    "device",
    "device_count",
    "dump_snapshot",
    "empty",
    "empty_cache",
    "eye",
    "full",
    "get_device_capability",
    "get_device_properties",
    "get_rng_state",
    "get_rng_state_all",
    "graph_pool_handle",
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
    "uniform",
    "zeros",
]
