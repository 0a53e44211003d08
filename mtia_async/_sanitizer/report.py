"""The race report: ``UnsynchronizedAccessError`` (mode ``"raise"``) or ``SanitizerWarning`` (``"warn"``).

Written only when a race is found, so it may take its time: line numbers and source
lines come from the captured stacks here (``stacks.format_stack``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._exceptions import UnsynchronizedAccessError
from .shadow import DTYPE, END, GEN, KERNEL, SHAPE, STACK, START, WRITE, Record
from .stacks import Stack, format_stack, label_name

__all__ = ["Access", "build_error"]

RAW, WAR, WAW, UAF = "read-after-write", "write-after-read", "write-after-write", "use-after-free"


@dataclass
class Access:
    """The new launch's side of a conflict."""

    shape: tuple[int, ...]
    dtype: Any
    start: int
    end: int
    write: bool
    stream: str
    kernel: Any  # a label (stacks.kernel_label)
    stack: Stack


def _device_of(address: int) -> int:
    return (address >> 40) - 1  # each device's addresses start at (index + 1) << 40


def _array(shape: tuple[int, ...], dtype: Any, address: int) -> str:
    return f"DeviceArray(shape={shape}, dtype={dtype}, device='mtia:{_device_of(address)}')"


def _range(start: int, end: int) -> str:
    return f"{start:#x}..{end:#x} ({end - start} bytes)"


def _trace(stack: Stack) -> str:
    lines = format_stack(stack)
    return "\n".join("  " + line for line in lines) if lines else "    (no Python frames outside mtia_async)"


def _short(stream: str) -> str:
    return stream.split(" (", 1)[0]  # "stream 3 (mtia:0)" -> "stream 3"


def build_error(new: Access, old: Record, old_stream: str, cell_gen: int) -> UnsynchronizedAccessError:
    """The error for ``new`` conflicting with the earlier access ``old`` (a record of another stream)."""
    freed = old[GEN] != cell_gen
    kind = UAF if freed else (WAW if new.write else RAW) if old[WRITE] else WAR
    array = _array(new.shape, new.dtype, new.start)
    previous_array = _array(old[SHAPE], old[DTYPE], old[START])
    kernel, previous_kernel = label_name(new.kernel), label_name(old[KERNEL])
    doing = "writing" if old[WRITE] else "reading"
    now, then = _short(new.stream), _short(old_stream)
    if freed:
        earlier = (
            f"but this memory was freed and reallocated while kernel {previous_kernel} on {old_stream} may still "
            f"be {doing} the old array there ({previous_array} at {_range(old[START], old[END])})"
        )
        fix = (
            f"before dropping the old array, call its record_stream() with {then} (the allocator then reuses "
            f"its memory only once {then}'s work on it is done), or make {now} wait for {then} (wait_stream, "
            f"wait_event), or synchronize {then} first"
        )
    else:
        where = "it" if (old[START], old[END]) == (new.start, new.end) else (
            f"{previous_array} at {_range(old[START], old[END])}"
        )
        earlier = f"while kernel {previous_kernel} on {old_stream} may still be {doing} {where}"
        fix = (
            f"make {now} wait for {then} first (wait_stream, or wait_event on an event recorded on {then} "
            f"after that kernel), or synchronize {then} before this launch"
        )
    message = (
        f"{kind} on {array}, device addresses {_range(new.start, new.end)}:\n"
        f"  kernel {kernel} on {new.stream} {'writes' if new.write else 'reads'} it, launched at\n"
        f"{_trace(new.stack)}\n"
        f"  {earlier}: nothing orders that launch before this one. It was launched at\n"
        f"{_trace(old[STACK])}\n"
        f"Fix: {fix}."
    )
    return UnsynchronizedAccessError(
        message,
        kind=kind,
        array=array,
        address=(new.start, new.end),
        stream=new.stream,
        kernel=kernel,
        stack=tuple(format_stack(new.stack)),
        access="write" if new.write else "read",
        previous_array=previous_array,
        previous_address=(old[START], old[END]),
        previous_stream=old_stream,
        previous_kernel=previous_kernel,
        previous_stack=tuple(format_stack(old[STACK])),
        previous_access="write" if old[WRITE] else "read",
    )
