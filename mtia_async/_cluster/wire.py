"""What a launch becomes on the wire: pickled on the caller at launch, unpickled on the worker.

Kernels and their arguments travel with cloudpickle, serialised **at the launch**, on
the launching thread: a kernel or argument that cannot be serialised raises
``TypeError`` at ``launch``, never later. The pickler's ``persistent_id`` replaces, by
small tuples (handles):

* a ``DeviceArray`` -> ``("A", device, segment uid, offset, shape, dtype, strides)``
  (``("E", shape, dtype)`` when empty); the launch also keeps the array alive until
  the worker has run it (the FIFO of a local stream does the same);
* a numpy view of a phantom segment (an operator's output, which its kernel gets as
  ``z``: ``_arrays/fastpath.py``) -> ``("V", ...)`` with the same fields;
* a function -> ``("K", kernel id)``: each function is pickled once per connection
  (as Dask caches pickled functions) and sent to a worker before the first batch that
  uses it; its closure and globals are those it had at its first launch;
* a ufunc -> ``("U", name)``, a dtype -> ``("D", code)`` (pickling either costs more
  than the rest of a launch).

A function launched with arguments that are scalars (``int``, ``float``, ``bool``,
``str``, ``bytes``, ``None``) or have a handle (the objects above) is not pickled at all:
the launch is ``("F", kernel id, args)``, each non-scalar argument replaced by its handle
(``plain_launch``). That covers no-op kernels, operators, ufuncs and launches of
DeviceArrays; a host array or any other object takes the pickler.

On the worker, ``persistent_load`` turns the handles back: an array of a device the
worker holds becomes a worker-side ``DeviceArray`` whose numpy view is preset to the
segment memory, so every kernel (the internal ones of ``_arrays/kernels.py`` and the
launch runners of ``_arrays/bind.py``, which read ``a._view``) runs unchanged; an array
of another worker's device fetches its bytes from that worker when the kernel first
reads it (``session``).
"""

from __future__ import annotations

import io
import pickle
import threading
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cloudpickle
import ml_dtypes
import numpy as np

from .._arrays.array import DeviceArray
from .._core.stream import describe_kernel
from .backing import PHANTOMS, segment_of

if TYPE_CHECKING:
    from .link import Link

__all__ = ["Pickled", "dtype_code", "dtype_of", "dumps_launch", "handle_of", "loads", "plain_launch"]

_FunctionType = types.FunctionType
_ufunc = np.ufunc
_ndarray = np.ndarray
_CODES: dict[np.dtype[Any], str] = {}
_DTYPES: dict[str, np.dtype[Any]] = {}

Pickled = tuple[bytes, tuple[DeviceArray, ...]]
"""A launch as the FIFO of a remote stream holds it: its pickle, and the arrays kept alive."""


def dtype_code(dt: np.dtype[Any]) -> str:
    """A short code naming ``dt`` on the worker (numpy's ``str``, or an ml_dtypes name)."""
    code = _CODES.get(dt)
    if code is None:
        code = "ml:" + dt.name if dt.type.__module__.startswith("ml_dtypes") else dt.str
        _CODES[dt] = code
    return code


def dtype_of(code: str) -> np.dtype[Any]:
    """The dtype a :func:`dtype_code` names."""
    dt = _DTYPES.get(code)
    if dt is None:
        dt = np.dtype(getattr(ml_dtypes, code[3:])) if code.startswith("ml:") else np.dtype(code)
        _DTYPES[code] = dt
    return dt


def handle_of(a: DeviceArray) -> tuple[Any, ...]:
    """The handle of a DeviceArray of a remote device (see the module docstring)."""
    block = a._block
    if block is None:
        return ("E", a._shape, dtype_code(a._dtype))
    seg = block._chunk.seg
    entry = PHANTOMS[id(seg.host)]
    return ("A", entry[0], entry[1], block.ptr - seg.ptr + a._offset, a._shape, dtype_code(a._dtype), a._strides)


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, with DeviceArrays, phantom views, functions, ufuncs and dtypes as handles."""

    link: Link
    refs: list[DeviceArray]

    def persistent_id(self, obj: Any) -> Any:
        t = type(obj)
        if t is DeviceArray:
            self.refs.append(obj)
            return handle_of(obj)
        if t is _ndarray:
            where = segment_of(obj)
            if where is None:
                return None
            return ("V", *where, obj.shape, dtype_code(obj.dtype), obj.strides)
        if t is _FunctionType:
            return ("K", self.link.kernel_id(obj))
        if t is _ufunc:
            name: str = obj.__name__
            return ("U", name) if getattr(np, name, None) is obj else None
        if isinstance(obj, np.dtype):
            return ("D", dtype_code(obj))
        return None


class _PicklerSlot(threading.local):
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.pickler = _Pickler(self.buf, protocol=5)
        self.busy = False


_slot = _PicklerSlot()


def dumps_launch(link: Link, kernel: Callable[..., object], args: tuple[Any, ...]) -> Pickled:
    """Pickle ``(kernel, args)`` for ``link``'s worker; the arrays to keep alive beside it.

    Raises:
        TypeError: the kernel or an argument cannot be serialised (the message names both).
    """
    slot = _slot
    if slot.busy:  # re-entered (a finalizer launching during a dump): a pickler of its own
        slot = _PicklerSlot()
    slot.busy = True
    buf, pickler = slot.buf, slot.pickler
    pickler.link = link
    refs: list[DeviceArray] = []
    pickler.refs = refs
    try:
        pickler.dump((kernel, args))
        blob = buf.getvalue()
    except Exception as exc:
        raise TypeError(
            f"kernel {describe_kernel(kernel, args)} cannot be sent to a cluster device: its function or an "
            f"argument cannot be serialised by cloudpickle ({type(exc).__name__}: {exc}); pass picklable "
            "arguments (numpy arrays, numbers, DeviceArrays, functions)"
        ) from exc
    finally:
        buf.seek(0)
        buf.truncate()
        pickler.clear_memo()
        pickler.refs = []
        pickler.link = None  # type: ignore[assignment]  # the slot outlives runtimes: keep none alive
        slot.busy = False
    return blob, tuple(refs)


_SCALARS = frozenset({int, float, bool, str, bytes, type(None)})
_I64 = 1 << 63


def plain_launch(link: Link, kernel: Callable[..., object], args: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]] | None:
    """``(("F", kernel id, args), arrays)`` for a launch that needs no pickle, else None.

    That is a function launched with arguments that are scalars (``int`` within 64 bits,
    msgpack's range, ``float``, ``bool``, ASCII ``str``, ``bytes``, ``None``) or objects that have a
    handle: DeviceArrays, views of device memory, functions, numpy's ufuncs and dtypes (the
    launch runners of ``_arrays/bind.py`` and the operators' kernels get those). Scalars travel
    as they are in the frame (Dask's msgpack keeps each one's type and value), each other
    argument as its handle (a list there: the worker resolves every list). Pickling a launch
    with cloudpickle's pickler costs ~7 us for a no-op and ~25 us for one DeviceArray (a
    Python call per object, and per item of each handle); this costs ~0.3-2 us.
    """
    if kernel.__class__ is not _FunctionType:
        return None
    out: list[Any] | None = None
    refs: list[DeviceArray] = []
    for i, a in enumerate(args):
        t = a.__class__
        if t in _SCALARS:
            if (t is int and not -_I64 <= a < _I64) or (t is str and not a.isascii()):
                return None  # msgpack's ints are 64-bit; a str that is not UTF-8-clean would break the frame
            if out is not None:
                out.append(a)
            continue
        if t is DeviceArray:
            refs.append(a)
            h: Any = handle_of(a)
        elif t is _FunctionType:
            h = ("K", link.kernel_id(a))
        elif t is _ndarray:
            where = segment_of(a)
            if where is None:
                return None  # a host array: pickled (a copy, read-only on the worker)
            h = ("V", *where, a.shape, dtype_code(a.dtype), a.strides)
        elif t is _ufunc and getattr(np, name := str(getattr(a, "__name__", "")), None) is a:
            h = ("U", name)
        elif isinstance(a, np.dtype):
            h = ("D", dtype_code(a))
        else:
            return None
        if out is None:
            out = list(args[:i])
        out.append(h)
    return ("F", link.kernel_id(kernel), args if out is None else out), tuple(refs)


def dumps_function(fn: Callable[..., object]) -> bytes:
    """A function pickled by value or reference, as cloudpickle decides (sent once per worker)."""
    try:
        return cloudpickle.dumps(fn, protocol=5)  # type: ignore[no-any-return]
    except Exception as exc:
        raise TypeError(
            f"kernel {describe_kernel(fn, ())} cannot be sent to a cluster device: cloudpickle cannot serialise "
            f"it ({type(exc).__name__}: {exc})"
        ) from exc


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, resolve: Callable[[Any], Any]) -> None:
        super().__init__(io.BytesIO(data))
        self.resolve = resolve

    def persistent_load(self, pid: Any) -> Any:
        return self.resolve(pid)


def loads(data: bytes, resolve: Callable[[Any], Any]) -> Any:
    """Unpickle on the worker; ``resolve`` turns each handle into its worker-side object."""
    return _Unpickler(data, resolve).load()
