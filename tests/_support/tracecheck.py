"""A checker of Chrome Trace Event Format JSON that imports it the way Perfetto's trace processor does.

Perfetto UI shows import errors for what its JSON importer counts as errors; this checker
counts the same things (from Perfetto's ``json_trace_parser``, ``slice_tracker`` and
``flow_tracker``) and fails on any of them:

* an event without the fields its phase needs, an unknown phase, a non-numeric or
  negative duration, a counter without numeric values, a nameless process or thread;
* timestamps out of order on a track (the importer would re-sort the file; the profiler
  writes it sorted, so file order decides how equal timestamps bind);
* a slice that partly overlaps another on its track (Perfetto drops it), slices nested
  deeper than 512;
* a flow start (``s``) or end with ``"bp": "e"`` when its track has no open slice
  (``flow_no_enclosing_slice``), a flow id started twice (``flow_duplicate_id``), an end
  without a start (``flow_end_without_start``), and, beyond Perfetto, a start never
  ended (an arrow to nowhere).

Slices are popped as Perfetto pops them: only when a later slice starts on the track,
closed on the left and open on the right (an instant stacks on an instant at its time).
The result lists the slices and the flows as Perfetto binds them, for tests to inspect.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Slice", "TraceCheck", "check_trace", "load_trace"]

_PHASES = {"X", "i", "I", "s", "f", "C", "M"}


@dataclass
class Slice:
    """A slice (or instant: ``dur == 0``) as Perfetto imports it; times in nanoseconds."""

    pid: int
    tid: int
    name: str
    cat: str
    ts: int
    dur: int
    args: dict[str, Any]
    instant: bool
    depth: int = 0

    @property
    def end(self) -> int:
        return self.ts + self.dur


@dataclass
class TraceCheck:
    """What the import produced."""

    slices: list[Slice] = field(default_factory=list)
    flows: list[tuple[Slice, Slice, str]] = field(default_factory=list)  # (from, to, category)
    processes: dict[int, str] = field(default_factory=dict)
    threads: dict[tuple[int, int], str] = field(default_factory=dict)
    counters: dict[tuple[int, str], list[tuple[int, float]]] = field(default_factory=dict)

    def track(self, name: str, process: str | None = None) -> list[Slice]:
        """The slices of the thread track(s) called ``name`` (in process ``process``), in order."""
        keys = {k for k, v in self.threads.items() if v == name and (process is None or self.processes.get(k[0]) == process)}
        return [s for s in self.slices if (s.pid, s.tid) in keys]


def load_trace(path: str) -> dict[str, Any]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def _ns(value: Any, what: str) -> int:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{what} is not a number: {value!r}"
    return round(value * 1000)


def check_trace(doc: dict[str, Any]) -> TraceCheck:
    """Import ``doc`` as Perfetto would; raise AssertionError on anything it would warn about."""
    assert isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list), "no traceEvents list"
    result = TraceCheck()
    stacks: dict[tuple[int, int], list[Slice]] = {}
    last_ts: dict[tuple[int, int], int] = {}
    flow_start: dict[int, Slice] = {}
    flow_cat: dict[int, str] = {}
    ended: set[int] = set()
    used_pids: set[int] = set()
    used_threads: set[tuple[int, int]] = set()
    previous_ts = None
    for n, e in enumerate(doc["traceEvents"]):
        where = f"event #{n} {e!r:.200}"
        ph = e.get("ph")
        assert ph in _PHASES, f"{where}: unknown phase"
        assert isinstance(e.get("pid"), int), f"{where}: no integer pid"
        pid = e["pid"]
        if ph == "M":
            assert e.get("name") in ("process_name", "thread_name", "process_sort_index", "thread_sort_index"), where
            args = e.get("args")
            assert isinstance(args, dict), f"{where}: metadata without args"
            if e["name"] == "process_name":
                assert isinstance(args.get("name"), str) and args["name"], f"{where}: empty name"
                result.processes[pid] = args["name"]
            elif e["name"] == "thread_name":
                assert isinstance(e.get("tid"), int) and e["tid"] > 0, f"{where}: no tid"
                assert isinstance(args.get("name"), str) and args["name"], f"{where}: empty name"
                result.threads[(pid, e["tid"])] = args["name"]
            else:
                assert isinstance(args.get("sort_index"), int), f"{where}: sort_index"
            continue
        ts = _ns(e.get("ts"), f"{where}: ts")
        assert previous_ts is None or ts >= previous_ts, f"{where}: timestamps not sorted"
        previous_ts = ts
        used_pids.add(pid)
        if ph == "C":
            args = e.get("args")
            assert isinstance(e.get("name"), str) and isinstance(args, dict) and args, f"{where}: counter"
            for key, value in args.items():
                assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {key} not numeric"
                result.counters.setdefault((pid, f"{e['name']} {key}"), []).append((ts, float(value)))
            continue
        assert isinstance(e.get("tid"), int) and e["tid"] > 0, f"{where}: no positive integer tid"
        track = (pid, e["tid"])
        used_threads.add(track)
        assert ts >= last_ts.get(track, ts), f"{where}: not monotonic on its track"
        last_ts[track] = ts
        stack = stacks.setdefault(track, [])
        if ph in ("X", "i", "I"):
            assert isinstance(e.get("name"), str) and e["name"], f"{where}: no name"
            if ph == "X":
                dur = _ns(e.get("dur"), f"{where}: dur")
                assert dur >= 0, f"{where}: negative duration"
            else:
                assert e.get("s", "t") == "t", f"{where}: only thread-scoped instants are written"
                dur = 0
            new = Slice(pid, e["tid"], e["name"], e.get("cat", ""), ts, dur, e.get("args") or {}, ph != "X")
            while stack:  # Perfetto's MaybeCloseStack
                top = stack[-1]
                if top.end < ts or (top.end == ts and not (top.dur == 0 and dur == 0)):
                    stack.pop()
                    continue
                assert not (ts < top.end < ts + dur), f"{where}: overlaps {top} without nesting (Perfetto drops it)"
                break
            new.depth = len(stack)
            assert new.depth < 512, f"{where}: nested too deep"
            stack.append(new)
            result.slices.append(new)
        else:  # flows
            assert isinstance(e.get("id"), int), f"{where}: flow without integer id"
            fid = e["id"]
            if ph == "s":
                assert stack, f"{where}: flow start with no enclosing slice"
                assert fid not in flow_start, f"{where}: flow id {fid} started twice"
                flow_start[fid] = stack[-1]
                flow_cat[fid] = e.get("cat", "")
            else:
                assert e.get("bp") == "e", f"{where}: flow ends bind to their enclosing slice here"
                assert stack, f"{where}: flow end with no enclosing slice"
                assert fid in flow_start, f"{where}: flow end without a start"
                assert fid not in ended, f"{where}: flow {fid} ended twice"
                assert e.get("cat", "") == flow_cat[fid], f"{where}: flow end's category differs from its start's"
                ended.add(fid)
                result.flows.append((flow_start[fid], stack[-1], flow_cat[fid]))
    unmatched = set(flow_start) - ended
    assert not unmatched, f"flows started but never ended: {sorted(unmatched)[:10]}"
    nameless = used_pids - set(result.processes)
    assert not nameless, f"processes without process_name: {sorted(nameless)}"
    unnamed = used_threads - set(result.threads)
    assert not unnamed, f"threads without thread_name: {sorted(unnamed)}"
    return result
