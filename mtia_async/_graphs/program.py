"""An instantiated graph: the captured work pre-bound, and its replay as one FIFO item.

``instantiate`` turns a capture's steps into a list of ``(callable, args)`` calls in host
order. The kernels of numpy's operations are bound to numpy directly: ``a + b``
captured as ``ufunc_aa(np.add, a, b, z)`` replays as ``np.add(va, vb, z)`` on the numpy
views of the arrays' memory, built once here (the memory of an array never moves, and
its content is read when the replay runs). Other kernels replay as they were enqueued.

``replay`` enqueues *one* item on a stream: a walker (``graph_replay``) that makes those
calls in order, with ``stream.launch`` and the union of the captured reads and writes
(the sanitizer and the profiler see one launch). A kernel that raises is a failure of
that stream, named after the captured kernel, exactly as if it had been launched
there: the walker goes on with the next call, and the waits that cover it raise
``KernelError``.

A graph with random kernels or events recorded in it takes the general walker: at
each replay the caller reserves the graph's blocks of each generator's counter once
(results depend on the seed and the order of replays only) and gives each recorded
event a fresh mark, which the walker completes at the record's place; a plain mark
enqueued after the walker completes any it did not reach (a device that failed, a
runtime shut down), so no wait on such an event can hang.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from .._arrays.array import DeviceArray, as_view
from .._arrays.kernels import UNARY, reduce_kernel, ufunc_a, ufunc_aa, ufunc_as, ufunc_kernel, ufunc_out, ufunc_sa
from .._arrays.reductions import function_kernel
from .._core.device import _ASYNC_RESULTS, _refuse_async_result
from .._core.instrument import Launch, instruments
from .._core.mark import Failure, Mark, fire
from .._core.stream import describe_kernel, kernel_name
from .capture import GraphCapture, RandomLaunch
from .marks import CapturedMark

if TYPE_CHECKING:
    from .._core.device import DeviceImpl
    from .._core.stream import StreamImpl

__all__ = ["GraphExec", "instantiate"]

_perf_ns = time.perf_counter_ns
Call = tuple[Callable[..., object], tuple[Any, ...]]


def _record(index: int) -> None:
    """Marks a record step of the general walker (never called)."""


def _random(*args: Any) -> None:
    """Marks a random step of the general walker (never called)."""


class GraphExec:
    """The instantiated graph of one capture (see the module docstring)."""

    __slots__ = ("label", "device", "calls", "sources", "reads", "writes", "randoms", "records", "externals", "plain")

    def __init__(self, capture: GraphCapture) -> None:
        self.label = capture.label
        self.device: DeviceImpl = capture.device
        self.calls: list[Call] = []
        self.sources: list[Launch | None] = []  # per call: what was captured (None: an event record)
        self.randoms: list[tuple[Any, int]] = []  # per generator: (generator, blocks per replay)
        self.records: list[CapturedMark] = []
        self.externals: list[Mark] = list(capture.externals)
        generators: dict[int, int] = {}  # id(generator) -> its index in randoms
        reads: dict[int, DeviceArray] = {}
        writes: dict[int, DeviceArray] = {}
        for step in capture.steps:
            if type(step) is CapturedMark:
                self.calls.append((_record, (len(self.records),)))
                self.sources.append(None)
                self.records.append(step)
                continue
            if type(step) is RandomLaunch:
                launch = step.launch
                g = generators.setdefault(id(step.generator), len(self.randoms))
                if g == len(self.randoms):
                    self.randoms.append((step.generator, 0))
                generator, offset = self.randoms[g]
                self.randoms[g] = (generator, offset + step.blocks)
                out, *params = launch.args
                self.calls.append((_random, (launch.kernel, g, offset, out, tuple(params))))
            else:
                assert type(step) is Launch
                launch = step
                self.calls.append(_prebind(launch.kernel, launch.args))
            self.sources.append(launch)
            for a in launch.reads:
                reads.setdefault(id(a), a)
            for a in launch.writes:
                writes.setdefault(id(a), a)
        self.reads = tuple(reads.values())
        self.writes = tuple(writes.values())
        self.plain = not (self.randoms or self.records or self.externals)  # nothing to do per replay

    @property
    def kernels(self) -> int:
        """How many kernels a replay runs."""
        return sum(source is not None for source in self.sources)

    def launch(self, s: StreamImpl) -> None:
        """Enqueue a replay on ``s`` (the caller checked it may take one)."""
        if self.plain:
            s.launch(graph_replay, (self, s, None), self.reads, self.writes)
            return
        for mark in self.externals:
            s.wait_mark(mark)
        keys, starts = [], []
        for generator, blocks in self.randoms:
            key, start = generator._reserve(blocks)
            keys.append(key)
            starts.append(start)
        marks = [Mark(s) for _ in self.records]
        s.launch(graph_replay, (self, s, (keys, starts, marks)), self.reads, self.writes)
        if marks:
            for captured, mark in zip(self.records, marks):
                captured.current = mark
                if instruments.active:
                    instruments.record(s, captured)
            tail = Mark(s)  # completes the marks the walker never got to (a dropped queue)
            s.push_special(tail)
            tail.add_done_callback(partial(_settle, marks, tail))


def instantiate(capture: GraphCapture) -> GraphExec:
    """The replayable form of a finished capture."""
    return GraphExec(capture)


def _prebind(kernel: Callable[..., object], args: tuple[Any, ...]) -> Call:
    """``(kernel, args)`` as a direct numpy call where it is one of numpy's operations."""
    if kernel is ufunc_aa or kernel is ufunc_as or kernel is ufunc_sa:
        uf, a, b, z = args
        return _ufunc(uf, as_view(a), as_view(b), z)
    if kernel is ufunc_a:
        uf, a, z = args
        return _ufunc(uf, as_view(a), z)
    if kernel is ufunc_out:
        uf, a, b, o = args
        return _ufunc(uf, as_view(a), as_view(o)) if b is UNARY else _ufunc(uf, as_view(a), as_view(b), as_view(o))
    if kernel is reduce_kernel:
        reduce, a, z, axis, keepdims = args
        return reduce, (as_view(a), axis, None, z, keepdims)  # reduce(array, axis, dtype, out, keepdims)
    if getattr(kernel, "binds_kernel", False) or getattr(kernel, "__module__", None) not in _RUNTIME_MODULES:
        return _user_kernel, (kernel, args)  # a user's kernel: refuse a coroutine it returns
    return kernel, args


def _ufunc(uf: Any, *operands: Any) -> Call:
    """A ufunc call whose last operand is the output, passed by position (55 ns less than ``out=``).

    numpy 2.4 deprecates a positional output for ``maximum`` and ``minimum`` only.
    """
    if uf in _KEYWORD_OUT:
        return _out_by_keyword, (uf, *operands)
    return uf, operands


def _out_by_keyword(uf: Any, *operands: Any) -> None:
    uf(*operands[:-1], out=operands[-1])


_KEYWORD_OUT = frozenset({np.maximum, np.minimum})
_RUNTIME_MODULES = frozenset(
    {"mtia_async._arrays.kernels", "mtia_async._arrays.reductions", "mtia_async._arrays.transfer",
     "mtia_async._random.philox"}
)  # fmt: skip


def _user_kernel(kernel: Callable[..., object], args: tuple[Any, ...]) -> None:
    result = kernel(*args)
    if result is not None and result.__class__ in _ASYNC_RESULTS:
        _refuse_async_result(describe_kernel(kernel, args), result)


def graph_replay(exe: GraphExec, s: StreamImpl, per_replay: tuple[list[Any], list[int], list[Mark]] | None) -> None:
    """The replay (worker thread): every call in order; a failing one fails the stream, the rest run.

    Its name is what the sanitizer's reports and the worker's own errors call a replay.
    """
    calls = exe.calls
    i = 0
    while True:
        try:
            if per_replay is None:
                for fn, args in calls if not i else calls[i:]:
                    fn(*args)
                    i += 1
                return
            keys, starts, marks = per_replay
            for fn, args in calls if not i else calls[i:]:
                if fn is _record:
                    waiters = marks[args[0]].finish(s.unreported, _perf_ns())
                    if waiters:
                        fire(waiters)
                elif fn is _random:
                    kernel, g, offset, out, params = args
                    kernel(out, keys[g], starts[g] + offset, *params)
                else:
                    fn(*args)
                i += 1
            return
        except BaseException as exc:
            _fail(exe, s, i, exc)
            i += 1


_walk = graph_replay  # the profiler finds the walker under this name (_profiler/naming.py)


def _fail(exe: GraphExec, s: StreamImpl, i: int, exc: BaseException) -> None:
    """Call ``i`` of a replay raised: a failure of ``s`` (marks it reaches from now on carry it)."""
    source = exe.sources[i]
    name = None
    if source is not None:  # else the runtime's own error completing an event's mark
        nth = sum(x is not None for x in exe.sources[: i + 1])
        name = f"{_kernel_label(source)} (kernel {nth} of {exe.kernels} in a replay of {exe.label})"
    s.device._add_failure(s, Failure(s, exc, name))


def _kernel_label(launch: Launch) -> str:
    """The captured kernel, as a failure names it: the numpy operation, or the user's kernel."""
    kernel, args = launch.kernel, launch.args
    if kernel in (ufunc_aa, ufunc_as, ufunc_sa, ufunc_a, ufunc_out, ufunc_kernel, reduce_kernel, function_kernel):
        fn = args[0]  # the ufunc, or its method (np.add.reduce)
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, np.ufunc):
            return f"numpy.{owner.__name__}.{kernel_name(fn).rsplit('.', 1)[-1]}"
        return f"numpy.{kernel_name(fn)}"
    return describe_kernel(kernel, args)


def _settle(marks: Sequence[Mark], tail: Mark) -> None:
    """Complete the replay's event marks the walker did not reach (with the tail's failures)."""
    for mark in marks:
        if not mark.done:
            mark.complete(tail.failures, _perf_ns())
