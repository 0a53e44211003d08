"""A checker of Chrome Trace Event Format JSON that imports it the way Perfetto's trace processor does.

Perfetto's Python package (``perfetto`` on PyPI) cannot run here: its ``TraceProcessor``
downloads the ``trace_processor_shell`` binary at run time, and this sandbox has no
network. So this checker applies the rules of Perfetto's JSON importer itself (read in
``src/trace_processor/importers/json/json_trace_tokenizer.cc`` and
``json_trace_parser_impl.cc``, ``importers/common/slice_tracker.cc`` and
``flow_tracker.cc``, ``sorter/trace_sorter.h``; the stat each rule raises in
``storage/stats.h`` is named), and fails on any of them:

* an event the tokenizer cannot take: a top-level array value in an event
  (``"unsupported JSON dictionary with array"``, which aborts the whole import), an
  event other than ``M`` without a ``ts`` (``json_tokenizer_failure``), an unknown phase,
  a counter without numeric values (``json_parser_failure``), a pid or tid outside
  uint32 (``CoerceToUint32`` makes it 0: tracks would merge);
* a negative or non-numeric duration; a nameless process or thread (Perfetto would show
  a bare pid or tid);
* timestamps out of order, in the file and per track (the profiler writes the file
  sorted; Perfetto would re-sort it, but equal timestamps bind flows by order);
* a slice that partly overlaps another on its track
  (``slice_drop_overlapping_complete_event``: Perfetto drops it), slices nested deeper
  than Perfetto's limit of 512;
* a flow start (``s``) or end with ``"bp": "e"`` when its track has no open slice
  (``flow_no_enclosing_slice``), a flow id started twice (``flow_duplicate_id``), an end
  without a start (``flow_end_without_start``), a non-integer id (``flow_invalid_id``),
  and, beyond Perfetto, a start never ended (an arrow to nowhere) or an end whose
  category differs from its start's (v1 flows are matched by id, category and name).

Events are imported in the order Perfetto's sorter hands them to the parser: by
timestamp, and at equal timestamps, once the trace has any ``X`` event (its "slow
sorting"), the ``X`` events first, longest first, then everything else (instants, flow
events, counters), ties in file order. Timestamps are microseconds rounded to the
nanosecond (``llround(ts * 1000)``). Slices are popped as Perfetto pops them: only when
a later slice starts on the track, closed on the left and open on the right (an instant
stacks on an instant at its time). The result lists the slices and the flows as
Perfetto binds them, for tests to inspect.
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


_UINT32 = 1 << 32


def _ns(value: Any, what: str) -> int:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{what} is not a number: {value!r}"
    return int(value * 1000 + (0.5 if value >= 0 else -0.5))  # llround(value * 1000)


def check_trace(doc: dict[str, Any]) -> TraceCheck:
    """Import ``doc`` as Perfetto would; raise AssertionError on anything it would warn about."""
    assert isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list), "no traceEvents list"
    result = TraceCheck()
    used_pids: set[int] = set()
    used_threads: set[tuple[int, int]] = set()
    last_ts: dict[tuple[int, int], int] = {}
    previous_ts = None
    timed: list[tuple[int, int, int, dict[str, Any], str]] = []  # (ts, sort key, file index, event, where)
    any_x = False
    for n, e in enumerate(doc["traceEvents"]):
        where = f"event #{n} {e!r:.200}"
        assert isinstance(e, dict), f"{where}: not an object"
        arrays = [k for k, v in e.items() if isinstance(v, list)]
        assert not arrays, f"{where}: top-level array value {arrays} (Perfetto's tokenizer aborts the import)"
        ph = e.get("ph")
        assert ph in _PHASES, f"{where}: unknown phase"
        assert isinstance(e.get("pid"), int) and 0 <= e["pid"] < _UINT32, f"{where}: no uint32 pid"
        pid = e["pid"]
        if "tid" in e:
            assert isinstance(e["tid"], int) and 0 < e["tid"] < _UINT32, f"{where}: tid is not a positive uint32"
        if ph == "M":
            assert e.get("name") in ("process_name", "thread_name", "process_sort_index", "thread_sort_index"), where
            args = e.get("args")
            assert isinstance(args, dict), f"{where}: metadata without args"
            if e["name"] == "process_name":
                assert isinstance(args.get("name"), str) and args["name"], f"{where}: empty name"
                result.processes[pid] = args["name"]
            elif e["name"] == "thread_name":
                assert isinstance(e.get("tid"), int), f"{where}: no tid"
                assert isinstance(args.get("name"), str) and args["name"], f"{where}: empty name"
                result.threads[(pid, e["tid"])] = args["name"]
            else:
                assert isinstance(args.get("sort_index"), int), f"{where}: sort_index"
            continue
        assert "ts" in e, f"{where}: no ts (json_tokenizer_failure)"
        ts = _ns(e.get("ts"), f"{where}: ts")
        assert previous_ts is None or ts >= previous_ts, f"{where}: timestamps not sorted"
        previous_ts = ts
        used_pids.add(pid)
        key = 0
        if ph == "C":
            args = e.get("args")
            assert isinstance(e.get("name"), str) and isinstance(args, dict) and args, f"{where}: counter"
            for k, value in args.items():
                assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {k} not numeric"
        else:
            assert isinstance(e.get("tid"), int), f"{where}: no tid"
            track = (pid, e["tid"])
            used_threads.add(track)
            assert ts >= last_ts.get(track, ts), f"{where}: not monotonic on its track"
            last_ts[track] = ts
            if ph == "X":
                dur = _ns(e.get("dur"), f"{where}: dur")
                assert dur >= 0, f"{where}: negative duration"
                key = -dur
                any_x = True
            elif ph in ("i", "I"):
                assert e.get("s", "t") == "t", f"{where}: only thread-scoped instants are written"
            else:
                assert isinstance(e.get("id"), int), f"{where}: flow without integer id (flow_invalid_id)"
        timed.append((ts, key, n, e, where))
    # Perfetto's sorter: by timestamp; at equal timestamps (slow sorting, once there is an X
    # event) X events first, longest first, then the rest; ties in file order.
    timed.sort(key=(lambda t: (t[0], t[1], t[2])) if any_x else (lambda t: (t[0], t[2])))
    stacks: dict[tuple[int, int], list[Slice]] = {}
    flow_start: dict[int, Slice] = {}
    flow_cat: dict[int, str] = {}
    ended: set[int] = set()
    for ts, _, _, e, where in timed:
        ph = e["ph"]
        pid = e["pid"]
        if ph == "C":
            for k, value in e["args"].items():
                result.counters.setdefault((pid, f"{e['name']} {k}"), []).append((ts, float(value)))
            continue
        stack = stacks.setdefault((pid, e["tid"]), [])
        if ph in ("X", "i", "I"):
            assert isinstance(e.get("name"), str) and e["name"], f"{where}: no name"
            dur = _ns(e["dur"], where) if ph == "X" else 0
            new = Slice(pid, e["tid"], e["name"], e.get("cat", ""), ts, dur, e.get("args") or {}, ph != "X")
            while stack:  # Perfetto's MaybeCloseStack
                top = stack[-1]
                if top.end < ts or (top.end == ts and not (top.dur == 0 and dur == 0)):
                    stack.pop()
                    continue
                assert not (ts < top.end < ts + dur), (
                    f"{where}: overlaps {top} without nesting (slice_drop_overlapping_complete_event)")
                break
            new.depth = len(stack)
            assert new.depth < 512, f"{where}: nested too deep"
            stack.append(new)
            result.slices.append(new)
        else:  # flows
            fid = e["id"]
            if ph == "s":
                assert stack, f"{where}: flow start with no enclosing slice (flow_no_enclosing_slice)"
                assert fid not in flow_start, f"{where}: flow id {fid} started twice (flow_duplicate_id)"
                flow_start[fid] = stack[-1]
                flow_cat[fid] = e.get("cat", "")
            else:
                assert e.get("bp") == "e", f"{where}: flow ends bind to their enclosing slice here"
                assert stack, f"{where}: flow end with no enclosing slice (flow_no_enclosing_slice)"
                assert fid in flow_start, f"{where}: flow end without a start (flow_end_without_start)"
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
