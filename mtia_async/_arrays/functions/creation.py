"""Creation: ``empty_like``, ``zeros_like``, ``ones_like``, ``full_like`` (numpy dispatch).

Each makes a new C-contiguous array on the prototype's device (numpy's ``order``,
``subok`` and ``device`` keywords are accepted only in the forms that mean that), and
the filling ones enqueue a fill kernel on the current stream of that device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._core.context import stream_of
from ..array import DeviceArray, new_array
from ..checks import check_dtype, check_shape
from ..transfer import fill_kernel
from .registry import implements, unsupported

__all__ = ["like"]


def like(name: str, a: Any, dtype: Any, order: str, subok: bool, shape: Any, device: Any) -> DeviceArray:
    """A new uninitialised array shaped like ``a`` (or ``shape``), on ``a``'s device."""
    if type(a) is not DeviceArray:
        raise unsupported(name, "the prototype must be the DeviceArray")
    if order not in ("K", "A", "C"):
        raise unsupported(name, f"order={order!r}: DeviceArrays are C-ordered")
    if device not in (None, a._dev.index, f"mtia:{a._dev.index}"):
        raise ValueError(
            f"numpy.{name}(device={device!r}): the result is on the prototype's device mtia:{a._dev.index}; "
            "move it with .to(device) afterwards"
        )
    dt = a._dtype if dtype is None else check_dtype(dtype)
    sh = a._shape if shape is None else check_shape(shape)
    return new_array(a._dev, sh, dt, stream_of(a._dev))


def _filled(out: DeviceArray, value: Any) -> DeviceArray:
    if out._block is not None:
        src = np.empty((), out._dtype)
        src[()] = value  # numpy's conversion errors, here on the caller
        stream_of(out._dev).launch(fill_kernel, (out, src[()]), (), (out,))
    return out


@implements(np.empty_like)
def empty_like(prototype: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, *,
               device: Any = None) -> DeviceArray:  # fmt: skip
    return like("empty_like", prototype, dtype, order, subok, shape, device)


@implements(np.zeros_like)
def zeros_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, *,
               device: Any = None) -> DeviceArray:  # fmt: skip
    return _filled(like("zeros_like", a, dtype, order, subok, shape, device), 0)


@implements(np.ones_like)
def ones_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, *,
              device: Any = None) -> DeviceArray:  # fmt: skip
    return _filled(like("ones_like", a, dtype, order, subok, shape, device), 1)


@implements(np.full_like)
def full_like(a: Any, fill_value: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, *,
              device: Any = None) -> DeviceArray:  # fmt: skip
    if type(fill_value) is DeviceArray:
        raise unsupported("full_like", "fill_value must be a scalar, not a DeviceArray")
    return _filled(like("full_like", a, dtype, order, subok, shape, device), fill_value)
