"""Operands of numpy's calls on DeviceArrays: what may be one, on which device, ``out=``, ``where=``.

Shared by ``dispatch`` (ufuncs and operators) and ``reductions``: every operand path
checks devices here, once, so no path can read an array of another device unsynchronised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .array import SCALARS, DeviceArray
from .checks import check_dtype, two_devices
from .shapes import Shape
from .transfer import from_host

if TYPE_CHECKING:
    from .._core.device import DeviceImpl

__all__ = ["common_device", "operand", "outputs", "shape_of", "where_operand"]


def shape_of(x: Any) -> Shape:
    """The shape of an operand (a scalar's is ``()``)."""
    return x._shape if type(x) is DeviceArray else ()


def common_device(items: Any) -> DeviceImpl | None:
    dev = None
    for x in items:
        if type(x) is DeviceArray:
            if dev is None:
                dev = x._dev
            elif x._dev is not dev:
                raise ValueError(two_devices(dev, x._dev))
    return dev


def operand(x: Any, dev: DeviceImpl) -> Any:
    """A DeviceArray or a scalar; host arrays are copied to ``dev``; None if unsupported.

    Subclasses of the Python scalars (``IntEnum`` members, say) are operands as numpy
    takes them (not as weak Python scalars: numpy gives them a dtype of their own).
    """
    if type(x) is DeviceArray or isinstance(x, SCALARS):
        return x
    if isinstance(x, np.generic):
        check_dtype(x.dtype)
        return x
    if isinstance(x, (np.ndarray, list, tuple)):
        return from_host(x, None, dev)
    return None


def outputs(out: Any, nout: int, name: str) -> tuple[DeviceArray | None, ...]:
    if out is None:
        return (None,) * nout
    outs = out if type(out) is tuple else (out,)
    if len(outs) != nout:
        raise ValueError(f"The 'out' tuple must have exactly {nout} entries: one per ufunc output of {name}")
    for o in outs:
        if o is not None and type(o) is not DeviceArray:
            raise TypeError(
                f"out= of a ufunc on DeviceArrays must be DeviceArrays of the same device, got {type(o).__name__}; "
                "copy the result to the host with to_host()/numpy()"
            )
    return outs


def where_operand(where: Any, dev: DeviceImpl) -> Any:
    """None (everywhere), a bool scalar, or a bool DeviceArray on ``dev``.

    Raises:
        TypeError: not a bool mask.
        ValueError: a DeviceArray mask on another device than ``dev``.
    """
    if where is True or where is None:
        return None
    if type(where) is DeviceArray:
        if where._dtype != np.bool_:
            raise TypeError(f"where= must be a bool array, got a DeviceArray of dtype {where._dtype}")
        if where._dev is not dev:
            raise ValueError(two_devices(dev, where._dev))
        return where
    if isinstance(where, (bool, np.bool_)):
        return None if where else False
    host = np.asarray(where)
    if host.dtype != np.bool_:
        raise TypeError(f"where= must be a bool array, got dtype {host.dtype}")
    return from_host(host, None, dev)
