"""RemoteDevice: a device held by a Dask worker, as the client's runtime sees it.

It is a ``DeviceImpl`` (so streams, arrays, events and both facades use it as they use
a local device) whose work does not run here:

* its streams stay ``StreamImpl`` with their lock-free FIFO, but the FIFO is a
  :class:`RemoteQueue`: ``extend`` pickles each launch on the launching thread
  (``TypeError`` at ``launch`` for what cannot travel) and stores ``(pickle, arrays kept
  alive)``; marks, waits and clears are stored as they are;
* ``make_ready`` hands a stream with work to the device's :class:`~.link.Link`, which
  drains the FIFO into numbered batches from its own thread and holds the stream's
  token until the worker reports the batches done, so ``query()`` and a drained
  ``synchronize()`` (no round trip) mean what they mean locally;
* its allocator is the local caching allocator over a phantom backing (``backing``);
* ``copy_to_host`` brings an array's bytes back in the reply to a read request.
"""

from __future__ import annotations

import types
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.device import DeviceImpl
from .._core.mark import Mark
from .._core.stream import StreamImpl
from .._log import emit
from .._memory import CachingAllocator
from .backing import PhantomBacking
from .features import SPECIAL_MODULES, enqueue_special
from .wire import dumps_launch, plain_launch

if TYPE_CHECKING:
    import threading

    from .._arrays.array import DeviceArray
    from .._core.runtime import Runtime
    from .link import Link

__all__ = ["ReadItem", "RemoteDevice", "RemoteQueue"]

_FunctionType = types.FunctionType


class ReadItem:
    """A FIFO item of a remote stream: copy ``array`` to the host array ``rid`` names."""

    __slots__ = ("rid", "array")

    def __init__(self, rid: int, array: DeviceArray) -> None:
        self.rid = rid
        self.array = array


class RemoteQueue(deque[Any]):
    """The FIFO of a stream of a remote device: launches are pickled as they are appended.

    Launching threads append (one ``deque.extend`` of a pair: atomic); the link's thread
    pops. The transport state below is the link's (its thread only).
    """

    def __init__(self, link: Link, stream: StreamImpl) -> None:
        super().__init__()
        self.link = link
        self.token = stream.token  # the stream's token list (held by the link while work is out)
        self.key = (stream.device.index, stream.stream_id)
        self.priority = stream.priority
        self.flush_pending = False  # a flush was asked and has not drained us yet
        # --- the link's thread only ---
        self.seq = 0  # last batch sent
        self.done = 0  # last batch the worker finished
        self.inflight: deque[tuple[int, list[Any]]] = deque()  # (seq, objects kept alive until it is done)

    def copy(self) -> deque[Any]:  # type: ignore[override]
        """A plain copy of the items (``_drop_queue`` looks for marks in it)."""
        return deque(self)

    def extend(self, items: Any) -> None:
        kernel, args = items
        if kernel is None:
            deque.extend(self, items)  # a mark, a wait, a clear: encoded by the link
        elif kernel.__class__ is _FunctionType and kernel.__module__ in SPECIAL_MODULES and \
                enqueue_special(self, kernel, args):  # fmt: skip
            return
        else:
            deque.extend(self, plain_launch(self.link, kernel, args) or dumps_launch(self.link, kernel, args))
        if not self.token and not self.flush_pending:  # the link holds the stream: tell it
            self.flush_pending = True
            self.link.request(self, None)

    def append_items(self, pairs: list[tuple[Any, Any]]) -> None:
        """Append several ``(item, refs)`` pairs at once (one ``extend``: never interleaved)."""
        deque.extend(self, [x for pair in pairs for x in pair])
        if not self.token and not self.flush_pending:
            self.flush_pending = True
            self.link.request(self, None)

    def append_item(self, item: Any, refs: Any) -> None:
        self.append_items([(item, refs)])


class RemoteDevice(DeviceImpl):
    """A device held by a Dask worker (``link``); ``local_index`` is its index on that worker."""

    def __init__(self, runtime: Runtime, index: int, link: Link, local_index: int, workers: int, memory: int) -> None:
        self.link = link
        self.local_index = local_index
        super().__init__(runtime, index, workers, memory)
        self._allocator = CachingAllocator(index, memory, PhantomBacking(link, index))

    def __repr__(self) -> str:
        return f"<RemoteDevice mtia:{self.index} on {self.link.address} (local {self.local_index})>"

    def new_stream(self, priority: int, stream_id: int | None = None) -> StreamImpl:
        s = super().new_stream(priority, stream_id)
        s.q = RemoteQueue(self.link, s)
        return s

    def make_ready(self, s: StreamImpl) -> None:
        """The stream got work while idle (its token is ours): hand it to the link."""
        closed = self.closed
        if closed is not None:
            self._drop_queue(s, closed)
            return
        q: Any = s.q  # a RemoteQueue
        self.link.request(q, s)

    def copy_to_host(self, s: StreamImpl, a: Any) -> tuple[list[Any], Mark]:
        """Enqueue a read of ``a`` on ``s`` and the mark after it; the reply's array goes in the box."""
        if s.capture is not None:
            raise s.capture.forbidden(s, "a copy to the host (to_host()/numpy())")
        box = [np.empty(a._shape, a._dtype)]  # untouched pages: the reply usually replaces it
        if a.size:
            s.q.extend((None, ReadItem(self.link.new_read(box), a)))
            if s.token:
                s.kick()
        return box, s.record_mark("a copy to the host (to_host()/numpy())")

    def fail_remote(self, why: str, cause: BaseException | None = None, level: str = "critical") -> None:
        """The worker is gone: every pending and later wait on this device raises ``DeviceFailedError``."""
        if not self.crash_once(
            f"{why}; the other devices keep working. Re-create the runtime (mtia_async.testing.fresh_runtime, "
            "or restart the process) to use the cluster's current workers",
            cause,
        ):
            return
        for s in list(self.streams.values()):
            if not s.token:
                s.token.append(True)  # the link held it: nothing is out any more
        emit(level, "device_failed", device=self.index, error=why)

    def shutdown(self, join_timeout: float | None) -> list[threading.Thread]:
        self._stop(RuntimeError("the mtia_async runtime was shut down; this stream belongs to it"))
        return []  # the link's thread is the connection's: it reports it
