"""The inference service (``mtia_async.bench.service_app``) and its benchmark suite: input
validation, the admission gate, the server's gc policy, servers that stop by themselves,
and a smoke run of ``bench service`` at small scale (every figure present, no errors; no
timing is asserted)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from _support import ROOT, run_process
from mtia_async.bench._harness import Context
from mtia_async.bench.service_app import IN, MAX_ROWS, _Gate, create_app, forward, make_weights, parse_inputs
from mtia_async.bench.suites_service import CONNECTIONS, drive, run_service, serve


def test_inputs_parse_from_json_and_binary() -> None:
    x = np.arange(2 * IN, dtype=np.float32).reshape(2, IN) / 100
    from_json = parse_inputs(json.dumps({"inputs": x.tolist()}).encode())
    from_binary = parse_inputs(x.astype("<f4").tobytes(), binary=True)
    assert from_json.dtype == from_binary.dtype == np.float32
    assert np.array_equal(from_json, x) and np.array_equal(from_binary, x)
    y = forward(make_weights(), x)
    assert y.shape == (2, 16) and np.allclose(y.sum(axis=1), 1.0, atol=1e-6)
    assert np.array_equal(forward(make_weights(0), x), y)  # the seed fixes the model


@pytest.mark.parametrize(
    ("body", "binary", "match"),
    [
        (b"{", False, "the body is not JSON"),
        (b"[1, 2]", False, r"expected \{\"inputs\""),
        (json.dumps({"inputs": []}).encode(), False, f"1..{MAX_ROWS} rows, got 0 rows"),
        (json.dumps({"inputs": [[0.0] * IN] * (MAX_ROWS + 1)}).encode(), False, f"got {MAX_ROWS + 1} rows"),
        (json.dumps({"inputs": [[1.0, 2.0]]}).encode(), False, f"must hold {IN} numbers"),
        (json.dumps({"inputs": [["a"] * IN]}).encode(), False, "list of numbers"),
        (b"\0" * 10, True, "got 10 bytes"),
        (b"", True, "got 0 bytes"),
    ],
)
def test_bad_inputs_are_refused_with_the_reason(body: bytes, binary: bool, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_inputs(body, binary)


def test_create_app_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="mode must be 'mtia' or 'to_thread', got 'gpu'"):
        create_app("gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="streams must be an int in 1..256, got 0"):
        create_app("mtia", streams=0)
    for bad in (0, 4097, True, 2.0):
        with pytest.raises(ValueError, match=f"max_active must be None or an int in 1..4096, got {bad!r}"):
            create_app("mtia", max_active=bad)  # type: ignore[arg-type]
    assert create_app("to_thread") is not None
    assert isinstance(create_app("to_thread", max_active=3), _Gate)
    assert not isinstance(create_app("to_thread", max_active=None), _Gate)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition did not come true")


async def test_the_gate_admits_at_most_its_limit_in_arrival_order() -> None:
    active, peak, admitted = 0, 0, []
    release = {i: asyncio.Event() for i in range(6)}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal active, peak
        if scope["type"] != "http" or scope["path"] != "/predict":
            await send(f"{scope['type']} {scope['path']}")
            return
        active += 1
        peak = max(peak, active)
        admitted.append(scope["i"])
        try:
            await release[scope["i"]].wait()
        finally:
            active -= 1

    gate = _Gate(app, "/predict", 2)
    tasks = []
    for i in range(6):
        tasks.append(asyncio.create_task(gate({"type": "http", "path": "/predict", "i": i}, None, None)))
        await asyncio.sleep(0)  # they arrive in this order
    await _until(lambda: admitted == [0, 1])
    sent: list[str] = []

    async def send(message: str) -> None:
        sent.append(message)

    # other paths and scopes pass while the gate is full
    await asyncio.wait_for(gate({"type": "http", "path": "/stats"}, None, send), 5)
    await asyncio.wait_for(gate({"type": "websocket", "path": "/predict"}, None, send), 5)
    assert sent == ["http /stats", "websocket /predict"]
    tasks[4].cancel()  # a request given up while it waits takes no slot
    release[1].set()
    await _until(lambda: admitted == [0, 1, 2])
    release[0].set()
    await _until(lambda: admitted == [0, 1, 2, 3])
    for i in (2, 3):
        release[i].set()
    await _until(lambda: admitted == [0, 1, 2, 3, 5])
    release[5].set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert peak == 2 and active == 0 and tasks[4].cancelled()


async def test_a_request_failing_inside_the_gate_gives_its_slot_back() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    gate = _Gate(app, "/predict", 1)
    for _ in range(3):
        with pytest.raises(RuntimeError, match="boom"):
            await asyncio.wait_for(gate({"type": "http", "path": "/predict"}, None, None), 5)


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as r:
        result: dict[str, Any] = json.loads(r.read())
    return result


@pytest.mark.timeout(120)
def test_a_server_freezes_the_collector_after_start_up_unless_told_not_to() -> None:
    with serve("to_thread") as url:
        assert _get(f"{url}/stats")["gc_frozen"] > 1000  # the modules, the app, the weights
    with serve("to_thread", "--gc", "default", "--max-active", "0") as url:
        stats = _get(f"{url}/stats")
        assert stats["gc_frozen"] == 0 and stats["mode"] == "to_thread"


def test_the_server_refuses_a_bad_max_active() -> None:
    for bad in ("-1", "4097"):
        result = run_process([sys.executable, "-m", "mtia_async.bench.service_app", "--max-active", bad], timeout=60,
                             env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")))
        assert result.returncode == 2
        assert f"--max-active must be in 0..4096 (0: no limit), got {bad}" in result.stderr


async def test_drive_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="connections >= 1 and seconds > 0"):
        await drive("http://127.0.0.1:9", 0, 1.0, b"")
    with pytest.raises(ValueError, match="connections >= 1 and seconds > 0"):
        await drive("http://127.0.0.1:9", 1, 0.0, b"")


def test_a_server_stops_by_itself() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTIA_ASYNC_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.monotonic()
    result = run_process([sys.executable, "-m", "mtia_async.bench.service_app", "--port", "0", "--max-seconds", "1"],
                         timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("serving mtia on http://127.0.0.1:")
    assert time.monotonic() - t0 < 30


@pytest.mark.timeout(240)
def test_the_service_benchmark_runs_at_small_scale() -> None:
    rows = run_service(Context(quick=True, reps=1, warmup=0))
    keys = {row.key for row in rows}
    for conns in CONNECTIONS:
        for figure in ("rps", "rps_capped", "p50", "p99", "heartbeat", "rps_ungated", "heartbeat_ungated"):
            assert f"service.c{conns}.{figure}" in keys
    errors = next(row for row in rows if row.key == "service.errors")
    assert errors.samples == [0.0], errors.note
    for row in rows:
        assert row.samples and all(x >= 0 for x in row.samples), row.key
        if row.key.endswith(".rps"):
            assert row.samples[0] > 0 and row.baseline is not None and row.baseline.samples[0] > 0
