"""DeviceArray's ndarray-style methods that are numpy functions (``a.ravel()``, ``a.cumsum()``, ...).

``DeviceArray`` inherits them from ``ArrayMethods``; each one calls the numpy function,
which dispatches to the implementation registered in ``functions`` (one code path for
``np.f(a)`` and ``a.f()``). The methods with their own machinery (reductions, copies,
views, indexing) stay in ``array``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ArrayMethods"]


class ArrayMethods:
    """The numpy-function methods of DeviceArray (see the module docs)."""

    __slots__ = ()

    # --- shaping and joining -------------------------------------------------------------
    def ravel(self, order: Any = "C") -> Any:
        """The elements as a 1-d array, as ``numpy.ravel``: a view when numpy gives one, else a copy kernel."""
        a: Any = self
        return np.ravel(a, order)

    def flatten(self, order: Any = "C") -> Any:
        """The elements as a new 1-d array (always a copy: a kernel), as ``ndarray.flatten``."""
        a: Any = self
        flat: Any = np.ravel(a, order)
        return flat if flat._base is None else flat.copy()  # ravel copied already, or gave a view

    def squeeze(self, axis: Any = None) -> Any:
        """A view without the length-1 axes (``axis``: only those), as ``numpy.squeeze``."""
        a: Any = self
        return np.squeeze(a, axis)

    def swapaxes(self, axis1: Any, axis2: Any) -> Any:
        """A view with ``axis1`` and ``axis2`` interchanged, as ``numpy.swapaxes``."""
        a: Any = self
        return np.swapaxes(a, axis1, axis2)

    def repeat(self, repeats: Any, axis: Any = None) -> Any:
        """Each element repeated ``repeats`` times (a host int or sequence), as ``numpy.repeat`` (a kernel)."""
        a: Any = self
        return np.repeat(a, repeats, axis)

    # --- selection -----------------------------------------------------------------------
    def clip(self, min: Any = None, max: Any = None, out: Any = None, **kwargs: Any) -> Any:
        """Values limited to ``[min, max]`` (``None``: that side unbounded), as ``ndarray.clip`` (a kernel).

        ``min``/``max`` are scalars, DeviceArrays of the same device or host data;
        ``out=`` and the ufunc keywords (``dtype=``, ``casting=``, ``where=``) as numpy's.
        """
        a: Any = self
        return np.clip(a, min, max, out=out, **kwargs)

    def take(self, indices: Any, axis: Any = None, out: Any = None, mode: Any = "raise") -> Any:
        """The elements at ``indices`` along ``axis`` (of the flattened array by default), as ``ndarray.take``.

        Host indices out of range with ``mode='raise'`` raise ``IndexError`` at the call;
        DeviceArray indices out of range raise ``KernelError`` at the next wait.
        """
        a: Any = self
        return np.take(a, indices, axis=axis, out=out, mode=mode)

    def put(self, indices: Any, values: Any, mode: Any = "raise") -> None:
        """Write ``values`` (repeated as needed) at the flat ``indices``, as ``ndarray.put`` (a kernel writing ``a``).

        Host indices out of range with ``mode='raise'`` raise ``IndexError`` at the call;
        DeviceArray indices out of range raise ``KernelError`` at the next wait.
        """
        a: Any = self
        np.put(a, indices, values, mode=mode)

    # --- linear algebra, sorting and scans ----------------------------------------------
    def dot(self, b: Any, out: Any = None) -> Any:
        """The dot product with ``b``, as ``numpy.dot(a, b, out)`` (a kernel on the current stream)."""
        a: Any = self
        return np.dot(a, b, out)

    def trace(self, offset: Any = 0, axis1: Any = 0, axis2: Any = 1, dtype: Any = None, out: Any = None) -> Any:
        """The sum along a diagonal, as ``numpy.trace`` (a kernel on the current stream)."""
        a: Any = self
        return np.trace(a, offset, axis1, axis2, dtype, out)

    def sort(self, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> None:
        """Sort in place along ``axis``, as ``ndarray.sort`` (a kernel writing this array; returns None).

        Raises:
            ValueError, TypeError: numpy's, for a bad ``axis``, ``kind``, ``stable`` or ``order`` (at the call).
        """
        from .functions import sorting

        a: Any = self
        sorting.sort_in_place(a, axis, kind, order, stable=stable)

    def argsort(self, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> Any:
        """The indices that sort along ``axis`` (intp), as ``numpy.argsort``."""
        a: Any = self
        return np.argsort(a, axis, kind, order, stable=stable)

    def partition(self, kth: Any, axis: Any = -1, kind: str = "introselect", order: Any = None) -> None:
        """Partition in place around ``kth``, as ``ndarray.partition`` (a kernel writing this array).

        Raises:
            ValueError, TypeError: numpy's, for a ``kth`` out of bounds or not ints, or a bad ``axis``,
                ``kind`` or ``order`` (at the call).
        """
        from .functions import sorting

        a: Any = self
        sorting.partition_in_place(a, kth, axis, kind, order)

    def cumsum(self, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
        """The cumulative sum along ``axis`` (of the flattened array by default), as ``numpy.cumsum``."""
        a: Any = self
        return np.cumsum(a, axis, dtype, out)

    def cumprod(self, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
        """The cumulative product along ``axis`` (of the flattened array by default), as ``numpy.cumprod``."""
        a: Any = self
        return np.cumprod(a, axis, dtype, out)

    # --- data-dependent results and conveniences -------------------------------------
    def nonzero(self) -> tuple[Any, ...]:
        """The indices of the non-zero elements, one intp DeviceArray per axis, as ``numpy.nonzero``.

        Blocks until the values are known (on an event loop it raises ``RuntimeError``:
        use ``await mtia_async.nonzero(a)`` there).
        """
        a: Any = self
        result: tuple[Any, ...] = np.nonzero(a)
        return result

    def item(self, *args: Any) -> Any:
        """One element as a Python scalar, as ``ndarray.item(*args)``: ``await a.item()`` on an event loop.

        On an asyncio event-loop thread or in a trio task it returns an awaitable of the
        value (the copy of that one element is enqueued at the call); elsewhere it blocks.

        Raises:
            IndexError, ValueError: numpy's, for bad arguments (at the call).
            RuntimeError: inside a kernel.
            KernelError: a kernel before the call failed on that stream (when the value is read).
        """
        from .functions import indexing

        a: Any = self
        return indexing.item(a, args)

    def tolist(self) -> Any:
        """The values as nested Python lists, as ``ndarray.tolist``: ``await a.tolist()`` on an event loop.

        Blocks, or returns an awaitable on an event-loop thread, as ``item()``.
        """
        from .functions import sized

        a: Any = self
        return sized.tolist(a)

    def fill(self, value: Any) -> None:
        """Set every element to ``value`` (a fill kernel); numpy's conversion errors at the call."""
        from .functions import indexing

        a: Any = self
        indexing.fill(a, value)

    def view(self, dtype: Any = None, type: Any = None) -> Any:
        """A view of the same memory reinterpreted as ``dtype``, by numpy's rules; no kernel.

        Raises:
            ValueError: numpy's, when the last axis cannot be reinterpreted (not contiguous,
                or its byte size not a multiple of the new item size).
            TypeError: an ndarray subclass as ``type`` (a DeviceArray is no host array).
        """
        import builtins

        from .checks import check_dtype

        if type is not None or (isinstance(dtype, builtins.type) and issubclass(dtype, np.ndarray)):
            raise TypeError("DeviceArray.view(type=...) is not supported: a DeviceArray's view is a DeviceArray")
        a: Any = self
        v = a._np().view() if dtype is None else a._np().view(check_dtype(dtype))
        new = a._derive(v)
        new._dtype = v.dtype
        return new

    def astype(self, dtype: Any, order: Any = "K", casting: str = "unsafe", subok: bool = True, copy: bool = True) -> Any:
        """A converted copy, as ``ndarray.astype`` (a kernel); ``self`` if ``copy=False`` and dtype matches.

        ``casting`` is checked at the call with numpy's rules and error; the copy is
        C-ordered (``order`` ``"K"``, ``"A"`` or ``"C"``; ``"F"`` only for up to one dimension).

        Raises:
            TypeError: the cast is not allowed under ``casting`` (numpy's error), or an unsupported dtype.
            ValueError: a bad ``order`` or ``casting`` (numpy's errors).
        """
        import builtins

        from . import transfer
        from .checks import check_dtype

        a: Any = self
        dt = check_dtype(dtype)
        if order is not None and order not in ("K", "A", "C", "F"):
            raise ValueError(f"order must be one of 'C', 'F', 'A', or 'K' (got {order!r})")
        if not isinstance(casting, str):
            raise TypeError(f"casting must be str, not {builtins.type(casting).__name__}")
        if casting == "same_value":  # numpy 2.4's check of every value: an error only the kernel could find
            raise TypeError("DeviceArray.astype(casting='same_value') is not supported; compare a.astype(t).astype(a.dtype) == a")
        if casting not in ("no", "equiv", "safe", "same_kind", "unsafe"):
            raise ValueError(
                f"casting must be one of 'no', 'equiv', 'safe', 'same_kind', 'unsafe', 'same_value' (got {casting!r})"
            )
        if casting != "unsafe" and not np.can_cast(a._dtype, dt, casting):  # type: ignore[arg-type]
            raise TypeError(f"Cannot cast array data from {a._dtype!r} to {dt!r} according to the rule {casting!r}")
        if order == "F" and a.ndim > 1:
            raise TypeError("DeviceArray.astype(order='F') is not supported: DeviceArray copies are C-ordered")
        return transfer.astype(a, dt, bool(copy))


_ = (np, Any)  # used by the methods above as they are added
