"""How a launch binds its arguments: keyword arguments, and DeviceArrays as numpy views.

``bind(kernel, args, kwargs, stream)`` runs on the caller for every launch that has
arguments and returns the ``(callable, args)`` pair the FIFO stores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._stream import StreamImpl

__all__ = ["bind"]


def bind(
    kernel: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any], stream: StreamImpl
) -> tuple[Callable[..., object], tuple[Any, ...]]:
    """Return the callable and positional arguments to enqueue for ``kernel(*args, **kwargs)``."""
    if kwargs:
        return functools.partial(kernel, **kwargs), args
    return kernel, args
