"""Devices: counting, selecting, properties, workers, and the device argument of every
public function.

Catalogue rows: B1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import mtia_async as mtia
import mtia_async.sync as mtia_sync


def test_device_count_and_availability() -> None:
    assert mtia.device_count() == 2
    assert mtia.is_available()
    assert mtia.is_bf16_supported()
    assert mtia.is_bf16_supported(including_emulation=False)
    assert mtia.get_device_capability() == (2, 0)
    props = mtia.get_device_properties(1)
    assert props["total_memory"] == 1 << 30
    assert props["workers"] == 2
    assert props["index"] == 1
    assert props["failed"] is False


def test_device_count_does_not_initialise() -> None:
    assert not mtia.is_initialized()
    assert mtia.device_count() == 2
    assert mtia.current_device() == 0
    assert not mtia.is_initialized()
    mtia.current_stream()
    assert mtia.is_initialized()


def test_set_device_and_device_context() -> None:
    mtia.init()
    mtia.set_device(1)
    assert mtia.current_device() == 1
    assert mtia.current_stream().device_index == 1
    with mtia.device(0) as d:
        assert d.idx == 0
        assert mtia.current_device() == 0
        with mtia.device("mtia:1"):
            assert mtia.current_device() == 1
        assert mtia.current_device() == 0
    assert mtia.current_device() == 1
    with mtia.device(None):
        assert mtia.current_device() == 1
    with pytest.raises(ZeroDivisionError):
        with mtia.device(0):
            1 / 0
    assert mtia.current_device() == 1


def test_workers_start_lazily_and_are_capped() -> None:
    from mtia_async.testing import worker_threads

    import time

    mtia.init()
    assert worker_threads() == []  # an unused device costs no thread
    streams = [mtia_sync.Stream() for _ in range(6)]
    for s in streams:
        s.launch(time.sleep, 0.05)
    for s in streams:
        s.synchronize()
    names = sorted(t.name for t in worker_threads())
    assert names == ["mtia_async-dev0-worker0", "mtia_async-dev0-worker1"]


# --- device arguments (B1) -----------------------------------------------------------------------
class FakeTorchDevice:
    """What a foreign ``torch.device("cuda:0")`` looks like to the API."""

    type = "cuda"
    index = 0

    def __repr__(self) -> str:
        return "device(type='cuda', index=0)"


class MtiaDevice:
    type = "mtia"
    index = 1


DEVICE_CALLS: dict[str, Callable[[object], object]] = {
    "set_device": mtia.set_device,
    "device": mtia.device,
    "current_stream": mtia.current_stream,
    "default_stream": mtia.default_stream,
    "Stream": lambda d: mtia.Stream(device=d),
    "get_device_capability": mtia.get_device_capability,
    "get_device_properties": mtia.get_device_properties,
    "sync.synchronize": mtia_sync.synchronize,
    "synchronize": lambda d: asyncio.run(mtia.synchronize(d)),
    "memory_stats": mtia.memory_stats,
    "memory_allocated": mtia.memory_allocated,
    "max_memory_allocated": mtia.max_memory_allocated,
    "memory_reserved": mtia.memory_reserved,
    "max_memory_reserved": mtia.max_memory_reserved,
    "reset_peak_memory_stats": mtia.reset_peak_memory_stats,
    "mem_get_info": mtia.mem_get_info,
    "memory_summary": mtia.memory_summary,
    "empty": lambda d: mtia.empty(4, device=d),
    "zeros": lambda d: mtia.zeros(4, device=d),
    "asarray": lambda d: mtia.asarray([1.0], device=d),
    "rand": lambda d: mtia.rand(4, device=d),
    "Generator": mtia.Generator,
    "get_rng_state": mtia.get_rng_state,
    "set_rng_state": lambda d: mtia.set_rng_state(np.zeros(16, np.uint8), d),
}


def _observable_state() -> tuple[Any, ...]:
    return (
        mtia.current_device(),
        mtia_sync.current_stream(),
        mtia_sync.current_stream(1),
        mtia.memory_stats(0),
        mtia.memory_stats(1),
        [s.tobytes() for s in mtia.get_rng_state_all()],
        mtia.snapshot()["segments"],
    )


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (-2, "out of index range"),
        (2, "out of index range"),  # device_count()
        (10**9, "out of index range"),
        (1.5, "Expected a mtia device"),
        ("mtia:x", "Invalid device string"),
        ("cpu", "Expected a mtia device"),
        ("cuda:0", "Invalid device string|Expected a mtia device"),
        (True, "bool"),
        ([0], "Expected a mtia device"),
        (FakeTorchDevice(), "Expected a mtia device"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, str) else v,
)
def test_B1_bad_device_argument_raises_in_every_public_function_and_changes_nothing(bad: object, match: str) -> None:
    mtia.init()
    keep = mtia.zeros(16, device=1)
    mtia_sync.synchronize(1)
    before = _observable_state()
    for name, call in DEVICE_CALLS.items():
        with pytest.raises(ValueError, match=match):
            call(bad)
            pytest.fail(f"{name}({bad!r}) did not raise")
    assert _observable_state() == before
    del keep


def test_B1_none_means_the_current_device_and_device_objects_are_accepted() -> None:
    mtia.set_device(MtiaDevice())  # a device object with type "mtia"
    assert mtia.current_device() == 1
    assert mtia.current_stream(None) == mtia.current_stream(1) and mtia.current_stream().device_index == 1
    assert mtia.default_stream(None) == mtia.default_stream(1)
    assert mtia.Stream(device=None).device_index == 1
    assert mtia.get_device_properties(None)["index"] == 1
    assert mtia.empty(4, device=None).device == 1
    assert mtia.Generator(None).device == "mtia:1"
    with mtia.device(None):
        assert mtia.current_device() == 1
    keep = mtia.zeros(16)
    assert mtia.memory_allocated(None) == mtia.memory_allocated(1) == 512
    assert mtia.memory_stats(None) == mtia.memory_stats(1)
    mtia_sync.synchronize(None)
    del keep
