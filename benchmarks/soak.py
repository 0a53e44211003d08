"""Seeded soak of mtia_async: every operation, several threads, two event loops (catalogue L4).

    python benchmarks/soak.py --seconds 30          # CI: a checkpoint every 10 s
    python benchmarks/soak.py --minutes 10 --seed 7 # nightly: a checkpoint every minute

Actors run a seeded random mix of alloc / free / kernel / record / wait / sync /
empty_cache / record_stream / to_host / rng / reset_peak on both devices and several
streams each: ``--threads`` host threads drive the blocking facade
(``mtia_async.sync``), and ``--loops`` threads each run their own ``asyncio.run`` with
``--tasks`` actor tasks driving the async facade. Both flavours run the very same op
mix (``Actor.step`` is a generator that yields its waits; a driver blocks or awaits
them). Every buffer is filled with its own byte and checked by kernels, by host
copies and at checkpoints, so corruption is caught, not just crashes.

Checks (exit 1 with a message on the first failure):

* every 1,000 ops: M5 and M6 (``check_invariants`` on each device allocator's
  ``stats_and_snapshot()``, taken atomically);
* at every checkpoint the actors park (they drop their buffers and drain their
  streams); then each device must be back to zero allocations, zero active and
  requested bytes and, after ``empty_cache()``, zero reserved bytes and no segment;
* after the warm-up (the first 20 % of the run, at least 5 s): RSS (``/proc/self/statm``,
  measured after ``gc.collect()`` and glibc's ``malloc_trim(0)``, with glibc's mmap
  threshold pinned so freed segments leave the process: ``pin_mmap_threshold``) must
  stay within 5 % of the first checkpoint after the warm-up, and the thread count and
  each loop's task count must not change between checkpoints;
* any exception in an actor (a ``KernelError`` from a corrupted buffer included),
  and any actor that does not park or stop within 30 s (a hang).

It always stops by itself: every join has a timeout, and a ``faulthandler`` watchdog
dumps every thread's stack and exits if the whole run overshoots by two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import faulthandler
import gc
import itertools
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:
    import mtia_async as mtia
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import mtia_async as mtia
import mtia_async.sync as mtia_sync
from mtia_async.testing import check_invariants
from mtia_async._core.runtime import get_runtime

__all__ = ["Soak", "SoakFailure", "SoakResult", "main"]

MiB = 1 << 20
CHECK_EVERY = 1_000  # ops between two M5/M6 checks
PARK_TIMEOUT = 30.0  # seconds an actor may take to park or stop before it counts as hung
MAX_LIVE_BYTES = 48 * MiB  # per actor
MAX_LIVE = 32  # buffers per actor
MAX_EVENTS = 8

# (weight, op name): the mix of one actor step
OPS = (
    (22, "alloc"),
    (18, "free"),
    (14, "kernel"),
    (8, "record"),
    (8, "wait"),
    (8, "sync"),
    (2, "empty_cache"),
    (7, "record_stream"),
    (6, "to_host"),
    (6, "rng"),
    (1, "reset_peak"),
)
_NAMES = [name for _, name in OPS]
_WEIGHTS = list(itertools.accumulate(w for w, _ in OPS))

Wait = tuple[str, Any]  # what a step yields: ("sync", stream or event), ("device", index), ("host", (array, stream))


class SoakFailure(Exception):
    """An invariant broke, a buffer was corrupted, memory or threads grew, or an actor hung."""


# --- kernels (run in worker threads) ----------------------------------------------------------
def fill(view: np.ndarray, value: int) -> None:
    view.fill(value)


def verify(view: np.ndarray, value: int) -> None:
    if view.size and not (view == value).all():
        bad = int(np.flatnonzero(view != value)[0])
        raise AssertionError(f"buffer corrupted: byte {bad} is {int(view[bad])}, expected {value}")


# --- one actor: the op mix, as a generator of waits ---------------------------------------------
@dataclass(eq=False)  # identity: == on a DeviceArray is elementwise
class Buffer:
    array: Any  # a DeviceArray
    value: int
    stream: Any
    nbytes: int


class Actor:
    """One client of the runtime: its own streams, buffers, events and generators."""

    def __init__(self, name: str, api: Any, seed: int, devices: int) -> None:
        self.name = name
        self.api = api  # mtia_async.sync (threads) or mtia_async (tasks)
        self.rng = random.Random(seed)
        self.streams = [[api.Stream(device=d, priority=-(k % 2)) for k in range(3)] for d in range(devices)]
        self.gens = [mtia.Generator(device=d) for d in range(devices)]
        for d, gen in enumerate(self.gens):
            gen.manual_seed(seed * 31 + d)
        self.live: list[Buffer] = []
        self.events: list[Any] = []
        self.live_bytes = 0

    def _stream(self, device: int | None = None) -> Any:
        d = self.rng.randrange(len(self.streams)) if device is None else device
        return self.rng.choice(self.streams[d])

    def _pick(self) -> Buffer | None:
        return self.rng.choice(self.live) if self.live else None

    def _drop(self, buf: Buffer) -> None:
        self.live.remove(buf)
        self.live_bytes -= buf.nbytes

    def step(self) -> Generator[Wait, Any, None]:
        """One random op; yields the waits it needs and receives their results."""
        r = self.rng.randrange(_WEIGHTS[-1])
        op = _NAMES[next(i for i, w in enumerate(_WEIGHTS) if r < w)]
        yield from getattr(self, "op_" + op)()

    def op_alloc(self) -> Iterator[Wait]:
        if len(self.live) >= MAX_LIVE or self.live_bytes >= MAX_LIVE_BYTES:
            yield from self.op_free()
            return
        s = self._stream()
        nbytes = 0 if self.rng.random() < 0.02 else int(2 ** self.rng.uniform(0, 24))  # 0, 1 B .. 16 MiB
        value = self.rng.randrange(256)
        with self.api.stream(s):
            a = mtia.empty(nbytes, dtype=np.uint8, device=s.device_index)
            s.launch(fill, a, value)
        self.live.append(Buffer(a, value, s, nbytes))
        self.live_bytes += nbytes
        return
        yield

    def op_free(self) -> Iterator[Wait]:
        buf = self._pick()
        if buf is not None:
            self._drop(buf)
        return
        yield

    def op_kernel(self) -> Iterator[Wait]:
        buf = self._pick()
        if buf is None or self.rng.random() < 0.2:
            self._stream().launch(time.sleep, self.rng.uniform(0, 0.002))
        else:
            buf.stream.launch(verify, buf.array, buf.value, reads=[buf.array], writes=[])
        return
        yield

    def op_record(self) -> Iterator[Wait]:
        e = self._stream().record_event(self.api.Event(enable_timing=self.rng.random() < 0.5))
        self.events.append(e)
        del self.events[:-MAX_EVENTS]
        return
        yield

    def op_wait(self) -> Iterator[Wait]:
        s = self._stream()
        if self.events and self.rng.random() < 0.6:
            s.wait_event(self.rng.choice(self.events))  # possibly recorded on the other device
        else:
            s.wait_stream(self._stream())
        return
        yield

    def op_sync(self) -> Iterator[Wait]:
        r = self.rng.random()
        if r < 0.45:
            yield ("sync", self._stream())
        elif r < 0.9 and self.events:
            yield ("sync", self.rng.choice(self.events))
        else:
            yield ("device", self.rng.randrange(len(self.streams)))

    def op_empty_cache(self) -> Iterator[Wait]:
        mtia.empty_cache()
        return
        yield

    def op_record_stream(self) -> Iterator[Wait]:
        buf = self._pick()
        if buf is None:
            return
        others = [s for s in self.streams[buf.array.device] if s != buf.stream]
        other = self.rng.choice(others)
        other.wait_stream(buf.stream)  # the fill is done before the other stream reads
        other.launch(verify, buf.array, buf.value, reads=[buf.array], writes=[])
        buf.array.record_stream(other)
        if self.rng.random() < 0.5:
            self._drop(buf)  # freed now: the block waits for the other stream's work
        return
        yield

    def op_to_host(self) -> Iterator[Wait]:
        buf = self._pick()
        if buf is None:
            return
        host = yield ("host", (buf.array, buf.stream))
        verify(host, buf.value)

    def op_rng(self) -> Iterator[Wait]:
        s = self._stream()
        d = s.device_index
        gen = self.gens[d]
        n = self.rng.randrange(1, 4096)
        with self.api.stream(s):
            state = gen.get_state()
            x = mtia.rand(n, device=d, generator=gen)
            gen.set_state(state)
            y = mtia.rand(n, device=d, generator=gen)
            mtia.randn(self.rng.randrange(0, 256), device=d)  # the device's default generator
        hx = yield ("host", (x, s))
        hy = yield ("host", (y, s))
        if not (np.array_equal(hx, hy) and ((hx >= 0) & (hx < 1)).all()):
            raise AssertionError(f"{self.name}: a get_state/set_state round trip drew different numbers")

    def op_reset_peak(self) -> Iterator[Wait]:
        mtia.reset_peak_memory_stats(self.rng.randrange(len(self.streams)))
        return
        yield

    def park(self) -> Iterator[Wait]:
        """Drop every buffer and event and drain this actor's streams."""
        self.live.clear()
        self.events.clear()
        self.live_bytes = 0
        for per_device in self.streams:
            for s in per_device:
                yield ("sync", s)


# --- the two drivers ------------------------------------------------------------------------------
def run_blocking(gen: Generator[Wait, Any, None]) -> None:
    result: Any = None
    try:
        while True:
            kind, obj = gen.send(result)
            result = None
            if kind == "sync":
                obj.synchronize()
            elif kind == "device":
                mtia_sync.synchronize(obj)
            else:
                array, stream = obj
                with mtia_sync.stream(stream):
                    result = array.numpy()
    except StopIteration:
        pass


async def run_async(gen: Generator[Wait, Any, None]) -> None:
    result: Any = None
    try:
        while True:
            kind, obj = gen.send(result)
            result = None
            if kind == "sync":
                await obj.synchronize()
            elif kind == "device":
                await mtia.synchronize(obj)
            else:
                array, stream = obj
                with mtia.stream(stream):
                    result = await array.to_host()
    except StopIteration:
        pass


# --- measurements -----------------------------------------------------------------------------------
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_M_MMAP_THRESHOLD = -3
try:
    _libc = ctypes.CDLL("libc.so.6")
    _malloc_trim: Callable[[int], int] | None = _libc.malloc_trim
    _mallopt: Callable[[int, int], int] | None = _libc.mallopt
except (OSError, AttributeError):  # not glibc
    _malloc_trim = _mallopt = None


def pin_mmap_threshold() -> None:
    """Keep glibc's mmap threshold at its initial 128 KiB, so RSS measures live memory.

    glibc raises the threshold to the size of each mmapped chunk freed (up to 32 MiB):
    after the first 20 MiB segment is released, later segments come from the heap, and
    freed heap memory may stay resident. RSS then steps up by tens of MiB at random
    moments with nothing alive. Pinned, every segment is mmapped and unmapped when freed
    (a leaked buffer still counts: it stays mapped).
    """
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm (0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def _mib(n: int) -> str:
    return f"{n / MiB:,.1f} MiB"


@dataclass
class Checkpoint:
    at: float  # seconds since the start
    ops: int
    rate: float  # ops/s since the previous checkpoint
    rss: int
    threads: int
    tasks: list[int]
    stats: list[dict[str, Any]]

    def line(self) -> str:
        devices = "  ".join(
            f"mtia:{d} allocs {s['allocation.all.allocated']:,} peak {_mib(s['allocated_bytes.all.peak'])} "
            f"reserved-peak {_mib(s['reserved_bytes.all.peak'])} segs+/- {s['num_device_alloc']:,}/"
            f"{s['num_device_free']:,} retries {s['num_alloc_retries']} ooms {s['num_ooms']}"
            for d, s in enumerate(self.stats)
        )
        return (
            f"[{self.at:7.1f} s] ops {self.ops:,} ({self.rate:,.0f} ops/s)  rss {_mib(self.rss)}  "
            f"threads {self.threads}  tasks {self.tasks}  |  {devices}"
        )


@dataclass
class SoakResult:
    ok: bool
    message: str
    ops: int
    seconds: float
    checkpoints: list[Checkpoint] = field(default_factory=list)


# --- the soak ---------------------------------------------------------------------------------------
class Soak:
    """One soak run against the current runtime (see the module docstring).

    Args:
        seconds: how long the actors run.
        seed: seeds every actor (actor k uses ``seed * 1000 + k``).
        report_every: seconds between checkpoints (one more at the end).
        warmup: seconds before RSS, thread and task counts are held constant.
        threads / loops / tasks: host-thread actors, event-loop threads, actor tasks per loop.
        out: where checkpoint lines go.
    """

    def __init__(
        self,
        seconds: float,
        seed: int = 0,
        report_every: float = 10.0,
        warmup: float | None = None,
        threads: int = 2,
        loops: int = 2,
        tasks: int = 2,
        out: Callable[[str], None] = print,
    ) -> None:
        self.seconds = seconds
        self.seed = seed
        self.report_every = report_every
        self.warmup = max(0.2 * seconds, 5.0) if warmup is None else warmup
        self.n_threads, self.n_loops, self.n_tasks = threads, loops, tasks
        self.n_actors = threads + loops * tasks
        self.out = out
        self.devices = mtia.device_count()
        self.ops = itertools.count(1)
        self.ops_done = 0
        self.pause = threading.Event()
        self.stop = threading.Event()
        self.parked = 0
        self.parked_lock = threading.Lock()
        self.failures: list[str] = []
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.checkpoints: list[Checkpoint] = []

    # --- failure reporting
    def fail(self, message: str) -> None:
        self.failures.append(message)
        self.stop.set()

    def _count_op(self) -> None:
        n = next(self.ops)
        self.ops_done = n
        if n % CHECK_EVERY == 0:
            self.check_allocators()

    def check_allocators(self) -> list[dict[str, Any]]:
        """M5 and M6 on every device, each from one atomic ``stats_and_snapshot()``."""
        all_stats = []
        for dev in get_runtime().devices:
            stats, snap = dev.allocator.stats_and_snapshot()
            check_invariants(stats, snap)
            all_stats.append(stats)
        return all_stats

    # --- parking (checkpoints)
    def _parked(self, delta: int) -> None:
        with self.parked_lock:
            self.parked += delta

    def _thread_actor(self, k: int) -> None:
        try:
            actor = Actor(f"thread{k}", mtia_sync, self.seed * 1000 + k, self.devices)
            while not self.stop.is_set():
                if self.pause.is_set():
                    run_blocking(actor.park())
                    self._parked(1)
                    while self.pause.is_set() and not self.stop.is_set():
                        time.sleep(0.002)
                    self._parked(-1)
                    continue
                run_blocking(actor.step())
                self._count_op()
        except BaseException:
            self.fail(f"thread actor {k} raised:\n{traceback.format_exc()}")

    async def _task_actor(self, k: int) -> None:
        try:
            actor = Actor(f"task{k}", mtia, self.seed * 1000 + k, self.devices)
            while not self.stop.is_set():
                if self.pause.is_set():
                    await run_async(actor.park())
                    self._parked(1)
                    while self.pause.is_set() and not self.stop.is_set():
                        await asyncio.sleep(0.002)
                    self._parked(-1)
                    continue
                await run_async(actor.step())
                self._count_op()
                if k % 2:
                    await asyncio.sleep(0)  # let the loop's other actor task in
        except BaseException:
            self.fail(f"task actor {k} raised:\n{traceback.format_exc()}")

    def _loop_thread(self, first: int) -> None:
        async def main() -> None:
            self.loops.append(asyncio.get_running_loop())
            await asyncio.gather(*(self._task_actor(first + i) for i in range(self.n_tasks)))

        try:
            asyncio.run(main())
        except BaseException:
            self.fail(f"event loop thread raised:\n{traceback.format_exc()}")

    def _task_counts(self) -> list[int]:
        async def count() -> int:
            return len(asyncio.all_tasks()) - 1  # not this one

        counts = []
        for loop in list(self.loops):
            counts.append(asyncio.run_coroutine_threadsafe(count(), loop).result(PARK_TIMEOUT))
        return counts

    def _wait_parked(self) -> None:
        deadline = time.monotonic() + PARK_TIMEOUT
        while self.parked < self.n_actors:
            if self.stop.is_set():
                return
            if time.monotonic() > deadline:
                raise SoakFailure(f"only {self.parked} of {self.n_actors} actors parked within {PARK_TIMEOUT} s: a hang")
            time.sleep(0.002)

    def checkpoint(self, start: float, last: Checkpoint | None) -> Checkpoint:
        """Park the actors, check that memory went back to zero, measure, resume."""
        self.pause.set()
        try:
            self._wait_parked()
            if self.stop.is_set():
                raise SoakFailure("stopped while parking")
            gc.collect()
            for d in range(self.devices):
                mtia_sync.synchronize(d)
            mtia.empty_cache()
            stats = self.check_allocators()
            for d, s in enumerate(stats):
                for key in ("allocation", "active", "allocated_bytes", "active_bytes", "requested_bytes",
                            "reserved_bytes", "segment"):  # fmt: skip
                    if s[f"{key}.all.current"] != 0:
                        raise SoakFailure(f"mtia:{d}: {key}.all.current is {s[f'{key}.all.current']} with no buffer alive")
            if _malloc_trim is not None:
                _malloc_trim(0)
            now = time.monotonic() - start
            ops = self.ops_done
            rate = (ops - (last.ops if last else 0)) / max(1e-9, now - (last.at if last else 0.0))
            cp = Checkpoint(now, ops, rate, rss_bytes(), threading.active_count(), self._task_counts(), stats)
        finally:
            self.pause.clear()
        self.out(cp.line())
        return cp

    def _judge(self, cp: Checkpoint, baseline: Checkpoint | None, last: Checkpoint | None) -> Checkpoint | None:
        """Apply the after-warm-up rules; return the baseline checkpoint (None during warm-up)."""
        if cp.at < self.warmup:
            return None
        if baseline is None:
            return cp
        if cp.rss > baseline.rss * 1.05:
            raise SoakFailure(
                f"RSS grew {100 * (cp.rss / baseline.rss - 1):.1f} % after the warm-up: "
                f"{_mib(baseline.rss)} at {baseline.at:.0f} s -> {_mib(cp.rss)} at {cp.at:.0f} s (limit 5 %)"
            )
        assert last is not None
        if (cp.threads, cp.tasks) != (last.threads, last.tasks):
            raise SoakFailure(
                f"thread/task counts changed after the warm-up: threads {last.threads} -> {cp.threads}, "
                f"tasks {last.tasks} -> {cp.tasks}"
            )
        return baseline

    def run(self) -> SoakResult:
        """Run the soak; never raises for a soak failure (see ``SoakResult.ok``)."""
        self.out(
            f"soak: {self.seconds:g} s, seed {self.seed}, {self.n_threads} threads + {self.n_loops} loops x "
            f"{self.n_tasks} tasks, {self.devices} devices, warm-up {self.warmup:g} s, "
            f"checkpoint every {self.report_every:g} s"
        )
        pin_mmap_threshold()
        start = time.monotonic()
        actors = [threading.Thread(target=self._thread_actor, args=(k,), name=f"soak-thread{k}")
                  for k in range(self.n_threads)]  # fmt: skip
        actors += [
            threading.Thread(target=self._loop_thread, args=(self.n_threads + i * self.n_tasks,), name=f"soak-loop{i}")
            for i in range(self.n_loops)
        ]
        for t in actors:
            t.start()
        baseline: Checkpoint | None = None
        last: Checkpoint | None = None
        message = ""
        try:
            while len(self.loops) < self.n_loops and not self.stop.is_set():
                if time.monotonic() - start > PARK_TIMEOUT:
                    raise SoakFailure("the event loop threads did not start")
                time.sleep(0.001)
            next_at = self.report_every
            end = self.seconds
            while not self.stop.is_set():
                now = time.monotonic() - start
                if now >= min(next_at, end):
                    cp = self.checkpoint(start, last)
                    self.checkpoints.append(cp)
                    baseline = self._judge(cp, baseline, last)
                    last = cp
                    next_at += self.report_every
                    if now >= end:
                        break
                time.sleep(min(0.05, max(0.0, min(next_at, end) - now)))
        except SoakFailure as exc:
            self.fail(str(exc))
        except AssertionError as exc:  # check_invariants
            self.fail(f"invariant broken: {exc}")
        finally:
            self.stop.set()
            self.pause.clear()
            deadline = time.monotonic() + PARK_TIMEOUT
            for t in actors:
                t.join(max(0.0, deadline - time.monotonic()))
            hung = [t.name for t in actors if t.is_alive()]
            if hung:
                self.fail(f"actors still running {PARK_TIMEOUT} s after stop: {hung}")
        elapsed = time.monotonic() - start
        ok = not self.failures
        if ok:
            message = (
                f"soak passed: {self.ops_done:,} ops in {elapsed:.1f} s ({self.ops_done / elapsed:,.0f} ops/s), "
                f"{len(self.checkpoints)} checkpoints"
            )
            if baseline is not None and last is not None:
                message += (
                    f"; after warm-up RSS {_mib(baseline.rss)} -> {_mib(last.rss)} "
                    f"({100 * (last.rss / baseline.rss - 1):+.1f} %), threads {last.threads}, tasks {last.tasks}"
                )
        else:
            message = "soak FAILED: " + self.failures[0]
        self.out(message)
        return SoakResult(ok, message, self.ops_done, elapsed, self.checkpoints)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--minutes", type=float, help="run for N minutes (a checkpoint every minute)")
    length.add_argument("--seconds", type=float, help="run for N seconds (a checkpoint every 10 s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every actor's op mix (default 0)")
    parser.add_argument("--threads", type=int, default=2, help="host-thread actors (blocking facade)")
    parser.add_argument("--loops", type=int, default=2, help="event loop threads (each its own asyncio.run)")
    parser.add_argument("--tasks", type=int, default=2, help="actor tasks per event loop")
    args = parser.parse_args(argv)
    if args.minutes is not None:
        seconds, every = args.minutes * 60, 60.0
    else:
        seconds, every = args.seconds, 10.0
    if seconds <= 0:
        parser.error("the duration must be positive")
    faulthandler.dump_traceback_later(seconds + 120, exit=True)  # the last resort against a hang
    mtia.configure(device_count=2, device_memory="2GiB", workers=2)
    try:
        result = Soak(seconds, args.seed, every, None, args.threads, args.loops, args.tasks).run()
    finally:
        faulthandler.cancel_dump_traceback_later()
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
