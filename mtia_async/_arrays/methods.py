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

    # --- linear algebra, sorting and scans ----------------------------------------------

    # --- data-dependent results and conveniences -------------------------------------


_ = (np, Any)  # used by the methods above as they are added
