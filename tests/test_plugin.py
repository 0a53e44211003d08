"""The pytest plugin (``mtia_async.testing``, a ``pytest11`` entry point), used the way a
user's project uses it: a throwaway project run by ``pytester`` in a fresh interpreter,
with no conftest line, its settings from the ``mtia`` marker or an indirect parameter."""

from __future__ import annotations

import importlib.metadata

import pytest

PLUGIN_TESTS = '''
import asyncio
import numpy as np
import pytest
import mtia_async as mtia
import mtia_async.sync as mtia_sync


def test_defaults_come_from_the_environment(mtia_runtime):
    assert mtia_runtime == {}
    assert mtia.device_count() == 1
    assert not mtia.is_initialized()  # a fresh runtime, initialised on first use


@pytest.mark.mtia(device_count=2, device_memory="64MiB", workers=1)
def test_the_marker_sets_the_runtime(mtia_runtime):
    assert mtia_runtime == {"device_count": 2, "device_memory": "64MiB", "workers": 1}
    assert mtia.device_count() == 2
    props = mtia.get_device_properties(1)
    assert (props["total_memory"], props["workers"]) == (64 * 2**20, 1)
    s = mtia_sync.Stream(device=1)
    with mtia.stream(s):
        a = mtia.ones(4, device=1)
        b = a * 3
    s.synchronize()
    assert b.numpy().tolist() == [3.0] * 4


@pytest.mark.mtia(device_count=3)
class TestClassMarker:
    def test_inherits_it(self, mtia_runtime):
        assert mtia.device_count() == 3

    @pytest.mark.mtia(device_count=1)
    def test_the_closest_marker_wins(self, mtia_runtime):
        assert mtia.device_count() == 1


@pytest.mark.parametrize("mtia_runtime", [{"device_count": 1}, {"device_count": 4, "workers": 2}], indirect=True)
def test_indirect_parameters(mtia_runtime):
    assert mtia.device_count() == mtia_runtime["device_count"]


@pytest.mark.asyncio
async def test_async_tests_get_it_too(mtia_runtime):
    s = mtia.Stream()
    out = []
    s.launch(out.append, 1)
    await s.synchronize()
    assert out == [1]


@pytest.mark.mtia(device_cuont=2)
def test_a_misspelt_setting_is_an_error(mtia_runtime):
    pass


@pytest.mark.mtia(workers=0)
def test_an_out_of_range_setting_is_an_error(mtia_runtime):
    pass
'''


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for var in ("MTIA_ASYNC_DEVICE_COUNT", "MTIA_ASYNC_DEVICE_MEMORY", "MTIA_ASYNC_WORKERS"):
        monkeypatch.delenv(var, raising=False)
    return pytester


def test_the_plugin_is_an_entry_point() -> None:
    found = [ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.value == "mtia_async.testing"]
    assert [ep.name for ep in found] == ["mtia_async.testing"]


def test_a_project_uses_the_fixture_with_no_conftest(project: pytest.Pytester) -> None:
    project.makepyfile(test_user=PLUGIN_TESTS)
    result = project.runpytest_subprocess("--strict-markers", "-v", timeout=120)
    result.assert_outcomes(passed=7, errors=2)
    result.stdout.fnmatch_lines([
        "*test_a_misspelt_setting_is_an_error*ERROR*",
        "*test_an_out_of_range_setting_is_an_error*ERROR*",
    ])
    result.stdout.fnmatch_lines([
        "*TypeError: mtia_runtime settings (@pytest.mark.mtia or indirect parameter): "
        "unknown setting 'device_cuont'; valid settings are device_count, device_memory, workers, cluster, blas_threads, "
        "devices_per_worker, cluster_timeout",
    ])
    result.stdout.fnmatch_lines([
        "*ValueError: mtia_runtime settings (@pytest.mark.mtia or indirect parameter): workers=0 is out of range*",
    ])


def test_the_marker_is_listed_and_bad_forms_are_reported(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--markers", timeout=60)
    result.stdout.fnmatch_lines(["@pytest.mark.mtia(device_count=1, *): the settings of the mtia_runtime fixture*"])
    project.makepyfile(test_bad='''
import pytest

@pytest.mark.mtia(2)
def test_positional(mtia_runtime):
    pass

@pytest.mark.parametrize("mtia_runtime", [2], indirect=True)
def test_not_a_dict(mtia_runtime):
    pass
''')
    result = project.runpytest_subprocess(timeout=60)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*TypeError: @pytest.mark.mtia takes settings as keywords (device_count=2, ...), "
                                 "got positional (2,)"])
    result.stdout.fnmatch_lines(["*TypeError: an indirect parameter of mtia_runtime must be a dict of settings*"
                                 "got int 2"])


def test_an_older_conftest_line_still_works(project: pytest.Pytester) -> None:
    project.makeconftest('pytest_plugins = ["mtia_async.testing"]\n')
    project.makepyfile(test_old='''
import mtia_async as mtia

def test_it(mtia_runtime):
    assert mtia.device_count() == 1
''')
    result = project.runpytest_subprocess(timeout=60)
    result.assert_outcomes(passed=1)


def test_the_plugin_can_be_disabled(project: pytest.Pytester) -> None:
    project.makepyfile(test_off='''
def test_it(mtia_runtime):
    pass
''')
    result = project.runpytest_subprocess("-p", "no:mtia_async.testing", timeout=60)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'mtia_runtime' not found*"])
