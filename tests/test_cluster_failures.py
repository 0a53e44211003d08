"""Devices on a Dask cluster when things go wrong: a worker process killed, a client process
that dies, the environment variable, several devices per worker.

The dead-worker tests kill a real worker process of a LocalCluster of their own (the
session's cluster stays whole for the other tests).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _support import local_cluster, run_python

import mtia_async as amtia
import mtia_async.sync as mtia
from mtia_async._core.runtime import state
from mtia_async.testing import fresh_runtime

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def doomed_cluster() -> Iterator[Any]:
    """A LocalCluster of 2 workers of its own, whose processes a test may kill or close."""
    cluster = local_cluster()
    try:
        yield cluster
    finally:
        cluster.close(timeout=30)


def _worker_pid(cluster: Any, address: str) -> int:
    from distributed import Client

    with Client(cluster, set_as_default=False, timeout=30) as client:
        pids: dict[str, int] = client.run(os.getpid)
    return pids[address]


def _synchronize_in_thread(stream: Any) -> tuple[threading.Thread, list[BaseException]]:
    """``stream.synchronize()`` in a started thread; the list gets what it raised."""
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            stream.synchronize()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    return thread, outcome


def test_a_killed_worker_fails_its_device_and_the_other_keeps_working(doomed_cluster: Any) -> None:
    with fresh_runtime(cluster=doomed_cluster, workers=2, device_memory="256MiB", cluster_timeout=60):
        mtia.init()
        doomed = state.runtime.devices[0]  # type: ignore[union-attr]
        s0, s1 = mtia.Stream(0), mtia.Stream(1)
        x = mtia.ones(10, device=0)
        s0.launch(time.sleep, 30)  # still running when its worker dies
        event = s0.record_event()
        s1.wait_event(event)  # a stream of the other worker waits on the dying one
        thread, outcome = _synchronize_in_thread(s0)
        time.sleep(0.3)
        os.kill(_worker_pid(doomed_cluster, doomed.link.address), signal.SIGKILL)
        thread.join(20)
        assert not thread.is_alive(), "a pending wait on a dead worker's device hung"
        assert len(outcome) == 1 and isinstance(outcome[0], mtia.DeviceFailedError)
        assert "mtia:0 failed" in str(outcome[0]) and doomed.link.address in str(outcome[0])
        # every later wait and launch on the dead device fails the same way
        with pytest.raises(mtia.DeviceFailedError):
            event.synchronize()
        with pytest.raises(mtia.DeviceFailedError):
            x.numpy()
        with pytest.raises(mtia.DeviceFailedError):
            s0.launch(np.exp, x, out=x)
        with pytest.raises(mtia.DeviceFailedError):
            mtia.synchronize(0)
        assert mtia.get_device_properties(0)["failed"]
        # the stream that waited on the dead device reports it once, then works
        with pytest.raises(mtia.DeviceFailedError):
            s1.synchronize()
        with mtia.stream(s1):
            y = mtia.asarray(np.arange(5.0), device=1)
            np.testing.assert_array_equal((y * 2).numpy(), np.arange(5.0) * 2)
        mtia.synchronize(1)
        assert not mtia.get_device_properties(1)["failed"]


def test_a_killed_worker_fails_awaits_in_an_event_loop(doomed_cluster: Any) -> None:
    import asyncio

    with fresh_runtime(cluster=doomed_cluster, workers=2, device_memory="256MiB", cluster_timeout=60):
        amtia.init()
        address = state.runtime.devices[1].link.address  # type: ignore[union-attr, attr-defined]

        async def main() -> BaseException | None:
            s = amtia.Stream(1)
            s.launch(time.sleep, 30)
            task = asyncio.ensure_future(s.synchronize())
            await asyncio.sleep(0.3)
            os.kill(await asyncio.to_thread(_worker_pid, doomed_cluster, address), signal.SIGKILL)
            try:
                await asyncio.wait_for(task, 20)
            except BaseException as exc:
                return exc
            return None

        error = asyncio.run(main())
        assert isinstance(error, amtia.DeviceFailedError)


def test_a_worker_closed_on_purpose_fails_its_device_as_a_close_logged_at_info(
    doomed_cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from distributed import Client

    caplog.set_level(logging.DEBUG, logger="mtia_async")
    with fresh_runtime(cluster=doomed_cluster, workers=2, device_memory="256MiB", cluster_timeout=60):
        mtia.init()
        closing = state.runtime.devices[0]  # type: ignore[union-attr]
        address = closing.link.address  # type: ignore[attr-defined]
        s0 = mtia.Stream(0)
        x = mtia.ones(10, device=0)
        s0.wait_stream(mtia.current_stream(0))
        s0.launch(time.sleep, 30)  # still running when its worker closes
        thread, outcome = _synchronize_in_thread(s0)
        with Client(doomed_cluster, set_as_default=False, timeout=30) as client:
            client.retire_workers([address], close_workers=True, remove=True)  # the worker closes itself
        thread.join(30)
        assert not thread.is_alive(), "a pending wait on a closed worker's device hung"
        assert len(outcome) == 1 and isinstance(outcome[0], mtia.DeviceFailedError)
        assert f"its Dask worker {address} closed" in str(outcome[0])
        with pytest.raises(mtia.DeviceFailedError, match="closed"):
            x.numpy()
        np.testing.assert_array_equal(mtia.asarray(np.arange(3.0), device=1).numpy(), np.arange(3.0))
    records = [r for r in caplog.records if r.name == "mtia_async"]
    lost = [r for r in records if getattr(r, "event", "") in ("cluster_worker_lost", "device_failed")]
    assert [(r.levelname, r.event) for r in lost] == [  # type: ignore[attr-defined]
        ("INFO", "cluster_worker_lost"), ("INFO", "device_failed")
    ]
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []  # a close, not a crash


def test_a_client_process_that_dies_leaves_nothing_on_the_workers(dask_cluster: Any) -> None:
    from distributed import Client

    from mtia_async._cluster.server import sessions_info

    code = f"""
        import os
        import numpy as np
        import mtia_async.sync as mtia
        mtia.configure(cluster={dask_cluster.scheduler_address!r}, workers=1, device_memory="256MiB")
        a = mtia.ones(1 << 20, device=0)
        b = mtia.ones(1 << 20, device=1)
        a.numpy(); b.numpy()
        print("allocated", flush=True)
        os._exit(0)  # no shutdown: the process just goes
    """
    result = run_python(code, timeout=90)
    assert "allocated" in result.stdout, result.stderr
    deadline = time.monotonic() + 20
    with Client(dask_cluster, set_as_default=False, timeout=30) as client:
        while True:
            held = client.run(sessions_info)
            if not any(held.values()):
                break
            assert time.monotonic() < deadline, f"the workers still hold {held}"
            time.sleep(0.2)


def test_the_environment_variable_names_the_cluster(dask_cluster: Any) -> None:
    code = """
        import numpy as np
        import mtia_async.sync as mtia
        print(mtia.device_count(), mtia.asarray(np.arange(3), device=1).numpy().tolist())
    """
    result = run_python(code, env={"MTIA_ASYNC_CLUSTER": dask_cluster.scheduler_address}, timeout=90)
    assert result.stdout.split("\n")[0] == "2 [0, 1, 2]", result.stderr
    bad = run_python(
        "import mtia_async.sync as mtia\ntry:\n    mtia.init()\nexcept ValueError as e:\n    print(e)",
        env={"MTIA_ASYNC_CLUSTER": "tcp://no such host"}, timeout=60,
    )  # fmt: skip
    assert "MTIA_ASYNC_CLUSTER='tcp://no such host' is not a Dask scheduler address" in bad.stdout, bad.stderr


def test_two_devices_per_worker_share_its_process(dask_cluster: Any) -> None:
    with fresh_runtime(cluster=dask_cluster, devices_per_worker=2, workers=1, device_memory="256MiB"):
        assert mtia.device_count() == 4
        devices = state.runtime.devices  # type: ignore[union-attr]
        assert devices[0].link is devices[1].link and devices[2].link is devices[3].link  # type: ignore[attr-defined]
        a = mtia.asarray(np.arange(6.0), device=0)
        b = a.to(1)  # the same worker: no fetch
        c = a.to(3)  # another worker: fetched worker to worker
        s1 = mtia.Stream(1)
        s1.wait_event(mtia.Stream(0).record_event())
        with mtia.device(1):
            np.testing.assert_array_equal((b + 1).numpy(), np.arange(6.0) + 1)
        with mtia.device(3):
            np.testing.assert_array_equal(c.numpy(), np.arange(6.0))
        assert sys.getrefcount(a) >= 2


def test_the_command_line_runs_the_demo_on_the_cluster(dask_cluster: Any) -> None:
    from _support import run_module

    result = run_module(["--cluster", dask_cluster.scheduler_address, "demo"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "devices: 2" in result.stdout and "served 24 requests" in result.stdout
    assert "mean |tanh| 0.219" in result.stdout  # the same numbers as on local devices
    bad = run_module(["--cluster", "not an address", "info"], timeout=60)
    assert bad.returncode == 2 and "--cluster: cluster='not an address' is not a Dask scheduler address" in bad.stderr


def test_bench_cluster_runs_the_cluster_suite_on_the_named_cluster(dask_cluster: Any, tmp_path: Any) -> None:
    import json

    from _support import run_module

    out = tmp_path / "cluster.json"
    result = run_module(["bench", "--cluster", dask_cluster.scheduler_address, "--quick", "--reps", "1",
                         "--plain", "--no-progress", "--json", str(out)], timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr  # a missed goal is reported, not an exit status
    rows = json.loads(out.read_text())["rows"]
    assert [r["key"] for r in rows] == [
        "cluster.launch", "cluster.launch_arrays", "cluster.await", "cluster.to_host", "cluster.two_devices",
        "cluster.two_workers_bare",
    ]
    assert all(r["error"] is None and r["samples"] for r in rows), rows
    assert all(r["baseline"] for r in rows if r["key"] != "cluster.launch_arrays"), rows  # measured in the same run


def test_the_local_cluster_example_of_docs_cluster_md_runs(tmp_path: Any) -> None:
    import re

    from _support import ROOT, run_process

    with open(os.path.join(ROOT, "docs", "cluster.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) == 1 and "LocalCluster(" in blocks[0]
    script = tmp_path / "example.py"  # a file: the cluster's worker processes are spawned from it
    script.write_text(blocks[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTIA_ASYNC_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = run_process([sys.executable, str(script)], timeout=120, env=env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "2", result.stdout
    assert lines[1].startswith("[2.") and lines[1].endswith("]"), result.stdout  # 2 * exp(0) == 2.0, ...
