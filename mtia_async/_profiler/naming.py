"""What the profiler calls a kernel, and what it notes about a launch (shapes, the Python stack).

A launch's FIFO item is not always the user's kernel: ``launch(fn, x, out=y)`` with
DeviceArray arguments enqueues a runner that binds them (``binds_kernel``: the user's
``fn`` is its first argument), and operators enqueue the runtime's own kernels
(``ufunc_aa(np.add, a, b, z)``). The trace names what the user wrote: ``fn``, ``add``,
``add.reduce``, ``Memcpy HtoD``. A callable may also name itself for the trace with a
``trace_name`` attribute (a string): graph replays do.

Everything here runs on the launching thread while a profile records, so the common
case (a plain function, a ufunc) is a couple of attribute reads.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from .._arrays.array import DeviceArray
from .._arrays.kernels import UNARY, reduce_kernel, ufunc_a, ufunc_aa, ufunc_as, ufunc_kernel, ufunc_out, ufunc_sa
from .._arrays.reductions import function_kernel
from .._arrays.transfer import copy_kernel, fill_kernel, setitem_kernel
from .._core.stream import kernel_name

__all__ = ["INTERNAL", "PACKAGE_DIR", "call_stack", "input_shapes", "launch_name", "name_graph_replays", "user_args"]

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_FunctionType = types.FunctionType
_MAX_FRAMES = 16


def _numpy_name(fn: Any) -> str:
    """``add`` for ``np.add``, ``add.reduce`` for ``np.add.reduce``, ``mean`` for ``np.mean``."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, np.ufunc):
        return f"{owner.__name__}.{fn.__name__}"
    return kernel_name(fn)


def _copy_name(dst: Any, src: Any) -> str:
    """torch's names for copies: ``Memcpy HtoD``, ``Memcpy DtoH``, ``Memcpy DtoD``."""
    to = "D" if type(dst) is DeviceArray else "H"
    frm = "D" if type(src) is DeviceArray else "H"
    return f"Memcpy {frm}to{to}"


def _ufunc(args: tuple[Any, ...]) -> str:
    return _numpy_name(args[0])


def _operands(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v for v in args[1:] if v is not UNARY)


# The runtime's own kernels, named after what they do: kernel -> (its name from the FIFO
# args, the operands among them whose shapes ``record_shapes`` notes).
INTERNAL: dict[Any, tuple[Callable[[tuple[Any, ...]], str], Callable[[tuple[Any, ...]], tuple[Any, ...]]]] = {
    ufunc_aa: (_ufunc, _operands),  # (uf, a, b, z)
    ufunc_as: (_ufunc, _operands),
    ufunc_sa: (_ufunc, _operands),
    ufunc_a: (_ufunc, _operands),  # (uf, a, z)
    ufunc_out: (_ufunc, _operands),  # (uf, a, b or UNARY, o)
    reduce_kernel: (_ufunc, lambda args: args[1:3]),  # (uf.reduce, a, z, axis, keepdims)
    ufunc_kernel: (_ufunc, lambda args: (*args[1], *args[2])),  # (fn, inputs, outputs, keywords)
    function_kernel: (_ufunc, lambda args: args[1:3]),  # (fn, a, out, keywords)
    copy_kernel: (lambda args: _copy_name(args[0], args[1]), lambda args: args),  # (dst, src)
    fill_kernel: (lambda args: "Memset", lambda args: args),  # (dst, value)
    setitem_kernel: (lambda args: "setitem", lambda args: args),  # (dst, value)
}


def name_graph_replays() -> None:
    """Name graph replays ``graph replay (MTIAGraph #N)`` (called when a profile starts).

    A replay reaches the instruments as one launch of the graphs' walker
    (``_graphs/program.py``: ``_walk(exe, stream, ...)``, ``exe.label`` naming the graph),
    looked up where it is, if graphs are loaded: the profiler does not import them.
    """
    program = sys.modules.get("mtia_async._graphs.program")
    walk = getattr(program, "_walk", None)
    if type(walk) is _FunctionType and walk not in INTERNAL:
        INTERNAL[walk] = (lambda args: f"graph replay ({getattr(args[0], 'label', 'a graph')})", lambda args: ())


def launch_name(kernel: Any, args: tuple[Any, ...], binds: bool) -> str:
    """The name of the kernel a FIFO item ``(kernel, args)`` runs, as the trace shows it.

    Args:
        kernel: the FIFO item's callable.
        args: its arguments.
        binds: ``kernel`` binds arguments for the user's kernel, ``args[0]``.

    Never raises: a user object whose attribute lookup fails is named by its type.
    """
    if binds:
        kernel = args[0]
    elif type(kernel) is _FunctionType:
        internal = INTERNAL.get(kernel)
        if internal is not None:
            try:
                return internal[0](args)
            except Exception:
                return kernel_name(kernel)
    try:
        own = getattr(kernel, "trace_name", None)
        if type(own) is str:
            return own
        if type(kernel) is np.ufunc:
            return kernel.__name__
    except Exception:
        pass
    return kernel_name(kernel)


def user_args(kernel: Any, args: tuple[Any, ...], binds: bool) -> tuple[Any, ...]:
    """The arguments the user's kernel gets (for their shapes): without the kernel itself."""
    if binds:
        return args[1:]
    internal = INTERNAL.get(kernel) if type(kernel) is _FunctionType else None
    return internal[1](args) if internal is not None else args


def _describe(value: Any) -> tuple[list[int], str]:
    t = type(value)
    if t is DeviceArray or isinstance(value, np.ndarray):
        return list(value.shape), str(value.dtype)
    if t is int or t is float or t is bool or t is complex or isinstance(value, np.generic):
        return [], "Scalar"
    return [], t.__name__


def input_shapes(values: tuple[Any, ...]) -> dict[str, list[Any]]:
    """torch's ``record_shapes`` fields: ``Input Dims`` and ``Input type`` of each argument."""
    dims: list[Any] = []
    types_: list[str] = []
    for v in values:
        try:
            d, t = _describe(v)
        except Exception:
            d, t = [], "unknown"
        dims.append(d)
        types_.append(t)
    return {"Input Dims": dims, "Input type": types_}


def call_stack(skip: int = 1) -> list[str]:
    """The caller's Python frames outside mtia_async, innermost first: ``path(line): function``."""
    frame: types.FrameType | None = sys._getframe(skip)
    out: list[str] = []
    while frame is not None and len(out) < _MAX_FRAMES:
        code = frame.f_code
        if not code.co_filename.startswith(PACKAGE_DIR):
            out.append(f"{code.co_filename}({frame.f_lineno}): {code.co_name}")
        frame = frame.f_back
    return out
