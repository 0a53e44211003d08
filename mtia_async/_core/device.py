"""DeviceImpl: a device's worker threads, its ready queue, and the drain loop.

Threads: ``workers`` kernel threads per device, started lazily (an unused device
costs no thread). A stream that gets work while idle is handed straight to an idle
worker (one wake-up); when every worker is busy it waits in the ready queue, one
deque per priority, and the highest priority is served first. A worker drains one
stream at a time: holding the stream's token, it pops items off the front of the FIFO
in place (``deque.popleft``, atomic under the GIL) and runs them without any lock, so a
kernel costs ~0.1 us of bookkeeping. Between items
it checks one attribute (``preempt_below``, the best priority waiting in the ready
queue) and hands the stream back when a higher-priority stream is waiting, or when its
2 ms slice is up and one of equal priority is.
"""

from __future__ import annotations

import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import _forksafe as forksafe
from .._exceptions import DeviceFailedError
from .._log import emit, flags
from .._memory import CachingAllocator
from .._thread_role import mark_worker_thread
from .mark import Clear, Failure, Mark, fire, safe_str
from .stream import HIGHEST_PRIORITY, DeadQueue, StreamImpl, describe_kernel

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["DeviceImpl"]

_NO_PREEMPT = 1 << 30
_SLICE_NS = 2_000_000  # equal-priority streams share a worker every 2 ms
_perf_ns = time.perf_counter_ns


class _Worker:
    __slots__ = ("sleep", "assigned", "thread")

    def __init__(self) -> None:
        self.sleep = forksafe.lock()
        self.sleep.acquire()
        self.assigned: StreamImpl | None = None
        self.thread: threading.Thread | None = None


class DeviceImpl:
    """One emulated device: its workers, ready queue, streams and allocator."""

    # A device whose memory lives in another process (``_cluster``'s RemoteDevice) copies
    # to the host itself: ``copy_to_host(stream, array) -> ([host array], mark after the copy)`` (the box's item is the
    # result once the mark is done).
    copy_to_host: Callable[[StreamImpl, Any], tuple[list[Any], Mark]] | None = None

    def __init__(self, runtime: Runtime, index: int, workers: int, memory: int) -> None:
        self.runtime = runtime
        self.index = index
        self.max_workers = workers
        self.memory = memory
        self.lock = forksafe.lock()
        self.ready: list[deque[StreamImpl]] = [deque() for _ in range(1 - HIGHEST_PRIORITY)]
        self.nready = 0
        self.preempt_below = _NO_PREEMPT  # best priority waiting in the ready queue
        self.idle: list[_Worker] = []
        self.workers: list[_Worker] = []
        self.streams: weakref.WeakValueDictionary[int, StreamImpl] = weakref.WeakValueDictionary()
        self.unreported: dict[int, Failure] = {}  # id(failure) -> failure, keeps failed streams alive
        self.crash: DeviceFailedError | None = None  # a worker died: the device is unusable
        self.closed: BaseException | None = None  # why the device runs nothing more (crash, shutdown, fork)
        self.default_stream = self.new_stream(0, stream_id=0)
        self._allocator: CachingAllocator | None = None

    @property
    def allocator(self) -> CachingAllocator:
        """This device's caching allocator, created on first use."""
        alloc = self._allocator
        if alloc is None:
            with self.lock:
                alloc = self._allocator
                if alloc is None:
                    alloc = self._allocator = CachingAllocator(self.index, self.memory)
        return alloc

    def new_stream(self, priority: int, stream_id: int | None = None) -> StreamImpl:
        s = StreamImpl(self, priority, stream_id)
        self.streams[s.stream_id] = s
        if flags.debug:
            emit("debug", "stream_created", device=self.index, stream=s.stream_id, priority=s.priority)
        return s

    # --- scheduling ------------------------------------------------------------
    def make_ready(self, s: StreamImpl) -> None:
        """Hand a stream that has work to an idle worker, or queue it by priority.

        The caller holds the stream's token. A stopped device kills the stream instead.
        """
        wake: _Worker | None = None
        with self.lock:
            closed = self.closed
            if closed is None:
                if self.idle:
                    wake = self.idle.pop()
                    wake.assigned = s
                else:
                    self.ready[-s.priority].append(s)
                    self.nready += 1
                    if s.priority < self.preempt_below:
                        self.preempt_below = s.priority
                    if len(self.workers) < self.max_workers:
                        self._start(_Worker())  # lazily: an unused device costs no thread
        if closed is not None:
            self._drop_queue(s, closed)
        elif wake is not None:
            wake.sleep.release()

    def _start(self, worker: _Worker) -> None:
        thread = threading.Thread(
            target=self._worker_main,
            args=(worker,),
            name=f"mtia_async-dev{self.index}-worker{len(self.workers)}",
            daemon=True,
        )
        worker.thread = thread
        self.workers.append(worker)
        thread.start()

    def _pop_ready(self) -> StreamImpl | None:
        # Called with self.lock held.
        if not self.nready:
            return None
        for prio_queue in reversed(self.ready):
            if prio_queue:
                s = prio_queue.popleft()
                self.nready -= 1
                break
        best = _NO_PREEMPT
        if self.nready:
            for i in range(len(self.ready) - 1, -1, -1):
                if self.ready[i]:
                    best = -i
                    break
        self.preempt_below = best
        return s

    def _worker_main(self, worker: _Worker) -> None:
        mark_worker_thread()
        s: StreamImpl | None = None
        try:
            while True:
                s = worker.assigned
                worker.assigned = None
                if s is None:
                    with self.lock:
                        s = self._pop_ready()
                        if s is None:
                            if self.closed is not None:
                                return
                            self.idle.append(worker)
                    if s is None:
                        worker.sleep.acquire()
                        continue
                self._drain(s)
                s = None
        except BaseException as exc:  # a bug in the runtime, or a killed worker
            self.fail_device(exc)

    # --- the drain loop (worker thread, holding the stream's token) ------------------------
    def _drain(self, s: StreamImpl) -> None:
        q = s.q
        pop = q.popleft
        prio = s.priority
        async_results = _ASYNC_RESULTS
        start = _perf_ns()
        fn: Any = None
        args: Any = None
        result: Any = None
        try:
            while True:
                try:
                    while q:
                        fn = pop()
                        args = pop()
                        if fn is not None:
                            result = fn(*args)
                            if result is not None and result.__class__ in async_results:
                                _refuse_async_result(describe_kernel(fn, args), result)
                        elif self._special(s, args) is _PARK:
                            return
                        # One read when nothing waits; a stream of equal priority waiting
                        # also gets here, and takes over once our 2 ms slice is used up.
                        if self.preempt_below <= prio and (
                            self.preempt_below < prio or _perf_ns() - start > _SLICE_NS
                        ):
                            self.make_ready(s)  # hand the stream back; we keep no reference
                            return
                    # Empty: give the token back, then re-check for a launch that raced us.
                    s.token.append(True)
                    if not q:
                        return
                    try:
                        s.token.pop()
                    except IndexError:
                        return  # the racing launcher took the token and scheduled the stream
                except BaseException as exc:
                    if s.closed is not None:
                        return  # closed mid-item (shutdown, failed device): its waits already failed
                    # A kernel's error names the kernel; an error handling a special item
                    # (a mark's waiters, say) is the runtime's own: kernel=None. Either way
                    # the stream goes on with the next item (nothing behind it is skipped).
                    self._add_failure(s, Failure(s, exc, None if fn is None else describe_kernel(fn, args)))
        finally:
            fn = args = result = None  # drop references to finished kernels' arguments

    def _special(self, s: StreamImpl, item: Any) -> Any:
        """Handle a mark, a wait or a clear; return ``_PARK`` when the worker must let go."""
        kind = type(item)
        if kind is Mark:
            if flags.debug:
                emit("debug", "mark_reached", device=self.index, stream=s.stream_id, failed=bool(s.unreported))
            if s.q:
                waiters = item.finish(s.unreported, _perf_ns())
                if waiters:
                    fire(waiters)
                return None
            # The last item: the stream is released as the mark becomes done (finish), so
            # whoever sees it done, woken or not, sees query() True. Another worker may
            # take the stream at once; we let go unless we win the token back.
            waiters = item.finish(s.unreported, _perf_ns(), s.token)
            if waiters:
                fire(waiters)
            if not s.q:
                return _PARK
            try:
                s.token.pop()
            except IndexError:
                return _PARK
            return None
        if kind is Clear:
            s.unreported = tuple(f for f in s.unreported if f is not item.failure)
            return None
        # WaitOn: later work waits for the mark; a failure before it becomes this stream's too.
        mark = item.mark
        if not mark.done:
            s.q.extendleft((item, None))  # back at the front, in order: None, item
            if not mark.add_waiter(lambda: self.make_ready(s)):
                self.make_ready(s)
            return _PARK
        for upstream in mark.failures:
            if all(f.exc is not upstream.exc for f in s.unreported):
                self._add_failure(s, Failure(s, upstream.exc, upstream.kernel))
        return None

    # --- failures ------------------------------------------------------------------
    def _add_failure(self, s: StreamImpl, fail: Failure) -> None:
        """A new failure on ``s`` (worker thread): marks reached from now on carry it."""
        s.unreported = (*s.unreported, fail)
        with self.lock:
            self.unreported[id(fail)] = fail
        emit("error", "kernel_failed",
            device=self.index,
            stream=s.stream_id,
            kernel=fail.kernel,
            error=f"{type(fail.exc).__name__}: {safe_str(fail.exc)}",
        )

    def forget_failure(self, fail: Failure) -> None:
        with self.lock:
            self.unreported.pop(id(fail), None)

    def fail_device(self, exc: BaseException) -> None:
        """A worker died: fail every pending wait on this device and refuse new work."""
        why = f"a worker thread died ({type(exc).__name__}: {safe_str(exc)})"
        if self.crash_once(f"{why}; re-create the runtime (mtia_async.testing.fresh_runtime) or restart the process",
                           exc):
            emit("critical", "device_failed", device=self.index, error=f"{type(exc).__name__}: {safe_str(exc)}")

    def crash_once(self, why: str, cause: BaseException | None) -> bool:
        """Fail the device with ``DeviceFailedError("device mtia:N failed: <why>")`` chained from ``cause``.

        Every pending and later wait raises it and new work is refused. Only the first
        failure counts: False when the device had failed already (nothing is done).
        """
        reason = DeviceFailedError(f"device mtia:{self.index} failed: {why}")
        reason.__cause__ = cause
        with self.lock:
            if self.crash is not None:
                return False
            self.crash = reason
        self._stop(reason)  # first: whatever happens next, no waiter is left hanging
        return True

    def _stop(self, reason: BaseException) -> None:
        with self.lock:
            if self.closed is None:
                self.closed = reason
            self.preempt_below = -_NO_PREEMPT  # running drains hand their stream back now
            idle, self.idle = self.idle, []
            for q in self.ready:
                q.clear()
            self.nready = 0
        for s in list(self.streams.values()):
            self._drop_queue(s, reason)
        for worker in idle:
            worker.sleep.release()

    def _drop_queue(self, s: StreamImpl, reason: BaseException) -> None:
        """Close a stream: later launches raise ``reason``; its pending marks fail with it."""
        with s.lock:
            if s.closed is None:
                s.closed = reason
            old, s.q = s.q, DeadQueue(s.closed)
        if isinstance(old, DeadQueue):
            return
        # Outside the lock: dropping the queued items runs finalizers (a DeviceArray's
        # __del__ frees its block, which may take this stream's lock for a marker). A
        # worker may still be popping from ``old``: take an atomic copy and look for
        # marks item by item (a Mark is never a kernel), so a half-popped pair is harmless.
        items = old.copy()
        old.clear()
        waiting = [item for item in items if type(item) is Mark and not item.done]
        del items
        for mark in waiting:
            failure = Failure(s, reason, None)
            failure.reported = True
            mark.complete((failure,), _perf_ns())

    def shutdown(self, join_timeout: float | None) -> list[threading.Thread]:
        """Stop the workers after their current kernel; queued work is dropped."""
        self._stop(RuntimeError("the mtia_async runtime was shut down; this stream belongs to it"))
        threads = [w.thread for w in self.workers if w.thread is not None]
        if join_timeout is not None:
            deadline = time.monotonic() + join_timeout
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
        return [t for t in threads if t.is_alive()]

    def after_fork_in_child(self, reason: RuntimeError) -> None:
        """Make every object of this device refuse work in a forked child.

        Its locks were re-initialised by ``_forksafe`` before this runs.
        """
        self.workers = []
        self.idle = []
        self.closed = reason
        if self._allocator is not None:
            self._allocator.after_fork_in_child()  # a parent worker may have been mid-change
        for s in list(self.streams.values()):
            s.closed = reason
            s.q = DeadQueue(reason)


_PARK: Any = object()

# What a kernel must never return: an async def or generator body that never runs.
_ASYNC_RESULTS = frozenset({types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType})


def _refuse_async_result(name: str, result: Any) -> None:
    """Close what a kernel returned (so Python does not warn it was never awaited) and fail it."""
    result.close()  # coroutines, generators: close(); async generators: aclose() is a coroutine
    kind = {types.CoroutineType: "a coroutine", types.GeneratorType: "a generator"}.get(type(result), "an async generator")
    raise TypeError(
        f"kernel {name} returned {kind}, whose body never runs: kernels run synchronously in a "
        "worker thread; launch a plain function (and await the stream, not the kernel)"
    )
