"""Devices on a Dask cluster (api.md "Devices on a Dask cluster", docs/cluster.md).

Every test runs on a real ``LocalCluster`` of 2 worker processes (the session fixture
``dask_cluster``), never a mock of Dask: FIFO (with out-of-order delivery injected in
the transport), events timed on the workers, waits and copies across workers, memory
and snapshots, RNG equality with the local runtime, and that nothing is left behind
(threads on the client, sessions and memory on the workers). The errors:
test_cluster_errors.py; a dead worker: test_cluster_failures.py.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import numpy as np
import pytest

import mtia_async as amtia
import mtia_async.sync as mtia
from mtia_async._core.runtime import state
from mtia_async.testing import check_invariants, fresh_runtime

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("remote")]  # remote: tests/conftest.py


def sessions(cluster: Any) -> dict[str, dict[str, int]]:
    """What each worker holds for mtia_async clients: {worker: {session key: bytes}}."""
    from distributed import Client

    from mtia_async._cluster.server import sessions_info

    with Client(cluster, set_as_default=False, timeout=30) as client:
        result: dict[str, dict[str, int]] = client.run(sessions_info)
        return result


def served(cluster: Any) -> int:
    """Bytes of device memory the workers' sessions served to other workers' fetches, in total."""
    from distributed import Client

    from mtia_async._cluster.server import served_info

    with Client(cluster, set_as_default=False, timeout=30) as client:
        result: dict[str, dict[str, int]] = client.run(served_info)
        return sum(sum(h.values()) for h in result.values())


def wait_for_no_sessions(cluster: Any, timeout: float = 20.0) -> dict[str, dict[str, int]]:
    deadline = time.monotonic() + timeout
    while True:
        held = sessions(cluster)
        if not any(held.values()) or time.monotonic() > deadline:
            return held
        time.sleep(0.2)




def links() -> list[Any]:
    rt = state.runtime
    assert rt is not None
    return [dev.link for dev in rt.devices]


# --- devices, arrays, operators ----------------------------------------------------------------
def test_one_device_per_worker_each_on_its_own_worker(remote: Any) -> None:
    assert mtia.device_count() == 2
    assert amtia.device_count() == 2
    workers = {link.address for link in links()}
    assert workers == set(remote.scheduler_info["workers"])
    assert len(workers) == 2
    assert mtia.get_device_properties(1)["total_memory"] == 1 << 30


def test_arrays_operators_ufuncs_and_reductions_give_numpy_results(remote: Any) -> None:
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    for device in (0, 1):
        with mtia.device(device):
            a = mtia.asarray(host)
            b = mtia.ones((3, 4))
            assert a.device == device
            np.testing.assert_array_equal((a * 2 + b).numpy(), host * 2 + 1)
            np.testing.assert_allclose(np.exp(a).numpy(), np.exp(host), rtol=1e-6)
            out = mtia.empty((3, 4))
            np.sqrt(a, out=out)
            np.testing.assert_allclose(out.numpy(), np.sqrt(host), rtol=1e-6)
            np.testing.assert_array_equal(a.sum(axis=0).numpy(), host.sum(axis=0))
            assert float(a.max().numpy()) == 11.0
            np.testing.assert_array_equal((a @ a.T).numpy(), host @ host.T)
            np.testing.assert_array_equal(a[1:, ::2].numpy(), host[1:, ::2])  # a view: metadata on the client
            np.testing.assert_array_equal(a.T.reshape(12).numpy(), host.T.reshape(12))
            a[0] = -1.0
            expected = host.copy()
            expected[0] = -1.0
            np.testing.assert_array_equal(a.numpy(), expected)
            np.testing.assert_array_equal(mtia.full((2, 2), 7, dtype=np.int64).numpy(), np.full((2, 2), 7))
            np.testing.assert_array_equal(a.astype(np.int32).numpy(), expected.astype(np.int32))


def test_host_copies_are_the_callers_own_arrays(remote: Any) -> None:
    """numpy() hands over the array Dask received (no second copy): it must be private and writable."""
    host = np.arange(3 * 1024 * 1024, dtype=np.float32).reshape(3, -1)  # large enough for out-of-band frames
    a = mtia.asarray(host)
    first, second = a.numpy(), a.numpy()
    assert first.flags.writeable and first.flags.c_contiguous and first.shape == host.shape
    first[0, 0] = -1.0
    np.testing.assert_array_equal(second, host)  # two copies, two buffers
    np.testing.assert_array_equal(a.numpy(), host)  # the device's memory is untouched
    np.testing.assert_array_equal(a[::2, 1:].numpy(), host[::2, 1:])  # a strided view, gathered on the worker
    assert mtia.zeros((0, 3)).numpy().shape == (0, 3)


def test_a_copy_to_the_host_gets_the_bytes_of_its_turn_while_later_work_waits_for_them_to_leave(remote: Any) -> None:
    """The worker sends device memory as it is (no copy): the stream holds later work until it left."""
    import asyncio

    from distributed import Client

    n = 8 << 20  # 32 MiB: more than the socket takes at once, so the worker's loop sends it over many turns

    async def body() -> tuple[np.ndarray, np.ndarray]:
        s = amtia.Stream(0)
        a = amtia.full(n, 1.0, device=0)
        s.wait_stream(amtia.current_stream(0))  # the fill of a is done first
        with amtia.stream(s):
            first = asyncio.ensure_future(a.to_host())
            await asyncio.sleep(0)  # the copy is enqueued: the task ran up to its wait
            s.launch(np.copyto, a, 2.0)  # right behind it on the same stream: it must not reach the copy's bytes
            second = await a.to_host()
            return await first, second

    for _ in range(3):
        first, second = asyncio.run(body())
        assert np.count_nonzero(first != 1.0) == 0
        assert np.count_nonzero(second != 2.0) == 0

    def comm_modes(dask_worker: Any) -> list[tuple[bool, bool]]:
        from mtia_async._cluster.session import SESSIONS

        return [(s.zero_copy, s.comm.allow_offload) for (_, address), s in SESSIONS.items()
                if address == dask_worker.address]  # fmt: skip

    with Client(remote, set_as_default=False, timeout=30) as client:
        # TCP comms: the bytes were not copied; no message is measured for offloading, on either end
        assert list(client.run(comm_modes).values()) == [[(True, False)], [(True, False)]]
    assert [link.comm.allow_offload for link in links()] == [False, False]


def test_launch_runs_user_kernels_on_the_worker_with_numpy_views(remote: Any) -> None:
    s = mtia.Stream(1)
    x = mtia.zeros(5, dtype=np.int64, device=1)
    s.wait_stream(mtia.current_stream(1))  # the fill of x is done first
    offset = 10

    def fill(v: np.ndarray, start: int, *, step: int) -> None:  # a closure: pickled by value
        v[:] = np.arange(start, start + step * v.size, step) + offset

    s.launch(fill, x, 3, step=2)
    with mtia.stream(s):
        np.testing.assert_array_equal(x.numpy(), np.arange(3, 13, 2) + 10)
    pids: list[int] = []
    s.launch(lambda: pids.append(1))  # runs on the worker: the client's list never changes
    s.synchronize()
    assert pids == []
    host = np.zeros(3)
    s.launch(np.copyto, host, 1.0)  # a host array is copied at the launch: read-only on the worker
    with pytest.raises(mtia.KernelError, match="read-only") as info:
        s.synchronize()
    assert any("host numpy array passed to launch is copied" in n for n in info.value.__cause__.__notes__)
    assert host.tolist() == [0.0, 0.0, 0.0]


def test_both_facades_and_trio_await_remote_work(remote: Any) -> None:
    import trio

    async def body() -> np.ndarray:
        s = amtia.Stream(0)
        a = amtia.asarray(np.arange(4.0), device=0)
        s.wait_stream(amtia.current_stream(0))  # the copy into a is done first
        with amtia.stream(s):
            b = a + 1
            await s.synchronize()
            e = s.record_event()
            await e
            return await b.to_host()

    np.testing.assert_array_equal(trio.run(body), np.arange(4.0) + 1)
    import asyncio

    np.testing.assert_array_equal(asyncio.run(body()), np.arange(4.0) + 1)


# --- FIFO --------------------------------------------------------------------------------------------
def _step(v: np.ndarray, i: int) -> None:
    v[0] = (v[0] * 31 + i) % 1_000_003


def _echo(v: np.ndarray, *args: object) -> None:
    import pickle

    blob = pickle.dumps(args)
    v[:8] = np.frombuffer(len(blob).to_bytes(8, "little"), np.uint8)
    v[8 : 8 + len(blob)] = np.frombuffer(blob, np.uint8)


def test_scalar_arguments_reach_the_kernel_with_their_type_and_value(remote: Any) -> None:
    import pickle

    s = mtia.Stream(1)
    v = mtia.zeros(4096, dtype=np.uint8, device=1)
    s.wait_stream(mtia.current_stream(1))
    cases = [
        (0, -1, 2**63 - 1, -(2**63), True, False, None, 1.5, float("-inf"), "ascii", b"\x00\xff", ""),  # unpickled
        (2**63, -(2**63) - 1, 10**30),  # beyond msgpack's 64 bits: pickled
        ("ünïcödé", "\udcff"),  # not ASCII (the second not even UTF-8-clean): pickled
        (np.float32(2.5), np.int64(3), 7),  # numpy scalars: pickled
    ]
    for args in cases:
        s.launch(_echo, v, *args)
        with mtia.stream(s):
            raw = v.numpy().tobytes()
        got = pickle.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
        assert got == args and [type(x) for x in got] == [type(x) for x in args]


def _step_host(v: np.ndarray, i: np.ndarray) -> None:
    v[0] = (v[0] * 31 + int(i[0])) % 1_000_003


def test_fifo_over_10000_launches_with_batches_delivered_out_of_order(remote: Any) -> None:
    for link in links():
        link.reorder = random.Random(7)  # the transport shuffles batches and holds some back
    s = mtia.Stream(0)
    x = mtia.zeros(1, dtype=np.int64, device=0)
    s.wait_stream(mtia.current_stream(0))  # the fill of x is done first
    expected = 0
    for i in range(10_000):
        if i % 7:
            s.launch(_step, x, i)  # travels unpickled: a DeviceArray's handle and an int
        else:
            s.launch(_step_host, x, np.array([i]))  # a host array: this launch is pickled
        expected = (expected * 31 + i) % 1_000_003
        if i % 97 == 0:
            s.record_event()  # many small batches, so reordering has something to reorder
        if i % 1000 == 0:
            time.sleep(0.002)
    with mtia.stream(s):
        assert int(x.numpy()[0]) == expected
    assert links()[0].shuffled > 0  # batches really went out of order


# --- events ---------------------------------------------------------------------------------------
def test_events_are_timed_on_the_worker_and_query_follows_the_work(remote: Any) -> None:
    s = mtia.Stream(1)
    start, end = mtia.Event(enable_timing=True), mtia.Event(enable_timing=True)
    start.record(s)
    s.launch(time.sleep, 0.3)
    end.record(s)
    assert not end.query() and not s.query()  # the sleep is still running on the worker
    end.synchronize()
    assert end.query() and s.query()
    assert 45.0 <= start.elapsed_time(end) < 5000.0


def test_a_woken_waiter_sees_the_stream_drained(remote: Any) -> None:
    s = mtia.Stream(0)
    seen: list[bool] = []
    for _ in range(20):
        s.launch(_noop)
        mark = s._impl.record_mark()  # the stream's last item: nothing is enqueued after it below
        reached = threading.Event()

        def waiter() -> None:  # called as the mark completes
            seen.append(s.query())
            reached.set()

        if not mark.add_waiter(waiter):
            waiter()
        assert reached.wait(30)
    assert seen == [True] * 20  # the token went back before the mark completed, as on a local device


def _noop() -> None:
    pass


def test_wait_event_and_to_between_workers(remote: Any) -> None:
    s0, s1 = mtia.Stream(0), mtia.Stream(1)
    a = mtia.zeros(1000, device=0)
    s0.wait_stream(mtia.current_stream(0))  # the fill of a is done first

    def slow_fill(v: np.ndarray) -> None:
        time.sleep(0.2)
        v[:] = 5.0

    s0.launch(slow_fill, a)
    done = s0.record_event()
    s1.wait_event(done)  # s1's later work waits for s0's, across workers
    b = mtia.empty(1000, device=1)
    s1.launch(np.copyto, b, 3.0)
    reads = links()[0].reads, links()[1].reads
    served_before = served(remote)
    with mtia.stream(s1), mtia.stream(s0):
        c = a.to(1)  # worker to worker: on s1, after the work enqueued so far on s0
    assert not any(reads)  # the client asked no worker for the bytes
    s1.synchronize()
    assert served(remote) - served_before == 4000  # worker 1 fetched a's 4,000 bytes from worker 0
    np.testing.assert_array_equal(c.numpy(), np.full(1000, 5.0, np.float32))
    with mtia.device(0):
        s0.launch(np.copyto, a, 9.0)
        mtia.current_stream(0).wait_stream(s0)
        d = a.to(1)  # on the default streams, which wait for the launch above
    np.testing.assert_array_equal(d.numpy(), np.full(1000, 9.0, np.float32))
    s0.wait_stream(s1)
    s0.synchronize()


def test_wait_stream_across_workers_holds_the_later_work_until_the_other_worker_is_done(remote: Any) -> None:
    s0, s1 = mtia.Stream(0), mtia.Stream(1)
    s0.launch(time.sleep, 0.5)
    e0 = s0.record_event()
    s1.wait_stream(s0)  # s1 (on the other worker) waits for everything enqueued so far on s0
    e1 = s1.record_event()
    started = time.monotonic()
    e1.synchronize()
    assert e0.query()  # s1 passed its wait only once s0's work was done
    assert time.monotonic() - started >= 0.4  # the 0.5 s sleep on worker 0 held worker 1's stream
    s0.synchronize()


async def _async_wait_stream() -> tuple[bool, list[float]]:
    s0, s1 = amtia.Stream(0), amtia.Stream(1)
    a = amtia.zeros(3, device=0)
    b = amtia.empty(3, device=1)
    s0.wait_stream(amtia.current_stream(0))

    def slow_fill(v: np.ndarray) -> None:
        time.sleep(0.2)
        v[:] = 7.0

    s0.launch(slow_fill, a)
    done = s0.record_event()
    s1.wait_stream(s0)
    with amtia.stream(s1), amtia.stream(s0):
        c = a.to(1)  # on s1, after s0's fill
        s1.launch(np.copyto, b, c)
        await s1.synchronize()
        return done.query(), (await b.to_host()).tolist()


def test_wait_stream_across_workers_in_asyncio_and_trio(remote: Any) -> None:
    import asyncio

    import trio

    assert asyncio.run(_async_wait_stream()) == (True, [7.0, 7.0, 7.0])
    assert trio.run(_async_wait_stream) == (True, [7.0, 7.0, 7.0])


def test_a_failure_crosses_workers_through_wait_event(remote: Any) -> None:
    s0, s1 = mtia.Stream(0), mtia.Stream(1)

    def boom() -> None:
        raise ValueError("boom on worker 0")

    s0.launch(boom)
    s1.wait_event(s0.record_event())
    with pytest.raises(mtia.KernelError, match="boom on worker 0"):
        s1.synchronize()
    s1.synchronize()  # reported: later work runs again
    with pytest.raises(mtia.KernelError, match="boom on worker 0"):
        s0.synchronize()
    s0.synchronize()


# --- memory ---------------------------------------------------------------------------------------
def test_memory_stats_snapshots_and_worker_memory_agree(remote: Any) -> None:
    a = mtia.empty((1 << 20,), device=0)  # 4 MiB: a 20 MiB segment
    b = mtia.zeros(100, device=1)
    stats0 = mtia.memory_stats(0)
    assert stats0["allocated_bytes.all.current"] == 4 << 20
    assert mtia.memory_reserved(0) == 20 << 20
    assert mtia.memory_reserved(1) == 2 << 20
    snap = mtia.snapshot()
    for device in (0, 1):
        mine = {**snap, "segments": [seg for seg in snap["segments"] if seg["device"] == device]}
        check_invariants(mtia.memory_stats(device), mine)
    assert {seg["address"] >> 40 for seg in snap["segments"]} == {1, 2}  # device addresses, as locally
    assert a.data_ptr() in [seg["address"] for seg in snap["segments"] if seg["device"] == 0]
    reserved = sorted([mtia.memory_reserved(0), mtia.memory_reserved(1)])
    deadline = time.monotonic() + 10
    while sorted(sum(h.values()) for h in sessions(remote).values()) != reserved:
        assert time.monotonic() < deadline, f"the workers hold {sessions(remote)}, the client reserved {reserved}"
        time.sleep(0.1)
    del a, b
    mtia.empty_cache()
    assert mtia.memory_reserved(0) == mtia.memory_reserved(1) == 0
    deadline = time.monotonic() + 10
    while any(sum(h.values()) for h in sessions(remote).values()):
        assert time.monotonic() < deadline, "the workers kept released segments"
        time.sleep(0.1)


def _oom_message() -> str:
    keep = mtia.empty((300 << 20,), dtype=np.uint8, device=1)
    with pytest.raises(mtia.OutOfMemoryError) as info:
        mtia.empty((800 << 20,), dtype=np.uint8, device=1)
    assert mtia.memory_allocated(1) == 300 << 20  # the failed call changed nothing
    del keep
    mtia.empty_cache()
    return str(info.value)


def test_out_of_memory_is_raised_at_the_call_with_the_local_runtimes_error(remote: Any) -> None:
    message = _oom_message()
    assert "out of memory" in message.lower()
    assert mtia.memory_reserved(1) == 0
    with fresh_runtime(device_count=2, workers=2, device_memory="1GiB"):
        assert _oom_message() == message  # the same error, word for word


def _memory_story() -> tuple[str, list[tuple[str, int, int]]]:
    """The summary and the history's trace of device 1 after a few allocations and frees."""
    mtia.record_memory_history("all")
    try:
        a = mtia.empty(1000, device=1)
        b = mtia.zeros((64, 64), device=1)
        del a
        c = mtia.ones(10_000, device=1)
        mtia.synchronize(1)
        del b, c
        mtia.synchronize(1)
        trace = [(e["action"], e["addr"], e["size"]) for e in mtia.snapshot()["device_traces"][1]]
        return mtia.memory_summary(1), trace
    finally:
        mtia.record_memory_history(None)


def test_memory_summary_and_history_are_those_of_the_local_runtime(remote: Any) -> None:
    summary, trace = _memory_story()
    assert {"alloc", "free_completed"} <= {action for action, _, _ in trace}
    with fresh_runtime(device_count=2, workers=2, device_memory="1GiB"):
        assert _memory_story() == (summary, trace)


# --- RNG -----------------------------------------------------------------------------------------------
def test_same_seed_same_numbers_as_the_local_runtime(remote: Any) -> None:
    mtia.manual_seed(1234)
    remote_values = [mtia.randn(1000, device=d).numpy() for d in (0, 1)] + [mtia.rand(7, device=1).numpy()]
    with fresh_runtime(device_count=2, workers=2, device_memory="1GiB"):
        mtia.manual_seed(1234)
        local_values = [mtia.randn(1000, device=d).numpy() for d in (0, 1)] + [mtia.rand(7, device=1).numpy()]
    for r, loc in zip(remote_values, local_values):
        np.testing.assert_array_equal(r, loc)


# --- lifetime -------------------------------------------------------------------------------------------
def test_shutdown_leaves_no_thread_memory_or_object_here_and_no_session_or_memory_on_the_workers(remote: Any) -> None:
    import gc
    import weakref

    from mtia_async._cluster.backing import PHANTOMS

    a = mtia.ones(1 << 18, device=0)
    b = mtia.ones(1 << 18, device=1)
    (a + b.to(0)).numpy()
    assert all(len(h) == 1 for h in sessions(remote).values())
    assert PHANTOMS  # the client's phantom segments of the remote devices
    rt = state.runtime
    assert rt is not None
    devices = [weakref.ref(dev) for dev in rt.devices]
    threads = {t for t in threading.enumerate() if not t.name.startswith("mtia_async")}
    del a, b, rt
    fresh = fresh_runtime()
    fresh.__enter__()
    try:
        gc.collect()
        assert [t.name for t in threading.enumerate() if t.name.startswith("mtia_async")] == []
        assert {t for t in threading.enumerate() if t not in threads} == set()  # nor any other thread
        assert [ref() for ref in devices] == [None, None]  # nothing keeps the closed runtime's devices
        assert PHANTOMS == {}  # nor their segments' address space
        assert not any(wait_for_no_sessions(remote).values())
    finally:
        fresh.__exit__(None, None, None)


def test_no_leaks_across_remote_work(remote: Any) -> None:
    from _support import no_leaks

    with no_leaks():
        a = mtia.randn(1 << 16, device=0)
        c = np.exp(a.to(1)) + 1
        assert c.numpy().shape == (1 << 16,)
        del a, c
