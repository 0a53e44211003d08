"""The async facade beyond the reliability catalogue (test_rel_*.py): awaiting outside a loop, native trio."""

from __future__ import annotations

import time

import pytest

import mtia_async as mtia


def test_awaiting_outside_any_loop_is_a_clear_error() -> None:
    s = mtia.Stream()
    s.launch(time.sleep, 0.05)
    coro = s.synchronize()
    with pytest.raises(RuntimeError, match="asyncio or trio"):
        coro.send(None)
    coro.close()


def test_trio_native_and_kernel_errors() -> None:
    import trio

    async def main() -> None:
        s = mtia.Stream()
        s.launch(time.sleep, 0.02)
        s.launch(lambda: 1 / 0)
        with pytest.raises(mtia.KernelError, match="ZeroDivisionError"):
            await s.synchronize()

    trio.run(main)


