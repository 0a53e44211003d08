"""Turning the stream sanitizer on and off: ``enable``, ``disable``, ``is_enabled``, the environment.

One sanitizer at most, process-wide: ``enable()`` adds it to the instruments (from then
on every launch is checked), ``disable()`` removes it and forgets its history. It
survives a runtime shutdown (``fresh_runtime()``) and starts afresh with each new
runtime (an init hook), whose addresses and streams are new; a shutdown hook drops what
it kept of the old one (its allocator segments would keep its devices and memory alive).

``MTIA_ASYNC_SANITIZE`` is read when a runtime initialises, with the other settings
(``_config.py`` validates it: a bad value makes ``init()`` raise ``ValueError`` naming
it, and never breaks ``import mtia_async``): ``1`` (or ``raise``) and ``warn`` enable the
sanitizer in that mode unless it is already on; ``0`` or unset leave it as it is. So
``disable()`` lasts until ``enable()`` or the next runtime's initialisation.

``suspended()`` (for tests of the instruments themselves, which must see no observer):
off inside the block, whatever the environment says, and as before after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .. import _forksafe as forksafe
from .._core.instrument import instruments
from .._core.runtime import Runtime, add_init_hook, add_shutdown_hook
from .._core.runtime import state as runtime_state
from .checker import MODES, Sanitizer

__all__ = ["active", "disable", "enable", "is_enabled", "mode", "suspended"]


class _Control:
    def __init__(self) -> None:
        self.lock = forksafe.rlock()
        self.sanitizer: Sanitizer | None = None
        self.suspended = 0


_control = _Control()


def _check_mode(mode: object) -> str:
    if not isinstance(mode, str):
        raise TypeError(f"sanitizer.enable(mode=...) takes 'raise' or 'warn', got {type(mode).__name__} {mode!r:.60}")
    if mode not in MODES:
        raise ValueError(
            f"sanitizer.enable(mode={mode!r:.60}) is not a mode; use 'raise' (UnsynchronizedAccessError at the "
            "launch that races) or 'warn' (SanitizerWarning, the launch goes on)"
        )
    return mode


def enable(mode: str = "raise") -> None:
    """Turn the stream sanitizer on (or change its mode; its history is kept then).

    Args:
        mode: ``"raise"``: a racing launch raises ``UnsynchronizedAccessError`` and
            nothing is enqueued; ``"warn"``: it warns ``SanitizerWarning`` and runs.

    Raises:
        TypeError: ``mode`` is not a str.
        ValueError: ``mode`` is neither ``"raise"`` nor ``"warn"``.
    """
    mode = _check_mode(mode)
    with _control.lock:
        current = _control.sanitizer
        if current is not None:
            current.mode = mode
            return
        if _control.suspended:
            return
        sanitizer = Sanitizer(mode, runtime_state.runtime)
        _control.sanitizer = sanitizer
        instruments.add(sanitizer)


def disable() -> None:
    """Turn the stream sanitizer off and forget what it saw (no-op when off)."""
    with _control.lock:
        sanitizer, _control.sanitizer = _control.sanitizer, None
        if sanitizer is not None:
            instruments.remove(sanitizer)


def is_enabled() -> bool:
    """Whether the stream sanitizer checks launches now."""
    return _control.sanitizer is not None


def mode() -> str | None:
    """The sanitizer's mode, ``"raise"`` or ``"warn"``; None when off."""
    sanitizer = _control.sanitizer
    return None if sanitizer is None else sanitizer.mode


def active() -> Sanitizer | None:
    """The running sanitizer, if any (for tests)."""
    return _control.sanitizer


@contextmanager
def suspended() -> Iterator[None]:
    """Keep the sanitizer off inside the block, even when a runtime initialises with ``MTIA_ASYNC_SANITIZE``."""
    with _control.lock:
        before = mode()
        _control.suspended += 1
        disable()
    try:
        yield
    finally:
        with _control.lock:
            _control.suspended -= 1
            disable()  # what the block turned on goes too
            if before is not None:
                enable(before)


def _on_init(runtime: Runtime) -> None:
    """Init hook: a new runtime's streams and addresses start with a clean history."""
    with _control.lock:
        sanitizer = _control.sanitizer
        if sanitizer is not None:
            sanitizer.reset(runtime)
            return
        wanted = getattr(runtime.config, "sanitize", "")
        if wanted and not _control.suspended:
            sanitizer = Sanitizer(wanted, runtime)
            _control.sanitizer = sanitizer
            instruments.add(sanitizer)


def _on_shutdown(runtime: Runtime) -> None:
    """Shutdown hook: forget that runtime's streams and memory (its segments would keep its devices alive)."""
    with _control.lock:
        sanitizer = _control.sanitizer
        if sanitizer is not None and sanitizer.clocks.runtime in (runtime, None):
            sanitizer.reset(None)


add_init_hook(_on_init)
add_shutdown_hook(_on_shutdown)
