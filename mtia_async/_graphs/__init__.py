"""Graphs: torch.mtia's ``MTIAGraph``, ``graph`` and ``graph_pool_handle`` (docs/graphs.md).

A capture (``capture``) records, instead of running, what is enqueued on a capturing
stream, through the instruments layer (``_core/instrument.py``); an instantiated graph
(``program``) replays it as one FIFO item whose kernel makes the pre-bound calls in
order. Modules, from the bottom up:

==============  ==================================================================
``pools``       pool tokens (``graph_pool_handle``, private pools), their device
``marks``       the mark of an event recorded in a graph (refused while capturing,
                then the mark of the latest replay)
``capture``     the capture: steps in host order, fork/join, what is refused
``program``     the instantiated graph: pre-bound calls, the replay walker
``graph``       ``MTIAGraph``: capture_begin/end, instantiate, replay, reset, pool
``context``     what ``graph(...)`` does on entry and exit (the facades wrap it),
                ``is_current_stream_capturing``
==============  ==================================================================

Memory allocated while capturing comes from the graph's pool in the caching allocator
(``_memory/pools.py``); random kernels reserve their counter blocks at each replay
(``_random/kernels.py`` hands them to the capture).
"""

from __future__ import annotations

from .context import GraphContext as GraphContext
from .context import is_current_stream_capturing as is_current_stream_capturing
from .graph import MTIAGraph as MTIAGraph
from .pools import graph_pool_handle as graph_pool_handle

__all__ = ["GraphContext", "MTIAGraph", "graph_pool_handle", "is_current_stream_capturing"]
