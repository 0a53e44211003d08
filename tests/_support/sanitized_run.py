"""``pytest -p _support.sanitized_run``: the CI's sanitized pass over the existing suite.

Run with ``MTIA_ASYNC_SANITIZE=1`` (it refuses to start otherwise): every runtime a test
initialises then checks every launch in mode ``"raise"``. A false positive raises
``UnsynchronizedAccessError`` at the launch, which fails the test; in case a test swallows
it (a ``pytest.raises(MTIAError)``, a broad ``except`` in a thread), every report the
sanitizer builds is also counted here, and a test that made one without turning the
sanitizer on itself (``sanitizer.enable``: the tests that race on purpose) errors at
its teardown, naming the report.

docs/sanitizer.md ("The sanitized test pass") says which tests the pass leaves out and why.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

import mtia_async.sanitizer as public
from mtia_async._sanitizer import checker

# Left out of the sanitized pass, each with the reason it cannot show a false positive there (a
# node id prefix: a module, or a test with all its parametrizations). Tests marked ``slow`` are
# left out too (.ci/run: ``-m "not slow"``): the demo, bench and a trace written in subprocesses.
LEFT_OUT = {
    "tests/test_allocator.py": "the caching allocator alone, with fake streams: no DeviceArray, no launch",
    "tests/test_bench.py": "the harness's arithmetic, tables and files; `bench` runs in subprocesses",
    "tests/test_catalogue.py": "reads the reliability catalogue",
    "tests/test_cli.py": "`python -m mtia_async` in subprocesses",
    "tests/test_docs.py": "the docs' code in subprocesses; docs/api.md's text",
    "tests/test_examples.py": "the examples in subprocesses",
    "tests/test_layout.py": "reads the source: import layers, module sizes",
    "tests/test_plugin.py": "pytest in subprocesses (pytester), on small projects of the plugin's settings",
    "tests/test_typing.py": "runs mypy",
    "tests/test_config.py::test_B7_": "environment variables tried in subprocesses",
    "tests/test_config.py::test_B8_": "environment variables tried in subprocesses",
    "tests/test_cluster_failures.py::test_the_local_cluster_example_of_docs_cluster_md_runs": "a subprocess",
    "tests/test_cluster_failures.py::test_bench_cluster_runs_the_cluster_suite_on_the_named_cluster": "a subprocess",
    "tests/test_cluster_failures.py::test_the_command_line_runs_the_demo_on_the_cluster": "subprocesses",
    "tests/test_cluster_failures.py::test_the_environment_variable_names_the_cluster": "subprocesses",
    "tests/test_graphs.py::test_the_docs_page_runs": "subprocesses",
    "tests/test_graphs.py::test_the_same_seed_gives_the_same_replays_in_two_processes": "subprocesses",
    "tests/test_profiler.py::test_the_profiling_page_runs_and_its_traces_load": "subprocesses",
    "tests/test_runtime.py::test_F8_sigint_reaches_main_thread_within_1s": "a subprocess",
    "tests/test_runtime.py::test_F9_fork_before_init_and_spawn_both_work": "subprocesses",
    "tests/test_sanitizer_control.py::test_the_docs_page_runs": "subprocesses (each sanitized by its own code)",
    "tests/test_sanitizer_control.py::test_the_sanitized_pass_fails": "a sanitized pytest in a subprocess",
    "tests/test_sanitizer_control.py::test_the_environment_variable": "subprocesses with their own variable",
    "tests/test_fastpath.py::test_a_queued_kernel_keeps_only_its_argument_tuple_alive":
        "counts the objects the hot path keeps per launch, which the sanitizer's records add to",
    "tests/test_graphs_memory.py::test_memory_freed_outside_a_capture_is_not_taken_by_it_nor_the_reverse":
        "ends by checking that no instrument is left on (the sanitizer is one)",
}
"""node id prefix -> why the sanitizer has nothing to check in it (subprocesses start without ``MTIA_ASYNC_*``)."""

_reports: list[BaseException] = []
_enabled_by_test: list[bool] = [False]


def pytest_configure(config: pytest.Config) -> None:
    value = os.environ.get("MTIA_ASYNC_SANITIZE", "")
    if value not in ("1", "raise"):
        raise pytest.UsageError(
            f"-p _support.sanitized_run needs MTIA_ASYNC_SANITIZE=1 (mode raise) in the environment, got {value!r}"
        )
    build_error = checker.build_error
    enable = public.enable

    def counted(*args: Any, **kwargs: Any) -> Any:
        error = build_error(*args, **kwargs)
        _reports.append(error)
        return error

    def enabled_by_test(mode: str = "raise") -> None:
        _enabled_by_test[0] = True
        enable(mode)

    checker.build_error = counted  # type: ignore[assignment]
    public.enable = enabled_by_test  # type: ignore[assignment]  # mtia_async.sanitizer.enable, both facades


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    prefixes = tuple(LEFT_OUT)
    left = [item for item in items if item.nodeid.startswith(prefixes)]
    if left:
        items[:] = [item for item in items if not item.nodeid.startswith(prefixes)]
        config.hook.pytest_deselected(items=left)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    _reports.clear()
    _enabled_by_test[0] = False
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    result = yield
    if _reports and not _enabled_by_test[0]:
        first = _reports[0]
        _reports.clear()
        pytest.fail(f"the stream sanitizer reported {type(first).__name__} in a test that did not turn it on "
                    f"(a false positive, or a race in the test):\n{first}", pytrace=False)
    return result
