"""Devices: counting, selecting, properties, configuration, device arguments."""

from __future__ import annotations


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
