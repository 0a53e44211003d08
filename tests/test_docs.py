"""The code in docs/getting-started.md runs, each block in a fresh interpreter."""

from __future__ import annotations

import os
import re

import pytest

from conftest import ROOT, run_python

DOC = os.path.join(ROOT, "docs", "getting-started.md")
with open(DOC) as _f:
    BLOCKS = re.findall(r"```python\n(.*?)```", _f.read(), flags=re.S)


def test_the_page_has_code() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_getting_started_block_runs(index: int) -> None:
    result = run_python(BLOCKS[index], timeout=60)
    assert result.returncode == 0, result.stderr
