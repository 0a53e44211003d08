"""``profile`` (a session: start, stop, the context managers, the results) and ``record_function``.

One profile records at a time, process-wide (``_active``): it is an observer of the
instruments while it records, and ``record_function`` ranges go to it. Leaving
``with profile()`` blocks until the work the session saw has finished; ``async with``
awaits it without blocking the loop (asyncio or trio); ``stop()`` never waits. The
results are computed from the raw records when first read (``resolve.py``), on the
reader's thread.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar

from .. import _forksafe as forksafe
from .._core.instrument import instruments
from .._core.wait import wait_done_async
from .._thread_role import flags, running_async_library
from .averages import EventAverages, averages
from .chrome import write_trace
from .events import ProfilerEvent
from .naming import name_graph_replays
from .recorder import MemoryRecorder, Recorder
from .resolve import Resolved, resolve

__all__ = ["DEFAULT_MAX_EVENTS", "profile", "record_function"]

DEFAULT_MAX_EVENTS = 200_000
"""The ring buffer's default size: about 56 MB at most (a kernel's records are ~280 bytes)."""

F = TypeVar("F", bound=Callable[..., Any])
_perf = time.perf_counter_ns


class _Active:
    """The profile recording now (at most one), and the lock that guards starting one."""

    def __init__(self) -> None:
        self.session: profile | None = None
        self.lock = forksafe.lock()


_active = _Active()


def _check_flag(name: str, value: object) -> bool:
    if type(value) is not bool:
        raise TypeError(f"profile({name}=...) takes True or False, got {type(value).__name__} {value!r}")
    return value


def _plain_with_refused() -> str | None:
    """Why a plain ``with profile()`` (whose exit blocks) must not run on this thread, or None."""
    if flags.worker:
        return "inside a kernel: its exit waits for the profiled work, which could be waiting for this kernel"
    library = running_async_library()
    if library == "trio":
        return "in a trio task: its exit waits for the profiled work and would block the run loop"
    if library == "asyncio":
        return "on an event loop's thread: its exit waits for the profiled work and would block the loop"
    return None


class profile:  # noqa: N801  (torch.profiler.profile's name)
    """Record what the runtime does: kernels per stream and worker, launches, waits, ranges, memory.

    Use it as ``with profile() as prof:`` (from plain threads: leaving the block waits
    until the work enqueued inside has finished), ``async with profile() as prof:``
    (asyncio or trio: leaving awaits that without blocking the loop), or
    ``prof.start()`` ... ``prof.stop()`` (stop never waits: synchronize first to see
    every kernel). Then read the results: :meth:`events`, :meth:`key_averages`,
    :meth:`export_chrome_trace`. A profile records once; one records at a time.

    Args:
        record_shapes: note each kernel's argument shapes and dtypes (``Input Dims``,
            ``Input type``, as torch).
        with_stack: note the Python frames of each launch, outside mtia_async.
        profile_memory: counters of allocated and reserved bytes per device, at every
            allocation and free.
        max_events: keep at most this many records (a ring buffer: the oldest are
            dropped), so a long-running service can profile a window with bounded
            memory; about 280 bytes each for a kernel (default 200,000: ~56 MB).

    Raises:
        TypeError: a flag is not a bool, or ``max_events`` not an int.
        ValueError: ``max_events`` is below 1.
    """

    def __init__(self, *, record_shapes: bool = False, with_stack: bool = False, profile_memory: bool = False,
                 max_events: int = DEFAULT_MAX_EVENTS) -> None:  # fmt: skip
        self.record_shapes = _check_flag("record_shapes", record_shapes)
        self.with_stack = _check_flag("with_stack", with_stack)
        self.profile_memory = _check_flag("profile_memory", profile_memory)
        if type(max_events) is not int:
            raise TypeError(f"profile(max_events=...) takes an int, got {type(max_events).__name__} {max_events!r}")
        if max_events < 1:
            raise ValueError(f"profile(max_events=...) must be >= 1 (records kept), got {max_events}")
        self.max_events = max_events
        self._state: Literal["new", "recording", "stopped"] = "new"
        self._recorder: Recorder | None = None
        self._resolved: Resolved | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"<mtia_async.profiler.profile {self._state}>"

    # --- recording ----------------------------------------------------------------------
    def start(self) -> None:
        """Start recording (never waits).

        Raises:
            RuntimeError: this profile already ran (make a new one), another one is
                recording, or this is a kernel (profile from the host).
        """
        if self._state != "new":
            raise RuntimeError("this profile already recorded (a profile records once): make a new profile()")
        if flags.worker:
            raise RuntimeError("a profile cannot start inside a kernel: start it on the host, around the launches")
        name_graph_replays()
        if self.profile_memory:
            recorder: Recorder = MemoryRecorder(self.max_events, self.record_shapes, self.with_stack)
        else:
            recorder = Recorder(self.max_events, self.record_shapes, self.with_stack)
        with _active.lock:
            if _active.session is not None:
                raise RuntimeError(
                    "another mtia_async profile is recording; one records at a time: stop it first "
                    "(leave its `with` block, or call its stop())"
                )
            instruments.add(recorder)
            _active.session = self
            self._recorder = recorder
            self._state = "recording"
        if isinstance(recorder, MemoryRecorder):
            recorder.sample()

    def stop(self) -> None:
        """Stop recording (never waits: kernels still queued finish and are seen if they end before a read).

        Raises:
            RuntimeError: the profile is not recording.
        """
        if self._state != "recording":
            what = "was never started" if self._state == "new" else "was already stopped"
            raise RuntimeError(f"profile.stop(): this profile is not recording (it {what})")
        recorder = self._recorder
        assert recorder is not None
        with _active.lock:
            instruments.remove(recorder)
            if _active.session is self:
                _active.session = None
            self._state = "stopped"
        if isinstance(recorder, MemoryRecorder) and not flags.worker:
            recorder.sample()

    def _stop_for_exit(self) -> list[Any]:
        """Stop (unless the block already did) and return a mark per stream the records name.

        Each mark is done once the work enqueued on its stream so far has run.
        """
        if self._state == "recording":
            self.stop()
        recorder = self._recorder
        return [s.marker() for s in recorder.streams()] if recorder is not None else []

    def __enter__(self) -> profile:
        reason = _plain_with_refused()
        if reason is not None:
            raise RuntimeError(
                f"`with mtia_async.profiler.profile()` cannot be used {reason}; use "
                "`async with mtia_async.profiler.profile()` in async code"
            )
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        for mark in self._stop_for_exit():
            mark.wait()  # without raising the work's failures: they are the user's waits to report

    async def __aenter__(self) -> profile:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:  # fmt: skip
        for mark in self._stop_for_exit():
            await wait_done_async(mark)

    # --- results ------------------------------------------------------------------------
    def _results(self) -> Resolved:
        if self._state != "stopped":
            raise RuntimeError(
                "the profile's results are read after it stopped: "
                + ("it never ran (use `with profile():` or start()/stop())" if self._state == "new"
                   else "leave its `with` block or call stop() first")  # fmt: skip
            )
        resolved = self._resolved
        if resolved is None or resolved.pending:
            recorder = self._recorder
            assert recorder is not None
            resolved = self._resolved = resolve(recorder.buffer, recorder.finished, self.max_events)
            if not resolved.pending:
                self._recorder = None  # every kernel is in: let the streams and marks go
        return resolved

    def events(self) -> list[ProfilerEvent]:
        """Every event recorded, sorted by start time (see :class:`ProfilerEvent`)."""
        return list(self._results().events)

    def key_averages(self) -> EventAverages:
        """Rows per kernel name (and per range and host wait name), with ``.table(sort_by=..., row_limit=...)``."""
        r = self._results()
        return averages(r.events, r.pending, r.dropped)

    def export_chrome_trace(self, path: str | os.PathLike[str]) -> None:
        """Write the trace as Chrome Trace Event Format JSON (Perfetto, chrome://tracing).

        Args:
            path: the file to write; gzip-compressed when it ends in ``.gz``.

        Raises:
            TypeError: ``path`` is not a str or path.
            OSError: the file cannot be written.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"export_chrome_trace(path) takes a str or os.PathLike, got {type(path).__name__}")
        target = os.fspath(path)
        if not isinstance(target, str):
            raise TypeError(f"export_chrome_trace(path) takes a text path, got {type(target).__name__}")
        meta = {"record_shapes": self.record_shapes, "with_stack": self.with_stack,
                "profile_memory": self.profile_memory, "max_events": self.max_events}  # fmt: skip
        write_trace(self._results(), target, self._pid, meta)


class record_function:  # noqa: N801  (torch.profiler.record_function's name)
    """A user range in the trace: ``with``/``async with record_function("step"):`` or ``@record_function("step")``.

    Costs one attribute read when no profile records. The range is kept if the profile
    that was recording when it opened is still recording when it closes; it shows on
    the thread's track (two tasks' overlapping ranges on one thread on tracks of their
    own). One object opens one range at a time; a decorated function opens a new range
    per call.

    Args:
        name: what the range is called.

    Raises:
        TypeError: ``name`` is not a str.
    """

    __slots__ = ("name", "_session", "_start")

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"record_function(name) takes a str, got {type(name).__name__} {name!r}")
        self.name = name
        self._session: profile | None = None
        self._start = 0

    def __repr__(self) -> str:
        return f"record_function({self.name!r})"

    def __enter__(self) -> record_function:
        session = _active.session
        if session is not None:
            self._session = session
            self._start = _perf()
        return self

    def __exit__(self, *exc_info: object) -> None:
        session = self._session
        if session is not None:
            self._session = None
            recorder = session._recorder
            if _active.session is session and recorder is not None:
                recorder.add_range(self.name, self._start, _perf())

    async def __aenter__(self) -> record_function:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()

    def __call__(self, fn: F) -> F:
        """Decorate a function or ``async def``: each call is a range named ``name``."""
        if not callable(fn):
            raise TypeError(f"@record_function({self.name!r}) decorates a function, got {type(fn).__name__}")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"@record_function({self.name!r}) cannot decorate a generator function ({fn.__qualname__}): the "
                "range would close when the generator is made, not when it is consumed; use `with` inside it"
            )
        name = self.name
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                if _active.session is None:  # off: one attribute read
                    return await fn(*args, **kwargs)
                with record_function(name):
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            if _active.session is None:  # off: one attribute read
                return fn(*args, **kwargs)
            with record_function(name):
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]
