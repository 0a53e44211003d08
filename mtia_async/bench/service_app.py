"""An async HTTP inference service: a small numpy MLP whose requests run on a pool of streams.

``examples/inference_service.py`` runs it; ``python -m mtia_async bench service`` measures
it against the same service computing with ``asyncio.to_thread`` (``mode="to_thread"``).
It lives in the package so the benchmark runs the very code the example serves; it uses
the public API only.

The model: ``256 -> 1024 (ReLU) -> 16 (softmax)``, float32, weights from a seeded numpy
generator (``make_weights``), so a client can check every answer against ``forward``.

* ``POST /predict`` with ``{"inputs": [[256 numbers], ...]}`` (1 to 64 rows) answers
  ``{"probabilities": [[16 numbers], ...], "classes": [int, ...]}``. With
  ``Content-Type: application/octet-stream`` the body is the rows as raw little-endian
  float32 (``x.astype("<f4").tobytes()``) and so is the answer (rows x 16): what a
  client that cares about speed sends, since parsing 1,000 JSON numbers costs the
  event loop more than the model costs a worker. A malformed body gets a 400 with
  ``{"error": "..."}`` naming what is wrong.
* ``GET /stats`` answers ``{"mode", "served", "heartbeat_gap_ms", "cpu_seconds", "gc_frozen"}``:
  requests served, the longest gap between two wake-ups of a 1 ms heartbeat task on the
  service's event loop since the previous ``/stats`` (how long the loop was kept from
  running), the CPU time the server process has used, and the objects the collector no
  longer scans (``gc.get_freeze_count()``, see below).
* ``GET /health`` answers ``{"ok": true}``.

With ``mode="mtia"`` the weights live in device memory; a request takes the next stream
of a pool (round robin), copies its input to the device, launches the forward pass as one
kernel and awaits the copy of the result: the event loop never blocks, and the device's
workers run the kernels. With ``mode="to_thread"`` a request runs ``forward`` in
``asyncio.to_thread`` (the default executor), as a service without mtia_async would.

Both modes keep the event loop responsive under many connections the same way (see
docs/service.md, "What the heartbeat gap is made of"): an admission gate lets at most
``max_active`` (16) ``/predict`` requests in at once, the others waiting in arrival order
before any work is done for them, so a loop turn never runs the callbacks of hundreds of
requests; and ``main`` freezes the collector's view of the start-up objects
(``gc.freeze()``), so a collection under load scans only what requests allocate.

Run it: ``python -m mtia_async.bench.service_app --port 8000`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

import mtia_async as mtia

__all__ = ["BINARY", "IN", "MAX_ROWS", "OUT", "Mode", "Weights", "create_app", "forward", "main", "make_weights", "parse_inputs"]

IN, HIDDEN, OUT = 256, 1024, 16
MAX_ROWS = 64
BINARY = "application/octet-stream"
MODES = ("mtia", "to_thread")
# /predict requests in progress at once (the admission gate; see create_app): twice the
# pool's 8 streams, so the gate binds only past the concurrency the device needs (at 16
# connections a gate of 8 cost up to a quarter of the throughput; docs/service.md).
MAX_ACTIVE = 16
Mode = Literal["mtia", "to_thread"]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Weights:
    """The MLP's parameters, host numpy float32 arrays."""

    w1: F32
    b1: F32
    w2: F32
    b2: F32


def make_weights(seed: int = 0) -> Weights:
    """The model's weights, the same for a given ``seed`` (clients recompute answers with them)."""
    rng = np.random.default_rng(seed)
    return Weights(
        (rng.standard_normal((IN, HIDDEN)) / np.sqrt(IN)).astype(np.float32),
        (rng.standard_normal(HIDDEN) * 0.1).astype(np.float32),
        (rng.standard_normal((HIDDEN, OUT)) / np.sqrt(HIDDEN)).astype(np.float32),
        (rng.standard_normal(OUT) * 0.1).astype(np.float32),
    )


def mlp_kernel(x: F32, w1: F32, b1: F32, w2: F32, b2: F32, out: F32) -> None:
    """The forward pass into ``out``: ReLU hidden layer, softmax output (plain numpy)."""
    h = x @ w1
    h += b1
    np.maximum(h, 0, out=h)
    z = h @ w2
    z += b2
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    out[...] = z


def forward(weights: Weights, x: F32) -> F32:
    """The forward pass on the host: the to_thread service's computation, and the reference."""
    out = np.empty((x.shape[0], OUT), dtype=np.float32)
    mlp_kernel(x, weights.w1, weights.b1, weights.w2, weights.b2, out)
    return out


def parse_inputs(body: bytes, binary: bool = False) -> F32:
    """The ``(rows, 256)`` float32 input of a ``/predict`` body.

    Args:
        body: the request body.
        binary: raw little-endian float32 rows instead of JSON.

    Raises:
        ValueError: not JSON, no ``"inputs"`` list, a row of the wrong length or not
            numbers, or a row count outside 1..64 (the message says which).
    """
    if binary:
        count, extra = divmod(len(body), IN * 4)
        if extra or not 1 <= count <= MAX_ROWS:
            raise ValueError(f"a binary body must hold 1..{MAX_ROWS} rows of {IN} float32 ({IN * 4} bytes "
                             f"each), got {len(body)} bytes")
        return np.frombuffer(body, dtype="<f4").reshape(count, IN).astype(np.float32, copy=False)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    rows = data.get("inputs") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS:
        got = f"{len(rows)} rows" if isinstance(rows, list) else type(rows).__name__
        raise ValueError(f'expected {{"inputs": [[{IN} numbers], ...]}} with 1..{MAX_ROWS} rows, got {got}')
    try:
        x = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("every input row must be a list of numbers") from None
    if x.ndim != 2 or x.shape[1] != IN:
        raise ValueError(f"every input row must hold {IN} numbers, got an array of shape {x.shape}")
    return x


class _DeviceModel:
    """The weights in device memory and a pool of streams the requests take in turn."""

    def __init__(self, weights: Weights, streams: int) -> None:
        self.params = [mtia.asarray(a) for a in (weights.w1, weights.b1, weights.w2, weights.b2)]
        self.pool = itertools.cycle([mtia.Stream() for _ in range(streams)])

    async def predict(self, x: F32) -> F32:
        with next(self.pool):  # this task's current stream, until the block ends
            xd = mtia.asarray(x)  # host-to-device copy, on the stream
            yd = mtia.empty((x.shape[0], OUT), dtype=np.float32)
            mtia.launch(mlp_kernel, xd, *self.params, out=yd, reads=[xd, *self.params], writes=[yd])
            return await yd.to_host()  # the loop runs other requests meanwhile


class _Heartbeat:
    """A task waking every ``period`` seconds; records the longest gap between wake-ups."""

    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.worst_ns = 0

    async def run(self) -> None:
        last = time.perf_counter_ns()
        while True:
            await asyncio.sleep(self.period)
            now = time.perf_counter_ns()
            self.worst_ns = max(self.worst_ns, now - last)
            last = now

    def take(self) -> float:
        """The longest gap in ms since the previous call."""
        worst, self.worst_ns = self.worst_ns, 0
        return worst / 1e6


def create_app(mode: Mode = "mtia", streams: int = 8, seed: int = 0, max_active: int | None = MAX_ACTIVE) -> Any:
    """The ASGI application of the service (Starlette, behind an admission gate).

    Args:
        mode: ``"mtia"`` (a pool of streams) or ``"to_thread"`` (``asyncio.to_thread``).
        streams: streams in the pool (mode ``"mtia"``), 1..256.
        seed: the weights' seed.
        max_active: at most this many ``/predict`` requests are processed at once, 1..4096
            (the others wait at the gate, in arrival order, before any work is done for
            them); None: no limit.

    Raises:
        ValueError: a bad ``mode``, ``streams`` or ``max_active``.
        ImportError: Starlette is not installed (``pip install 'mtia_async[service]'``).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'mtia' or 'to_thread', got {mode!r}")
    if isinstance(streams, bool) or not isinstance(streams, int) or not 1 <= streams <= 256:
        raise ValueError(f"streams must be an int in 1..256, got {streams!r}")
    if max_active is not None and (isinstance(max_active, bool) or not isinstance(max_active, int)
                                   or not 1 <= max_active <= 4096):
        raise ValueError(f"max_active must be None or an int in 1..4096, got {max_active!r}")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    weights = make_weights(seed)
    heartbeat = _Heartbeat()
    state: dict[str, Any] = {"served": 0, "model": None}

    async def predict(request: Request) -> Response:
        binary = request.headers.get("content-type", "") == BINARY
        try:
            x = parse_inputs(await request.body(), binary)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if mode == "mtia":
            y = await state["model"].predict(x)
        else:
            y = await asyncio.to_thread(forward, weights, x)
        state["served"] += 1
        if binary:
            return Response(y.astype("<f4", copy=False).tobytes(), media_type=BINARY)
        return JSONResponse({"probabilities": y.tolist(), "classes": y.argmax(axis=1).tolist()})

    async def stats(request: Request) -> Response:
        return JSONResponse({"mode": mode, "served": state["served"], "heartbeat_gap_ms": heartbeat.take(),
                             "cpu_seconds": time.process_time(), "gc_frozen": gc.get_freeze_count()})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if mode == "mtia":
            state["model"] = _DeviceModel(weights, streams)
            await mtia.synchronize()  # the weights are on the device before the first request
        beat = asyncio.create_task(heartbeat.run())
        try:
            yield
        finally:
            beat.cancel()
            if mode == "mtia":
                await mtia.synchronize()

    routes = [
        Route("/predict", predict, methods=["POST"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return app if max_active is None else _Gate(app, "/predict", max_active)


class _Gate:
    """ASGI admission control: at most ``limit`` requests to ``path`` are inside ``app`` at once.

    A request over the limit waits here, in arrival order, before the app has done any
    work for it (routing, reading the body, computing, answering), so one turn of the
    event loop runs the callbacks of at most ``limit`` requests in progress however many
    connections are open; uvicorn's ``limit_concurrency`` would answer 503 instead of
    queueing. Other paths (``/stats``, ``/health``) pass at once.
    """

    def __init__(self, app: Any, path: str, limit: int) -> None:
        self.app = app
        self.path = path
        self.slots = asyncio.Semaphore(limit)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            async with self.slots:
                await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mtia_async.bench.service_app",
                                     description="Serve the MLP inference service (see the module docstring).")
    parser.add_argument("--mode", choices=MODES, default="mtia", help="compute on a pool of streams or with to_thread")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port; the URL is printed)")
    parser.add_argument("--streams", type=int, default=8, help="streams in the pool (mode mtia)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="cap numpy's BLAS threads (mode mtia: configure(blas_threads=...); default: mtia_async "
                        "caps them to cores // workers, to_thread leaves them alone)")
    parser.add_argument("--max-active", type=int, default=MAX_ACTIVE,
                        help=f"/predict requests processed at once, the others wait in arrival order (default "
                        f"{MAX_ACTIVE}; 0: no limit)")
    parser.add_argument("--gc", choices=("freeze", "default"), default="freeze",
                        help="freeze: after start-up, move every object alive to the collector's permanent "
                        "generation (gc.freeze) so collections under load scan only request objects (default); "
                        "default: leave the collector alone")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--stop-on-stdin-eof", action="store_true",
                        help="stop when standard input closes (a parent process's handle on the server)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted (or ``--max-seconds``, or stdin's end); return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 <= args.max_active <= 4096:
        parser.error(f"--max-active must be in 0..4096 (0: no limit), got {args.max_active}")
    import uvicorn

    app = create_app(args.mode, args.streams, max_active=args.max_active or None)
    if args.blas_threads is not None and args.mode == "mtia":
        mtia.configure(blas_threads=args.blas_threads)  # the runtime applies it while it lives
    elif args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.blas_threads, user_api="blas")
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and a
    # response's two writes (head, body) would otherwise wait 40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(4096)
    http = "httptools" if _has("httptools") else "h11"
    config = uvicorn.Config(app, log_level="warning", access_log=False, http=http, loop="asyncio",
                            lifespan="on", backlog=4096, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)

    def stop() -> None:
        server.should_exit = True

    def stop_at_stdin_eof() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed our stdin, or went away
        stop()

    if args.stop_on_stdin_eof:
        threading.Thread(target=stop_at_stdin_eof, name="service-stdin", daemon=True).start()
    if args.max_seconds is not None:
        timer = threading.Timer(args.max_seconds, stop)
        timer.daemon = True
        timer.start()
    host, port = sock.getsockname()[:2]
    try:
        asyncio.run(_serve(server, sock, args.gc == "freeze", f"serving {args.mode} on http://{host}:{port}"))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


async def _serve(server: Any, sock: socket.socket, freeze: bool, banner: str) -> None:
    """Run ``server`` on ``sock``; once it has started, gc.freeze() (with ``freeze``), then print ``banner``.

    The banner (the URL) comes last: a client that waits for it finds the server ready
    and the collector's policy in place.
    """
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():  # bounded: serve() starts or fails
        await asyncio.sleep(0.005)
    if server.started:
        if freeze:
            # Everything alive now (modules, the app, the weights, the runtime) lives as
            # long as the server: out of the collector's sight, a collection under load
            # scans only what the requests in flight allocated (see docs/service.md).
            gc.collect()
            gc.freeze()
        print(banner, flush=True)
    await serving


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
