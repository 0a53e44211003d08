"""``MTIAGraph``: capture device work once, replay it for a fraction of its launch cost.

States: *fresh* (nothing captured; also after ``reset()``), *capturing* (between
``capture_begin`` and ``capture_end``), *captured* (replayable; instantiated at once,
or with ``keep_graph=True`` by ``instantiate()`` or the first ``replay()``), *failed*
(the capture was invalidated or left a stream unjoined: only ``reset()`` helps).
Transitions take the graph's lock; ``replay()`` reads the instantiated graph without
it. Nothing here waits: both facades export this very class.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from .. import _forksafe as forksafe
from .._core.context import current_stream_impl, stream_of
from .._core.instrument import instruments
from .capture import GraphCapture, end_from_finalizer, guard
from .pools import PoolToken, check_pool, pool_device, private_pool
from .program import GraphExec, instantiate

if TYPE_CHECKING:
    from .._core.device import DeviceImpl

__all__ = ["MTIAGraph"]

_FRESH, _CAPTURING, _CAPTURED, _FAILED = "fresh", "capturing", "captured", "failed"
_serial = itertools.count(1)
_begin_lock = forksafe.lock()  # "is this stream capturing?" and "make it capture" as one step


class MTIAGraph:
    """A graph of device work, captured once and replayed (torch.mtia's ``MTIAGraph``).

    Capture with ``capture_begin()``/``capture_end()`` or the ``graph(...)`` context
    manager; ``replay()`` enqueues the whole graph on the current stream and returns at
    once. See docs/graphs.md for what a capture records and what it refuses.

    Args:
        keep_graph: False (default): ``capture_end()`` instantiates the graph. True: it
            is instantiated by ``instantiate()`` or by the first ``replay()``, and
            ``instantiate()`` may be called again (it rebuilds it).

    Raises:
        TypeError: ``keep_graph`` is not a bool.
    """

    _state = _FRESH
    _capture: GraphCapture | None = None
    _exec: GraphExec | None = None
    _pool: PoolToken | None = None
    _device: DeviceImpl | None = None
    _failure = ""
    _was_reset = False

    def __init__(self, keep_graph: bool = False) -> None:
        if not isinstance(keep_graph, bool):
            raise TypeError(f"MTIAGraph(keep_graph=...) must be a bool, got {type(keep_graph).__name__} {keep_graph!r:.60}")
        self._keep_graph = keep_graph
        self._label = f"MTIAGraph #{next(_serial)}"
        self._lock = forksafe.rlock()

    @property
    def keep_graph(self) -> bool:
        """Whether the captured graph is kept for ``instantiate()`` (see the class docstring)."""
        return self._keep_graph

    # --- capture -----------------------------------------------------------------------
    def capture_begin(self, pool: PoolToken | None = None) -> None:
        """Begin capturing the work enqueued on the current stream (it is recorded, not run).

        Args:
            pool: None or ``(0, 0)`` for a private memory pool; or a token from
                ``graph_pool_handle()`` or another graph's ``pool()`` to share its pool.

        Raises:
            TypeError / ValueError: ``pool`` is not a pool token.
            RuntimeError: this graph is capturing or holds a graph (``reset()`` it); the
                current stream captures already; ``pool`` is used by graphs of another device.
        """
        token = check_pool(pool)
        with self._lock:
            if self._state != _FRESH:
                raise RuntimeError(
                    f"capture_begin(): {self._label} is capturing already; call capture_end() first"
                    if self._state == _CAPTURING
                    else f"capture_begin(): {self._label} holds "
                    f"{'a captured graph' if self._state == _CAPTURED else 'a failed capture'}; reset() it before "
                    "capturing again, or make a new MTIAGraph"
                )
            s = current_stream_impl()
            with _begin_lock:
                if s.capture is not None:
                    raise RuntimeError(
                        f"capture_begin(): stream {s.stream_id} of mtia:{s.device.index} already captures "
                        f"({s.capture!r}); nested captures on one stream are not supported: capture on another "
                        "stream (graph(g, stream=Stream()))"
                    )
                if s.closed is not None:
                    raise s.closed_error()
                if token is None:
                    token = private_pool()
                owner = pool_device(token)
                if owner is not None and owner is not s.device:
                    raise RuntimeError(
                        f"capture_begin(): pool {token} is used by graphs of mtia:{owner.index}, but the capturing "
                        f"stream is on mtia:{s.device.index}; a pool holds the memory of one device: use another "
                        f"pool, or capture on mtia:{owner.index}"
                    )
                capture = GraphCapture(self._label, s, token)
                s.device.allocator.retain_pool(token)
                s.pool = token
                instruments.capturing(s, capture)
            guard.add(capture)
            self._capture, self._pool, self._device = capture, token, s.device
            self._state = _CAPTURING

    def capture_end(self) -> None:
        """End the capture: the streams it used run their work again; the graph is ready.

        Raises:
            RuntimeError: no capture in progress; the capture was invalidated (an
                operation a graph cannot hold); a stream that joined the capture was not
                joined back into the capturing stream (named). The graph is then failed:
                ``reset()`` it.
        """
        with self._lock:
            capture = self._capture
            if self._state != _CAPTURING or capture is None:
                raise RuntimeError(f"capture_end() without capture_begin(): {self._label} is {self._state}, not capturing")
            capture.end()
            if capture.error is not None:
                self._fail(f"its capture was invalidated: {capture.error}")
                raise RuntimeError(f"capture_end() of {self._label}: {self._failure}") from capture.error
            unjoined = capture.unjoined()
            if unjoined:
                origin = capture.origin
                names = ", ".join(f"stream {t.stream_id}" for t in unjoined)
                self._fail(
                    f"{names} of mtia:{origin.device.index} joined the capture (waited on an event recorded in it) "
                    f"but {'was' if len(unjoined) == 1 else 'were'} not joined back into the capturing stream "
                    f"{origin.stream_id}: after the last work captured on {names}, make stream {origin.stream_id} "
                    "wait for it (wait_stream() or wait_event() of an event recorded there)"
                )
                raise RuntimeError(f"capture_end() of {self._label}: {self._failure}; reset() and capture again")
            self._state = _CAPTURED
            if not self._keep_graph:
                self._exec, self._capture = instantiate(capture), None

    def _fail(self, why: str) -> None:
        self._state, self._failure = _FAILED, why

    def instantiate(self) -> None:
        """Instantiate (again) a graph made with ``keep_graph=True``.

        Raises:
            RuntimeError: no finished capture, or ``keep_graph`` is False (``capture_end()``
                instantiated it).
        """
        with self._lock:
            if self._state != _CAPTURED:
                raise RuntimeError(self._not_ready("instantiate()"))
            if not self._keep_graph or self._capture is None:
                raise RuntimeError(
                    f"instantiate() is for graphs made with MTIAGraph(keep_graph=True): {self._label} was "
                    "instantiated by capture_end()"
                )
            self._exec = instantiate(self._capture)

    def _not_ready(self, what: str) -> str:
        if self._state == _CAPTURING:
            return f"{what} before capture_end(): {self._label} is still capturing"
        if self._state == _FAILED:
            return f"{what}: the capture of {self._label} failed ({self._failure}); reset() it and capture again"
        if self._was_reset:
            return f"{what} after reset(): {self._label} holds no graph any more; capture again first"
        return f"{what} before a capture: capture with capture_begin()/capture_end() or `with graph(g):` first"

    # --- replay ------------------------------------------------------------------------
    def replay(self) -> None:
        """Enqueue the whole graph on the current stream of its device; returns at once.

        Wait as for any work (``synchronize()``, an event). Replays run in the order they
        are enqueued; a kernel that raises surfaces as ``KernelError`` at the waits that
        cover it, naming the captured kernel.

        Raises:
            RuntimeError: before ``capture_end()``, after ``reset()``, after a failed
                capture; on a stream that captures (a graph cannot be captured into another).
        """
        exe = self._exec
        if exe is None:
            exe = self._instantiated()
        s = stream_of(exe.device)
        capture = s.capture
        if capture is not None:
            raise capture.forbidden(s, f"replay() of {self._label}")
        exe.launch(s)

    def _instantiated(self) -> GraphExec:
        with self._lock:
            if self._exec is None:
                if self._state != _CAPTURED or self._capture is None:
                    raise RuntimeError(self._not_ready("replay()"))
                self._exec = instantiate(self._capture)  # keep_graph: the first replay instantiates
            return self._exec

    # --- the rest -----------------------------------------------------------------------
    def reset(self) -> None:
        """Drop the captured graph (ending a capture in progress) and release its memory pool.

        The pool's free memory is released at once unless another graph shares it;
        arrays allocated during the capture stay valid. A replay still queued runs to
        its end. Never waits; the graph can capture again.
        """
        with self._lock:
            capture = self._capture
            if self._state == _CAPTURING and capture is not None:
                capture.end()
            pool, device = self._pool, self._device
            self._capture = self._exec = self._pool = self._device = None
            self._state, self._failure, self._was_reset = _FRESH, "", True
        if pool is not None and device is not None:
            device.allocator.release_pool(pool)

    def pool(self) -> PoolToken:
        """The token of this graph's memory pool, to share it with ``capture_begin(pool=...)``.

        Raises:
            RuntimeError: before a successful ``capture_end()`` (or after ``reset()``).
        """
        pool = self._pool
        if self._state != _CAPTURED or pool is None:
            raise RuntimeError(self._not_ready("pool()"))
        return pool

    def __del__(self) -> None:
        # A graph dropped while capturing stops capturing; its pool is released lazily (no
        # allocator call here: a finalizer may run inside one, or inside a capture's lock).
        capture = self._capture
        if self._state == _CAPTURING and capture is not None:
            end_from_finalizer(capture)
        if self._pool is not None and self._device is not None:
            self._device.allocator.release_pool(self._pool, now=False)

    def __repr__(self) -> str:
        exe = self._exec
        what = f", {exe.kernels} kernels" if exe is not None else ""
        pool = f", pool {self._pool}" if self._pool is not None else ""
        return f"<mtia_async.MTIAGraph #{self._label.split('#')[1]} {self._state}{what}{pool}>"
