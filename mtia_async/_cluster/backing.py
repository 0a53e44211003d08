"""The memory of a cluster device, as the client sees it: address ranges with nothing behind them.

The client keeps the caching allocator of every remote device (addresses, best fit,
statistics, history, snapshots, ``OutOfMemoryError`` at the call) but none of its
memory: a segment's bytes live on the Dask worker that holds the device. What the
allocator gets for a segment (:class:`PhantomBacking`) is a numpy ``uint8`` array over
an anonymous ``mmap`` reserved with no access rights (``PROT_NONE``): virtual address
space only, no page is ever committed, and any read or write of it faults at once
rather than returning garbage. So the caller-side metadata work keeps using numpy's
own arithmetic unchanged (``Block.view``, slicing, ``reshape``, ``transpose``,
``strides``: none touches the data), and a view of a segment is recognised when it
is sent to the worker (its ``base`` is the segment's phantom array), where it becomes
a view of the real segment memory (``wire``).

Each segment gets a unique id (``uid``): the worker keys its memory by it, so an
address released and reserved again is never confused with its previous segment.
The worker is told to back and release segments through the device's link (a
release waits there until the work sent before it has been received: ``link``).
"""

from __future__ import annotations

import itertools
import mmap
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .link import Link

__all__ = ["PHANTOMS", "PhantomBacking", "segment_of"]

_uids = itertools.count(1)

PHANTOMS: dict[int, tuple[int, int, int]] = {}
"""id(phantom array) -> (device index, segment uid, address of the phantom's first byte), while it lives."""


def _address(a: np.ndarray[Any, Any]) -> int:
    addr: int = a.__array_interface__["data"][0]
    return addr


class PhantomBacking:
    """The allocator backing of one remote device (``_memory.Backing``)."""

    def __init__(self, link: Link, device: int) -> None:
        self.link = link
        self.device = device

    def reserve(self, addr: int, size: int) -> npt.NDArray[np.uint8]:
        """Reserve ``size`` bytes of address space and ask the worker to back the segment."""
        try:
            region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=0)
        except OSError as exc:  # the address space is exhausted: the device is out of memory
            raise MemoryError(str(exc)) from exc
        phantom = np.frombuffer(region, dtype=np.uint8)
        uid = next(_uids)
        key = id(phantom)
        PHANTOMS[key] = (self.device, uid, _address(phantom))
        # Forgotten when the phantom dies, released or not (a runtime shut down drops its allocators
        # whole): a stale entry would leak, and an unrelated array given the same id later would pass
        # for a view of device memory.
        weakref.finalize(phantom, PHANTOMS.pop, key, None)
        self.link.reserve(self.device, uid, size)
        return phantom

    def release(self, addr: int, size: int, host: npt.NDArray[np.uint8] | None) -> None:
        """Forget the phantom and ask the worker to release the segment's memory."""
        if host is None:
            return
        entry = PHANTOMS.pop(id(host), None)
        if entry is not None:
            self.link.release(entry[1])


def segment_of(view: np.ndarray[Any, Any]) -> tuple[int, int, int] | None:
    """``(device, segment uid, byte offset)`` of a view of a phantom segment, else None."""
    entry = PHANTOMS.get(id(view.base))
    if entry is None:
        return None
    return entry[0], entry[1], _address(view) - entry[2]
