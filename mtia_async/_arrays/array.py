"""DeviceArray: memory on one emulated device.

A base ``DeviceArray`` owns one ``Block`` of its device's caching allocator, allocated
on the caller (so ``OutOfMemoryError`` is raised at the call, as on hardware) for the
current stream of that device, and returns it to the allocator when it is garbage
collected (``__del__``; a free on a kernel worker thread is queued by the allocator
and done on the caller's side). A view (basic slicing, ``reshape``, ``transpose``) keeps
its base alive and shares its memory.

Work on the data always runs as a kernel on the current stream of the array's device.
The numpy view of the device memory is built lazily and cached on the array (inputs:
by the worker that first needs it); the caller only handles metadata (shape, dtype,
strides) and never reads or writes device memory itself, so nothing here ever waits
except ``to_host()`` / ``numpy()``, which say so.

The operations live beside this module and are reached through one late import at
the bottom (they need the ``DeviceArray`` type, and its methods need them):
``transfer`` (copies and fills), ``fastpath`` (operators and ufuncs, falling back to
``dispatch``), ``reductions`` (``sum``, ``mean``, ... and ``__array_function__``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

import numpy as np

from .._core.instrument import instruments
from .._core.stream import StreamHandle, foreign_runtime_error
from .._memory import Block
from .checks import check_extent, check_index, reshape_target
from .methods import ArrayMethods

if TYPE_CHECKING:
    from .._core.device import DeviceImpl
    from .._core.stream import StreamImpl

__all__ = ["SCALARS", "DeviceArray", "as_view", "new_array"]

_new_obj = object.__new__
_prod = math.prod


def _addr(a: np.ndarray[Any, Any]) -> int:
    addr: int = a.__array_interface__["data"][0]
    return addr


# --- allocation (the hot path) ---------------------------------------------------------
def new_array(
    dev: DeviceImpl, shape: tuple[int, ...], dtype: np.dtype[Any], stream: StreamImpl, view: bool = False
) -> DeviceArray:
    """A new C-contiguous base array; its memory is allocated now, for ``stream``.

    With ``view``, the numpy view of its memory is built now too (an operator's output,
    which its kernel gets as that view: see ``fastpath``).

    Raises:
        OutOfMemoryError: the device cannot hold it.
        ValueError: an empty array whose extent numpy refuses (a huge dimension).
    """
    nbytes = _prod(shape) * dtype.itemsize
    if nbytes:
        alloc = dev._allocator
        if alloc is None:
            alloc = dev.allocator
        block = alloc.malloc(nbytes, stream)  # a huge size is an OutOfMemoryError there
    else:
        check_extent(shape, dtype)  # nothing to allocate: numpy's own limits still apply
        block = None
    a = _new_obj(DeviceArray)
    a._shape = shape
    a._dtype = dtype
    a._dev = dev
    a._block = block
    a._base = None
    a._offset = 0
    a._strides = None
    a._view = block.whole_view(shape, dtype) if view and block is not None else None
    if instruments.active:
        instruments.alloc(a, stream)
    return a


def as_view(v: DeviceArray | Any) -> Any:
    """In a kernel: the numpy view of a DeviceArray, anything else unchanged."""
    if type(v) is DeviceArray:
        view = v._view
        return view if view is not None else v._np()
    return v


SCALARS = (int, float, complex, bool)
Operand: TypeAlias = "DeviceArray | int | float | complex | bool | np.generic | np.ndarray[Any, Any]"
"""What an operator takes on the other side: a DeviceArray of the same device, a scalar, or host data."""
_Op = Callable[["DeviceArray", Operand], "DeviceArray"]


def _ops(uf: np.ufunc) -> tuple[_Op, _Op, _Op]:
    """The operator methods ``a op b``, ``b op a`` and ``a op= b`` of a binary ufunc."""

    def op(self: DeviceArray, other: Operand) -> DeviceArray:
        result: DeviceArray = _dispatch.binop(uf, self, other)
        return result

    def rop(self: DeviceArray, other: Operand) -> DeviceArray:
        result: DeviceArray = _dispatch.rbinop(uf, self, other)
        return result

    def iop(self: DeviceArray, other: Operand) -> DeviceArray:
        result: DeviceArray = _dispatch.ibinop(uf, self, other)
        return result

    return op, rop, iop


def _cmp(uf: np.ufunc) -> _Op:
    return _ops(uf)[0]


def _divmod(uf: np.ufunc) -> tuple[
    Callable[[DeviceArray, Operand], tuple[DeviceArray, DeviceArray]],
    Callable[[DeviceArray, Operand], tuple[DeviceArray, DeviceArray]],
]:  # fmt: skip
    """``divmod(a, b)`` and ``divmod(b, a)``: two outputs."""

    def op(self: DeviceArray, other: Operand) -> tuple[DeviceArray, DeviceArray]:
        result: tuple[DeviceArray, DeviceArray] = _dispatch.binop(uf, self, other)
        return result

    def rop(self: DeviceArray, other: Operand) -> tuple[DeviceArray, DeviceArray]:
        result: tuple[DeviceArray, DeviceArray] = _dispatch.rbinop(uf, self, other)
        return result

    return op, rop


def _un(uf: np.ufunc) -> Callable[[DeviceArray], DeviceArray]:
    def op(self: DeviceArray) -> DeviceArray:
        return _dispatch.unop(uf, self)

    return op


def _implicit(what: str) -> NoReturn:
    raise TypeError(
        f"{what} would copy a DeviceArray to the host implicitly (a hidden synchronisation); copy it "
        "explicitly with `await a.to_host()` (mtia_async) or `a.numpy()` (mtia_async.sync)"
    )


class DeviceArray(ArrayMethods):
    """An n-dimensional array in the memory of one emulated device.

    Make one with :func:`asarray`, :func:`empty`, :func:`zeros`, :func:`ones` or
    :func:`full`. Operators, numpy ufuncs and the reduction methods enqueue kernels on
    the current stream of the array's device and return new DeviceArrays at once.
    Reading the values needs an explicit copy: ``await a.to_host()`` or ``a.numpy()``.
    """

    __slots__ = ("_shape", "_dtype", "_dev", "_block", "_base", "_offset", "_strides", "_view", "__weakref__")
    __hash__ = None  # type: ignore[assignment]  # == is elementwise, as in numpy

    _shape: tuple[int, ...]
    _dtype: np.dtype[Any]
    _dev: DeviceImpl
    _block: Block | None  # the allocator's block (views share their base's), None when empty
    _base: DeviceArray | None  # the array owning the block; None for a base
    _offset: int  # bytes from the block's start
    _strides: tuple[int, ...] | None  # None: C-contiguous from offset 0
    _view: np.ndarray[Any, Any] | None  # the numpy view of the device memory, built lazily

    def __new__(cls, *args: object, **kwargs: object) -> DeviceArray:
        raise TypeError(
            "DeviceArray cannot be constructed directly; use mtia_async.asarray(), empty(), zeros(), ones() or full()"
        )

    def __init_subclass__(cls, **kwargs: object) -> None:
        raise TypeError("DeviceArray cannot be subclassed (the runtime relies on its exact type)")

    def __del__(self) -> None:
        block = self._block
        if block is not None and self._base is None:
            if instruments.active:
                instruments.free(self)
            self._block = None
            self._dev._allocator.free(block)  # type: ignore[union-attr]  # it made the block

    # --- the numpy view of the device memory (kernels; metadata on the caller) --------
    def _np(self) -> np.ndarray[Any, Any]:
        """The numpy view of this array's device memory, built once and cached.

        Kernels read and write through it; the caller uses it only for metadata.
        """
        v = self._view
        if v is None:
            block = self._block
            if block is None:
                v = np.empty(self._shape, self._dtype)
            else:
                v = block.view(self._shape, self._dtype, self._offset, self._strides)
            self._view = v
        return v

    def _derive(self, v: np.ndarray[Any, Any]) -> DeviceArray:
        """A view of this array whose numpy view is ``v`` (a view of ``self._np()``)."""
        new = _new_obj(DeviceArray)
        new._shape = v.shape
        new._dtype = self._dtype
        new._dev = self._dev
        new._block = block = self._block
        new._base = self if self._base is None else self._base
        new._offset = self._offset + (_addr(v) - _addr(self._np())) if block is not None else 0
        new._strides = v.strides
        new._view = v
        return new

    # --- attributes ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """The dimensions, a tuple of ints."""
        return self._shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """The element type, a numpy dtype."""
        return self._dtype

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return len(self._shape)

    @property
    def size(self) -> int:
        """The number of elements."""
        return _prod(self._shape)

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return self._dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of the elements (not of the allocator block, which is rounded up)."""
        return _prod(self._shape) * self._dtype.itemsize

    @property
    def device(self) -> int:
        """The index of the array's device."""
        return self._dev.index

    @property
    def strides(self) -> tuple[int, ...]:
        """Bytes to step in each dimension, as numpy's ``strides``."""
        return self._np().strides

    @property
    def base(self) -> DeviceArray | None:
        """The array owning the memory this view shares, or None for an owner."""
        return self._base

    @property
    def T(self) -> DeviceArray:
        """The transposed view (axes reversed), sharing memory."""
        return self.transpose()

    def data_ptr(self) -> int:
        """The device address of the first element, as snapshots show it (0 when empty)."""
        block = self._block
        return 0 if block is None else block.ptr + self._offset

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d DeviceArray")
        return self._shape[0]

    def __repr__(self) -> str:
        view = "" if self._base is None else ", view"
        return f"DeviceArray(shape={self._shape}, dtype={self._dtype}, device='mtia:{self._dev.index}'{view})"

    __str__ = __repr__

    # --- no implicit host copies -----------------------------------------------------
    if not TYPE_CHECKING:  # hidden from type checkers: a DeviceArray is not "array-like" to them,
        # so numpy's stubs type np.exp(a) by __array_ufunc__ (Any), not as a host ndarray.

        def __array__(self, dtype: object = None, copy: object = None) -> NoReturn:
            _implicit("np.asarray(DeviceArray)")

    def __bool__(self) -> NoReturn:
        _implicit("bool(DeviceArray)")

    def __float__(self) -> NoReturn:
        _implicit("float(DeviceArray)")

    def __int__(self) -> NoReturn:
        _implicit("int(DeviceArray)")

    def __complex__(self) -> NoReturn:
        _implicit("complex(DeviceArray)")

    def __index__(self) -> NoReturn:
        _implicit("using a DeviceArray as an index")

    def __iter__(self) -> Iterator[Any]:
        _implicit("iterating over a DeviceArray")

    def __contains__(self, item: object) -> NoReturn:
        _implicit("`in` on a DeviceArray")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        _implicit("pickling a DeviceArray")

    def __copy__(self) -> DeviceArray:
        return self.copy()

    def __deepcopy__(self, memo: object) -> DeviceArray:
        return self.copy()

    # --- copies (``transfer``) ------------------------------------------------------------
    async def to_host(self) -> np.ndarray[Any, Any]:
        """Copy to a new host numpy array, after the work enqueued on the current stream.

        Raises:
            KernelError: a kernel before the copy failed on that stream.
        """
        return await transfer.to_host(self)

    def numpy(self) -> np.ndarray[Any, Any]:
        """Copy to a new host numpy array, blocking until the current stream gets there.

        Raises:
            KernelError: a kernel before the copy failed on that stream.
            RuntimeError: called on an event-loop thread or inside a kernel (use
                ``await a.to_host()`` there).
        """
        return transfer.to_host_blocking(self)

    def copy(self) -> DeviceArray:
        """A new C-contiguous array with the same values (a kernel on the current stream)."""
        return transfer.astype(self, self._dtype, True)

    def to(self, device: object) -> DeviceArray:
        """This array on ``device``: ``self`` if already there, else a copy.

        The copy runs on the destination's current stream once the work enqueued so far
        on the source's current stream is done.
        """
        return transfer.to_device(self, device)

    def record_stream(self, stream: StreamHandle) -> None:
        """Tell the allocator this memory is used on ``stream`` (a ``Stream`` of this device).

        Its block is then reused only after the work enqueued on ``stream`` by the time it
        is freed is done. A view protects its whole base block.

        Raises:
            TypeError: ``stream`` is not a Stream.
            ValueError: ``stream`` belongs to another device.
        """
        if not isinstance(stream, StreamHandle):
            raise TypeError(f"record_stream() expects a mtia_async Stream, got {type(stream).__name__} {stream!r:.60}")
        impl = stream._impl
        if impl.device.runtime is not self._dev.runtime:
            raise foreign_runtime_error("record_stream(): the stream", "the array")
        if impl.device is not self._dev:
            raise ValueError(
                f"record_stream(): the stream is on mtia:{impl.device.index} but the array is on "
                f"mtia:{self._dev.index}; pass a stream of the array's device"
            )
        if self._block is not None:
            self._dev.allocator.record_stream(self._block, impl)

    # --- views --------------------------------------------------------------------------------
    def __getitem__(self, index: Any) -> DeviceArray:
        basic = check_index(index)
        if basic is None:  # integer arrays and masks: a kernel (functions/indexing)
            return _indexing.read(self, index)
        return self._derive(self._np()[basic])

    def __setitem__(self, index: Any, value: Any) -> None:
        basic = (Ellipsis,) if index is Ellipsis else check_index(index)  # a[...]: the whole array
        if basic is None:  # integer arrays and masks: a kernel (functions/indexing)
            return _indexing.write(self, index, value)
        transfer.setitem(self if index is Ellipsis else self._derive(self._np()[basic]), value)

    def reshape(self, *shape: Any) -> DeviceArray:
        """A view with a new shape (one dimension may be -1); a copy when no view can express it."""
        target = reshape_target(shape, _prod(self._shape))
        try:
            v = self._np().reshape(target, copy=False)
        except ValueError:  # needs a copy, as torch.reshape (numpy would copy too)
            return self.copy().reshape(target)
        return self._derive(v)

    def transpose(self, *axes: Any) -> DeviceArray:
        """A view with the axes permuted (reversed by default)."""
        return self._derive(self._np().transpose(*axes))

    # --- numpy protocol ---------------------------------------------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return _dispatch.array_ufunc_entry(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return _array_function(func, args, kwargs, self)

    # reductions (kernels; the result is a DeviceArray, 0-d for a full reduction)
    def sum(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> DeviceArray:
        """Sum over ``axis`` (all by default), as ``ndarray.sum``; ``initial=``, ``where=`` accepted."""
        return _reductions.reduce(np.add, self, axis, dtype, out, keepdims, kw)

    def prod(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> DeviceArray:
        """Product over ``axis``, as ``ndarray.prod``."""
        return _reductions.reduce(np.multiply, self, axis, dtype, out, keepdims, kw)

    def max(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> DeviceArray:
        """Maximum over ``axis``, as ``ndarray.max`` (NaN propagates)."""
        return _reductions.reduce(np.maximum, self, axis, None, out, keepdims, kw)

    def min(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> DeviceArray:
        """Minimum over ``axis``, as ``ndarray.min`` (NaN propagates)."""
        return _reductions.reduce(np.minimum, self, axis, None, out, keepdims, kw)

    def mean(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> DeviceArray:
        """Mean over ``axis``, as ``ndarray.mean``."""
        return _reductions.statistic(np.mean, self, axis, dtype, out, keepdims, kw)

    def std(self, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0, keepdims: bool = False, **kw: Any) -> DeviceArray:
        """Standard deviation over ``axis``, as ``ndarray.std``."""
        return _reductions.statistic(np.std, self, axis, dtype, out, keepdims, dict(kw, ddof=ddof))

    def var(self, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0, keepdims: bool = False, **kw: Any) -> DeviceArray:
        """Variance over ``axis``, as ``ndarray.var``."""
        return _reductions.statistic(np.var, self, axis, dtype, out, keepdims, dict(kw, ddof=ddof))

    def any(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> DeviceArray:
        """Whether any element along ``axis`` is true (a bool DeviceArray)."""
        return _reductions.statistic(np.any, self, axis, None, out, keepdims, kw)

    def all(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> DeviceArray:
        """Whether all elements along ``axis`` are true (a bool DeviceArray)."""
        return _reductions.statistic(np.all, self, axis, None, out, keepdims, kw)

    def argmax(self, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> DeviceArray:
        """Indices of the maxima along ``axis`` (of the flattened array by default)."""
        return _reductions.argreduce(np.argmax, self, axis, out, keepdims)

    def argmin(self, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> DeviceArray:
        """Indices of the minima along ``axis`` (of the flattened array by default)."""
        return _reductions.argreduce(np.argmin, self, axis, out, keepdims)

    # --- operators (kernels on the current stream) -------------------------------------------
    __add__, __radd__, __iadd__ = _ops(np.add)
    __sub__, __rsub__, __isub__ = _ops(np.subtract)
    __mul__, __rmul__, __imul__ = _ops(np.multiply)
    __truediv__, __rtruediv__, __itruediv__ = _ops(np.true_divide)
    __floordiv__, __rfloordiv__, __ifloordiv__ = _ops(np.floor_divide)
    __mod__, __rmod__, __imod__ = _ops(np.remainder)
    __and__, __rand__, __iand__ = _ops(np.bitwise_and)
    __or__, __ror__, __ior__ = _ops(np.bitwise_or)
    __xor__, __rxor__, __ixor__ = _ops(np.bitwise_xor)
    __lshift__, __rlshift__, __ilshift__ = _ops(np.left_shift)
    __rshift__, __rrshift__, __irshift__ = _ops(np.right_shift)
    __matmul__, __rmatmul__, __imatmul__ = _ops(np.matmul)
    __divmod__, __rdivmod__ = _divmod(np.divmod)
    __lt__, __gt__, __le__, __ge__ = _cmp(np.less), _cmp(np.greater), _cmp(np.less_equal), _cmp(np.greater_equal)
    __eq__ = _cmp(np.equal)  # type: ignore[assignment]  # elementwise, as numpy's: a DeviceArray, not a bool
    __ne__ = _cmp(np.not_equal)  # type: ignore[assignment]
    __neg__, __pos__, __abs__, __invert__ = _un(np.negative), _un(np.positive), _un(np.absolute), _un(np.invert)

    def __pow__(self, other: Operand, mod: None = None) -> DeviceArray:
        result: DeviceArray = _dispatch.binop(np.power, self, other) if mod is None else NotImplemented
        return result

    def __rpow__(self, other: Operand, mod: None = None) -> DeviceArray:
        result: DeviceArray = _dispatch.rbinop(np.power, self, other) if mod is None else NotImplemented
        return result

    def __ipow__(self, other: Operand, mod: None = None) -> DeviceArray:
        result: DeviceArray = _dispatch.ibinop(np.power, self, other) if mod is None else NotImplemented
        return result


# Last: these modules implement DeviceArray's operations and import DeviceArray from here.
# The cycle stays inside the subpackage: every other module imports them, not this one.
from . import fastpath as _dispatch  # noqa: E402
from . import reductions as _reductions  # noqa: E402
from . import transfer  # noqa: E402
from . import functions as _functions  # noqa: E402,F401  # registers the numpy functions
from .functions.registry import array_function as _array_function  # noqa: E402
from .functions import indexing as _indexing  # noqa: E402
