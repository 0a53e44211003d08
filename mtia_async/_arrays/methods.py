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

    # --- data-dependent results and conveniences -------------------------------------


_ = (np, Any)  # used by the methods above as they are added
