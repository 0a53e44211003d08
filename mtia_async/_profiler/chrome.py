"""Chrome Trace Event Format JSON, as torch.profiler writes it, built so Perfetto imports it cleanly.

Processes and tracks: the host process (``os.getpid()``) has a track per host thread
(launches, user ranges, host waits, event records and waits as called); each device is
a process named ``mtia:N`` with a track per stream (kernels, the points the stream
reached for events and synchronizes, waits) and one per worker thread (the kernels it
ran, in category ``worker`` so a query over category ``kernel`` counts each kernel
once). Device processes and the tracks made here get ids above any Linux pid or tid.

Perfetto's importer is strict, and this module keeps to its rules:

* slices on one track must nest (Perfetto drops a slice that partly overlaps another).
  Two asyncio tasks on one thread can open ranges or waits that overlap without
  nesting, so a track is laid out in *lanes*: a slice goes to the first lane where it
  nests; lane 0 is the thread's own track, more lanes are tracks of their own;
* a flow's start (``s``) binds to the slice on top of its track's stack when it is
  read, and its end (``f``, ``"bp": "e"``) likewise: each flow event is written right
  after the slice or instant it belongs to, at the same time, and every flow has
  exactly one start and one end, the start no later than the end;
* timestamps are sorted and durations are never negative. At equal timestamps Perfetto's
  sorter hands the parser the ``X`` events first, longest first, then the rest in file
  order; this file's order is the same (``(ts, -dur)``), so a flow event still binds to
  the slice written before it: a flow binds to a kernel (``X``) only on a stream track,
  where no two slices start at the same nanosecond.

Events are written as text directly (one per line), names escaped once each: a trace
of 100,000 kernels is half a million events.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

from .events import ProfilerEvent
from .resolve import Resolved

__all__ = ["DEVICE_PID_BASE", "SYNTHETIC_TID_BASE", "trace_lines", "write_trace"]

DEVICE_PID_BASE = 1_000_000_000  # device N is process DEVICE_PID_BASE + N (Linux pids stay below 2**22)
SYNTHETIC_TID_BASE = 2_000_000_000  # stream, worker and lane tracks (real tids stay below 2**22)

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class _Item:
    """A slice (``dur`` >= 0) or instant (``dur`` None) on a track, with the flow events bound to it.

    ``body`` is the event's JSON without its opening brace, ``pid``, ``tid``, ``ts`` and
    ``dur`` (``"ph":"X","name":"exp","cat":"kernel","args":{...}}``).
    """

    __slots__ = ("ts", "dur", "body", "flows", "source", "lane")

    def __init__(self, ts: int, dur: int | None, body: str) -> None:
        self.ts = ts
        self.dur = dur
        self.body = body
        self.flows: list[tuple[str, int, str]] = []  # (phase, id, category)
        self.source = False  # a flow starts here (written before ends at the same time)
        self.lane = 0


class _Track:
    """A logical track (a thread, a stream, a worker); lanes beyond the first become tracks of their own."""

    def __init__(self, pid: int, tid: int, name: str, sort: int) -> None:
        self.pid, self.tid, self.name, self.sort = pid, tid, name, sort
        self.items: list[_Item] = []
        self.lane_tids: list[int] = [tid]

    def layout(self, new_tid: Callable[[], int]) -> None:
        """Sort the items and give each the first lane where it nests, by Perfetto's stack rules."""
        self.items.sort(key=lambda i: (i.ts, -(i.dur or 0)))
        lanes: list[list[tuple[int, bool]]] = []  # per lane: stack of (end, is_instant)
        for item in self.items:
            ts = item.ts
            end = ts + (item.dur or 0)
            instant = not item.dur
            for k, stack in enumerate(lanes):
                while stack and (stack[-1][0] < ts or (stack[-1][0] == ts and not (stack[-1][1] and instant))):
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
        self.counters: list[tuple[int, str]] = []
        self.devices: set[int] = set()
        self.points: dict[int, _Item] = {}  # mark number -> the device instant where a flow from it starts
        self._names: dict[str, str] = {}

    def tid(self) -> int:
        self.next_tid += 1
        return self.next_tid

    def name(self, text: str) -> str:
        """``text`` as a JSON string (escaped once per distinct name)."""
        quoted = self._names.get(text)
        if quoted is None:
            quoted = self._names[text] = _ENCODE(text)
        return quoted

    # --- tracks ---------------------------------------------------------------------------
    def host(self, e: ProfilerEvent) -> _Track:
        key = (e.thread_id, e.thread)
        track = self.tracks.get(key)
        if track is None:
            tid = e.thread_id or self.tid()
            track = self.tracks[key] = _Track(self.host_pid, tid, e.thread or f"thread {tid}", len(self.tracks))
        return track

    def stream(self, device: int, stream: int) -> _Track:
        key = (device, stream)
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
        source.flows.append(("s", fid, cat))
        source.source = True
        target.flows.append(("f", fid, cat))

    # --- events ---------------------------------------------------------------------------
    def slice(self, track: _Track, name: str, cat: str, start: int, end: int, args: str) -> _Item:
        item = _Item(start, max(0, end - start), f'"ph":"X","name":{name},"cat":"{cat}","args":{args}}}')
        track.items.append(item)
        return item

    def instant(self, track: _Track, name: str, cat: str, at: int, args: str) -> _Item:
        item = _Item(at, None, f'"ph":"i","s":"t","name":{name},"cat":"{cat}","args":{args}}}')
        track.items.append(item)
        return item

    def add(self, e: ProfilerEvent, waits: list[ProfilerEvent], host_waits: list[ProfilerEvent]) -> None:
        kind = e.kind
        if kind == "kernel":
            assert e.device is not None and e.stream is not None and e.host_ns is not None
            name = self.name(e.name)
            extra = _ENCODE(e.args)[1:] if e.args else "}"
            args = (f'{{"queued_us":{(e.start_ns - e.host_ns) / 1e3:.3f},"launched by":{self.name(e.thread or "")}'
                    f'{"," + extra if e.args else extra}')  # fmt: skip
            kernel = self.slice(self.stream(e.device, e.stream), name, "kernel", e.start_ns, e.end_ns, args)
            self.slice(self.worker(e.device, e.worker or "worker"), name, "worker", e.start_ns, e.end_ns,
                       f'{{"stream":{e.stream}}}')  # fmt: skip
            launch = self.instant(self.host(e), self.name(f"launch {e.name}"), "launch", e.host_ns,
                                  f'{{"device":{e.device},"stream":{e.stream}}}')  # fmt: skip
            self.flow(launch, kernel, "launch")
        elif kind == "range":
            self.slice(self.host(e), self.name(e.name), "user_annotation", e.start_ns, e.end_ns, "{}")
        elif kind == "record":
            assert e.device is not None and e.stream is not None and e.host_ns is not None
            where = f'{{"device":{e.device},"stream":{e.stream},"event":{e.marks[0]}}}'
            self.instant(self.host(e), '"Event.record"', "event", e.host_ns, where)
            if e.args.get("reached"):
                self.points[e.marks[0]] = self.instant(
                    self.stream(e.device, e.stream), '"event reached"', "event", e.start_ns,
                    f'{{"event":{e.marks[0]}}}')  # fmt: skip
        elif kind == "sync":
            assert e.device is not None and e.stream is not None
            self.points[e.marks[0]] = self.instant(
                self.stream(e.device, e.stream), '"sync point"', "event", e.start_ns, f'{{"mark":{e.marks[0]}}}')
        elif kind == "wait":
            waits.append(e)
        elif kind == "host_wait":
            host_waits.append(e)
        elif kind == "memory":
            assert e.device is not None
            self.devices.add(e.device)
            self.counters.append((e.start_ns, (
                f'{{"ph":"C","name":"memory","pid":{DEVICE_PID_BASE + e.device},"ts":{self.us(e.start_ns)},'
                f'"args":{{"allocated":{e.args["allocated_bytes"]},"reserved":{e.args["reserved_bytes"]}}}}}')))

    def us(self, ns: int) -> str:
        """A time as the trace writes it: microseconds from the first event, to the nanosecond."""
        return f"{(ns - self.base) / 1e3:.3f}"

    def add_wait(self, e: ProfilerEvent) -> None:
        assert e.device is not None and e.stream is not None and e.host_ns is not None
        mark = e.marks[0]
        other = _ENCODE(e.args.get("event_stream"))
        self.instant(self.host(e), '"wait_event"', "event", e.host_ns,
                     f'{{"device":{e.device},"stream":{e.stream},"event":{mark},"event stream":{other}}}')  # fmt: skip
        if e.args.get("ready"):
            target = self.instant(self.stream(e.device, e.stream), '"wait_event"', "event", e.start_ns,
                                  f'{{"event":{mark},"event stream":{other}}}')  # fmt: skip
            point = self.points.get(mark)
            if point is not None and point.ts <= target.ts:
                self.flow(point, target, "event")

    def add_host_wait(self, e: ProfilerEvent) -> None:
        track = self.host(e)
        name = self.name(e.name)
        self.slice(track, name, "host_wait", e.start_ns, e.end_ns, f'{{"marks":{list(e.marks)}}}')
        sources = [self.points[m] for m in e.marks if m in self.points and self.points[m].ts <= e.end_ns]
        if sources:
            woken = self.instant(track, '"woken"', "host_wait", e.end_ns, f'{{"wait":{name}}}')
            for point in sources:
                self.flow(point, woken, "event")

    # --- output ---------------------------------------------------------------------------
    def metadata(self) -> list[str]:
        def meta(name: str, pid: int, tid: int | None, key: str, value: str | int) -> str:
            where = f'"pid":{pid}' if tid is None else f'"pid":{pid},"tid":{tid}'
            text = _ENCODE(value) if isinstance(value, str) else str(value)
            return f'{{"ph":"M","name":"{name}",{where},"args":{{"{key}":{text}}}}}'

        out = [meta("process_name", self.host_pid, None, "name", f"host (pid {self.host_pid})"),
               meta("process_sort_index", self.host_pid, None, "sort_index", 0)]  # fmt: skip
        for device in sorted(self.devices):
            out.append(meta("process_name", DEVICE_PID_BASE + device, None, "name", f"mtia:{device}"))
            out.append(meta("process_sort_index", DEVICE_PID_BASE + device, None, "sort_index", 1 + device))
        for track in self.tracks.values():
            for lane, tid in enumerate(track.lane_tids):
                name = track.name if lane == 0 else f"{track.name} (overlapping, {lane + 1})"
                out.append(meta("thread_name", track.pid, tid, "name", name))
                out.append(meta("thread_sort_index", track.pid, tid, "sort_index", track.sort * 16 + lane))
        return out

    def lines(self) -> Iterator[str]:
        """Every trace event as a line of JSON: metadata first, then the rest sorted by time."""
        keyed: list[tuple[int, int, int, int, _Item | None, _Track | None, str]] = []
        seq = 0
        for track in self.tracks.values():
            track.layout(self.tid)
            for item in track.items:
                seq += 1
                keyed.append((item.ts, -(item.dur or 0), 0 if item.source else 1, seq, item, track, ""))
        for at, counter in self.counters:
            seq += 1
            keyed.append((at, 0, 1, seq, None, None, counter))
        keyed.sort(key=lambda k: k[:4])
        yield from self.metadata()
        base = self.base
        for ts, _, _, _, it, on, text in keyed:
            if it is None or on is None:
                yield text
                continue
            head = f'{{"pid":{on.pid},"tid":{on.lane_tids[it.lane]},"ts":{(ts - base) / 1e3:.3f},'
            if it.dur is not None:
                head += f'"dur":{it.dur / 1e3:.3f},'
            yield head + it.body
            for ph, fid, cat in it.flows:
                bind = ',"bp":"e"' if ph == "f" else ""
                yield f'{head}"ph":"{ph}","id":{fid},"cat":"{cat}","name":"{cat}"{bind}}}'


def trace_lines(resolved: Resolved, host_pid: int) -> tuple[Iterator[str], int]:
    """The trace events of a profile's results, one JSON object per string (made as they are read),
    and the base time of their ``ts`` (ns)."""
    builder = _Builder(resolved, host_pid)
    waits: list[ProfilerEvent] = []
    host_waits: list[ProfilerEvent] = []
    for e in resolved.events:
        builder.add(e, waits, host_waits)
    for e in waits:  # after every record and sync point: a flow starts at those
        builder.add_wait(e)
    for e in host_waits:
        builder.add_host_wait(e)
    return builder.lines(), builder.base


def write_trace(resolved: Resolved, path: str, host_pid: int, meta: dict[str, Any]) -> None:
    """Write the trace of ``resolved`` to ``path`` (gzip-compressed when it ends in ``.gz``).

    An object with ``traceEvents`` (one event per line), ``schemaVersion`` and ``mtia_async``
    (the base time of ``ts``, the clock, kernels pending, whether old events were dropped, the
    profile's settings).
    """
    lines, base = trace_lines(resolved, host_pid)
    info = {
        "base_time_ns": base,
        "clock": "time.perf_counter_ns (the clock of Event.elapsed_time); ts = (ns - base_time_ns) / 1000",
        "pending_kernels": resolved.pending,
        "oldest_dropped": resolved.dropped,
        **meta,
    }
    raw = gzip.open(path, "wb") if path.endswith(".gz") else open(path, "wb")
    with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n", write_through=False) as f:
        f.write('{"traceEvents": [\n')
        sep = ""
        for line in lines:
            f.write(sep)
            f.write(line)
            sep = ",\n"
        f.write('\n],\n"schemaVersion": 1,\n"mtia_async": ' + json.dumps(info) + "}\n")
