"""Results whose size depends on the data: ``nonzero``, ``argwhere``, ``flatnonzero``, ``unique``,
``histogram``, ``a[mask]`` with a DeviceArray mask, and ``item()``/``tolist()`` (issue 18).

Every other function allocates its output on the caller, from metadata, before its kernel
runs. These cannot: the size of the result is in the values. One mechanism serves them all:

1. **at the call**: the arguments are checked (numpy's errors, before anything is enqueued),
   then every DeviceArray input is copied to the host on the current stream of its device
   with the device's own copy path (``transfer.start_to_host``: a copy kernel on a local
   device, a read answered by the worker on a cluster device, whose memory is in another
   process). The inputs are thus read in stream order, at the call;
2. **the wait** for those copies: the blocking form blocks the calling thread, the awaitable
   form awaits (asyncio or trio). A kernel failure before the call is raised here
   (``KernelError``), as by any wait;
3. **numpy's own function** runs on the host copies (numpy's semantics and errors, exactly),
   and the results are copied back to the device by a copy kernel on the current stream
   (``upload``). ``histogram`` returns its two host arrays as they are.

The blocking forms are ``numpy.nonzero(a)`` and the others through ``__array_function__``,
``a.nonzero()``, ``a[mask]``, and the ``mtia_async.sync`` functions of the same names. Where
blocking would stall a loop or deadlock (an asyncio event-loop thread, a trio task, inside a
kernel) they raise ``RuntimeError`` at once (``check_may_block``'s wording), naming the
awaitable form: the coroutine functions of ``mtia_async`` (``await mtia_async.nonzero(a)``,
``unique``, ``histogram``, ``getitem``, ...), which run ``awaited`` on a ``Plan``.

``item()`` and ``tolist()`` are methods, the same in both facades: on an event-loop thread (an
asyncio loop's or a trio task's) they enqueue the copy at the call and return an awaitable of
the value (``await a.item()``); elsewhere they block and return it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from ..._core.context import stream_of
from ..._core.wait import wait_mark_async, wait_mark_blocking, wait_marks_async, wait_marks_blocking
from ..._thread_role import blocking_refused, flags, running_async_library
from ..array import DeviceArray, new_array
from ..checks import check_dtype, two_devices
from ..transfer import start_to_host, copy_kernel
from .registry import implements, unsupported

if TYPE_CHECKING:
    from ..._core.device import DeviceImpl

__all__ = [
    "Plan",
    "argwhere",
    "argwhere_plan",
    "awaited",
    "blocking",
    "flatnonzero",
    "flatnonzero_plan",
    "histogram",
    "device_array",
    "histogram_plan",
    "nonzero",
    "nonzero_plan",
    "read_value",
    "tolist",
    "unique",
    "unique_plan",
    "upload",
]


class Plan:
    """A checked data-dependent call: what to copy to the host, and what numpy computes from the copies.

    Args:
        dev: the device of the DeviceArray inputs (the results go there).
        inputs: DeviceArrays (copied to the host at the start) and host arrays (private snapshots).
        compute: numpy's function of the host inputs, in order.
        what: the call, for messages and the instruments (``"numpy.nonzero()"``).
        hint: its awaitable form, for the refusal (``"nonzero(a)"`` for ``await mtia_async.nonzero(a)``).
        host_result: the result stays on the host (``histogram``); else its arrays are uploaded.
    """

    __slots__ = ("dev", "inputs", "compute", "what", "hint", "host_result")

    def __init__(self, dev: DeviceImpl, inputs: tuple[Any, ...], compute: Callable[..., Any], what: str, hint: str,
                 host_result: bool = False) -> None:  # fmt: skip
        self.dev = dev
        self.inputs = inputs
        self.compute = compute
        self.what = what
        self.hint = hint
        self.host_result = host_result


def _start(plan: Plan) -> tuple[list[list[Any]], list[Any]]:
    """Enqueue the copies of the plan's DeviceArray inputs: their boxes (hosts' in one-item lists) and marks."""
    s = stream_of(plan.dev)
    if s.capture is not None:  # checked before any copy is enqueued: a capture cannot wait on the host
        raise s.capture.forbidden(s, f"{plan.what}, a copy to the host,")
    boxes: list[list[Any]] = []
    marks = []
    for x in plan.inputs:
        if type(x) is DeviceArray:
            box, mark = start_to_host(x)
            boxes.append(box)
            marks.append(mark)
        else:
            boxes.append([x])
    return boxes, marks


def upload(host: Any, dev: DeviceImpl) -> DeviceArray:
    """A new DeviceArray on ``dev`` holding ``host`` (a private host array: no snapshot is taken)."""
    host = np.asarray(host)
    s = stream_of(dev)
    out = new_array(dev, host.shape, check_dtype(host.dtype), s)
    if out._block is not None:
        s.launch(copy_kernel, (out, host), (), (out,))
    return out


def _finish(plan: Plan, boxes: list[list[Any]]) -> Any:
    result = plan.compute(*[box[0] for box in boxes])
    if plan.host_result:
        return result
    if type(result) is tuple:
        return tuple(upload(r, plan.dev) for r in result)
    return upload(result, plan.dev)


def _refusal(what: str, hint: str) -> str | None:
    """Why ``what`` must not block here (``check_may_block``'s wording, naming the awaitable form), or None."""
    reason = blocking_refused(f"{what} (its result's size depends on the data)")
    if reason is None or flags.worker:
        return reason
    return f"{reason}: `await mtia_async.{hint}`"


def blocking(plan: Plan) -> Any:
    """Run ``plan``, blocking the calling thread while the copies to the host complete.

    Raises:
        RuntimeError: on an event-loop thread, in a trio task or inside a kernel (nothing
            is enqueued); the message names the awaitable form.
        KernelError: a kernel before the call failed on that stream.
    """
    reason = _refusal(plan.what, plan.hint)
    if reason is not None:
        raise RuntimeError(reason)
    boxes, marks = _start(plan)
    wait_marks_blocking(marks, plan.what)
    return _finish(plan, boxes)


async def awaited(plan: Plan) -> Any:
    """Run ``plan``, awaiting the copies to the host (asyncio or trio).

    Raises:
        RuntimeError: inside a kernel, or with no event loop running.
        KernelError: a kernel before the call failed on that stream.
    """
    if flags.worker:
        raise RuntimeError(_refusal(plan.what, plan.hint))
    boxes, marks = _start(plan)
    await wait_marks_async(marks, plan.what)
    return _finish(plan, boxes)


# --- the functions -----------------------------------------------------------------------------------
def device_array(a: Any, name: str) -> DeviceArray:
    """``a`` if it is a DeviceArray, else the ``TypeError`` of ``mtia_async.<name>()``."""
    if type(a) is not DeviceArray:
        raise TypeError(
            f"mtia_async.{name}() takes a DeviceArray, got {type(a).__name__} {a!r:.60}; for host data call numpy.{name}()"
        )
    return a


def nonzero_plan(a: Any) -> Plan:
    """``numpy.nonzero(a)``: a tuple of intp DeviceArrays, one per axis."""
    a = device_array(a, "nonzero")
    if not a._shape:
        raise ValueError("Calling nonzero on 0d arrays is not allowed. Use np.atleast_1d(scalar).nonzero() instead.")
    return Plan(a._dev, (a,), np.nonzero, "numpy.nonzero()", "nonzero(a)")


def argwhere_plan(a: Any) -> Plan:
    """``numpy.argwhere(a)``: an intp DeviceArray of shape ``(N, a.ndim)``."""
    a = device_array(a, "argwhere")
    return Plan(a._dev, (a,), np.argwhere, "numpy.argwhere()", "argwhere(a)")


def flatnonzero_plan(a: Any) -> Plan:
    """``numpy.flatnonzero(a)``: the indices of the non-zero elements of ``a.ravel()``."""
    a = device_array(a, "flatnonzero")
    return Plan(a._dev, (a,), np.flatnonzero, "numpy.flatnonzero()", "flatnonzero(a)")


def unique_plan(ar: Any, return_index: bool = False, return_inverse: bool = False, return_counts: bool = False,
                axis: Any = None, *, equal_nan: bool = True, sorted: bool = True) -> Plan:  # fmt: skip
    """``numpy.unique(ar, ...)``: the sorted unique values (and the optional arrays), DeviceArrays."""
    ar = device_array(ar, "unique")
    if axis is not None:
        axis = normalize_axis_index(axis, ar.ndim)  # numpy's AxisError, at the call
    compute = functools.partial(
        np.unique, return_index=return_index, return_inverse=return_inverse, return_counts=return_counts,
        axis=axis, equal_nan=equal_nan, sorted=sorted,
    )  # fmt: skip
    return Plan(ar._dev, (ar,), compute, "numpy.unique()", "unique(a, ...)")


def _host_operand(x: Any, dev: DeviceImpl | None) -> tuple[Any, DeviceImpl | None]:
    """A DeviceArray (checked against ``dev``) or a private host snapshot of ``x``; the device so far."""
    if type(x) is DeviceArray:
        if dev is not None and x._dev is not dev:
            raise ValueError(two_devices(dev, x._dev))
        return x, x._dev
    return np.array(x), dev


def histogram_plan(a: Any, bins: Any = 10, range: Any = None, density: Any = None, weights: Any = None) -> Plan:
    """``numpy.histogram(...)``: ``(hist, bin_edges)``, two host numpy arrays."""
    for name, value in (("bins", bins), ("range", range)):
        if type(value) is DeviceArray or (type(value) in (list, tuple) and any(type(v) is DeviceArray for v in value)):
            raise unsupported("histogram", f"{name}= must be host values; copy it with to_host()/numpy() first")
    if isinstance(bins, (list, tuple, np.ndarray)):
        bins = np.array(bins)  # a snapshot: the computation runs after the wait
    host_a, dev = _host_operand(a, None)
    host_w, dev = (None, dev) if weights is None else _host_operand(weights, dev)
    if dev is None:
        raise TypeError("mtia_async.histogram() takes a DeviceArray (a or weights=); for host data call numpy.histogram()")
    if host_w is not None and host_w.shape != host_a.shape:
        raise ValueError("weights should have the same shape as a.")
    # numpy checks bins, range and density on an empty sample of the same dtypes, here at the call
    np.histogram(np.zeros(0, host_a.dtype), bins, range, density, None if host_w is None else np.zeros(0, host_w.dtype))
    compute = functools.partial(_histogram, bins, range, density)
    return Plan(dev, (host_a, host_w), compute, "numpy.histogram()", "histogram(a, ...)", host_result=True)


def _histogram(bins: Any, range: Any, density: Any, a: Any, weights: Any) -> Any:
    return np.histogram(a, bins, range, density, weights)


# The blocking forms: numpy's functions on DeviceArrays, and mtia_async.sync's.
@implements(np.nonzero)
def nonzero(a: Any) -> tuple[DeviceArray, ...]:
    """The indices of the non-zero elements, one intp DeviceArray per axis, as ``numpy.nonzero``.

    Blocks until the values are known (``await mtia_async.nonzero(a)`` on an event loop).

    Raises:
        ValueError: ``a`` is 0-d (numpy's error).
        RuntimeError: on an event-loop thread, in a trio task or inside a kernel.
        KernelError: a kernel before the call failed on that stream.
    """
    result: tuple[DeviceArray, ...] = blocking(nonzero_plan(a))
    return result


@implements(np.argwhere)
def argwhere(a: Any) -> DeviceArray:
    """The indices of the non-zero elements as rows, shape ``(N, a.ndim)``, as ``numpy.argwhere``.

    Blocks until the values are known (``await mtia_async.argwhere(a)`` on an event loop).
    """
    result: DeviceArray = blocking(argwhere_plan(a))
    return result


@implements(np.flatnonzero)
def flatnonzero(a: Any) -> DeviceArray:
    """The indices of the non-zero elements of the flattened array, as ``numpy.flatnonzero``.

    Blocks until the values are known (``await mtia_async.flatnonzero(a)`` on an event loop).
    """
    result: DeviceArray = blocking(flatnonzero_plan(a))
    return result


@implements(np.unique)
def unique(ar: Any, return_index: bool = False, return_inverse: bool = False, return_counts: bool = False,
           axis: Any = None, *, equal_nan: bool = True, sorted: bool = True) -> Any:  # fmt: skip
    """The sorted unique elements (and the optional index, inverse and counts arrays), as ``numpy.unique``.

    numpy 2's semantics (``return_inverse`` has ``ar``'s shape when ``axis`` is None).
    Blocks until the values are known (``await mtia_async.unique(a, ...)`` on an event loop).

    Raises:
        AxisError: a bad ``axis`` (numpy's error, at the call).
    """
    return blocking(unique_plan(ar, return_index, return_inverse, return_counts, axis, equal_nan=equal_nan, sorted=sorted))


@implements(np.histogram)
def histogram(a: Any, bins: Any = 10, range: Any = None, density: Any = None, weights: Any = None) -> Any:
    """``(hist, bin_edges)`` as ``numpy.histogram``: two **host** numpy arrays.

    ``bins`` is an int, a bin-estimator name or a host sequence of edges; ``weights`` a
    DeviceArray of the same device or host data. Blocks until the values are known
    (``await mtia_async.histogram(a, ...)`` on an event loop).

    Raises:
        ValueError: bad bins, range or weights (numpy's errors, at the call).
    """
    return blocking(histogram_plan(a, bins, range, density, weights))


# --- item() (functions.indexing picks the element) and tolist() ------------------------------------
async def _value(box: list[Any], mark: Any, what: str, convert: Callable[[Any], Any]) -> Any:
    await wait_mark_async(mark, what)
    return convert(box[0])


def read_value(a: DeviceArray, what: str, convert: Callable[[Any], Any]) -> Any:
    """Copy ``a`` to the host at the call: the converted value, or an awaitable of it on an event loop."""
    if flags.worker:
        raise RuntimeError(blocking_refused(what))
    s = stream_of(a._dev)
    if s.capture is not None:
        raise s.capture.forbidden(s, f"{what}, a copy to the host,")
    box, mark = start_to_host(a)
    if running_async_library() is not None:
        return _value(box, mark, what, convert)
    wait_mark_blocking(mark, what)
    return convert(box[0])


def tolist(a: DeviceArray) -> Any:
    """``a.tolist()``: nested Python lists of Python scalars, awaitable on an event-loop thread."""
    return read_value(a, "DeviceArray.tolist()", np.ndarray.tolist)
