"""What a profile recorded, as ``events()`` returns it: one :class:`ProfilerEvent` (a named tuple) each.

Times are ``time.perf_counter_ns()`` values, the clock ``Event.elapsed_time`` uses, so
the difference of two events' times is comparable with ``elapsed_time`` (which is in
milliseconds; these are nanoseconds). (No ``from __future__ import annotations``: the API page prints these types.)
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

__all__ = ["NO_ARGS", "EventKind", "ProfilerEvent"]

EventKind = Literal["kernel", "range", "host_wait", "record", "wait", "sync", "memory"]
NO_ARGS: Mapping[str, Any] = MappingProxyType({})


class ProfilerEvent(NamedTuple):
    """One thing a profile saw (a named tuple: made fast, never changed).

    ``kind`` says which; the fields that do not apply to it are None (or empty):

    * ``"kernel"``: a kernel ran on ``device``/``stream`` from ``start_ns`` to ``end_ns``,
      on the worker thread ``worker``; it was launched by ``thread`` at ``host_ns``. ``args`` holds ``Input Dims``/``Input type``
      (``record_shapes``), ``Python stack`` (``with_stack``), ``failed`` (the error, if
      the kernel raised).
    * ``"range"``: a ``record_function`` range on ``thread``.
    * ``"host_wait"``: a host wait (``name`` says which: ``Stream.synchronize()``,
      ``Event.synchronize()``, ``DeviceArray.numpy()``, ...) on ``thread``, waiting for the
      marks ``marks``.
    * ``"record"``: an event recorded on ``device``/``stream`` by ``thread`` at
      ``host_ns``; ``start_ns`` is when the stream reached it (the time
      ``elapsed_time`` uses), or ``host_ns`` if it never did (``args["reached"]`` False).
      ``marks`` holds its one mark.
    * ``"wait"``: ``stream`` waits for the mark in ``marks`` (``wait_event``,
      ``Event.wait``, ``wait_stream``), asked by ``thread`` at ``host_ns``; ``start_ns``
      is when it could go on: the later of the event being reached and the waiting
      stream finishing the work launched before the wait.
    * ``"sync"``: the point a stream reached for a host wait (``synchronize``), whose
      mark is in ``marks``.
    * ``"memory"``: ``args["allocated_bytes"]`` and ``args["reserved_bytes"]`` of
      ``device`` at ``start_ns`` (``profile_memory``).

    Marks are numbered per profile: a ``record`` and the ``wait`` and ``host_wait``
    events on the same event share the number.
    """

    kind: EventKind
    name: str
    start_ns: int
    end_ns: int
    thread: str | None = None
    thread_id: int | None = None
    device: int | None = None
    stream: int | None = None
    host_ns: int | None = None
    worker: str | None = None
    worker_id: int | None = None
    marks: tuple[int, ...] = ()
    args: Mapping[str, Any] = NO_ARGS

    @property
    def dur_ns(self) -> int:
        """``end_ns - start_ns``."""
        return self.end_ns - self.start_ns

    @property
    def dur_us(self) -> float:
        """The duration in microseconds."""
        return (self.end_ns - self.start_ns) / 1e3

    @property
    def queued_us(self) -> float | None:
        """Kernels: microseconds from the launch call to the kernel's start (None otherwise)."""
        if self.kind != "kernel" or self.host_ns is None:
            return None
        return (self.start_ns - self.host_ns) / 1e3
