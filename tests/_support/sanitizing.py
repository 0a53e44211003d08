"""The stream sanitizer in tests: hold a stream with a gate, catch a report, keep the sanitizer out.

``held(stream)`` parks ``stream`` behind a gate kernel (a ``threading.Event`` it waits on,
at most 10 s, so nothing hangs), to show that a race is caught whatever the timing.
``sanitizer_off()`` keeps the sanitizer off for a block even when ``MTIA_ASYNC_SANITIZE``
is set (the CI step runs the whole suite sanitized): for tests of the instruments
themselves, which must see no observer, and for tests that race on purpose.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mtia_async import UnsynchronizedAccessError
from mtia_async._sanitizer import suspended

__all__ = ["fill_one", "held", "race", "sanitizer_off", "source_lines"]


@contextmanager
def held(stream: Any) -> Iterator[threading.Event]:
    """Park ``stream`` behind a gate until the block ends (or the gate is set)."""
    gate = threading.Event()
    stream.launch(gate.wait, 10.0)
    try:
        yield gate
    finally:
        gate.set()


def race(kind: str, launch: Callable[[], object]) -> UnsynchronizedAccessError:
    """Run ``launch`` and return the ``UnsynchronizedAccessError`` of ``kind`` it must raise."""
    with pytest.raises(UnsynchronizedAccessError) as info:
        launch()
    assert info.value.kind == kind, str(info.value)
    return info.value


def source_lines(stack: tuple[str, ...]) -> list[str]:
    """The source lines of a report's stack (every other line is ``File ..., line N, in f``)."""
    return [line.strip() for line in stack if not line.lstrip().startswith("File ")]


@contextmanager
def sanitizer_off() -> Iterator[None]:
    """Keep the stream sanitizer off inside the block, whatever ``MTIA_ASYNC_SANITIZE`` says."""
    with suspended():
        yield


def fill_one(a: Any) -> None:
    """A kernel that writes every element of ``a`` (a race's other side in the sanitizer tests)."""
    a.fill(1.0)
