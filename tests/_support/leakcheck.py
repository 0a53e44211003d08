"""A leak check for device memory, segments and threads (catalogue M11).

    from _support import no_leaks

    def test_something():
        with no_leaks():
            ...                      # fails with "leaked N bytes on mtia:D ..." if memory stays held

It takes a baseline on entry and compares on exit. Both times it first settles the
runtime: ``synchronize()`` of every device (in a helper thread when called on an
event-loop thread, where blocking calls are refused), ``gc.collect()`` and
``empty_cache()`` -- the catalogue's definition of "baseline". Compared: the current
``allocated_bytes``, ``active_bytes``, ``requested_bytes``, ``reserved_bytes``,
``allocation`` and ``segment`` of every device, and the threads other than the
runtime's own workers (which start lazily, so a first use is not a leak).

An exception raised inside the checked region propagates unchanged (the same object,
no leak report chained to it): a failing test reports its own error, not the memory
its failure left behind (torch's ``test_cuda_memory_leak_detection_propagates_errors``).
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mtia_async as mtia
import mtia_async.sync as mtia_sync

__all__ = ["LEAK_KEYS", "device_usage", "no_leaks", "settle"]

LEAK_KEYS = (
    "allocated_bytes.all.current",
    "active_bytes.all.current",
    "requested_bytes.all.current",
    "reserved_bytes.all.current",
    "allocation.all.current",
    "segment.all.current",
)


def _synchronize_all() -> None:
    for d in range(mtia.device_count()):
        mtia_sync.synchronize(d)


def settle(timeout: float = 30.0) -> None:
    """Wait for every device's work, collect garbage and release the cache.

    Raises:
        AssertionError: the devices did not drain within ``timeout`` seconds.
    """
    if mtia.is_initialized():
        if asyncio._get_running_loop() is None:
            _synchronize_all()
        else:  # blocking calls are refused on a loop thread: wait from a helper thread
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    _synchronize_all()
                except BaseException as exc:  # reported below, in the caller
                    errors.append(exc)

            helper = threading.Thread(target=run, name="leakcheck-settle")
            helper.start()
            helper.join(timeout)
            if helper.is_alive():
                raise AssertionError(f"the devices did not drain within {timeout} s")
            if errors:
                raise errors[0]
    gc.collect()
    mtia.empty_cache()


def device_usage() -> dict[int, dict[str, int]]:
    """``LEAK_KEYS`` of every device's ``memory_stats()`` ({} before init)."""
    if not mtia.is_initialized():
        return {}
    usage = {}
    for d in range(mtia.device_count()):
        stats = mtia.memory_stats(d)
        usage[d] = {key: int(stats[key]) for key in LEAK_KEYS}
    return usage


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if not t.name.startswith("mtia_async-")}


def _report(before: dict[int, dict[str, int]], after: dict[int, dict[str, int]]) -> list[str]:
    problems = []
    zero = dict.fromkeys(LEAK_KEYS, 0)
    for d in sorted(set(before) | set(after)):
        old, new = before.get(d, zero), after.get(d, zero)
        leaked = new["allocated_bytes.all.current"] - old["allocated_bytes.all.current"]
        changed = {k: (old[k], new[k]) for k in LEAK_KEYS if old[k] != new[k]}
        if changed:
            detail = ", ".join(f"{k} {a:,} -> {b:,}" for k, (a, b) in changed.items())
            problems.append(f"leaked {leaked} bytes on mtia:{d} ({detail})")
    return problems


@contextmanager
def no_leaks(check_threads: bool = True) -> Iterator[dict[str, Any]]:
    """Assert that the block leaves device memory, segments and threads as it found them.

    Args:
        check_threads: also compare the set of (non-worker) thread names.

    Yields:
        a dict that receives ``before``/``after`` usage, for tests that want the numbers.

    Raises:
        AssertionError: "leaked N bytes on mtia:D (...)", or new threads still alive.
    """
    settle()
    record: dict[str, Any] = {"before": device_usage()}
    threads_before = _threads()
    yield record  # an exception from the block propagates from here, unchanged
    settle()
    record["after"] = device_usage()
    problems = _report(record["before"], record["after"])
    if check_threads:
        extra = _threads() - threads_before
        if extra:
            problems.append(f"leaked threads: {sorted(extra)}")
    if problems:
        raise AssertionError("; ".join(problems))
