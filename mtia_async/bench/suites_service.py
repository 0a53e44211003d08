"""Suite ``service``: the inference service (``service_app``) under HTTP load.

Four servers run in their own processes on 127.0.0.1 (a free port each): the service
computing on a pool of mtia_async streams; the same service computing with
``asyncio.to_thread``; that again with numpy's BLAS capped to one thread, as the
runtime caps it for its workers (informational: it shows how much of the difference the
cap is); and the mtia service without its admission gate and gc policy (informational:
what they buy and cost). The first three run with the same server settings (the gate of
``service_app.MAX_ACTIVE`` requests, ``gc.freeze()`` after start-up). An aiohttp client
in this process drives each at 1, 16 and 256 concurrent keep-alive connections for a
bounded time (1 s a run; 0.25 s under ``--quick``), the servers taking turns run by run;
requests carry 4 input rows as raw float32. Figures per connection count: requests/s,
p50 and p99 latency (ms, client side, per request), the longest gap of a 1 ms heartbeat
task on the server's event loop during the run, and errors (non-200 answers, connection
errors, timeouts: must be 0).

Goals (issue 16): >= 1.2x the to_thread service's throughput at 16 and 256 connections,
a p99 no higher than its p99, heartbeat gap <= 20 ms, no errors.

The client shares the machine with the server: on 2 cores the figures measure the
pair, the same for both services. ``wrk`` gives a second opinion (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Literal

import numpy as np

from ._harness import Baseline, Context, Goal, Row

__all__ = ["LoadResult", "drive", "run_service", "serve"]

CONNECTIONS = (1, 16, 256)
ROWS = 4  # input rows per request
_SPEEDUP = Goal(">= 1.2x to_thread", "ratio", ">=", 1.2)
_P99 = Goal("<= 1.0x to_thread", "ratio", "<=", 1.0)
_HEARTBEAT = Goal("<= 20 ms", "value", "<=", 20.0)
_NO_ERRORS = Goal("= 0", "value", "<=", 0.0)


@dataclass
class LoadResult:
    """What one load run saw: latencies (ms) of the answered requests, and errors."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    heartbeat_gap_ms: float = 0.0

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile latency in ms (0 when nothing was answered)."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0


def request_body(rows: int = ROWS, seed: int = 1) -> bytes:
    """A binary ``/predict`` body of ``rows`` random input rows (raw float32)."""
    from .service_app import IN

    return np.random.default_rng(seed).standard_normal((rows, IN)).astype("<f4").tobytes()


async def drive(url: str, connections: int, seconds: float, body: bytes, timeout: float = 30.0) -> LoadResult:
    """POST ``body`` to ``url/predict`` from ``connections`` clients in a loop for ``seconds``.

    Each client sends its next request when the previous one is answered (a closed
    loop, as wrk does). ``/stats`` is read before (to reset the heartbeat) and after.

    Raises:
        ValueError: ``connections`` < 1 or ``seconds`` <= 0.
    """
    if connections < 1 or not seconds > 0:
        raise ValueError(f"need connections >= 1 and seconds > 0, got {connections!r}, {seconds!r}")
    import aiohttp

    headers = {"Content-Type": "application/octet-stream"}
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.get(f"{url}/stats") as r:
            await r.read()
        result = LoadResult(seconds)
        lat = result.latencies_ms
        predict = f"{url}/predict"
        clock = time.perf_counter_ns
        deadline = clock() + int(seconds * 1e9)

        async def client() -> None:
            while clock() < deadline:
                t0 = clock()
                try:
                    async with session.post(predict, data=body, headers=headers) as r:
                        await r.read()
                        ok = r.status == 200
                        why = f"HTTP {r.status}"
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    ok, why = False, f"{type(exc).__name__}: {exc}"
                if ok:
                    lat.append((clock() - t0) / 1e6)
                else:
                    result.errors += 1
                    result.first_error = result.first_error or why

        t_start = clock()
        await asyncio.gather(*(client() for _ in range(connections)))
        result.seconds = (clock() - t_start) / 1e9  # the last requests end after the deadline
        async with session.get(f"{url}/stats") as r:
            result.heartbeat_gap_ms = float((await r.json())["heartbeat_gap_ms"])
    return result


@contextmanager
def serve(mode: str, *options: str, startup_timeout: float = 60.0, max_seconds: float = 1800.0) -> Iterator[str]:
    """Run the service (``python -m mtia_async.bench.service_app``) in a child process.

    Yields its base URL (``http://127.0.0.1:PORT``, a free port). The child stops when
    its standard input closes (at the end of the block, or if this process dies) and
    after ``max_seconds`` in any case; it is killed if it has not stopped 10 s later.

    Raises:
        RuntimeError: the server did not print its URL within ``startup_timeout`` seconds.
    """
    cmd = [sys.executable, "-m", "mtia_async.bench.service_app", "--mode", mode, "--port", "0",
           "--stop-on-stdin-eof", "--max-seconds", str(max_seconds), *options]
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty server never blocks on it
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            yield _read_url(proc, startup_timeout, errors)
        finally:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            proc.stdout.close()


def _read_url(proc: subprocess.Popen[str], timeout: float, errors: IO[bytes]) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(timeout)
    line = lines[0] if lines else ""
    if "http://" not in line:
        proc.kill()
        proc.wait(timeout=10)
        errors.seek(0)
        raise RuntimeError(f"the service did not start within {timeout} s: {line!r} "
                           f"{errors.read()[-2000:].decode(errors='replace')}")
    return line.strip().rsplit(" ", 1)[-1]


#: The servers: name -> ``service_app`` options. ``to_thread`` is the baseline of the goals;
#: ``capped`` is the same with numpy's BLAS capped to one thread (what the runtime does for
#: its workers), to show how much of the difference that cap is; ``ungated`` is the mtia
#: service without the admission gate and the gc policy the other three run with.
SERVERS = {"mtia": ("mtia",), "to_thread": ("to_thread",), "capped": ("to_thread", "--blas-threads", "1"),
           "ungated": ("mtia", "--max-active", "0", "--gc", "default")}


def run_service(ctx: Context) -> list[Row]:
    """The service under 1, 16 and 256 connections: mtia_async's streams vs to_thread."""
    return asyncio.run(_main(ctx))


async def _main(ctx: Context) -> list[Row]:
    seconds = 0.25 if ctx.quick else 1.0
    body = request_body()
    results: dict[tuple[str, int], list[LoadResult]] = {}
    with contextlib.ExitStack() as stack:
        urls = {name: stack.enter_context(serve(*options)) for name, options in SERVERS.items()}

        def variant(name: str, conns: int) -> Callable[[], Awaitable[float]]:
            async def run() -> float:
                res = await drive(urls[name], conns, seconds, body)
                results.setdefault((name, conns), []).append(res)
                return res.rps

            return run

        for conns in CONNECTIONS:
            await ctx.measure_async(f"service {conns} conn", {name: variant(name, conns) for name in SERVERS})
    return _rows(results, ctx.reps, seconds)


def _rows(results: dict[tuple[str, int], list[LoadResult]], reps: int, seconds: float) -> list[Row]:
    from .service_app import MAX_ACTIVE

    suite, rows = "service", []
    errors = sum(r.errors for runs in results.values() for r in runs)
    first_error = next((r.first_error for runs in results.values() for r in runs if r.first_error), "")
    for conns in CONNECTIONS:
        ours = results[("mtia", conns)][-reps:]
        theirs = results[("to_thread", conns)][-reps:]
        capped = results[("capped", conns)][-reps:]
        ungated = results[("ungated", conns)][-reps:]
        at = f"{conns} connection{'s' * (conns > 1)}"

        def figure(key: str, name: str, unit: str, get: Callable[[LoadResult], float], goal: Goal | None,
                   better: Literal["lower", "higher"] = "lower", note: str = "",
                   base: list[LoadResult] = theirs, base_name: str = "to_thread") -> Row:
            return Row(f"service.c{conns}.{key}", suite, f"{name} at {at}", unit, better,
                       samples=[get(r) for r in ours], baseline=Baseline(base_name, [get(r) for r in base]),
                       goal=goal, note=note)

        def rps(r: LoadResult) -> float:
            return r.rps

        def p50(r: LoadResult) -> float:
            return r.percentile(50)

        def p99(r: LoadResult) -> float:
            return r.percentile(99)

        def gap(r: LoadResult) -> float:
            return r.heartbeat_gap_ms

        rows += [
            figure("rps", "requests/s", "req/s", rps, _SPEEDUP if conns > 1 else None, "higher",
                   note=f"{seconds:g} s runs, {ROWS} rows a request (binary); every server but 'ungated' "
                   f"admits {MAX_ACTIVE} requests at once and freezes gc after start-up; to_thread's numpy keeps "
                   "its default BLAS threads" if conns == 1 else ""),
            figure("rps_capped", "requests/s vs to_thread with BLAS capped", "req/s", rps, None, "higher",
                   base=capped, base_name="to_thread, 1 BLAS thread"),
            figure("p50", "p50 latency", "ms", p50, None),
            figure("p99", "p99 latency", "ms", p99, _P99),
            figure("heartbeat", "server loop's longest heartbeat gap", "ms", gap, _HEARTBEAT),
            figure("rps_ungated", "requests/s vs mtia without gate and gc policy", "req/s", rps, None, "higher",
                   base=ungated, base_name="mtia, no gate, gc default"),
            figure("heartbeat_ungated", "heartbeat gap vs mtia without gate and gc policy", "ms", gap, None,
                   base=ungated, base_name="mtia, no gate, gc default"),
        ]
    rows.append(Row("service.errors", suite, "errors, every server, every run", "count", samples=[float(errors)],
                    goal=_NO_ERRORS, note=first_error[:200]))
    return rows


if __name__ == "__main__":  # pragma: no cover - a manual run: python -m mtia_async.bench.suites_service
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    for row in run_service(Context(quick="--quick" in sys.argv, reps=3)):
        stats = row.stats
        ratio = row.ratio
        print(f"{row.key:<28} {stats.median if stats else float('nan'):10.2f} {row.unit:<6}"
              f" ratio {ratio.median if ratio else float('nan'):6.2f}  {row.status}")
