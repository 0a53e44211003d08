"""The library logger: structlog events delivered through the standard ``logging`` module.

structlog as it asks libraries to use it, without touching any global configuration:
``structlog.wrap_logger`` around ``logging.getLogger("mtia_async")`` with this module's
own processors (never ``structlog.configure()``, never a handler or level set on any
logger). Each event becomes one ``logging`` record of the ``mtia_async`` logger, so it
goes wherever the application's logging configuration sends it (``logging.basicConfig``,
pytest's ``caplog``, a log collector) and is filtered by its levels; nothing is written
to stdout. The record's message is the event and its fields (``kernel_failed device=0
stream=3 kernel='boom' error='ValueError: boom'``), and every field is also an attribute
of the record (``record.event``, ``record.device``, ...) for structured handlers.

Errors are always emitted (``kernel_failed`` at error level, ``device_failed`` at
critical level). Debug events (``runtime_initialized``, ``runtime_shutdown``,
``stream_created``, ``mark_reached``) are emitted only after ``set_debug_logging(True)``
and cost one attribute read (``flags.debug``) when disabled; once enabled, the
``mtia_async`` logger's level (logging's, the application's to set) still filters them.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog
import structlog.stdlib

__all__ = ["LOGGER_NAME", "emit", "flags", "log", "set_debug_logging"]

LOGGER_NAME = "mtia_async"
#: LogRecord attributes a field must not overwrite (``makeRecord`` raises): such a field is
#: passed as ``field_`` instead.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _to_record(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> tuple[tuple[str], dict[str, Any]]:
    """The last processor: ``(msg,), {"extra": fields}`` for ``logging.Logger.<level>``.

    The message is rendered here, inside ``emit``'s guard, so a field whose ``repr``
    raises drops the event instead of failing later in a handler.
    """
    event = str(event_dict.pop("event", ""))
    message = " ".join([event, *(f"{key}={value!r}" for key, value in event_dict.items())])
    extra = {(f"{key}_" if key in _RESERVED else key): value for key, value in event_dict.items()}
    extra["event"] = event
    return (message,), {"extra": extra}


log = structlog.wrap_logger(
    logging.getLogger(LOGGER_NAME),
    processors=[structlog.stdlib.filter_by_level, _to_record],
    wrapper_class=structlog.stdlib.BoundLogger,
    context_class=dict,
    cache_logger_on_first_use=True,
)


def emit(level: str, event: str, **fields: object) -> None:
    """Log ``event`` at ``level`` ("debug", "error", "critical"); never raises.

    Logging runs on worker threads while they record failures: a broken stream, a
    handler or filter that raises, or a hostile ``__repr__`` must never take a worker
    (and with it every waiter of its device) down, so a failing log write is dropped.
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

    The events go to the ``logging`` logger ``"mtia_async"`` at DEBUG level: the
    application's logging configuration must let DEBUG through for them to show
    (``logging.getLogger("mtia_async").setLevel(logging.DEBUG)``).

    Args:
        enabled: emit debug events such as ``stream_created``.

    Raises:
        TypeError: ``enabled`` is not a bool.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__} {enabled!r}")
    flags.debug = enabled
