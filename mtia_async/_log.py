"""The library logger.

structlog as it asks libraries to use it: a lazy logger, never ``structlog.configure()``.
Errors are always emitted (``kernel_failed`` at error level, ``device_failed`` at
critical level). Debug events (``runtime_initialized``, ``runtime_shutdown``,
``stream_created``, ``mark_reached``) are emitted only after ``set_debug_logging(True)``
and cost one attribute read (``flags.debug``) when disabled: structlog's default
configuration prints every level to stdout, and a library must not write to its
users' stdout unasked.
"""

from __future__ import annotations

import structlog

__all__ = ["emit", "flags", "log", "set_debug_logging"]

log = structlog.get_logger("mtia_async")


def emit(level: str, event: str, **fields: object) -> None:
    """Log ``event`` at ``level`` ("debug", "error", "critical"); never raises.

    Logging runs on worker threads while they record failures: a broken stdout, a
    handler that raises or a hostile ``__repr__`` must never take a worker (and with it
    every waiter of its device) down, so a failing log write is dropped.
    """
    try:
        getattr(log, level)(event, **fields)
    except Exception:  # noqa: BLE001 - see the docstring: a log write must never raise here
        pass


class _Flags:
    __slots__ = ("debug",)

    def __init__(self) -> None:
        self.debug = False


flags = _Flags()


def set_debug_logging(enabled: bool = True) -> None:
    """Turn the library's debug events on or off (off by default).

    Args:
        enabled: emit debug events such as ``stream_created`` through structlog.

    Raises:
        TypeError: ``enabled`` is not a bool.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__} {enabled!r}")
    flags.debug = enabled
