"""Launch stack traces and kernel names, captured cheaply at every checked launch.

A report shows the Python stacks of *two* launches, and the earlier one is long gone
by the time the race is found, so every launch that touches device memory keeps its
own, compactly: the user's frames only (those of mtia_async's private modules and
facades are trimmed; ``mtia_async.bench`` and the examples count as user code), at
most ``MAX_FRAMES`` of them, each as ``(code object, last instruction offset)``. No
frame object is kept (a frame holds its locals, and so the arrays a program dropped),
no line number is computed and no source line is read until a report is written.
A capture walks ``sys._getframe`` (``traceback.extract_stack`` would cost ~20x more).

Kernel names are kept the same way: a *label* that costs nothing to take and is turned
into a name only for a report (``describe_kernel`` of ``_core/stream.py`` for anything
but a plain function or a ufunc). A label never references a closure or a bound
object, so it never keeps device memory alive.
"""

from __future__ import annotations

import linecache
import os
import sys
import sysconfig
import types
from typing import Any

import numpy as np

from .._core.stream import describe_kernel, kernel_name

__all__ = ["MAX_FRAMES", "Stack", "capture", "format_stack", "kernel_label", "label_name", "user_depth"]

MAX_FRAMES = 8
"""User frames kept per launch (innermost first)."""

Stack = tuple[Any, ...]  # (code, lasti, (code, lasti, ...) of the frames above), or () for none

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_USER_PARTS = ("bench" + os.sep,)  # inside the package but user code for a report
# Above the launch site, frames of the standard library and of installed packages (an event
# loop's, a test runner's) are left out: what is shown is the program's own frames.
_FOREIGN = tuple(
    {os.path.realpath(p) + os.sep for key in ("stdlib", "platstdlib", "purelib", "platlib")
     if (p := sysconfig.get_paths().get(key))} | {"<frozen "}
)  # fmt: skip
_MAX_WALK = 64  # frames looked at above the launch site (deep recursion is cut)
# Caches keyed by id(code): a code object hashes its whole content at every lookup. Each
# entry keeps its code object alive, so an id is never reused while it names an entry.
_library: dict[int, bool] = {}  # id(code) -> trimmed from stacks (bounded by the program's code)
_foreign: dict[int, bool] = {}  # id(code) -> the standard library's or an installed package's
_pinned: list[types.CodeType] = []  # the code objects those ids belong to
_depths: dict[int, list[int]] = {}  # capture key -> depths of the user's innermost frame seen for it
_sites: set[tuple[int, int, int, int]] = set()  # (key, depth, id(code), lasti) checked by a full walk
_tails: dict[int, tuple[Any, int, int, tuple[Any, ...]]] = {}  # id(frame) -> its code, lasti, parent id, frames
_last: dict[int, tuple[int, Any, int, int, Any, int, int, Stack]] = {}  # capture key -> its last site: depth, code, lasti, the frame above, stack
_MAX_SITES = 65_536
_getframe = sys._getframe
_FunctionType = types.FunctionType
_ufunc = np.ufunc
_BuiltinMethod = types.BuiltinMethodType


def _is_foreign(code: types.CodeType) -> bool:
    """Whether a frame above the launch site is the standard library's or an installed package's."""
    foreign = _foreign.get(id(code))
    if foreign is None:
        filename = code.co_filename
        foreign = _foreign[id(code)] = filename.startswith(_FOREIGN) and not filename.startswith(_PACKAGE)
        _pinned.append(code)
    return foreign


def _is_library(code: types.CodeType) -> bool:
    filename = code.co_filename
    inside = filename.startswith(_PACKAGE) and not filename[len(_PACKAGE):].startswith(_USER_PARTS)
    _pinned.append(code)
    _library[id(code)] = inside
    return inside


def capture(key: int) -> Stack:
    """The user's frames of the thread calling the caller, innermost first (library frames trimmed).

    Making a Python frame object costs ~0.25 us, and each library frame between the
    user's call and the hook is a new one at every launch, so walking down to the user's
    frames would cost more than the rest of the check. Instead, per ``key`` (the path
    into the library: what the launch enqueues) the depths of the user's innermost frame
    seen so far are remembered, and a frame found at such a depth is taken as is when
    its code and instruction (the call site) were seen there before for that key, after
    a full walk. A frame of the user's is already made (it is running), so this makes
    no frame object. A new call site, or a path of another depth, walks once.

    Args:
        key: identifies the path into the library (the id of what the launch enqueues).
    """
    last = _last.get(key)
    if last is not None:  # the same site as this key's last launch (a loop): one look, no new tuple
        d, code, lasti, pid, pcode, plasti, above, stack = last
        try:
            g = _getframe(d)
        except ValueError:
            pass
        else:
            if g.f_code is code and g.f_lasti == lasti:
                p = g.f_back
                if p is None:
                    if pcode is None:
                        return stack  # the outermost frame (a script's module), as remembered
                elif id(p) == pid and p.f_code is pcode and p.f_lasti == plasti and id(p.f_back) == above:
                    return stack
    depths = _depths.get(key)
    if depths is not None:
        for d in depths:
            try:
                g = _getframe(d)
            except ValueError:
                continue
            code = g.f_code
            lasti = g.f_lasti
            if (key, d, id(code), lasti) in _sites:
                return _remember(key, d, g, code, lasti)
    f: types.FrameType | None = _getframe(2)
    d = 2
    library = _library
    while f is not None:
        inside = library.get(id(f.f_code))
        if inside is None:
            inside = _is_library(f.f_code)
        if not inside:
            break
        f = f.f_back
        d += 1
    if f is None:
        return ()
    code, lasti = f.f_code, f.f_lasti
    if d > 2:
        if len(_sites) >= _MAX_SITES:
            _sites.clear()
        _sites.add((key, d, id(code), lasti))  # the code is pinned (classified above): its id stays its own
        known = _depths.setdefault(key, [])
        if d not in known:
            known.append(d)
            known.sort()
        return _remember(key, d, f, code, lasti)
    return _stack(f, code, lasti)


def _remember(key: int, d: int, g: types.FrameType, code: types.CodeType, lasti: int) -> Stack:
    """The stack of a site checked by a full walk, remembered as ``key``'s last (``capture``'s first look).

    The same checks as ``_sites`` and ``_tails`` (the site at that depth, the frame above
    by id, code, instruction and its own parent), in one entry per key; the code objects
    are pinned (classified by ``_is_library``/``_is_foreign``), the frames only named by id.
    """
    stack = _stack(g, code, lasti)
    p = g.f_back
    if len(_last) >= _MAX_SITES:
        _last.clear()
    if p is None:
        _last[key] = (d, code, lasti, 0, None, -1, 0, stack)
    else:
        _last[key] = (d, code, lasti, id(p), p.f_code, p.f_lasti, id(p.f_back), stack)
    return stack


def _stack(g: types.FrameType, code: types.CodeType, lasti: int) -> Stack:
    """``(code, lasti, tail)``: the innermost user frame, and the frames above it (shared).

    The frames above the innermost one do not change while it runs, so the tail is kept
    per parent frame (by id, checked against its code, instruction and own parent: a
    new frame object at a dead one's address, called from the same place, has the same
    frames above it).
    """
    p = g.f_back
    if p is None:
        return (code, lasti, ())
    pcode = p.f_code
    plasti = p.f_lasti
    above = id(p.f_back)
    key = id(p)
    hit = _tails.get(key)
    if hit is not None and hit[0] is pcode and hit[1] == plasti and hit[2] == above:
        return (code, lasti, hit[3])
    tail: list[Any] = []
    f: types.FrameType | None = p
    for _ in range(_MAX_WALK):
        if f is None or len(tail) >= 2 * (MAX_FRAMES - 1):
            break
        c = f.f_code
        if not _is_foreign(c) and _library.get(id(c)) is not True:
            tail.append(c)
            tail.append(f.f_lasti)
        f = f.f_back
    if len(_tails) >= _MAX_SITES:
        _tails.clear()
    frozen = tuple(tail)
    _tails[key] = (pcode, plasti, above, frozen)
    return (code, lasti, frozen)


def user_depth(skip: int) -> int:
    """How many frames above the caller's (beyond ``skip``) the first user frame is (``warnings.warn``'s stacklevel)."""
    f: types.FrameType | None = _getframe(skip + 1)
    depth = skip + 1
    while f is not None:
        inside = _library.get(id(f.f_code))
        if inside is None:
            inside = _is_library(f.f_code)
        if not inside:
            return depth
        f = f.f_back
        depth += 1
    return depth


def _line_of(code: types.CodeType, lasti: int) -> int:
    for start, end, line in code.co_lines():
        if start <= lasti < end and line is not None:
            return line
    return code.co_firstlineno


def format_stack(stack: Stack) -> list[str]:
    """The frames of a captured stack as ``traceback`` prints them, outermost first (two lines each)."""
    lines: list[str] = []
    flat = (*stack[:2], *stack[2]) if stack else ()
    for i in range(len(flat) - 2, -1, -2):
        code, lasti = flat[i], flat[i + 1]
        lineno = _line_of(code, lasti)
        lines.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_qualname}')
        source = linecache.getline(code.co_filename, lineno).strip()
        if source:
            lines.append(f"    {source}")
    return lines


def kernel_label(kernel: Any, args: tuple[Any, ...]) -> Any:
    """What names the kernel of a FIFO item ``(kernel, args)``, taken cheaply (see ``label_name``).

    A launch runner (``binds_kernel``) runs the user's kernel, ``args[0]``; the runtime's
    operator kernels (``ufunc_aa(np.add, ...)``) get the ufunc they apply.
    """
    if type(kernel) is _FunctionType:
        if args:
            first = args[0]
            if getattr(kernel, "binds_kernel", False):
                return first if type(first) is _ufunc else kernel_label(first, ())
            if type(first) is _ufunc or (type(first) is _BuiltinMethod and type(first.__self__) is _ufunc):
                return (kernel.__code__, first)  # np.add, np.add.reduce
        return kernel.__code__
    if type(kernel) is _ufunc:
        return kernel
    return describe_kernel(kernel, args)


def label_name(label: Any) -> str:
    """The kernel's name for a report."""
    if type(label) is str:
        return label
    if type(label) is tuple:
        _, fn = label
        owner = getattr(fn, "__self__", None)
        name = f"{owner.__name__}.{fn.__name__}" if type(owner) is _ufunc else fn.__name__
        return f"np.{name}"  # the runtime's kernel that applies it (ufunc_aa, ...) is not the user's business
    if type(label) is _ufunc:
        return f"np.{label.__name__}"
    if isinstance(label, types.CodeType):
        return label.co_qualname
    return kernel_name(label)
