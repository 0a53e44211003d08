"""Raw records (``recorder.py``) to :class:`ProfilerEvent` objects, when a profile's results are read.

Done off the hot path, on the thread that reads the results: marks get numbers, threads
get names, waits get the time their stream could go on, and the streams and marks the
raw records held are let go.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .events import NO_ARGS, ProfilerEvent
from .recorder import HOST_WAIT, KERNEL, MEMORY, RANGE, RECORD, WAIT

__all__ = ["Resolved", "resolve"]


@dataclass(frozen=True)
class Resolved:
    """A profile's results.

    Attributes:
        events: every event, sorted by ``start_ns``.
        pending: kernels launched in the session that had not finished when it was read
            (they have no ``kernel`` event).
        dropped: the ring buffer filled up: the oldest records were dropped.
    """

    events: list[ProfilerEvent]
    pending: int
    dropped: bool


def resolve(raw: Iterable[tuple[Any, ...]], finished: Iterable[tuple[Any, ...]], capacity: int) -> Resolved:
    """Turn raw records into events (see ``recorder.py`` for the record layouts).

    ``finished``: the ring of finished kernels, ``(rec, start_ns, end_ns, worker, failure)``.
    """
    # Finished first: a kernel finishing between the two copies is then pending, not lost.
    ran = {id(f[0]): f for f in list(finished)}  # one atomic copy each: hooks may still append
    records = list(raw)
    mark_ids: dict[int, int] = {}

    def mark_no(mark: Any) -> int:
        return mark_ids.setdefault(id(mark), len(mark_ids) + 1)

    events: list[ProfilerEvent] = []
    pending = 0
    launches: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (device, stream) -> [(launch, end)]
    recorded: set[int] = set()
    waits: list[tuple[Any, ...]] = []
    host_waits: list[tuple[Any, ...]] = []
    for rec in records:
        kind = rec[0]
        if kind == KERNEL:
            key = rec[2]
            done = ran.get(id(rec))
            if done is None:  # the worker has not finished it (or it never ran)
                pending += 1
                launches.setdefault(key, []).append((rec[3], -1))
                continue
            _, start, end, (worker, wid), failure = done
            launches.setdefault(key, []).append((rec[3], end))
            thread, tid = rec[4]
            args: Mapping[str, Any] = NO_ARGS
            if rec[5] or failure is not None:
                args = dict(rec[5] or ())
                if failure is not None:
                    args["failed"] = failure
            events.append(ProfilerEvent(
                "kernel", rec[1], start, end, thread, tid, key[0], key[1], rec[3], worker, wid, (), args))
        elif kind == RECORD:
            stream, mark = rec[1], rec[2]
            no = mark_no(mark)
            recorded.add(no)
            thread, tid = rec[4]
            reached = bool(mark.done and mark.t_ns)
            at = mark.t_ns if reached else rec[3]
            events.append(ProfilerEvent(
                "record", "Event.record", at, at, thread, tid, stream.device.index, stream.stream_id, rec[3],
                marks=(no,), args={"reached": reached}))  # fmt: skip
        elif kind == WAIT:
            waits.append(rec)
        elif kind == HOST_WAIT:
            host_waits.append(rec)
        elif kind == RANGE:
            thread, tid = rec[4]
            events.append(ProfilerEvent("range", rec[1], rec[2], rec[3], thread, tid))
        elif kind == MEMORY:
            events.append(ProfilerEvent(
                "memory", "memory", rec[2], rec[2], device=rec[1],
                args={"allocated_bytes": rec[3], "reserved_bytes": rec[4]}))  # fmt: skip
    for ends in launches.values():
        ends.sort()
    for rec in waits:
        stream, mark = rec[1], rec[2]
        key = (stream.device.index, stream.stream_id)
        thread, tid = rec[4]
        ready = _ready(mark, rec[3], launches.get(key, []))
        events.append(ProfilerEvent(
            "wait", "wait_event", ready or rec[3], ready or rec[3], thread, tid, key[0], key[1], rec[3],
            marks=(mark_no(mark),), args={"ready": ready is not None,
                                          "event_stream": mark.stream.stream_id}))  # fmt: skip
    synced: set[int] = set()
    for rec in host_waits:
        thread, tid = rec[5]
        numbers = []
        for mark in rec[2]:
            no = mark_no(mark)
            numbers.append(no)
            if no not in recorded and no not in synced and mark.done and mark.t_ns:
                synced.add(no)  # where the stream got to for this wait: the wait's flow starts there
                s = mark.stream
                events.append(ProfilerEvent(
                    "sync", "sync point", mark.t_ns, mark.t_ns, device=s.device.index, stream=s.stream_id,
                    marks=(no,)))  # fmt: skip
        events.append(ProfilerEvent("host_wait", rec[1], rec[3], rec[4], thread, tid, marks=tuple(numbers)))
    events.sort(key=lambda e: (e.start_ns, -e.dur_ns))
    return Resolved(events, pending, len(records) >= capacity)


def _ready(mark: Any, call_ns: int, launches: list[tuple[int, int]]) -> int | None:
    """When a stream waiting (since ``call_ns``) on ``mark`` could go on; None if it could not yet."""
    if not (mark.done and mark.t_ns):
        return None
    at = bisect.bisect_left(launches, (call_ns, -2))  # kernels launched on the stream before the wait
    before = launches[at - 1][1] if at else 0
    if before < 0:
        return None  # the work before the wait has not run
    ready: int = max(mark.t_ns, before, call_ns)
    return ready
