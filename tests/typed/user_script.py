"""A user's script in both facades, type-checked by tests/test_typing.py (mypy --strict); never run.

Each ``reveal_type`` line ends with the type mypy must reveal (``# -> Type``).
"""

import asyncio
from typing import reveal_type

import numpy as np

import mtia_async as mtia
import mtia_async.sync as smtia


def blocking() -> float:
    s = smtia.Stream(priority=-1)
    a = smtia.randn(4, 4)
    b = smtia.asarray(np.ones((4, 4), dtype=np.float32))
    with smtia.stream(s):
        c = a @ b + 1.0
        e = c.sum(axis=0)
    reveal_type(c)  # -> DeviceArray
    reveal_type(e)  # -> DeviceArray
    reveal_type(a * 2)  # -> DeviceArray
    reveal_type(2.0 - a)  # -> DeviceArray
    reveal_type(-a)  # -> DeviceArray
    reveal_type(a < b)  # -> DeviceArray
    reveal_type(a == b)  # -> DeviceArray
    reveal_type(divmod(a, 2))  # -> tuple[DeviceArray, DeviceArray]
    reveal_type(a.mean(axis=1))  # -> DeviceArray
    reveal_type(a.argmax())  # -> DeviceArray
    reveal_type(a[0, 1:])  # -> DeviceArray
    reveal_type(a.T.reshape(16))  # -> DeviceArray
    reveal_type(np.exp(a))  # -> Any
    s.synchronize()
    host = e.numpy()
    reveal_type(host)  # -> ndarray[Any, Any]
    reveal_type(s.record_event())  # -> mtia_async._facade.blocking.Event
    reveal_type(smtia.current_stream())  # -> mtia_async._facade.blocking.Stream
    reveal_type(smtia.memory_allocated())  # -> int
    reveal_type(smtia.get_rng_state())  # -> ndarray[tuple[Any, ...], dtype[Any]]
    smtia.launch(np.exp, a, out=c)
    return float(host.sum())


async def main() -> None:
    x = mtia.zeros(8)
    y = x + x
    reveal_type(y)  # -> DeviceArray
    z = await y.to_host()
    reveal_type(z)  # -> ndarray[Any, Any]
    await mtia.synchronize()
    event = mtia.current_stream().record_event()
    reveal_type(event)  # -> mtia_async._facade.aio.Event
    await event
    reveal_type(mtia.default_stream(0))  # -> mtia_async._facade.aio.Stream


asyncio.run(main())
