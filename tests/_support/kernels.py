"""Kernels the tests launch: one that fails, one that does nothing, one whose lifetime is followed."""

from __future__ import annotations

__all__ = ["Payload", "boom", "noop"]


def boom(*args: object) -> None:
    """A kernel that raises ``ValueError``: its first argument as the message when that is
    a string (``launch(boom, "upstream")``), else ``"boom"`` (``launch(boom, buffer)``)."""
    message = args[0] if args and isinstance(args[0], str) else "boom"
    raise ValueError(message)


def noop() -> None:
    """A kernel that does nothing."""


class Payload:
    """A kernel argument (or kernel) whose lifetime the tests follow with a weakref."""

    def __call__(self, *args: object, **kwargs: object) -> None:
        pass
