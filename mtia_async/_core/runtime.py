"""The Runtime: devices, lazy initialisation, configuration, fork and exit.

One process-wide runtime, created on first use (torch.mtia's lazy init). Calls that
torch.mtia queues before init (``manual_seed``, ``set_rng_state``, a device check of
``set_device``) are queued here with their call site and run once, by the thread that
initialises; a failing one raises ``DeferredMtiaCallError`` and leaves the runtime
uninitialised. Init runs exactly once however many threads and tasks race to it (a
lock, plus a thread-local guard so a queued call may re-enter it).

After ``fork()`` the child's runtime is unusable: the first call raises
``RuntimeError`` as torch.mtia does (no lock inherited from the parent is ever taken).
At interpreter exit the workers stop after the kernel they are running; queued
kernels are dropped and nothing is joined.
"""

from __future__ import annotations

import atexit
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .. import _forksafe as forksafe
from .._config import Config, resolve_config, validate_setting
from .._exceptions import DeferredMtiaCallError
from .._log import emit, flags
from .device import DeviceImpl

__all__ = [
    "Closer",
    "DeviceProvider",
    "Runtime",
    "add_init_hook",
    "add_shutdown_hook",
    "configure",
    "get_runtime",
    "init",
    "is_initialized",
    "peek_config",
    "queue_call",
    "set_device_provider",
    "shutdown_runtime",
    "state",
]

Closer = Callable[[float | None], list[threading.Thread]]
"""Closes what a device provider opened; returns the threads still alive after the timeout."""
DeviceProvider = Callable[["Runtime", Config], tuple[list[DeviceImpl], Closer]]
"""Builds the devices of a runtime whose configuration names a cluster (registered by ``_cluster``)."""

_FORK_MESSAGE = (
    "Cannot re-initialize MTIA in forked subprocess. To use MTIA with multiprocessing, "
    "you must use the 'spawn' start method"
)


class Runtime:
    """Everything that exists once initialised: the devices and their configuration."""

    def __init__(self, config: Config, generation: int) -> None:
        self.config = config
        self.generation = generation
        self._close_devices: Closer | None = None
        provider = state.device_provider if config.cluster is not None else None
        if provider is not None:  # devices held elsewhere (a Dask cluster): the provider builds them
            devices, self._close_devices = provider(self, config)
            self.devices: list[DeviceImpl] = devices
            self.config = config = replace(config, device_count=len(devices))
        elif config.cluster is not None:
            raise RuntimeError(
                f"cluster={config.cluster!r} is set, but the cluster layer is not loaded: "
                "import mtia_async (or mtia_async.sync) before initialising"
            )
        else:
            self.devices = [
                DeviceImpl(self, i, config.workers, config.device_memory) for i in range(config.device_count)
            ]
        self._blas_limits = _limit_blas(config.blas_threads if provider is None else 0)

    @property
    def device_count(self) -> int:
        return len(self.devices)

    def shutdown(self, join_timeout: float | None) -> list[threading.Thread]:
        alive: list[threading.Thread] = []
        for dev in self.devices:
            alive += dev.shutdown(join_timeout)
        close, self._close_devices = self._close_devices, None
        if close is not None:
            alive += close(join_timeout)
        limits, self._blas_limits = self._blas_limits, None
        if limits is not None:
            limits.restore_original_limits()
        return alive


def _limit_blas(threads: int) -> Any:
    """Cap BLAS threads so ``workers`` concurrent kernels do not oversubscribe the cores.

    Measured here: two workers each running a 384x384 matmul with OpenBLAS's default
    pool ran 2-5x slower than with one BLAS thread per worker. The cap is process-wide
    (BLAS libraries have one pool) and is lifted when the runtime shuts down.
    """
    if threads <= 0:
        return None
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


class _State:
    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.lock = forksafe.rlock()
        self.tls = threading.local()
        self.overrides: dict[str, object] = {}
        self.queued: list[tuple[Callable[[Runtime], None], str]] = []
        self.seed_calls: dict[str, tuple[Callable[[Runtime], None], str]] = {}
        self.generation = 0
        self.bad_fork = False
        self.init_count = 0  # how many runtimes were initialised (tests check "exactly once")
        self.init_hooks: list[Callable[[Runtime], None]] = []
        self.shutdown_hooks: list[Callable[[Runtime], None]] = []
        self.device_provider: DeviceProvider | None = None  # see set_device_provider


state = _State()


def _call_site() -> str:
    frames = traceback.extract_stack()[:-3]
    keep = [f for f in frames if "mtia_async" not in f.filename.replace("\\", "/").split("/")[-2:-1]]
    return "".join(traceback.format_list(keep[-4:] or frames[-2:]))


def queue_call(fn: Callable[[Runtime], None], *, key: str | None = None) -> None:
    """Queue ``fn(runtime)`` to run at init, remembering the call site.

    Args:
        fn: the deferred call.
        key: keep only the latest queued call with this key (torch's lazy seed tracker
            keeps only the latest ``manual_seed`` and ``manual_seed_all``).
    """
    entry = (fn, _call_site())
    with state.lock:
        if key is None:
            state.queued.append(entry)
        else:
            state.seed_calls.pop(key, None)  # the latest call also runs last, as torch's tracker
            state.seed_calls[key] = entry


def _check_fork() -> None:
    if state.bad_fork:
        raise RuntimeError(_FORK_MESSAGE)


def get_runtime() -> Runtime:
    """Return the runtime, initialising it on first use."""
    rt = state.runtime
    if rt is not None:
        return rt
    return _lazy_init()


def _lazy_init() -> Runtime:
    _check_fork()
    with state.lock:
        rt = state.runtime
        if rt is not None:
            return rt
        pending: Runtime | None = getattr(state.tls, "initializing", None)
        if pending is not None:
            return pending  # a queued call re-entered init: hand it the runtime being built
        config = resolve_config(state.overrides)
        rt = Runtime(config, state.generation)
        state.tls.initializing = rt
        try:
            for hook in state.init_hooks:
                hook(rt)
            calls = list(state.queued) + list(state.seed_calls.values())
            for fn, site in calls:
                try:
                    fn(rt)
                except Exception as exc:
                    rt.shutdown(None)
                    raise DeferredMtiaCallError(
                        f"MTIA call failed lazily at initialization with error: {exc}\n\n"
                        f"MTIA call was originally invoked at:\n\n{site}"
                    ) from exc
        finally:
            state.tls.initializing = None
        state.queued.clear()
        state.seed_calls.clear()
        state.runtime = rt
        state.init_count += 1
        if flags.debug:
            emit("debug", "runtime_initialized",
                devices=config.device_count,
                device_memory=config.device_memory,
                workers=config.workers,
                pid=os.getpid(),
            )
        return rt


def init() -> None:
    """Initialise the runtime now (it also initialises itself on first use).

    Raises:
        ValueError: a ``MTIA_ASYNC_*`` environment variable holds a bad value.
        DeferredMtiaCallError: a call queued before init failed.
        RuntimeError: called in a process forked after init.
    """
    get_runtime()


def is_initialized() -> bool:
    """Return whether the runtime is initialised (False in a child forked after init)."""
    return state.runtime is not None and not state.bad_fork


def peek_config() -> Config:
    """The configuration: the runtime's if initialised, else what init would use.

    With a cluster configured, the device count is known only once its workers are
    reached: this initialises the runtime.
    """
    _check_fork()
    rt = state.runtime
    if rt is not None:
        return rt.config
    config = resolve_config(state.overrides)
    if config.cluster is not None:  # the cluster's workers decide how many devices: ask them
        return get_runtime().config
    return config


def configure(**settings: object) -> None:
    """Override the environment's settings; must be called before initialisation.

    Args:
        **settings: ``device_count`` (1..64), ``device_memory`` (bytes or a str such as
            ``"8GiB"``), ``workers`` (kernel threads per device, 1..256), ``blas_threads``
            (BLAS threads for the process while the runtime lives, 0..256; 0 leaves BLAS
            alone; default: cores // workers, at least 1); ``cluster`` (a Dask scheduler
            address, ``distributed.Client`` or ``LocalCluster``: every device is then held
            by a Dask worker, see docs/cluster.md), ``devices_per_worker`` (1..16, default
            1) and ``cluster_timeout`` (seconds to reach the cluster at init, 1..3600,
            default 30).

    Raises:
        RuntimeError: the runtime is already initialised.
        TypeError: an unknown setting, or a value of the wrong type.
        ValueError: a value out of range (named in the message); nothing changes.
    """
    with state.lock:
        if state.runtime is not None:
            raise RuntimeError(
                "mtia_async.configure() must be called before the runtime initialises "
                "(before init() or the first call that uses a device); it is already initialised"
            )
        staged = {key: validate_setting(key, value) for key, value in settings.items()}
        state.overrides.update(staged)


def shutdown_runtime(join_timeout: float | None = None, reset_config: bool = False) -> list[threading.Thread]:
    """Shut the runtime down; the next call initialises a fresh one.

    Returns:
        the worker threads still alive after ``join_timeout`` seconds.
    """
    with state.lock:
        rt, state.runtime = state.runtime, None
        state.generation += 1
        state.queued.clear()
        state.seed_calls.clear()
        if reset_config:
            state.overrides.clear()
    if rt is None:
        return []
    alive = rt.shutdown(join_timeout)
    for hook in state.shutdown_hooks:
        hook(rt)
    if flags.debug:
        emit("debug", "runtime_shutdown", pid=os.getpid())
    return alive


def _after_fork_in_child() -> None:
    rt = state.runtime
    state.tls = threading.local()
    if rt is None:
        return  # forked before init: the child initialises its own runtime
    state.bad_fork = True
    state.runtime = None
    reason = RuntimeError(_FORK_MESSAGE)
    for dev in rt.devices:
        dev.after_fork_in_child(reason)


def _at_exit() -> None:
    rt = state.runtime
    if rt is not None and not state.bad_fork:
        rt.shutdown(None)  # stop after the running kernels; join nothing


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)


def set_device_provider(provider: DeviceProvider) -> None:
    """Register the builder of a cluster's devices (``_cluster`` does, when imported).

    A lower layer cannot import the cluster layer: this hook is how the runtime reaches it.
    """
    state.device_provider = provider


def add_init_hook(hook: Callable[[Runtime], None]) -> None:
    """Run ``hook(runtime)`` at every initialisation, before the queued calls."""
    state.init_hooks.append(hook)


def add_shutdown_hook(hook: Callable[[Runtime], None]) -> None:
    """Run ``hook(runtime)`` after every ``shutdown_runtime`` (a feature drops what it kept of that runtime)."""
    state.shutdown_hooks.append(hook)


