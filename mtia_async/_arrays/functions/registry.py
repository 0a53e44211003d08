"""The numpy functions DeviceArray implements (``__array_function__``), one table.

Each module of this package registers its functions with ``@implements(np.f, ...)``;
``array_function`` looks the function up and calls the implementation with numpy's
arguments unchanged. A function nobody registered raises ``TypeError`` naming it and
pointing at the explicit host copy: nothing here ever copies to the host silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["FUNCTIONS", "LIKE", "array_function", "implements", "public_name", "unsupported"]

FUNCTIONS: dict[Any, Callable[..., Any]] = {}
"""numpy function -> implementation taking the same arguments."""

LIKE: dict[Any, Callable[..., Any]] = {}
"""numpy creation function reached through ``like=`` (``np.arange(5, like=a)``) -> implementation
taking numpy's other arguments and ``like=a`` (numpy drops ``like`` from the arguments it passes)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def implements(*funcs: Any, like: bool = False) -> Callable[[_F], _F]:
    """Register the decorated function as the DeviceArray implementation of ``funcs``.

    With ``like``, ``funcs`` are creation functions numpy dispatches only through their
    ``like=`` argument: the implementation gets the DeviceArray as ``like=``.
    """
    table = LIKE if like else FUNCTIONS

    def register(impl: _F) -> _F:
        for f in funcs:
            if f in FUNCTIONS or f in LIKE:
                raise RuntimeError(f"numpy.{f.__name__} is implemented twice")  # a programming error
            table[f] = impl
        return impl

    return register


def unsupported(name: str, why: str = "") -> TypeError:
    """The error for a numpy function (or a form of one) DeviceArray does not implement."""
    reason = f" ({why})" if why else ""
    return TypeError(
        f"numpy.{name}() is not supported on DeviceArray{reason}; docs/arrays.md lists what is, or copy to the "
        "host first with `await a.to_host()` (mtia_async) or `a.numpy()` (mtia_async.sync)"
    )


def public_name(func: Any) -> str:
    """``fft.fft`` for ``np.fft.fft``, ``concatenate`` for ``np.concatenate`` (what follows ``numpy.``)."""
    name = getattr(func, "__name__", repr(func))
    module = str(getattr(func, "__module__", None) or "numpy")
    sub = module.removeprefix("numpy").strip(".") if module.startswith("numpy") else ""
    return f"{sub}.{name}" if sub else name


def array_function(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], array: Any = None) -> Any:
    """``DeviceArray.__array_function__`` of ``array``: the registered implementation, TypeError for the rest."""
    impl = FUNCTIONS.get(func)
    if impl is None:
        impl = LIKE.get(func)
        if impl is None:
            raise unsupported(public_name(func))
        return impl(*args, like=array, **kwargs)
    return impl(*args, **kwargs)
