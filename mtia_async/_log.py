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

__all__ = ["flags", "log", "set_debug_logging"]

log = structlog.get_logger("mtia_async")


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
