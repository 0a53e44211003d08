"""Locks that survive ``fork()``: every lock the runtime owns is made here (a leaf).

A thread of the parent may hold any of the runtime's locks at the instant another
thread forks; in the child that lock stays held forever, since its holder does not
exist there. Rather than hand-pick the locks to replace in the child (and miss one),
the runtime makes each of its locks with :func:`lock` or :func:`rlock`, which remember
it (weakly), and the child re-initialises every one of them before anything else runs
(the first ``after_in_child`` hook; CPython's own ``threading`` and ``logging`` modules
do the same with ``_at_fork_reinit``). What a lock protected may be half-changed in the
child: the runtime's fork hook then marks the inherited runtime unusable, so that state
is never trusted.

Temporary locks that only a waiting thread holds (a blocking wait's wake-up lock) are
not needed here: the waiting thread does not exist in the child.
"""

from __future__ import annotations

import os
import threading
import weakref

__all__ = ["lock", "rlock"]

_locks: weakref.WeakSet[threading.Lock | threading.RLock] = weakref.WeakSet()


def lock() -> threading.Lock:
    """A ``threading.Lock`` that a forked child gets back released."""
    new = threading.Lock()
    _locks.add(new)
    return new


def rlock() -> threading.RLock:
    """A ``threading.RLock`` that a forked child gets back released."""
    new = threading.RLock()
    _locks.add(new)
    return new


def _reinit_in_child() -> None:
    for held in list(_locks):
        held._at_fork_reinit()  # type: ignore[union-attr]


os.register_at_fork(after_in_child=_reinit_in_child)
