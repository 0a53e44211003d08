"""Devices on a Dask cluster: the errors of api.md's "Devices on a Dask cluster" section.

What cannot be serialised raises ``TypeError`` at ``launch``; a kernel error is a
``KernelError`` with the worker's traceback, and so is a kernel the worker cannot
unpickle; an unreachable or silent cluster raises at init, naming the address, within
the timeout; bad settings are refused at the call. On the session's real
``LocalCluster`` (``dask_cluster``). A dead worker: tests/test_cluster_failures.py.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import numpy as np
import pytest

import mtia_async.sync as mtia
from mtia_async.testing import fresh_runtime

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("remote")]  # remote: tests/conftest.py




def _step(v: np.ndarray, i: int) -> None:
    v[0] = (v[0] * 31 + i) % 1_000_003


def test_a_kernel_that_does_not_unpickle_on_the_worker_fails_alone(remote: Any, tmp_path: Any) -> None:
    import sys

    (tmp_path / "client_only_kernels.py").write_text("def bump(v):\n    v += 100\n\ndef tick(n):\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        from client_only_kernels import bump, tick  # type: ignore[import-not-found]  # importable here only
    finally:
        sys.path.remove(str(tmp_path))
    try:  # imported here, so cloudpickle sends them by reference: the worker cannot import them
        _launch_around_a_bad_kernel(bump)
        s = mtia.Stream(1)
        s.launch(tick, 3)  # scalar arguments only: the launch itself is not pickled, the function is
        with pytest.raises(mtia.KernelError, match="kernel_did_not_unpickle failed on device 1") as info:
            s.synchronize()
        assert isinstance(info.value.__cause__, ModuleNotFoundError)
        s.synchronize()
    finally:
        sys.modules.pop("client_only_kernels", None)


def _launch_around_a_bad_kernel(bump: Any) -> None:
    s = mtia.Stream(0)
    x = mtia.zeros(1, dtype=np.int64, device=0)
    s.wait_stream(mtia.current_stream(0))
    for i in range(3):
        s.launch(_step, x, i)  # one batch: a run of launches around the bad one
    s.launch(bump, x)
    with pytest.raises(mtia.KernelError) as info:
        s.synchronize()
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert "unpickling the kernel on the Dask worker" in "\n".join(info.value.__cause__.__notes__)
    for i in range(3):
        s.launch(_step, x, i)  # reported: the stream runs again
    with mtia.stream(s):
        expected = 0
        for i in [0, 1, 2, 0, 1, 2]:  # bump never ran; the launches around it did
            expected = (expected * 31 + i) % 1_000_003
        assert int(x.numpy()[0]) == expected


def test_what_cannot_be_serialised_raises_type_error_at_launch(remote: Any) -> None:
    s = mtia.Stream(0)
    lock = threading.Lock()
    a = mtia.zeros(1, device=0)
    s.wait_stream(mtia.current_stream(0))  # the fill of a is done first
    with pytest.raises(TypeError, match="cannot be sent to a cluster device.*cloudpickle"):
        s.launch(np.copyto, a, lock)
    with pytest.raises(TypeError, match="cannot be sent to a cluster device"):
        s.launch(lambda: lock.acquire())
    s.synchronize()  # nothing was enqueued
    assert s.query()


def test_a_kernel_error_is_a_kernel_error_with_the_remote_traceback(remote: Any) -> None:
    s = mtia.Stream(1)

    def inner() -> None:
        raise KeyError("missing on the worker")

    def kernel() -> None:
        inner()

    s.launch(kernel)
    with pytest.raises(mtia.KernelError, match="kernel .*kernel failed on device 1") as info:
        s.synchronize()
    cause = info.value.__cause__
    assert isinstance(cause, KeyError)
    notes = "\n".join(getattr(cause, "__notes__", []))
    assert "Traceback on the Dask worker" in notes and "in inner" in notes
    s.synchronize()  # reported once


def test_an_unreachable_cluster_raises_at_init_naming_the_address_in_bounded_time() -> None:
    with fresh_runtime(cluster="tcp://127.0.0.1:9", cluster_timeout=1):  # refused at once
        started = time.monotonic()
        with pytest.raises(ConnectionError, match=r"tcp://127\.0\.0\.1:9"):
            mtia.init()
        assert time.monotonic() - started < 15
        assert not mtia.is_initialized()


def test_a_cluster_that_never_answers_raises_at_init_within_the_timeout() -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        with fresh_runtime(cluster=address, cluster_timeout=2):
            started = time.monotonic()
            with pytest.raises(ConnectionError, match=re.escape(address) + ".*within 2 s"):
                mtia.init()
            assert 1.5 <= time.monotonic() - started < 20  # the timeout, plus the close (bounded)
            assert not mtia.is_initialized()


def test_a_dask_client_names_the_cluster_and_stays_the_callers(remote: Any) -> None:
    from distributed import Client

    with Client(remote, set_as_default=False, timeout=30) as client:
        with fresh_runtime(cluster=client, workers=1, device_memory="64MiB"):
            assert mtia.device_count() == 2
            np.testing.assert_array_equal((mtia.asarray(np.arange(4), device=1) * 3).numpy(), np.arange(4) * 3)
        assert client.status == "running"  # the runtime used its address, and never closed it
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3


def test_bad_cluster_settings_are_refused_at_the_call() -> None:
    with fresh_runtime():
        with pytest.raises(TypeError, match="cluster must be a Dask scheduler address"):
            mtia.configure(cluster=8786)
        with pytest.raises(ValueError, match="not a Dask scheduler address"):
            mtia.configure(cluster="tcp://bad host")
        with pytest.raises(ValueError, match="devices_per_worker=0 is out of range"):
            mtia.configure(devices_per_worker=0)
        mtia.configure(cluster="tcp://127.0.0.1:9", device_count=2)
        with pytest.raises(ValueError, match="cannot be combined with a cluster"):
            mtia.init()
