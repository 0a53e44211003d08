"""The code in the docs runs: each block of getting-started.md in a fresh interpreter,
and the blocks of memory.md and rng.md in order, as one script each."""

from __future__ import annotations

import os
import re

import pytest

from _support import ROOT, run_python


def _blocks(page: str) -> list[str]:
    with open(os.path.join(ROOT, "docs", page)) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


GETTING_STARTED = _blocks("getting-started.md")


def test_the_pages_have_code() -> None:
    assert len(GETTING_STARTED) >= 5
    assert len(_blocks("memory.md")) >= 3
    assert len(_blocks("rng.md")) >= 1


@pytest.mark.parametrize("index", range(len(GETTING_STARTED)))
def test_getting_started_block_runs(index: int) -> None:
    result = run_python(GETTING_STARTED[index], timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("page", ["memory.md", "rng.md"])
def test_page_runs_as_one_script(page: str, tmp_path: object) -> None:
    script = "import numpy as np\nimport mtia_async.sync as mtia\n" + "\n".join(_blocks(page))
    script = script.replace("# ... run the workload ...", "mtia.zeros(1000)\nmtia.synchronize()")
    result = run_python(f"import os\nos.chdir({str(tmp_path)!r})\n" + script, timeout=60)
    assert result.returncode == 0, result.stderr
    if page == "memory.md":
        assert "OOM" in result.stdout and "Tried to allocate" in result.stdout
        assert os.path.getsize(os.path.join(str(tmp_path), "snapshot.pickle")) > 0


def test_api_page_is_generated_from_the_current_docstrings() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_api", os.path.join(ROOT, "docs", "gen_api.py"))
    assert spec is not None and spec.loader is not None
    gen_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_api)
    with open(os.path.join(ROOT, "docs", "api.md")) as f:
        assert f.read() == gen_api.render(), "docs/api.md is stale: run python docs/gen_api.py"


def test_api_page_lists_inherited_methods_and_no_type_variables() -> None:
    with open(os.path.join(ROOT, "docs", "api.md")) as f:
        page = f.read()
    for facade in ("mtia_async", "mtia_async.sync"):
        stream = page.split(f"### `{facade}.Stream(")[1].split("### ")[0]
        for method in ("launch", "query", "wait_event", "wait_stream", "record_event", "__enter__"):
            assert f"`{method}(self" in stream, (facade, method)
        event = page.split(f"### `{facade}.Event(")[1].split("### ")[0]
        for method in ("record", "query", "wait", "elapsed_time", "synchronize"):
            assert f"`{method}(self" in event, (facade, method)
    assert "-> 'S'" not in page and "'E'" not in page
    assert "### `mtia_async.Stream(device: 'object' = None, priority: 'int' = 0)`" in page  # no return type
