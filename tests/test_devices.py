"""Devices: counting, selecting, properties, configuration, device arguments."""

from __future__ import annotations

import threading

import pytest

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async.testing import fresh_runtime


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


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (-2, "out of index range"),
        (2, "out of index range"),
        (10**9, "out of index range"),
        (1.5, "Expected a mtia device"),
        ("mtia:x", "Invalid device string"),
        ("cpu", "Expected a mtia device"),
        ("cuda:0", "Invalid device string|Expected a mtia device"),
        (True, "bool"),
        ([0], "Expected a mtia device"),
    ],
)
def test_bad_device_arguments_everywhere(bad: object, match: str) -> None:
    mtia.init()
    calls = [
        lambda: mtia.set_device(bad),
        lambda: mtia.current_stream(bad),
        lambda: mtia.default_stream(bad),
        lambda: mtia.Stream(device=bad),
        lambda: mtia.get_device_capability(bad),
        lambda: mtia.get_device_properties(bad),
        lambda: mtia.device(bad),
        lambda: mtia_sync.synchronize(bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=match):
            call()
    assert mtia.current_device() == 0


def test_foreign_device_object() -> None:
    class FakeTorchDevice:
        type = "cuda"
        index = 0

        def __repr__(self) -> str:
            return "device(type='cuda', index=0)"

    class MtiaDevice:
        type = "mtia"
        index = 1

    with pytest.raises(ValueError, match="Expected a mtia device"):
        mtia.set_device(FakeTorchDevice())
    mtia.set_device(MtiaDevice())
    assert mtia.current_device() == 1


def test_configure_validates_and_refuses_after_init() -> None:
    with fresh_runtime():
        for bad in (-1, 0, 1.5, "lots", "8XB", 10**20):
            with pytest.raises((ValueError, TypeError), match="device_memory"):
                mtia.configure(device_memory=bad)
        with pytest.raises(ValueError, match="device_count"):
            mtia.configure(device_count=0)
        with pytest.raises(ValueError, match="workers"):
            mtia.configure(workers=10**6)
        with pytest.raises(TypeError, match="unknown setting 'bogus'"):
            mtia.configure(bogus=1)
        mtia.configure(device_count=3, device_memory="256MiB", workers=1)
        assert mtia.device_count() == 3
        mtia.init()
        assert mtia.get_device_properties(2)["total_memory"] == 256 << 20
        with pytest.raises(RuntimeError, match="before the runtime initialises"):
            mtia.configure(workers=2)
        assert mtia.get_device_properties()["workers"] == 1


def test_set_device_before_init_is_checked_at_init() -> None:
    with fresh_runtime():
        mtia.configure(device_count=1)
        mtia.set_device(5)  # the count may still change: checked at init
        with pytest.raises(mtia.DeferredMtiaCallError, match="failed lazily at initialization") as info:
            mtia.init()
        assert "originally invoked at" in str(info.value)
        assert "test_devices.py" in str(info.value)
        assert isinstance(info.value.__cause__, ValueError)
        assert not mtia.is_initialized()


def test_init_races_run_exactly_once() -> None:
    import asyncio

    from mtia_async.testing import init_count

    with fresh_runtime():
        before = init_count()
        barrier = threading.Barrier(9)
        seen: list[int] = []

        def thread_main() -> None:
            barrier.wait(5)
            seen.append(mtia_sync.current_stream().device_index)

        async def task_main() -> None:
            await asyncio.sleep(0)
            seen.append(mtia.current_stream().device_index)

        async def tasks() -> None:
            barrier.wait(5)
            await asyncio.gather(*(task_main() for _ in range(8)))

        threads = [threading.Thread(target=thread_main) for _ in range(8)]
        for t in threads:
            t.start()
        asyncio.run(tasks())
        for t in threads:
            t.join(10)
        assert init_count() == before + 1
        assert seen == [0] * 16


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


def test_blas_threads_are_capped_while_the_runtime_lives_and_restored_after() -> None:
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    with fresh_runtime():
        before = blas_threads()
        mtia.configure(workers=2, blas_threads=1)
        mtia.init()
        assert mtia.get_device_properties()["blas_threads"] == 1
        if before:
            assert blas_threads() == [1] * len(before)
    assert blas_threads() == before
    with fresh_runtime():
        mtia.configure(blas_threads=0)
        mtia.init()
        assert blas_threads() == before
    with pytest.raises(ValueError, match="blas_threads"):
        mtia.configure(blas_threads=-1)
