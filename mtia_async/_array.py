"""DeviceArray: memory on one emulated device, and what its methods run on the worker.

A base ``DeviceArray`` owns one ``Block`` of its device's caching allocator, allocated
on the caller (so ``OutOfMemoryError`` is raised at the call, as on hardware) for the
current stream of that device, and returns it to the allocator when it is garbage
collected (``__del__``; see ``settle_frees`` for the worker-thread case). A view (basic
slicing, ``reshape``, ``transpose``) keeps its base alive and shares its memory.

Work on the data always runs as a kernel on the current stream of the array's device.
The numpy view of the device memory is built lazily and cached on the array (inputs:
by the worker that first needs it); the caller only handles metadata (shape, dtype,
strides) and never reads or writes device memory itself, so nothing here ever waits
except ``to_host()`` / ``numpy()``, which say so.

Beside this module: ``_checks`` (argument checks), ``_factories`` (``asarray``,
``empty``, ...), ``_dispatch`` (operators and ufuncs), ``_reductions`` (``sum``,
``mean``, ... and ``__array_function__``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from ._checks import check_dtype, check_index, check_shape, fmt_shape, reshape_target
from ._context import _ctx, resolve_device
from ._runtime import get_runtime
from ._wait import _tls as _thread_flags
from ._wait import check_may_block, wait_mark_async, wait_mark_blocking

if TYPE_CHECKING:
    from ._device import DeviceImpl
    from ._stream import StreamImpl

__all__ = [
    "SCALARS",
    "DeviceArray",
    "check_dtype",
    "check_shape",
    "copy_kernel",
    "fill_kernel",
    "new_array",
    "settle_frees",
    "stream_of",
]

_new_obj = object.__new__
_ctx_get = _ctx.get
_prod = math.prod


def _addr(a: np.ndarray[Any, Any]) -> int:
    addr: int = a.__array_interface__["data"][0]
    return addr


# --- streams and allocation (the hot path) ---------------------------------------------------
def stream_of(dev: DeviceImpl) -> StreamImpl:
    """The calling task's / thread's current stream of ``dev`` (``current_stream_impl``, inlined)."""
    value = _ctx_get()
    if value is not None:
        streams = value[2]
        i = dev.index
        if i < len(streams):
            s = streams[i]
            if s is not None and value[0] == dev.runtime.generation:
                return s
    return dev.default_stream


# Blocks of arrays whose last reference went away on a worker thread (a queued kernel
# held it): freeing them there would make the workers and the caller fight over the
# allocator's lock at every op (each lost round stalls a thread for a GIL switch interval,
# ~5 ms). The worker appends them here (one atomic deque append) and the next allocation
# or memory-API call, on the caller's side, returns them to their allocators.
_worker_frees: deque[Any] = deque()


def settle_frees() -> None:
    """Return the blocks dropped on worker threads to their allocators."""
    pop = _worker_frees.popleft
    while _worker_frees:
        try:
            block = pop()
        except IndexError:  # another thread took the last one
            return
        block.stream.device._allocator.free(block)  # the allocating stream's device


def new_array(dev: DeviceImpl, shape: tuple[int, ...], dtype: np.dtype[Any], stream: StreamImpl) -> DeviceArray:
    """A new C-contiguous base array; its memory is allocated now, for ``stream``.

    Raises:
        OutOfMemoryError: the device cannot hold it.
    """
    if _worker_frees:
        settle_frees()
    nbytes = _prod(shape) * dtype.itemsize
    if nbytes:
        alloc = dev._allocator
        if alloc is None:
            alloc = dev.allocator
        block = alloc.malloc(nbytes, stream)
    else:
        block = None
    a = _new_obj(DeviceArray)
    a._shape = shape
    a._dtype = dtype
    a._dev = dev
    a._block = block
    a._base = None
    a._offset = 0
    a._strides = None
    a._view = None
    return a


def _as_view(v: DeviceArray | Any) -> Any:
    """In a kernel: the numpy view of a DeviceArray, anything else unchanged."""
    if type(v) is DeviceArray:
        view = v._view
        return view if view is not None else v._np()
    return v


# --- kernels (run in a worker thread) -----------------------------------------------------
def copy_kernel(dst: Any, src: Any) -> None:
    np.copyto(_as_view(dst), _as_view(src), casting="unsafe")


def fill_kernel(dst: DeviceArray, value: Any) -> None:
    dst._np().fill(value)


def setitem_kernel(dst: DeviceArray, value: Any) -> None:
    dst._np()[...] = _as_view(value)


SCALARS = (int, float, complex, bool)
_Op = Callable[["DeviceArray", Any], Any]


def _ops(uf: np.ufunc) -> tuple[_Op, _Op, _Op]:
    """The operator methods ``a op b``, ``b op a`` and ``a op= b`` of a binary ufunc."""

    def op(self: DeviceArray, other: Any) -> Any:
        return _dispatch.binop(uf, self, other)

    def rop(self: DeviceArray, other: Any) -> Any:
        return _dispatch.rbinop(uf, self, other)

    def iop(self: DeviceArray, other: Any) -> Any:
        return _dispatch.ibinop(uf, self, other)

    return op, rop, iop


def _cmp(uf: np.ufunc) -> _Op:
    return _ops(uf)[0]


def _un(uf: np.ufunc) -> Callable[[DeviceArray], DeviceArray]:
    def op(self: DeviceArray) -> DeviceArray:
        return _dispatch.unop(uf, self)

    return op


def _implicit(what: str) -> NoReturn:
    raise TypeError(
        f"{what} would copy a DeviceArray to the host implicitly (a hidden synchronisation); copy it "
        "explicitly with `await a.to_host()` (mtia_async) or `a.numpy()` (mtia_async.sync)"
    )


class DeviceArray:
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
    _block: Any  # the allocator's Block (views share their base's), None when empty
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
            self._block = None
            if _thread_flags.worker:
                _worker_frees.append(block)
            else:
                self._dev._allocator.free(block)

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
            elif self._strides is None:
                v = np.ndarray(self._shape, self._dtype, block.buffer)
            else:
                v = np.ndarray(self._shape, self._dtype, block.buffer, self._offset, self._strides)
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

    # --- copies -----------------------------------------------------------------------------
    async def to_host(self) -> np.ndarray[Any, Any]:
        """Copy to a new host numpy array, after the work enqueued on the current stream.

        Raises:
            KernelError: a kernel before the copy failed on that stream.
        """
        s = stream_of(self._dev)
        host = np.empty(self._shape, self._dtype)
        s.launch(copy_kernel, (host, self))
        await wait_mark_async(s.record_mark())
        return host

    def numpy(self) -> np.ndarray[Any, Any]:
        """Copy to a new host numpy array, blocking until the current stream gets there.

        Raises:
            KernelError: a kernel before the copy failed on that stream.
            RuntimeError: called on an event-loop thread or inside a kernel (use
                ``await a.to_host()`` there).
        """
        check_may_block("DeviceArray.numpy()")
        s = stream_of(self._dev)
        host = np.empty(self._shape, self._dtype)
        s.launch(copy_kernel, (host, self))
        wait_mark_blocking(s.record_mark(), "DeviceArray.numpy()")
        return host

    def copy(self) -> DeviceArray:
        """A new C-contiguous array with the same values (a kernel on the current stream)."""
        return self.astype(self._dtype)

    def astype(self, dtype: object, copy: bool = True) -> DeviceArray:
        """A converted copy (numpy's unsafe casting); ``self`` if ``copy=False`` and dtype matches."""
        dt = check_dtype(dtype)
        if not copy and dt == self._dtype:
            return self
        dev = self._dev
        s = stream_of(dev)
        out = new_array(dev, self._shape, dt, s)
        if out._block is not None:
            s.launch(copy_kernel, (out, self))
        return out

    def to(self, device: object) -> DeviceArray:
        """This array on ``device``: ``self`` if already there, else a copy.

        The copy runs on the destination's current stream once the work enqueued so far
        on the source's current stream is done.
        """
        rt = get_runtime()
        index = resolve_device(device, rt)
        if index == self._dev.index and rt is self._dev.runtime:
            return self
        dst = rt.devices[index]
        dst_stream = stream_of(dst)
        out = new_array(dst, self._shape, self._dtype, dst_stream)
        if out._block is not None:
            dst_stream.wait_mark(stream_of(self._dev).record_mark())
            dst_stream.launch(copy_kernel, (out, self))
        return out

    def record_stream(self, stream: Any) -> None:
        """Tell the allocator this memory is used on ``stream`` (a ``Stream`` of this device).

        Its block is then reused only after the work enqueued on ``stream`` by the time it
        is freed is done. A view protects its whole base block.

        Raises:
            TypeError: ``stream`` is not a Stream.
            ValueError: ``stream`` belongs to another device.
        """
        from ._api import StreamBase

        if not isinstance(stream, StreamBase):
            raise TypeError(f"record_stream() expects a mtia_async Stream, got {type(stream).__name__} {stream!r:.60}")
        impl = stream._impl
        if impl.device is not self._dev:
            raise ValueError(
                f"record_stream(): the stream is on mtia:{impl.device.index} but the array is on "
                f"mtia:{self._dev.index}; pass a stream of the array's device"
            )
        if self._block is not None:
            self._dev.allocator.record_stream(self._block, impl)

    # --- views --------------------------------------------------------------------------------
    def __getitem__(self, index: Any) -> DeviceArray:
        return self._derive(self._np()[check_index(index)])

    def __setitem__(self, index: Any, value: Any) -> None:
        target = self[index]
        shape = target._shape
        if type(value) is DeviceArray:
            if value._dev is not self._dev:
                raise ValueError(_dispatch.two_devices(self._dev, value._dev))
            src: Any = value
            vshape = value._shape
        elif isinstance(value, (*SCALARS, np.generic)):
            src = np.empty((), self._dtype)
            src[()] = value  # numpy's own conversion errors, here on the caller
            vshape = ()
        else:
            src = np.array(value, dtype=self._dtype)  # a private snapshot of the host data
            vshape = src.shape
        while len(vshape) > len(shape) and vshape[0] == 1:
            vshape = vshape[1:]  # numpy drops leading unit dimensions of the value
        if len(vshape) > len(shape) or any(v not in (1, t) for v, t in zip(vshape[::-1], shape[::-1])):
            raise ValueError(
                f"could not broadcast input array from shape {fmt_shape(getattr(src, 'shape', vshape))} "
                f"into shape {fmt_shape(shape)}"
            )
        if target._block is not None:
            stream_of(self._dev).launch(setitem_kernel, (target, src))

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
        return _reductions.array_function(func, args, kwargs)

    # reductions (kernels; the result is a DeviceArray, 0-d for a full reduction)
    def sum(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        """Sum over ``axis`` (all by default), as ``ndarray.sum``; ``initial=``, ``where=`` accepted."""
        return _reductions.reduce(np.add, self, axis, dtype, out, keepdims, kw)

    def prod(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        """Product over ``axis``, as ``ndarray.prod``."""
        return _reductions.reduce(np.multiply, self, axis, dtype, out, keepdims, kw)

    def max(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        """Maximum over ``axis``, as ``ndarray.max`` (NaN propagates)."""
        return _reductions.reduce(np.maximum, self, axis, None, out, keepdims, kw)

    def min(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        """Minimum over ``axis``, as ``ndarray.min`` (NaN propagates)."""
        return _reductions.reduce(np.minimum, self, axis, None, out, keepdims, kw)

    def mean(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        """Mean over ``axis``, as ``ndarray.mean``."""
        return _reductions.statistic(np.mean, self, axis, dtype, out, keepdims, kw)

    def std(self, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0, keepdims: bool = False, **kw: Any) -> Any:
        """Standard deviation over ``axis``, as ``ndarray.std``."""
        return _reductions.statistic(np.std, self, axis, dtype, out, keepdims, dict(kw, ddof=ddof))

    def var(self, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0, keepdims: bool = False, **kw: Any) -> Any:
        """Variance over ``axis``, as ``ndarray.var``."""
        return _reductions.statistic(np.var, self, axis, dtype, out, keepdims, dict(kw, ddof=ddof))

    def any(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        """Whether any element along ``axis`` is true (a bool DeviceArray)."""
        return _reductions.statistic(np.any, self, axis, None, out, keepdims, kw)

    def all(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        """Whether all elements along ``axis`` are true (a bool DeviceArray)."""
        return _reductions.statistic(np.all, self, axis, None, out, keepdims, kw)

    def argmax(self, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Any:
        """Indices of the maxima along ``axis`` (of the flattened array by default)."""
        return _reductions.argreduce(np.argmax, self, axis, out, keepdims)

    def argmin(self, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Any:
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
    __divmod__, __rdivmod__, _ = _ops(np.divmod)
    __lt__, __gt__, __le__, __ge__ = _cmp(np.less), _cmp(np.greater), _cmp(np.less_equal), _cmp(np.greater_equal)
    __eq__, __ne__ = _cmp(np.equal), _cmp(np.not_equal)
    __neg__, __pos__, __abs__, __invert__ = _un(np.negative), _un(np.positive), _un(np.absolute), _un(np.invert)
    del _

    def __pow__(self, other: Any, mod: Any = None) -> Any:
        return _dispatch.binop(np.power, self, other) if mod is None else NotImplemented

    def __rpow__(self, other: Any, mod: Any = None) -> Any:
        return _dispatch.rbinop(np.power, self, other) if mod is None else NotImplemented

    def __ipow__(self, other: Any, mod: Any = None) -> Any:
        return _dispatch.ibinop(np.power, self, other) if mod is None else NotImplemented


# Last: they import names from this module.
from . import _dispatch, _reductions
