"""The suite's leak check (``tests/_support/leakcheck.py``) checked on itself.

Catalogue rows: M11.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from _support import device_usage, join_all, no_leaks

import mtia_async as mtia


def test_M11_leak_check_fails_a_deliberate_leak_with_the_byte_count() -> None:
    kept: list[Any] = []
    with pytest.raises(AssertionError, match=r"leaked 4096 bytes on mtia:1 \(allocated_bytes.all.current 0 -> 4,096"):
        with no_leaks():
            kept.append(mtia.empty(4096, dtype=np.uint8, device=1))
            mtia.empty(100, dtype=np.uint8)  # freed: not a leak
    assert device_usage()[1]["allocated_bytes.all.current"] == 4096
    kept.clear()
    with no_leaks():  # balanced: passes, and says what it compared
        a = mtia.zeros(1000)
        del a


def test_M11_leak_check_flags_a_leaked_thread() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="leaky-thread")
    try:
        with pytest.raises(AssertionError, match="leaked threads: \\['leaky-thread'\\]"):
            with no_leaks():
                t.start()
    finally:
        stop.set()
        join_all([t])


def test_M11_exception_inside_the_checked_region_propagates_unchanged() -> None:
    kept: list[Any] = []
    error = ValueError("the test's own failure")
    with pytest.raises(ValueError) as info:
        with no_leaks():
            kept.append(mtia.empty(4096, dtype=np.uint8))  # leaked as well, but not reported
            raise error
    assert info.value is error
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert str(info.value) == "the test's own failure"
    kept.clear()
