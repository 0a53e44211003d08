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
    "DeviceFailedError",
    "Event",
    "KernelError",
    "MTIAError",
    "OutOfMemoryError",
    "Stream",
    "StreamContext",
    "configure",
    "current_device",
    "current_stream",
    "default_stream",
    "device",
    "device_count",
    "get_device_capability",
    "get_device_properties",
    "init",
    "is_available",
    "is_bf16_supported",
    "is_initialized",
    "launch",
    "set_debug_logging",
    "set_device",
    "set_stream",
    "stream",
    "synchronize",
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
