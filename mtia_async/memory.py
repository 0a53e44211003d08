"""The memory API as a submodule, like ``torch.mtia.memory`` / ``torch.cuda.memory``.

``import mtia_async.memory`` (or ``mtia_async.memory`` / ``mtia_async.sync.memory``
after importing a facade) gives the very functions both facades export: none of them
waits. torch's private spellings that memory-debugging scripts use are here too, as
aliases outside ``__all__``: ``_record_memory_history``, ``_snapshot``,
``_dump_snapshot`` (``torch.cuda.memory._record_memory_history(...)`` ports as
``mtia_async.memory._record_memory_history(...)``).
"""

from __future__ import annotations

from ._exceptions import OutOfMemoryError as OutOfMemoryError
from ._facade.memory import attach_out_of_memory_observer as attach_out_of_memory_observer
from ._facade.memory import dump_snapshot as dump_snapshot
from ._facade.memory import empty_cache as empty_cache
from ._facade.memory import max_memory_allocated as max_memory_allocated
from ._facade.memory import max_memory_reserved as max_memory_reserved
from ._facade.memory import mem_get_info as mem_get_info
from ._facade.memory import memory_allocated as memory_allocated
from ._facade.memory import memory_reserved as memory_reserved
from ._facade.memory import memory_stats as memory_stats
from ._facade.memory import memory_summary as memory_summary
from ._facade.memory import record_memory_history as record_memory_history
from ._facade.memory import reset_peak_memory_stats as reset_peak_memory_stats
from ._facade.memory import snapshot as snapshot

_record_memory_history = record_memory_history
_snapshot = snapshot
_dump_snapshot = dump_snapshot

__all__ = [
    "OutOfMemoryError",
    "attach_out_of_memory_observer",
    "dump_snapshot",
    "empty_cache",
    "max_memory_allocated",
    "max_memory_reserved",
    "mem_get_info",
    "memory_allocated",
    "memory_reserved",
    "memory_stats",
    "memory_summary",
    "record_memory_history",
    "reset_peak_memory_stats",
    "snapshot",
]
