"""How a launch binds its arguments: keyword arguments, and DeviceArrays as numpy views.

``bind(kernel, args, kwargs, stream)`` runs on the caller for every launch that has
arguments and returns the ``(callable, args)`` pair the FIFO stores. Every DeviceArray
argument (positional or keyword, top level only) is checked here to live on the
stream's device, and replaced by the numpy view of its memory only when the kernel
runs, in the worker (the view is built there, once, and cached on the array). The
DeviceArrays stay referenced by the FIFO item until the kernel ran, which keeps their
memory alive.

A launch whose arguments are all plain positional values is stored as it is. Any other
is stored as ``(runner, (kernel, *args, *keyword_values))``, where the runner is a small
function generated once per call shape (how many positional arguments, which keyword
names) and cached: ``launch(np.exp, X, out=Y)`` runs ``kernel(X._view, out=Y._view)``
with no per-launch wrapper, partial or dict, so a queued kernel adds no object for the
garbage collector beyond its argument tuple, and the worker pays one Python call (and
one type test per argument) more than the kernel.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.instrument import instruments
from .._core.stream import foreign_runtime_error
from .array import DeviceArray

if TYPE_CHECKING:
    from .._core.stream import StreamImpl

__all__ = ["launch_on", "runner_for"]

Runner = Callable[..., object]
_RUNNERS: dict[Any, Runner] = {}  # call shape (npos, *keyword names) -> runner (a few hundred at most)
_MAX_RUNNERS = 4096


def _check_device(value: DeviceArray, where: str, stream: StreamImpl) -> None:
    if value._dev.runtime is not stream.device.runtime:
        raise foreign_runtime_error(f"kernel argument {where} (a DeviceArray)", "the stream it is launched on")
    dev = stream.device.index
    raise ValueError(
        f"kernel argument {where} is a DeviceArray on mtia:{value._dev.index}, but the kernel is launched on a "
        f"stream of mtia:{dev}; move it first with .to({dev}) or launch on a stream of its device"
    )


def launch_on(stream: StreamImpl, kernel: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Enqueue ``kernel(*args, **kwargs)`` on ``stream``: both facades' ``launch`` (the kernel was checked).

    ``reads=``/``writes=`` among ``kwargs`` are consumed here (the kernel does not get
    them): the arrays the kernel reads and writes, for the instruments. Without them,
    every DeviceArray argument counts as read and written.

    Raises:
        ValueError: a DeviceArray argument lives on another device (or runtime) than ``stream``.
        TypeError: ``reads``/``writes`` are not sequences of DeviceArrays.
    """
    declared: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
    if kwargs:
        if "reads" in kwargs or "writes" in kwargs:
            declared = _declared(kwargs.pop("reads", ()), kwargs.pop("writes", ()), stream)
        flat = (kernel, *args, *kwargs.values())
    elif args:
        flat = (kernel, *args)
    else:
        stream.launch(kernel, args)
        return
    dev = stream.device
    arrays = False
    for v in flat:
        if type(v) is DeviceArray:
            if v._dev is not dev:
                _check_device(v, _where(v, args, kwargs), stream)
            arrays = True
    if kwargs:
        key: Any = (len(args), *kwargs)
        fn: Callable[..., object] = _RUNNERS.get(key) or runner_for(len(args), tuple(kwargs))
    elif arrays:
        fn = _RUNNERS.get(len(args)) or runner_for(len(args), ())
    else:
        fn, flat = kernel, args
    if instruments.active:
        if declared is None:
            used = tuple(v for v in flat if type(v) is DeviceArray)
            declared = (used, used)
        stream.launch(fn, flat, *declared)
        return
    stream.q.extend((fn, flat))
    if stream.token:
        stream.kick()


def _declared(reads: Any, writes: Any, stream: StreamImpl) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Validate ``launch``'s ``reads=``/``writes=``: sequences of DeviceArrays on the stream's device."""
    result = []
    for name, value in (("reads", reads), ("writes", writes)):
        if type(value) is DeviceArray or not isinstance(value, (list, tuple)):
            raise TypeError(
                f"launch({name}=...) takes a list or tuple of DeviceArrays (those the kernel {name[:-1]}s), "
                f"got {type(value).__name__}"
            )
        for i, v in enumerate(value):
            if type(v) is not DeviceArray:
                raise TypeError(f"launch({name}=...) item #{i} is a {type(v).__name__}, not a DeviceArray")
            if v._dev is not stream.device:
                _check_device(v, f"{name}[{i}]", stream)
        result.append(tuple(value))
    return result[0], result[1]


def _where(v: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """How a message names argument ``v``: ``#i`` for a positional one, its name for a keyword."""
    for i, a in enumerate(args):
        if a is v:
            return f"#{i}"
    return next(repr(k) for k, x in kwargs.items() if x is v)


def runner_for(npos: int, names: tuple[str, ...]) -> Runner:
    """The runner of ``npos`` positional and ``names`` keyword arguments (made once, cached).

    It replaces each DeviceArray argument by the numpy view of its memory (built once per
    array, cached on it) and calls the kernel.
    """
    key: Any = npos if not names else (npos, *names)
    runner = _RUNNERS.get(key)
    if runner is not None:
        return runner
    if all(n.isidentifier() and not keyword.iskeyword(n) for n in names):
        runner = _generate(npos, names)
    else:  # keys such as "a-b" or "class" (possible through **{...}): a general runner
        runner = _general_runner(npos, names)
    runner.binds_kernel = True  # type: ignore[attr-defined]  # failures name args[0], the user's kernel
    if len(_RUNNERS) >= _MAX_RUNNERS:
        _RUNNERS.clear()
    _RUNNERS[key] = runner
    return runner


def _generate(npos: int, names: tuple[str, ...]) -> Runner:
    params = [f"a{i}" for i in range(npos + len(names))]
    lines = []
    for i in range(npos + len(names)):
        lines += [
            f"    if type(a{i}) is DeviceArray:",
            f"        v{i} = a{i}._view",
            f"        if v{i} is None:",
            f"            v{i} = a{i}._np()",
            "    else:",
            f"        v{i} = a{i}",
        ]
    call = [f"v{i}" for i in range(npos)] + [f"{name}=v{npos + j}" for j, name in enumerate(names)]
    source = "\n".join(
        [f"def launch_runner(kernel, {', '.join(params)}):", *lines, f"    return kernel({', '.join(call)})", ""]
    )
    namespace: dict[str, Any] = {"DeviceArray": DeviceArray}
    exec(compile(source, f"<mtia_async launch runner {npos} {names}>", "exec"), namespace)
    runner: Runner = namespace["launch_runner"]
    return runner


def _general_runner(npos: int, names: tuple[str, ...]) -> Runner:
    def launch_runner(kernel: Callable[..., object], *values: Any) -> object:
        views = [v._np() if type(v) is DeviceArray else v for v in values]
        return kernel(*views[:npos], **dict(zip(names, views[npos:])))

    return launch_runner
