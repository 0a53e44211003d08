"""The profiler and graphs on a remote stream: two kernels that cannot travel as they are.

Both features enqueue a kernel whose arguments are the client's own objects:

* the profiler wraps each kernel in ``_timed(kernel, args, rec, done)`` (``_timed_bound``
  for the launch runners), which notes the kernel's start, end and thread for the record
  ``rec`` in the profiler's ring ``done``. On a remote stream the kernel itself travels, the
  worker times it (``standins.timed``) and sends the times back with the kernel's thread;
  the link notes them in ``done`` (times converted to this process's clock), so the trace shows
  the remote kernels on their devices' tracks, merged with the host's;
* a graph replay enqueues ``graph_replay(exe, stream, per_replay)``, one item walking the
  captured calls. On a remote stream the replay is expanded into those calls, in
  order: each pre-bound call is launched as a kernel (its numpy views are handles of
  the device memory), a random call with this replay's Philox key and start, an event
  recorded in the graph as the mark the replay gave it. The stream runs exactly what a
  local replay runs; the calls travel in one batch.

Recognised by module and name (this layer does not import its siblings).
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .wire import dumps_launch

if TYPE_CHECKING:
    from .device import RemoteQueue

__all__ = ["SPECIAL_MODULES", "enqueue_special"]

SPECIAL_MODULES = frozenset({"mtia_async._profiler.recorder", "mtia_async._graphs.program"})
_FunctionType = types.FunctionType
_tids = itertools.count(1)


def enqueue_special(q: RemoteQueue, kernel: Callable[..., object], args: tuple[Any, ...]) -> bool:
    """Enqueue a profiler-timed kernel or a graph replay on ``q``; False when ``kernel`` is neither."""
    name = kernel.__name__
    if name == "_timed":
        inner, inner_args, rec, done = args
        _timed(q, inner, inner_args, rec, done)
        return True
    if name == "_timed_bound":
        _user, inner, inner_args, rec, done = args
        _timed(q, inner, inner_args, rec, done)
        return True
    if name == "graph_replay":
        _replay(q, kernel, *args)
        return True
    return False


def _timed(q: RemoteQueue, kernel: Callable[..., object], args: tuple[Any, ...], rec: tuple[Any, ...],
           done: Callable[[tuple[Any, ...]], None]) -> None:  # fmt: skip
    if kernel.__class__ is _FunctionType and kernel.__name__ == "graph_replay":
        _replay(q, kernel, *args)  # a replay under the profiler: its calls travel, untimed as one
        return
    blob, refs = dumps_launch(q.link, kernel, args)
    tid = next(_tids)
    q.link.timings[tid] = (rec, done)
    q.append_item(("T", tid, blob), refs)


def _replay(q: RemoteQueue, walker: Callable[..., object], exe: Any, stream: Any, per_replay: Any) -> None:
    module = walker.__globals__
    record, random = module["_record"], module["_random"]
    items: list[tuple[Any, Any]] = []
    for fn, args in exe.calls:  # pickled first: nothing is enqueued if one cannot travel
        if fn is record:
            items.append((None, per_replay[2][args[0]]))
        elif fn is random:
            kernel, g, offset, out, params = args
            keys, starts = per_replay[0], per_replay[1]
            items.append(dumps_launch(q.link, kernel, (out, keys[g], starts[g] + offset, *params)))
        else:
            items.append(dumps_launch(q.link, fn, args))
    q.append_items(items)
