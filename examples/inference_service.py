"""An async HTTP inference service on mtia_async: ``python examples/inference_service.py``.

A Starlette app on uvicorn serving a small numpy MLP (256 -> 1024 -> 16). Each request
takes the next stream of a pool, copies its input to the device, launches the forward
pass as a kernel and awaits the result, so the event loop keeps serving other requests
while the device's worker threads compute. The heart of it::

    class _DeviceModel:
        def __init__(self, weights: Weights, streams: int) -> None:
            self.params = [mtia.asarray(a) for a in (weights.w1, weights.b1, weights.w2, weights.b2)]
            self.pool = itertools.cycle([mtia.Stream() for _ in range(streams)])

        async def predict(self, x: F32) -> F32:
            with next(self.pool):  # this task's current stream, until the block ends
                xd = mtia.asarray(x)  # host-to-device copy, on the stream
                yd = mtia.empty((x.shape[0], OUT), dtype=np.float32)
                mtia.launch(mlp_kernel, xd, *self.params, out=yd,
                            reads=[xd, *self.params], writes=[yd])  # streams share the weights: read only
                return await yd.to_host()  # the loop serves other requests meanwhile

The service's code is ``mtia_async/bench/service_app.py`` (in the package, so that
``python -m mtia_async bench service`` measures the very code this program serves).

Try it::

    pip install 'mtia_async[service]'
    python examples/inference_service.py --port 8000 &
    curl -s -X POST localhost:8000/predict -H 'Content-Type: application/json' \\
         -d "{\\"inputs\\": [$(python -c 'print([0.1] * 256)')]}"
    curl -s localhost:8000/stats
    python examples/inference_load_test.py --url http://127.0.0.1:8000

Options: ``--mode to_thread`` (the same service computing with ``asyncio.to_thread``),
``--streams N``, ``--port 0`` (a free port; the URL is printed), ``--max-seconds S``,
``--stop-on-stdin-eof``, ``--max-active N`` (at most N requests computing at once, the
others queue in arrival order; default 16), ``--gc default`` (keep Python's collector
as is instead of freezing the start-up objects); ``--help`` lists them.
"""

from __future__ import annotations

import sys

from mtia_async.bench.service_app import main

if __name__ == "__main__":
    sys.exit(main())
