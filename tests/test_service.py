"""The inference service (``mtia_async.bench.service_app``) and its benchmark suite: input
validation, servers that stop by themselves, and a smoke run of ``bench service`` at small
scale (every figure present, no errors; no timing is asserted)."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pytest

from _support import ROOT, run_process
from mtia_async.bench._harness import Context
from mtia_async.bench.service_app import IN, MAX_ROWS, create_app, forward, make_weights, parse_inputs
from mtia_async.bench.suites_service import CONNECTIONS, drive, run_service


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
    assert create_app("to_thread") is not None


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
        for figure in ("rps", "rps_capped", "p50", "p99", "heartbeat"):
            assert f"service.c{conns}.{figure}" in keys
    errors = next(row for row in rows if row.key == "service.errors")
    assert errors.samples == [0.0], errors.note
    for row in rows:
        assert row.samples and all(x >= 0 for x in row.samples), row.key
        if row.key.endswith(".rps"):
            assert row.samples[0] > 0 and row.baseline is not None and row.baseline.samples[0] > 0
