"""The public surface: both facades cover torch.mtia's names, and nothing private leaks."""

from __future__ import annotations

import inspect
import os

import pytest

import mtia_async
import mtia_async.sync
from _support import SPEC_DIR

SURFACE_FILE = os.path.join(SPEC_DIR, "torch-mtia-surface.txt")

# torch.mtia's documented surface plus the names of its module source (2.13).
TORCH_MTIA_SURFACE = {
    "StreamContext", "current_device", "current_stream", "default_stream", "device_count", "init",
    "is_available", "is_bf16_supported", "is_initialized", "memory_stats", "get_device_capability",
    "empty_cache", "record_memory_history", "snapshot", "attach_out_of_memory_observer", "set_device",
    "set_stream", "stream", "synchronize", "device", "set_rng_state", "get_rng_state",
    "DeferredMtiaCallError", "Event", "Stream", "max_memory_allocated", "memory_allocated",
    "reset_peak_memory_stats", "get_device_properties", "set_rng_state_all", "get_rng_state_all",
    "manual_seed", "manual_seed_all", "seed", "seed_all", "initial_seed",
}  # fmt: skip

# Our additions to that surface, documented in docs/api.md.
EXTRAS = {
    "configure", "launch", "MTIAError", "KernelError", "DeviceFailedError", "OutOfMemoryError",
    "set_debug_logging",
    # device memory
    "DeviceArray", "asarray", "empty", "zeros", "ones", "full", "memory_reserved", "max_memory_reserved",
    "arange", "linspace", "eye", "identity",  # creation (docs/arrays.md)
    "nonzero", "argwhere", "flatnonzero", "unique", "histogram", "getitem",  # sized by the data: await or block
    "mem_get_info", "memory_summary", "dump_snapshot",
    # random numbers
    "Generator", "rand", "randn", "randint", "normal", "uniform", "bernoulli", "randperm",
    # graphs: the end of torch.mtia's __all__ (2.13), newer than the surface file; torch.cuda's
    # is_current_stream_capturing (tests/test_graphs_capture.py checks torch.mtia.__all__ itself)
    "MTIAGraph", "graph", "graph_pool_handle", "is_current_stream_capturing",
    # the stream sanitizer's report (the sanitizer itself is the submodule mtia_async.sanitizer)
    "UnsynchronizedAccessError", "SanitizerWarning",
}  # fmt: skip


# The names sized by the data: a coroutine function in mtia_async, a blocking one in mtia_async.sync.
SIZED = ("nonzero", "argwhere", "flatnonzero", "unique", "histogram", "getitem")


def test_embedded_surface_matches_the_spec_file() -> None:
    if not os.path.exists(SURFACE_FILE):
        pytest.skip(f"{SURFACE_FILE} is not beside this checkout")
    with open(SURFACE_FILE) as f:
        names = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    assert names == TORCH_MTIA_SURFACE


@pytest.mark.parametrize("facade", [mtia_async, mtia_async.sync], ids=["async", "sync"])
def test_facade_covers_the_surface_and_nothing_private(facade: object) -> None:
    exported = set(facade.__all__)  # type: ignore[attr-defined]
    assert TORCH_MTIA_SURFACE <= exported, sorted(TORCH_MTIA_SURFACE - exported)
    assert exported <= TORCH_MTIA_SURFACE | EXTRAS, sorted(exported - TORCH_MTIA_SURFACE - EXTRAS)
    assert list(facade.__all__) == sorted(facade.__all__)  # type: ignore[attr-defined]
    for name in exported:
        assert not name.startswith("_")
        assert hasattr(facade, name), name


def test_never_waiting_names_are_the_same_objects_in_both_facades() -> None:
    waiting = {"Event", "Stream", "current_stream", "default_stream", "synchronize", "graph", *SIZED}
    for name in set(mtia_async.__all__) - waiting:
        assert getattr(mtia_async, name) is getattr(mtia_async.sync, name), name


def test_waiting_calls_differ_only_in_colour() -> None:
    for name in SIZED:
        assert inspect.iscoroutinefunction(getattr(mtia_async, name)), name
        assert not inspect.iscoroutinefunction(getattr(mtia_async.sync, name)), name
    assert inspect.iscoroutinefunction(mtia_async.synchronize)
    assert not inspect.iscoroutinefunction(mtia_async.sync.synchronize)
    assert inspect.iscoroutinefunction(mtia_async.Stream.synchronize)
    assert not inspect.iscoroutinefunction(mtia_async.sync.Stream.synchronize)
    assert inspect.iscoroutinefunction(mtia_async.Event.synchronize)
    assert not inspect.iscoroutinefunction(mtia_async.sync.Event.synchronize)
    assert hasattr(mtia_async.Event, "__await__")
    assert not hasattr(mtia_async.sync.Event, "__await__")


def test_public_objects_show_their_public_module() -> None:
    for facade in (mtia_async, mtia_async.sync):
        for name in facade.__all__:
            obj = getattr(facade, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__module__ in ("mtia_async", "mtia_async.sync"), (name, obj.__module__)
