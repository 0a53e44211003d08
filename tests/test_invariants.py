"""The statistics and snapshot invariants: ``check_invariants`` itself, and a Hypothesis
state machine over one runtime's devices that checks them after every step.

Catalogue rows: M5, M6. M6 is also checked under concurrency by ``test_C7_*``
(test_memory_api.py).

The machine's rules: allocate (0 B .. 24 MiB, on several streams of both devices), free,
record_stream, launch kernels that write and check each array's own pattern, record and
wait for events across streams and devices, synchronize (stream, event, device),
empty_cache, reset_peak_memory_stats, and hold/release a side stream (a kernel waiting on
a gate) so that frees after ``record_stream`` stay pending across steps.

After every step, on each device: M5 and M6 on one atomic ``stats_and_snapshot()``
(``check_invariants``), plus what it lacks: ``current == current_at_reset + allocated -
freed`` against the values taken at the last ``reset_peak_memory_stats``, and
``allocation.all.current`` equal to the model's live count (exactly when nothing is held,
at least when kernels still hold arrays); and every live array still holds its pattern,
read back with the blocking ``.numpy()``.

Hypothesis does not run async rules: the machine drives the blocking facade
(``mtia_async.sync``). Streams 0 and 1 of a device hold the arrays and never wait for
the side stream (events are recorded on them only), so a read-back never waits for a
held gate.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from _support import MiB, FakeStream
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async._core.runtime import get_runtime
from mtia_async._memory.stats import FIELDS, POOLS, STAT_NAMES
from mtia_async.testing import check_invariants, fresh_runtime, reset_runtime


def test_check_invariants_can_fail(alloc: Any, s0: FakeStream) -> None:
    alloc.malloc(100, s0)
    stats, snap = alloc.stats_and_snapshot()
    check_invariants(stats, snap)
    for key, value in (
        ("allocation.all.current", 5),
        ("allocated_bytes.small_pool.freed", 1),
        ("reserved_bytes.all.peak", 0),
    ):
        broken = dict(stats, **{key: value})
        with pytest.raises(AssertionError):
            check_invariants(broken, None)
    broken_snap = json.loads(json.dumps(snap))
    broken_snap["segments"][0]["blocks"][0]["size"] += 512
    with pytest.raises(AssertionError, match="block"):
        check_invariants(None, broken_snap)
    with pytest.raises(AssertionError, match="snapshot shows"):
        check_invariants(
            dict(
                stats,
                **{
                    "segment.all.current": 2,
                    "segment.all.allocated": 2,
                    "segment.small_pool.current": 2,
                    "segment.small_pool.allocated": 2,
                    "segment.all.peak": 2,
                    "segment.small_pool.peak": 2,
                },
            ),
            snap,
        )


# --- the state machine (M5, M6) ------------------------------------------------------------------
DEVICES = 2
MAX_LIVE = 12  # arrays per device
SIZES = st.one_of(
    st.just(0),
    st.integers(1, 4096),
    st.integers(4097, MiB),  # the small pool's upper end
    st.integers(MiB + 1, 10 * MiB),  # 20 MiB segments
    st.integers(10 * MiB + 1, 24 * MiB),  # segments of their own size
)


def fill(view: np.ndarray, value: int) -> None:
    view.fill(value)


def verify(view: np.ndarray, value: int) -> None:
    if view.size and not (view == value).all():
        raise AssertionError(f"an array lost its pattern {value}")


def verify_view(views: list[np.ndarray], value: int) -> None:
    verify(views.pop(), value)


@dataclass(eq=False)
class Entry:
    array: Any
    value: int
    device: int
    stream: Any  # its allocating stream (0 or 1 of its device)
    which: int  # that stream's index


class DeviceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        reset_runtime()
        mtia.configure(device_count=DEVICES, device_memory="4GiB", workers=2)
        self.streams = [[mtia_sync.Stream(device=d) for _ in range(2)] for d in range(DEVICES)]
        self.side = [mtia_sync.Stream(device=d) for d in range(DEVICES)]
        self.live: dict[int, Entry] = {}
        self.next_id = 0
        self.events: list[mtia_sync.Event] = []
        self.gates: list[threading.Event | None] = [None] * DEVICES
        self.at_reset: list[dict[str, Any] | None] = [None] * DEVICES
        self.last_freed: tuple[int, int, int] | None = None  # (size, device, stream index)

    # --- helpers
    def _pick(self, data: st.DataObject) -> Entry:
        return self.live[data.draw(st.sampled_from(sorted(self.live)), label="array")]

    def _count(self, device: int) -> int:
        return sum(1 for e in self.live.values() if e.device == device and e.array.nbytes)

    # --- rules
    @rule(size=SIZES, device=st.integers(0, DEVICES - 1), which=st.integers(0, 1), like_last_freed=st.booleans())
    def allocate(self, size: int, device: int, which: int, like_last_freed: bool) -> None:
        if like_last_freed and self.last_freed is not None:
            size, device, which = self.last_freed  # the request most likely to reuse a block
        if self._count(device) >= MAX_LIVE:
            return
        s = self.streams[device][which]
        self.next_id += 1
        value = self.next_id % 255 + 1  # the array's id, as a byte
        with mtia_sync.stream(s):
            a = mtia.empty(size, dtype=np.uint8, device=device)
            s.launch(fill, a, value)
        self.live[self.next_id] = Entry(a, value, device, s, which)

    def _free(self, entry: Entry) -> None:
        del self.live[next(k for k, v in self.live.items() if v is entry)]
        self.last_freed = (entry.array.nbytes, entry.device, entry.which)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        self._free(self._pick(data))

    @precondition(lambda self: self.live)
    @rule(data=st.data(), rewrite=st.booleans(), sleep=st.booleans())
    def launch(self, data: st.DataObject, rewrite: bool, sleep: bool) -> None:
        entry = self._pick(data)
        if sleep:
            entry.stream.launch(threading.Event().wait, 0.002)  # widen the window
        entry.stream.launch(fill if rewrite else verify, entry.array, entry.value)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), also_free=st.booleans())
    def record_stream(self, data: st.DataObject, also_free: bool) -> None:
        entry = self._pick(data)
        side = self.side[entry.device]
        self.hold_side_stream(entry.device)  # the side's use stays pending until a release
        views: list[np.ndarray] = []
        entry.stream.launch(views.append, entry.array)  # the array's memory as a bare numpy view
        side.wait_stream(entry.stream)
        # The side kernel holds the view, not the DeviceArray: only record_stream keeps the
        # block from being reused (and refilled with another pattern) before it runs.
        side.launch(verify_view, views, entry.value)
        entry.array.record_stream(side)
        if also_free:
            self._free(entry)

    @rule(device=st.integers(0, DEVICES - 1), which=st.integers(0, 1), timing=st.booleans())
    def record_event(self, device: int, which: int, timing: bool) -> None:
        e = self.streams[device][which].record_event(mtia_sync.Event(enable_timing=timing))
        self.events = [*self.events[-7:], e]

    @precondition(lambda self: self.events)
    @rule(data=st.data(), device=st.integers(0, DEVICES - 1), which=st.integers(0, 2))
    def wait_event(self, data: st.DataObject, device: int, which: int) -> None:
        e = data.draw(st.sampled_from(self.events), label="event")
        target = self.side[device] if which == 2 else self.streams[device][which]
        target.wait_event(e)  # possibly across devices

    @rule(device=st.integers(0, DEVICES - 1), which=st.integers(0, 1))
    def synchronize_stream(self, device: int, which: int) -> None:
        self.streams[device][which].synchronize()

    @precondition(lambda self: self.events)
    @rule(data=st.data())
    def synchronize_event(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self.events), label="event").synchronize()

    @rule(device=st.integers(0, DEVICES - 1))
    def synchronize_device(self, device: int) -> None:
        if self.gates[device] is None:  # a held side stream would never drain
            mtia_sync.synchronize(device)

    @rule()
    def empty_cache(self) -> None:
        mtia.empty_cache()

    @rule(device=st.integers(0, DEVICES - 1))
    def reset_peak_memory_stats(self, device: int) -> None:
        mtia.reset_peak_memory_stats(device)
        self.at_reset[device] = mtia.memory_stats(device)

    @rule(device=st.integers(0, DEVICES - 1))
    def hold_side_stream(self, device: int) -> None:
        if self.gates[device] is None:
            gate = self.gates[device] = threading.Event()
            self.side[device].launch(gate.wait, 30)

    @rule(device=st.integers(0, DEVICES - 1))
    def release_side_stream(self, device: int) -> None:
        gate, self.gates[device] = self.gates[device], None
        if gate is not None:
            gate.set()

    # --- invariants
    @invariant()
    def statistics_and_snapshots_are_consistent(self) -> None:
        for d in range(DEVICES):
            stats, snap = get_runtime().devices[d].allocator.stats_and_snapshot()
            check_invariants(stats, snap)  # M5 and M6, and each against the other
            base = self.at_reset[d]
            for name in STAT_NAMES:
                for pool in POOLS:
                    key = f"{name}.{pool}"
                    if base is None:
                        start_cur = start_alloc = start_freed = 0
                    else:
                        start_cur, start_alloc, start_freed = (base[f"{key}.{f}"] for f in ("current", "allocated", "freed"))
                    expected = start_cur + (stats[f"{key}.allocated"] - start_alloc) - (stats[f"{key}.freed"] - start_freed)
                    assert stats[f"{key}.current"] == expected, key
                    assert stats[f"{key}.peak"] >= stats[f"{key}.current"] >= 0, key
            assert len(FIELDS) == 4
            # Arrays the model dropped may still be held by queued kernels, never the reverse.
            assert stats["allocation.all.current"] >= self._count(d)

    @invariant()
    def live_count_is_exact_once_drained(self) -> None:
        if any(g is not None for g in self.gates):
            return
        for d in range(DEVICES):
            mtia_sync.synchronize(d)
        for d in range(DEVICES):
            assert mtia.memory_stats(d)["allocation.all.current"] == self._count(d)  # settles worker frees

    @invariant()
    def every_live_array_holds_its_pattern(self) -> None:
        for entry in self.live.values():
            a = entry.array
            if not a.nbytes:
                continue
            sample = a if a.nbytes <= 65536 else a[:: max(1, a.nbytes // 4096)]
            with mtia_sync.stream(entry.stream):
                host = sample.numpy()  # waits for the array's own stream only
            assert (host == entry.value).all(), f"array {entry.value} on mtia:{entry.device} lost its pattern"

    def teardown(self) -> None:
        try:
            for d in range(DEVICES):
                self.release_side_stream(d)
            for d in range(DEVICES):
                mtia_sync.synchronize(d)  # raises what any kernel found (a verify on the side stream)
        finally:
            self.live.clear()
            self.events.clear()
            reset_runtime()


@pytest.mark.timeout(180)
def test_M5_M6_state_machine_keeps_stats_and_snapshot_invariants_after_every_step() -> None:
    with fresh_runtime():
        run_state_machine_as_test(
            DeviceMachine,
            settings=settings(
                max_examples=50,
                stateful_step_count=40,
                deadline=None,
                derandomize=True,  # the same runs every time (the suite's seeded-randomness rule)
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            ),
        )
