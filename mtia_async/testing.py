"""Test helpers: a fresh runtime per test, and the allocator's invariants; a pytest plugin.

``check_invariants(stats, snapshot)`` asserts the reliability catalogue's M5 and M6 on
``memory_stats()`` and ``snapshot()`` dicts (see its docstring).

Use the context manager::

    from mtia_async.testing import fresh_runtime

    def test_something():
        with fresh_runtime(device_count=2, workers=2):
            ...

or the pytest fixture ``mtia_runtime``: installing mtia_async registers this module as
a pytest plugin (the ``pytest11`` entry point ``mtia_async.testing``), so no conftest
line is needed. Choose the settings with the ``mtia`` marker or an indirect parameter
(docs/testing.md)::

    @pytest.mark.mtia(device_count=2, device_memory="64MiB", workers=2)
    def test_something(mtia_runtime):
        ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ._config import validate_setting
from ._core.runtime import configure, shutdown_runtime, state
from ._memory.invariants import check_invariants as check_invariants

__all__ = ["check_invariants", "fresh_runtime", "init_count", "mtia_runtime", "reset_runtime", "worker_threads"]


def reset_runtime(join_timeout: float = 10.0) -> None:
    """Shut down the current runtime (if any) and forget configure() overrides.

    Queued kernels are dropped; running ones finish. Raises ``RuntimeError`` when a
    worker thread is still alive after ``join_timeout`` seconds.
    """
    alive = shutdown_runtime(join_timeout=join_timeout, reset_config=True)
    if alive:
        names = ", ".join(t.name for t in alive)
        raise RuntimeError(f"mtia_async worker threads still running after {join_timeout} s: {names}")


@contextmanager
def fresh_runtime(join_timeout: float = 10.0, **settings: Any) -> Iterator[None]:
    """Run the block against a new, uninitialised runtime configured with ``settings``.

    Args:
        join_timeout: seconds to wait for worker threads at exit.
        **settings: passed to ``mtia_async.configure()`` (``device_count``,
            ``device_memory``, ``workers``).
    """
    reset_runtime(join_timeout)
    if settings:
        configure(**settings)
    try:
        yield
    finally:
        reset_runtime(join_timeout)


def init_count() -> int:
    """How many times a runtime has been initialised in this process."""
    return state.init_count


def worker_threads() -> list[threading.Thread]:
    """The live mtia_async worker threads."""
    return [t for t in threading.enumerate() if t.name.startswith("mtia_async-")]


def _settings_of(request: Any) -> dict[str, object]:
    """The runtime settings of a test: its closest ``mtia`` marker, then an indirect parameter.

    Raises:
        TypeError: positional marker arguments, a parameter that is not a dict, or an
            unknown setting (the message says where it came from).
        ValueError: a value out of range.
    """
    settings: dict[str, object] = {}
    marker = request.node.get_closest_marker("mtia")
    if marker is not None:
        if marker.args:
            raise TypeError(
                f"@pytest.mark.mtia takes settings as keywords (device_count=2, ...), got positional {marker.args!r}"
            )
        settings.update(marker.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, Mapping):
            raise TypeError(
                "an indirect parameter of mtia_runtime must be a dict of settings such as "
                f"{{'device_count': 2}}, got {type(param).__name__} {param!r:.60}"
            )
        settings.update(param)
    for key, value in settings.items():
        try:
            validate_setting(key, value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"mtia_runtime settings (@pytest.mark.mtia or indirect parameter): {exc}") from None
    return settings


try:  # the pytest plugin, when pytest is installed
    import pytest

    def pytest_configure(config: pytest.Config) -> None:
        """Register the ``mtia`` marker (so ``--strict-markers`` accepts it)."""
        config.addinivalue_line(
            "markers",
            "mtia(device_count=1, device_memory='16GiB', workers=N, blas_threads=N): "
            "the settings of the mtia_runtime fixture's fresh runtime (mtia_async.configure's)",
        )

    @pytest.fixture
    def mtia_runtime(request: pytest.FixtureRequest) -> Iterator[dict[str, object]]:
        """A fresh runtime for one test, shut down after it; yields the settings applied.

        Settings come from ``@pytest.mark.mtia(...)`` (on the test, its class or module;
        the closest wins), then from an indirect parameter (a dict), else from the
        environment and the defaults. A worker thread still alive 10 s after the test
        fails it.
        """
        settings = _settings_of(request)
        keywords: dict[str, Any] = settings  # validated setting names, never join_timeout
        with fresh_runtime(**keywords):
            yield settings

except ImportError:  # pragma: no cover
    pass
