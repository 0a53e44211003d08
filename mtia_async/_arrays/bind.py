"""How a launch binds its arguments: keyword arguments, and DeviceArrays as numpy views.

``bind(kernel, args, kwargs, stream)`` runs on the caller for every launch that has
arguments and returns the ``(callable, args)`` pair the FIFO stores. Every DeviceArray
argument (positional or keyword, top level only) is checked here to live on the
stream's device, and replaced by the numpy view of its memory only when the kernel
runs, in the worker (the view is built there, once, and cached on the array). The
DeviceArrays stay referenced by the FIFO item until the kernel ran, which keeps their
memory alive.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.stream import foreign_runtime_error, kernel_name
from .array import DeviceArray

if TYPE_CHECKING:
    from .._core.stream import StreamImpl

__all__ = ["bind"]


class _WithViews:
    """``kernel(*args, **kwargs)`` with the DeviceArrays replaced by numpy views at call time."""

    __slots__ = ("kernel", "kwargs")

    def __init__(self, kernel: Callable[..., object], kwargs: dict[str, Any]) -> None:
        self.kernel = kernel
        self.kwargs = kwargs

    def __call__(self, *args: Any) -> object:
        views = [a._np() if type(a) is DeviceArray else a for a in args]
        kwargs = self.kwargs
        if kwargs:
            kwargs = {k: v._np() if type(v) is DeviceArray else v for k, v in kwargs.items()}
        return self.kernel(*views, **kwargs)

    @property
    def __name__(self) -> str:  # failures name the user's kernel, not this wrapper
        return kernel_name(self.kernel)


def _check_device(value: DeviceArray, where: str, stream: StreamImpl) -> None:
    if value._dev is not stream.device:
        if value._dev.runtime is not stream.device.runtime:
            raise foreign_runtime_error(f"kernel argument {where} (a DeviceArray)", "the stream it is launched on")
        dev = stream.device.index
        raise ValueError(
            f"kernel argument {where} is a DeviceArray on mtia:{value._dev.index}, but the kernel is launched on a "
            f"stream of mtia:{dev}; move it first with .to({dev}) or launch on a stream of its device"
        )


def bind(
    kernel: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any], stream: StreamImpl
) -> tuple[Callable[..., object], tuple[Any, ...]]:
    """Return the callable and positional arguments to enqueue for ``kernel(*args, **kwargs)``.

    Raises:
        ValueError: a DeviceArray argument lives on another device than ``stream``.
    """
    for a in args:
        if type(a) is DeviceArray:
            break
    else:
        if not kwargs:
            return kernel, args
        for v in kwargs.values():
            if type(v) is DeviceArray:
                break
        else:
            return functools.partial(kernel, **kwargs), args
    for i, a in enumerate(args):
        if type(a) is DeviceArray:
            _check_device(a, f"#{i}", stream)
    for k, v in kwargs.items():
        if type(v) is DeviceArray:
            _check_device(v, repr(k), stream)
    return _WithViews(kernel, kwargs), args
