"""What a Dask worker's session launches in place of, or around, what the client sent.

* ``kernel_did_not_unpickle`` and ``copy_to_host`` stand in for a launch or a copy to the
  host that cannot run as sent (the kernel did not unpickle; the array's segment is not
  backed): each raises why, so it is a kernel failure (``KernelError`` on the client);
* ``timed`` runs a kernel the client's profiler times and posts its times back;
* ``exception_blob`` is a failure as it travels back: pickled, with the worker's traceback.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from typing import Any

from .._core.mark import Failure, safe_str
from .link import pickle_failures

__all__ = ["copy_to_host", "exception_blob", "kernel_did_not_unpickle", "timed"]


def kernel_did_not_unpickle(exc: BaseException) -> None:
    """Stands in for a kernel that could not be unpickled on the worker."""
    raise exc


def copy_to_host(exc: BaseException) -> None:
    """Stands in for a copy to the host whose array the worker cannot find (an unbacked segment)."""
    raise exc


def timed(kernel: Any, args: tuple[Any, ...], post: Any, tid: int) -> Any:
    """A kernel the client's profiler times: its start, end and thread are posted back."""
    start = time.perf_counter_ns()
    error = None
    try:
        return kernel(*args)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {safe_str(exc)}"
        raise
    finally:
        thread = threading.current_thread()
        post(("t", tid, start, time.perf_counter_ns(), thread.name, thread.native_id, error))


timed.binds_kernel = True  # type: ignore[attr-defined]  # a failure names args[0], the kernel


def exception_blob(failure: Failure) -> bytes:
    """The failure's exception pickled, with the worker's traceback attached as a note."""
    exc = failure.exc
    if isinstance(exc, ValueError) and "read-only" in str(exc):
        exc.add_note(
            "On a cluster device, a host numpy array passed to launch is copied to the worker at the launch and "
            "is read-only there (a write to it could never reach the caller): write into DeviceArrays and read "
            "them back with to_host()/numpy()"
        )
    try:
        if not any("Traceback on the Dask worker" in n for n in getattr(exc, "__notes__", ())):
            text = "".join(traceback.format_exception(exc))
            exc.add_note(f"Traceback on the Dask worker (pid {os.getpid()}):\n{text}")
    except Exception:
        pass  # an exception that refuses notes still travels, without its traceback
    return pickle_failures((failure,))
