"""Graphs, the profiler and the stream sanitizer on devices held by Dask workers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mtia_async.sync as mtia
from mtia_async._core.runtime import state
from mtia_async.testing import fresh_runtime

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("remote")]  # remote: tests/conftest.py




def _graph_run(seed: int) -> list[np.ndarray]:
    """Capture x*2+1 and a randn on device 1, replay twice (changing x in between)."""
    mtia.manual_seed(seed)
    with mtia.device(1):
        s = mtia.Stream()
        x = mtia.asarray(np.arange(4.0, dtype=np.float32))
        mtia.synchronize()
        g = mtia.MTIAGraph()
        with mtia.graph(g, stream=s):
            y = x * 2 + 1
            r = mtia.randn(5)
        results = []
        for value in (None, 10.0):
            if value is not None:
                x[...] = value
                mtia.synchronize()
            with mtia.stream(s):  # replay() runs on the current stream: read after it on the same one
                g.replay()
                results += [y.numpy(), r.numpy()]
        return results


def test_a_graph_replays_on_a_remote_device_as_on_a_local_one(remote: Any) -> None:
    got = _graph_run(7)
    np.testing.assert_array_equal(got[0], np.arange(4.0) * 2 + 1)
    np.testing.assert_array_equal(got[2], np.full(4, 21.0))  # inputs are read at replay time
    assert not np.array_equal(got[1], got[3])  # each replay draws new numbers
    with fresh_runtime(device_count=2, workers=2, device_memory="1GiB"):
        local = _graph_run(7)
    for a, b in zip(got, local):
        np.testing.assert_array_equal(a, b)


def test_the_profiler_merges_the_workers_timelines_timed_on_the_workers(remote: Any, tmp_path: Path) -> None:
    from mtia_async.profiler import profile

    addresses = {d: state.runtime.devices[d].link.address for d in (0, 1)}  # type: ignore[union-attr, attr-defined]
    with profile() as prof:
        for d in (0, 1):
            s = mtia.Stream(d)
            s.launch(time.sleep, 0.05)
            a = mtia.ones(1000, device=d)
            s.wait_stream(mtia.current_stream(d))  # the fill first (the stream sanitizer's CI pass caught this race)
            with mtia.stream(s):
                np.exp(a).numpy()
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    events = json.loads(path.read_text())["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    for d in (0, 1):  # one trace: each device's track holds its worker's kernels, on its worker's threads
        kernels = [e for e in events if e.get("ph") == "X" and names.get(e["pid"]) == f"mtia:{d}"]
        sleeps = [e for e in kernels if e["name"] == "sleep"]
        assert sleeps and all(45_000 <= e["dur"] < 5_000_000 for e in sleeps)  # microseconds, on the worker
        assert {"sleep", "exp"} <= {e["name"] for e in kernels}
        threads = [e["args"]["name"] for e in events
                   if e.get("name") == "thread_name" and names.get(e["pid"]) == f"mtia:{d}"]  # fmt: skip
        assert any(t.endswith(f"@ {addresses[d]}") for t in threads), threads  # its worker's thread
        assert not any(t.endswith(f"@ {addresses[1 - d]}") for t in threads), threads  # not the other's
    assert any(row.name == "sleep" and row.count == 2 for row in prof.key_averages())


def test_the_sanitizer_checks_launches_on_remote_streams(remote: Any) -> None:
    from mtia_async import sanitizer

    s1, s2 = mtia.Stream(0), mtia.Stream(0)
    a = mtia.zeros(10, device=0)
    mtia.synchronize(0)
    sanitizer.enable()
    try:
        with mtia.stream(s1):
            a += 1
        with mtia.stream(s2), pytest.raises(mtia.UnsynchronizedAccessError, match="write-after-write"):
            a += 1
        s2.wait_stream(s1)
        with mtia.stream(s2):
            a += 1
            assert a.numpy().tolist() == [2.0] * 10
    finally:
        sanitizer.disable()
