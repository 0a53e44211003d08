"""A user's script type-checks under mypy --strict with both facades, operators typed (issue 16).

``tests/typed/user_script.py`` is checked, not run: every ``reveal_type(...)  # -> T``
line must reveal ``T``, written fully qualified where the facade matters and short
(module paths stripped) elsewhere.
"""

from __future__ import annotations

import os
import re

import pytest
from _support import ROOT

SCRIPT = os.path.join(ROOT, "tests", "typed", "user_script.py")


def test_a_users_script_type_checks_strictly_and_the_operators_are_typed() -> None:
    api = pytest.importorskip("mypy.api")
    stdout, stderr, status = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", SCRIPT])
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert not errors, "\n".join(errors)
    revealed = {int(m.group(1)): m.group(2) for m in re.finditer(r":(\d+): note: Revealed type is \"(.*)\"", stdout)}
    with open(SCRIPT, encoding="utf-8") as f:
        expected = {i: m.group(1) for i, line in enumerate(f, 1) if (m := re.search(r"\)  # -> (.+)$", line))}
    assert expected and set(expected) == set(revealed), (sorted(expected), sorted(revealed), stdout)
    for line, want in expected.items():
        got = revealed[line]
        short = re.sub(r"\b(?:[A-Za-z_]\w*\.)+(\w+)", r"\1", got)  # numpy.ndarray -> ndarray
        assert want in (got, short), f"line {line}: mypy reveals {got}, expected {want}"
