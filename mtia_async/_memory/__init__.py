"""Device memory: the caching allocator of one device, its statistics, history and snapshots.

Imports only the leaves (``_exceptions``, ``_thread_role``); the core hands each device
one :class:`CachingAllocator`. Modules, from the bottom up:

========================  ============================================================
``blocks``                segments, chunks, blocks, device addresses, size constants
``stats``                 raw counters and torch.cuda's statistics derived from them
``history``               ``record_memory_history``: settings, trace entries, frames
``snapshot``              ``torch.cuda.memory._snapshot()``'s form; dump to a file
``summary``               byte counts and torch's summary table, for people
``oom``                   size checks, the out-of-memory error and its observers
``segments``              the segment cache: best fit, split, merge, reserve, release
``views``                 the read side: statistics, history, snapshots, observers
``pools``                 graph pools: what capturing streams allocate from, kept and released
``allocator``             malloc/free/record_stream/OOM retry, thread-safe
``invariants``            catalogue M5/M6 checks (``mtia_async.testing.check_invariants``)
========================  ============================================================
"""

from __future__ import annotations

from .allocator import CachingAllocator as CachingAllocator
from .blocks import Backing as Backing
from .blocks import Block as Block
from .blocks import Marker as Marker
from .blocks import StreamLike as StreamLike
from .invariants import check_invariants as check_invariants
from .snapshot import dump_snapshot as dump_snapshot
from .summary import human_size as human_size

__all__ = ["Backing", "Block", "CachingAllocator", "Marker", "StreamLike", "check_invariants", "dump_snapshot", "human_size"]
