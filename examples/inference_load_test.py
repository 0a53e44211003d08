"""A load test of the inference service: every answer checked, latency and throughput reported.

``python examples/inference_load_test.py`` starts ``examples/inference_service.py`` on
127.0.0.1 (a free port), sends ``--requests`` requests from ``--concurrency`` concurrent
aiohttp clients, half JSON and half binary (raw float32), checks every answer against
the same MLP computed with numpy on the host, checks that bad bodies get a 400, prints
requests/s and p50/p99 latency, and stops the service. ``--url URL`` tests a service
that is already running instead. Exit status 0 when every answer was right, 1 otherwise.

The benchmark (``python -m mtia_async bench service``) drives the same service for a
fixed time at 1, 16 and 256 connections; this program checks correctness under load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import numpy as np

from mtia_async.bench.service_app import BINARY, IN, OUT, forward, make_weights

SERVICE = Path(__file__).with_name("inference_service.py")


@asynccontextmanager
async def service(mode: str, timeout: float = 60.0) -> AsyncIterator[str]:
    """Run examples/inference_service.py on a free port; yield its URL; stop it after."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVICE), "--mode", mode, "--port", "0", "--stop-on-stdin-eof", "--max-seconds", "600",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()
        if "http://" not in line:
            raise RuntimeError(f"the service did not start: {line!r}")
        yield line.split()[-1]
    finally:
        proc.stdin.close()  # the service stops when its stdin closes
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


async def check_bad_requests(session: aiohttp.ClientSession, url: str) -> list[str]:
    """Malformed bodies get a 400 naming the problem."""
    problems = []
    cases = [
        (b"not json", "application/json", "not JSON"),
        (json.dumps({"inputs": [[1.0, 2.0]]}).encode(), "application/json", f"hold {IN} numbers"),
        (json.dumps({"inputs": []}).encode(), "application/json", "1..64 rows"),
        (b"\0" * 10, BINARY, "binary body"),
    ]
    for body, ctype, expected in cases:
        async with session.post(f"{url}/predict", data=body, headers={"Content-Type": ctype}) as r:
            answer = await r.json()
            if r.status != 400 or expected not in answer.get("error", ""):
                problems.append(f"{body[:20]!r}: HTTP {r.status} {answer}")
    return problems


async def load(url: str, requests: int, concurrency: int, seed: int = 0) -> int:
    """Send ``requests`` requests from ``concurrency`` clients; return the number of wrong answers."""
    weights = make_weights()
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal((int(rng.integers(1, 9)), IN)).astype(np.float32) for _ in range(requests)]
    latencies: list[float] = []
    wrong: list[str] = []
    todo = iter(range(requests))
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def client() -> None:
            for i in todo:  # the clients share one iterator: each request is sent once
                x = inputs[i]
                binary = i % 2 == 1
                if binary:
                    body, headers = x.astype("<f4").tobytes(), {"Content-Type": BINARY}
                else:
                    body, headers = json.dumps({"inputs": x.tolist()}).encode(), {"Content-Type": "application/json"}
                t0 = time.perf_counter()
                try:
                    async with session.post(f"{url}/predict", data=body, headers=headers) as r:
                        payload = await r.read()
                        status = r.status
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    wrong.append(f"request {i}: {type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    wrong.append(f"request {i}: HTTP {status} {payload[:200]!r}")
                    continue
                if binary:
                    got = np.frombuffer(payload, dtype="<f4").reshape(-1, OUT)
                else:
                    got = np.asarray(json.loads(payload)["probabilities"], dtype=np.float32)
                expected = forward(weights, x)
                if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-5):
                    wrong.append(f"request {i}: wrong answer (shape {got.shape})")

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        wrong += await check_bad_requests(session, url)
        async with session.get(f"{url}/stats") as r:
            stats = await r.json()
    ms = np.array(latencies) * 1e3
    print(f"{len(latencies)} requests in {elapsed:.2f} s from {concurrency} clients: {len(latencies) / elapsed:.0f}/s, "
          f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms; "
          f"service ({stats['mode']}): longest loop heartbeat gap {stats['heartbeat_gap_ms']:.1f} ms")
    for problem in wrong[:10]:
        print("WRONG:", problem)
    print(f"{len(wrong)} wrong" if wrong else "every answer right")
    return len(wrong)


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--mode", choices=("mtia", "to_thread"), default="mtia", help="the service to start")
    parser.add_argument("--url", help="test this running service instead of starting one")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be >= 1")
    if args.url:
        return int(await load(args.url.rstrip("/"), args.requests, args.concurrency) > 0)
    async with service(args.mode) as url:
        return int(await load(url, args.requests, args.concurrency) > 0)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
