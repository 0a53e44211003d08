"""Snapshots read by PyTorch's own tools: ``torch.cuda._memory_viz`` on a snapshot holding
every trace action (alloc, free_requested, free_completed, segment_alloc, segment_free,
oom, snapshot), in torch's schema (``device_free`` on the OOM entry, ``allocator_settings``).

torch runs in a fresh interpreter (its import is heavy and process-wide); the test is
skipped only where torch is not installed (the ``test`` extra installs the CPU build).
"""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mtia_async.sync as mtia
from _support import MiB, run_python
from mtia_async.testing import fresh_runtime

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

ALL_ACTIONS = {"alloc", "free_requested", "free_completed", "segment_alloc", "segment_free", "oom", "snapshot"}


def _snapshot_with_every_action() -> dict[str, Any]:
    """A 64 MiB device: small and large segments, a pending free, an OOM freeing the cache."""
    with fresh_runtime(device_count=1, device_memory="64MiB", workers=2):
        mtia.record_memory_history("all", max_entries=0)
        side = mtia.Stream()
        small = mtia.zeros(1000, dtype=np.float32)  # segment_alloc (2 MiB small segment), alloc
        big = mtia.empty(3 * MiB, dtype=np.uint8)  # a large (20 MiB) segment
        big.record_stream(side)  # its free waits for side's work: free_requested, then free_completed
        side.launch(lambda: None)
        del big
        side.synchronize()
        keep = mtia.empty(MiB // 2, dtype=np.uint8)
        with pytest.raises(mtia.OutOfMemoryError):
            mtia.empty(63 * MiB, dtype=np.uint8)  # oom (after freeing the cache: segment_free)
        mtia.synchronize()
        snap = mtia.snapshot()  # the trace ends with a "snapshot" entry
        del small, keep
    return snap


def test_the_snapshot_follows_torchs_schema() -> None:
    snap = _snapshot_with_every_action()
    assert set(snap) == {"segments", "device_traces", "allocator_settings"}
    trace = snap["device_traces"][0]
    assert {e["action"] for e in trace} == ALL_ACTIONS
    for entry in trace:
        key = "device_free" if entry["action"] == "oom" else "addr"
        assert set(entry) == {"action", key, "size", "stream", "time_us", "frames"}, entry
    (oom,) = [e for e in trace if e["action"] == "oom"]
    assert oom["size"] == 63 * MiB
    assert oom["device_free"] == 62 * MiB  # free bytes of the device, as torch stores them
    settings = snap["allocator_settings"]
    assert settings["max_split_size"] == -1 and settings["expandable_segments"] is False
    assert settings["PYTORCH_CUDA_ALLOC_CONF"] == ""
    assert list(settings["roundup_power2_divisions"]) == [str(1 << i) for i in range(16)]
    json.dumps(snap)  # plain values only (segment_pool_id is a tuple, as in torch)


VIZ_SCRIPT = r"""
import json, pickle, sys
from torch.cuda import _memory_viz as viz

with open(sys.argv[1], "rb") as f:
    snap = pickle.load(f)
flame_inputs = []

def no_network(lines, flamegraph_script=None):  # format_flamegraph downloads flamegraph.pl
    flame_inputs.append(lines)
    return "<svg/>"

out = {
    "segsum": viz.segsum(snap),
    "trace": viz.trace(snap),
    "segments": viz.segments(snap, format_flamegraph=no_network),
    "memory": viz.memory(snap, format_flamegraph=no_network),
    "compare": viz.compare(snap["segments"], [], format_flamegraph=no_network),  # takes segment lists
    "trace_plot": viz.trace_plot(snap),
    "segment_plot": viz.segment_plot(snap),
    "filtered": [e["action"] for e in viz.filter_alloc_free_pairs(pickle.loads(pickle.dumps(snap)))["device_traces"][0]],
    "flame_inputs": flame_inputs,
}
with open(sys.argv[2], "w") as f:
    json.dump(out, f)
"""


@needs_torch
def test_torchs_memory_viz_reads_the_snapshot(tmp_path: Path) -> None:
    snap = _snapshot_with_every_action()
    path = tmp_path / "snap.pickle"
    with open(path, "wb") as f:
        pickle.dump(snap, f)
    script = tmp_path / "viz.py"
    script.write_text(VIZ_SCRIPT)
    found = tmp_path / "out.json"
    result = run_python(
        f"import runpy, sys\nsys.argv = ['viz', {str(path)!r}, {str(found)!r}]\nrunpy.run_path({str(script)!r})",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(found.read_text())
    oom = next(e for e in snap["device_traces"][0] if e["action"] == "oom")
    free_mib = oom["device_free"] / MiB
    assert free_mib == 62
    # the line torch's trace printed as a KeyError before (the free bytes were under "addr")
    assert f"raise OutOfMemoryError # 63.0MiB requested, {free_mib:.1f}MiB free in CUDA" in out["trace"], out["trace"]
    assert "cudaMalloc(" in out["trace"] and "cudaFree(" in out["trace"] and "del " in out["trace"]
    assert "# free completed for " in out["trace"]
    assert f"segments: {len(snap['segments'])}" in out["segsum"]
    for kind in ("segments", "memory", "compare"):
        assert out[kind] == "<svg/>"
    segments_lines, memory_lines, compare_lines = out["flame_inputs"]
    assert "active_allocated" in segments_lines and "stream_0;seg_" in segments_lines
    assert "active_allocated" in memory_lines
    assert compare_lines.startswith("only_before;")
    for kind in ("trace_plot", "segment_plot"):
        assert "cdn.jsdelivr.net" in out[kind]  # the HTML viewers load their script from a CDN
        assert "snapshot.pickle" in out[kind]
    assert set(out["filtered"]) <= ALL_ACTIONS and "oom" in out["filtered"]


@needs_torch
def test_torchs_memory_viz_command_line_prints_the_trace(tmp_path: Path) -> None:
    """The issue's reproduction: ``python -m torch.cuda._memory_viz trace snap.pickle``."""
    path = tmp_path / "snap.pickle"
    with fresh_runtime(device_count=1, device_memory="8MiB", workers=2):
        mtia.record_memory_history("all")
        with pytest.raises(mtia.OutOfMemoryError):
            mtia.empty(9 * MiB, dtype=np.uint8)
        mtia.dump_snapshot(path)
    for command in ("trace", "stats"):
        result = run_python(
            f"import runpy, sys\nsys.argv = ['_memory_viz', {command!r}, {str(path)!r}]\n"
            "runpy.run_module('torch.cuda._memory_viz', run_name='__main__', alter_sys=True)",
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        if command == "trace":
            assert "raise OutOfMemoryError # 9.0MiB requested, 8.0MiB free in CUDA" in result.stdout, result.stdout
        else:
            assert "segments: 0" in result.stdout and "total_reserved: 0.0B" in result.stdout, result.stdout
