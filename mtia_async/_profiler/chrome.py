"""Chrome Trace Event Format JSON, as torch.profiler writes it, built so Perfetto imports it cleanly.

Processes and tracks: the host process (``os.getpid()``) has a track per host thread
(launches, user ranges, host waits, event records and waits as called); each device is
a process named ``mtia:N`` with a track per stream (kernels, the points the stream
reached for events and synchronizes, waits) and one per worker thread (the kernels it
ran). Device processes and the tracks made here get ids above any Linux pid or tid.

Perfetto's importer is strict, and this module keeps to its rules:

* slices on one track must nest (Perfetto drops a slice that partly overlaps another).
  Two asyncio tasks on one thread can open ranges or waits that overlap without
  nesting, so a track is laid out in *lanes*: a slice goes to the first lane where it
  nests; lane 0 is the thread's own track, more lanes are tracks of their own;
* a flow's start (``s``) binds to the slice on top of its track's stack when it is
  read, and its end (``f``, ``"bp": "e"``) likewise: each flow event is written right
  after the slice or instant it belongs to, at the same time, and every flow has
  exactly one start and one end, the start no later than the end;
* timestamps are sorted, so the importer keeps this file's order (it re-sorts only
  out-of-order input), and durations are never negative.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from typing import Any

from .events import ProfilerEvent
from .resolve import Resolved

__all__ = ["DEVICE_PID_BASE", "SYNTHETIC_TID_BASE", "build_trace", "write_trace"]

DEVICE_PID_BASE = 1_000_000_000  # device N is process DEVICE_PID_BASE + N (Linux pids stay below 2**22)
SYNTHETIC_TID_BASE = 2_000_000_000  # stream, worker and lane tracks (real tids stay below 2**22)


class _Item:
    """A slice (``dur`` >= 0) or instant (``dur`` None) on a track, with the flow events bound to it."""

    __slots__ = ("ts", "dur", "event", "flows", "source", "lane")

    def __init__(self, ts: int, dur: int | None, event: dict[str, Any]) -> None:
        self.ts = ts
        self.dur = dur
        self.event = event
        self.flows: list[dict[str, Any]] = []
        self.source = False  # a flow starts here (written before ends at the same time)
        self.lane = 0


class _Track:
    """A logical track (a thread, a stream, a worker); lanes beyond the first become tracks of their own."""

    def __init__(self, pid: int, tid: int, name: str, sort: int) -> None:
        self.pid, self.tid, self.name, self.sort = pid, tid, name, sort
        self.items: list[_Item] = []
        self.lane_tids: list[int] = [tid]

    def add(self, ts: int, dur: int | None, event: dict[str, Any]) -> _Item:
        item = _Item(ts, dur, event)
        self.items.append(item)
        return item

    def layout(self, new_tid: Any) -> None:
        """Give each item the first lane where it nests, by Perfetto's stack rules."""
        lanes: list[list[tuple[int, bool]]] = []  # per lane: stack of (end, is_instant)
        for item in sorted(self.items, key=lambda i: (i.ts, -(i.dur or 0))):
            end = item.ts + (item.dur or 0)
            instant = not item.dur
            for k, stack in enumerate(lanes):
                while stack and (stack[-1][0] < item.ts or (stack[-1][0] == item.ts and not (stack[-1][1] and instant))):
                    stack.pop()
                if not stack or end <= stack[-1][0]:
                    stack.append((end, instant))
                    item.lane = k
                    break
            else:
                lanes.append([(end, instant)])
                item.lane = len(lanes) - 1
        while len(self.lane_tids) < len(lanes):
            self.lane_tids.append(new_tid())


class _Builder:
    def __init__(self, resolved: Resolved, host_pid: int) -> None:
        self.host_pid = host_pid
        events = resolved.events
        self.base = min((min(e.start_ns, e.host_ns or e.start_ns) for e in events), default=0)
        self.tracks: dict[Any, _Track] = {}
        self.next_tid = SYNTHETIC_TID_BASE
        self.next_flow = 1
        self.counters: list[tuple[int, dict[str, Any]]] = []
        self.devices: set[int] = set()
        self.points: dict[int, _Item] = {}  # mark number -> the device instant where a flow from it starts

    def tid(self) -> int:
        self.next_tid += 1
        return self.next_tid

    def us(self, ns: int) -> float:
        return round((ns - self.base) / 1e3, 3)

    # --- tracks ---------------------------------------------------------------------------
    def host(self, e: ProfilerEvent) -> _Track:
        key = ("host", e.thread_id, e.thread)
        track = self.tracks.get(key)
        if track is None:
            tid = e.thread_id or self.tid()
            track = self.tracks[key] = _Track(self.host_pid, tid, e.thread or f"thread {tid}", len(self.tracks))
        return track

    def stream(self, device: int, stream: int) -> _Track:
        key = ("stream", device, stream)
        track = self.tracks.get(key)
        if track is None:
            self.devices.add(device)
            name = f"stream {stream} (default)" if stream == 0 else f"stream {stream}"
            track = self.tracks[key] = _Track(DEVICE_PID_BASE + device, self.tid(), name, stream)
        return track

    def worker(self, device: int, name: str) -> _Track:
        key = ("worker", device, name)
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = _Track(DEVICE_PID_BASE + device, self.tid(), name, 1_000_000 + len(self.tracks))
        return track

    def flow(self, source: _Item, target: _Item, cat: str) -> None:
        fid = self.next_flow
        self.next_flow += 1
        source.flows.append({"ph": "s", "id": fid, "cat": cat, "name": cat})
        source.source = True
        target.flows.append({"ph": "f", "id": fid, "cat": cat, "name": cat, "bp": "e"})

    # --- events ---------------------------------------------------------------------------
    def slice(self, track: _Track, name: str, cat: str, start: int, end: int, args: dict[str, Any]) -> _Item:
        return track.add(start, max(0, end - start), {"ph": "X", "name": name, "cat": cat, "args": args})

    def instant(self, track: _Track, name: str, cat: str, at: int, args: dict[str, Any]) -> _Item:
        return track.add(at, None, {"ph": "i", "s": "t", "name": name, "cat": cat, "args": args})

    def add(self, e: ProfilerEvent, waits: list[ProfilerEvent], host_waits: list[ProfilerEvent]) -> None:
        kind = e.kind
        if kind == "kernel":
            assert e.device is not None and e.stream is not None and e.host_ns is not None
            args = {"device": e.device, "stream": e.stream, "queued_us": e.queued_us, "launched by": e.thread,
                    "worker": e.worker, **e.args}  # fmt: skip
            kernel = self.slice(self.stream(e.device, e.stream), e.name, "kernel", e.start_ns, e.end_ns, args)
            # the same kernel on its worker's track: category "worker", so a query over
            # category "kernel" counts each kernel once
            self.slice(self.worker(e.device, e.worker or "worker"), e.name, "worker", e.start_ns, e.end_ns,
                       {"stream": e.stream})  # fmt: skip
            launch = self.instant(self.host(e), f"launch {e.name}", "launch", e.host_ns,
                                  {"kernel": e.name, "device": e.device, "stream": e.stream})  # fmt: skip
            self.flow(launch, kernel, "launch")
        elif kind == "range":
            self.slice(self.host(e), e.name, "user_annotation", e.start_ns, e.end_ns, {})
        elif kind == "record":
            assert e.device is not None and e.stream is not None and e.host_ns is not None
            where = {"device": e.device, "stream": e.stream, "event": e.marks[0]}
            self.instant(self.host(e), "Event.record", "event", e.host_ns, where)
            if e.args.get("reached"):
                self.points[e.marks[0]] = self.instant(
                    self.stream(e.device, e.stream), "event reached", "event", e.start_ns, {"event": e.marks[0]})
        elif kind == "sync":
            assert e.device is not None and e.stream is not None
            self.points[e.marks[0]] = self.instant(
                self.stream(e.device, e.stream), "sync point", "event", e.start_ns, {"mark": e.marks[0]})
        elif kind == "wait":
            waits.append(e)
        elif kind == "host_wait":
            host_waits.append(e)
        elif kind == "memory":
            assert e.device is not None
            self.devices.add(e.device)
            self.counters.append((e.start_ns, {
                "ph": "C", "name": "memory", "pid": DEVICE_PID_BASE + e.device, "ts": self.us(e.start_ns),
                "args": {"allocated": e.args["allocated_bytes"], "reserved": e.args["reserved_bytes"]}}))  # fmt: skip

    def add_wait(self, e: ProfilerEvent) -> None:
        assert e.device is not None and e.stream is not None and e.host_ns is not None
        mark = e.marks[0]
        args = {"device": e.device, "stream": e.stream, "event": mark, "event stream": e.args.get("event_stream")}
        self.instant(self.host(e), "wait_event", "event", e.host_ns, args)
        if e.args.get("ready"):
            target = self.instant(self.stream(e.device, e.stream), "wait_event", "event", e.start_ns,
                                  {"event": mark, "event stream": e.args.get("event_stream")})  # fmt: skip
            point = self.points.get(mark)
            if point is not None and point.ts <= target.ts:
                self.flow(point, target, "event")

    def add_host_wait(self, e: ProfilerEvent) -> None:
        track = self.host(e)
        self.slice(track, e.name, "host_wait", e.start_ns, e.end_ns, {"marks": list(e.marks)})
        sources = [self.points[m] for m in e.marks if m in self.points and self.points[m].ts <= e.end_ns]
        if sources:
            woken = self.instant(track, "woken", "host_wait", e.end_ns, {"wait": e.name})
            for point in sources:
                self.flow(point, woken, "event")

    # --- output ---------------------------------------------------------------------------
    def metadata(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"ph": "M", "name": "process_name", "pid": self.host_pid, "args": {"name": f"host (pid {self.host_pid})"}},
            {"ph": "M", "name": "process_sort_index", "pid": self.host_pid, "args": {"sort_index": 0}},
        ]
        for device in sorted(self.devices):
            pid = DEVICE_PID_BASE + device
            out.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": f"mtia:{device}"}})
            out.append({"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": 1 + device}})
        for track in self.tracks.values():
            for lane, tid in enumerate(track.lane_tids):
                name = track.name if lane == 0 else f"{track.name} (overlapping, {lane + 1})"
                out.append({"ph": "M", "name": "thread_name", "pid": track.pid, "tid": tid, "args": {"name": name}})
                out.append({"ph": "M", "name": "thread_sort_index", "pid": track.pid, "tid": tid,
                            "args": {"sort_index": track.sort * 16 + lane}})  # fmt: skip
        return out

    def trace_events(self) -> list[dict[str, Any]]:
        groups: list[tuple[tuple[int, int, int, int], list[dict[str, Any]]]] = []
        seq = 0
        for track in self.tracks.values():
            track.layout(self.tid)
            for item in track.items:
                tid = track.lane_tids[item.lane]
                ts = self.us(item.ts)
                head = {**item.event, "pid": track.pid, "tid": tid, "ts": ts}
                if item.dur is not None:
                    head["dur"] = round(item.dur / 1e3, 3)
                group = [head] + [{**f, "pid": track.pid, "tid": tid, "ts": ts} for f in item.flows]
                seq += 1
                groups.append(((item.ts, -(item.dur or 0), 0 if item.source else 1, seq), group))
        for at, counter in self.counters:
            seq += 1
            groups.append(((at, 0, 1, seq), [counter]))
        groups.sort(key=lambda g: g[0])
        return self.metadata() + [e for _, group in groups for e in group]


def build_trace(resolved: Resolved, *, host_pid: int | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trace of a profile's results, as a JSON-ready dict with ``traceEvents``."""
    builder = _Builder(resolved, os.getpid() if host_pid is None else host_pid)
    waits: list[ProfilerEvent] = []
    host_waits: list[ProfilerEvent] = []
    for e in resolved.events:
        builder.add(e, waits, host_waits)
    for e in waits:  # after every record and sync point: a flow starts at those
        builder.add_wait(e)
    for e in host_waits:
        builder.add_host_wait(e)
    doc = {"traceEvents": builder.trace_events(), "schemaVersion": 1}
    doc["mtia_async"] = {
        "base_time_ns": builder.base,
        "clock": "time.perf_counter_ns (the clock of Event.elapsed_time); ts = (ns - base_time_ns) / 1000",
        "pending_kernels": resolved.pending,
        "oldest_dropped": resolved.dropped,
        **(meta or {}),
    }
    return doc


def write_trace(doc: dict[str, Any], path: str) -> None:
    """Write ``doc`` as JSON, one trace event per line; gzip-compressed when ``path`` ends in ``.gz``."""
    events: Iterable[dict[str, Any]] = doc["traceEvents"]
    rest = {k: v for k, v in doc.items() if k != "traceEvents"}
    body = '{"traceEvents": [\n' + ",\n".join(json.dumps(e, separators=(",", ":")) for e in events) + "\n],\n"
    body += json.dumps(rest)[1:] + "\n"
    data = body.encode("utf-8")
    if path.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)
