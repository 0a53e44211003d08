"""The reliability catalogue and the suite agree: every row has a test named after it
(``test_<ID>_...``), every ID in a test's name is a row, and every test module's docstring
lists the rows its tests cover ("Catalogue rows: ...").

The catalogue is ``reliability-catalogue.md`` of the shared specification beside this
checkout; the tests that read it skip when it is not there. Test names are read from the
test modules' source (``ast``), so the check does not depend on which files pytest was
asked to collect.
"""

from __future__ import annotations

import ast
import glob
import os
import re

import pytest
from _support import SPEC_DIR

CATALOGUE_FILE = os.path.join(SPEC_DIR, "reliability-catalogue.md")
TESTS = os.path.dirname(os.path.abspath(__file__))
ROW = re.compile(r"^\|\s*([LFBCM]\d+)\s*\|", re.M)  # "| L1 | scenario | promise |"
IDS_IN_NAME = re.compile(r"^test_((?:[LFBCM]\d+_)+)")  # test_M5_M6_state_machine -> "M5_M6_"
LISTED = re.compile(r"^Catalogue rows: ((?:[LFBCM]\d+)(?:, [LFBCM]\d+)*)", re.M)


def _catalogue_rows() -> list[str]:
    if not os.path.exists(CATALOGUE_FILE):
        pytest.skip(f"{CATALOGUE_FILE} is not beside this checkout")
    with open(CATALOGUE_FILE, encoding="utf-8") as f:
        return ROW.findall(f.read())


def _modules() -> dict[str, ast.Module]:
    """Every test module of tests/, parsed (not imported)."""
    trees = {}
    for path in sorted(glob.glob(os.path.join(TESTS, "test_*.py"))):
        with open(path, encoding="utf-8") as f:
            trees[os.path.basename(path)] = ast.parse(f.read(), path)
    return trees


def _test_names(tree: ast.Module) -> list[str]:
    """The names pytest collects from a module: top-level test functions and test methods."""
    names = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names += [n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
    return [n for n in names if n.startswith("test_")]


def ids_in_name(name: str) -> list[str]:
    """The catalogue IDs a test's name starts with: ``test_M5_M6_x`` -> ``["M5", "M6"]``."""
    match = IDS_IN_NAME.match(name)
    return match.group(1).rstrip("_").split("_") if match else []


def _named_ids() -> dict[str, set[str]]:
    """ID -> the modules whose test names carry it."""
    found: dict[str, set[str]] = {}
    for module, tree in _modules().items():
        for name in _test_names(tree):
            for row in ids_in_name(name):
                found.setdefault(row, set()).add(module)
    return found


def test_ids_in_name() -> None:
    assert ids_in_name("test_M5_M6_state_machine_keeps") == ["M5", "M6"]
    assert ids_in_name("test_C2_16_threads_hammer") == ["C2"]
    assert ids_in_name("test_F10_fork_while") == ["F10"]
    assert ids_in_name("test_fifo_over_thousands") == []
    assert ids_in_name("test_Fx_not_an_id") == []


def test_every_catalogue_row_has_a_test_named_after_it() -> None:
    rows = _catalogue_rows()
    assert rows, f"no rows found in {CATALOGUE_FILE}"
    assert len(rows) == len(set(rows)), sorted(r for r in rows if rows.count(r) > 1)
    missing = sorted(set(rows) - set(_named_ids()))
    assert missing == [], f"catalogue rows without a test_<ID>_... test: {missing}"


def test_every_id_in_a_test_name_is_a_catalogue_row() -> None:
    rows = set(_catalogue_rows())
    unknown = {row: sorted(modules) for row, modules in _named_ids().items() if row not in rows}
    assert unknown == {}, f"test names carry IDs the catalogue does not have: {unknown}"


def test_each_module_docstring_lists_the_rows_its_tests_cover() -> None:
    wrong = {}
    for module, tree in _modules().items():
        named = {row for name in _test_names(tree) for row in ids_in_name(name)}
        listing = LISTED.search(ast.get_docstring(tree) or "")
        listed = set(listing.group(1).split(", ")) if listing else set()
        if listed != named:
            wrong[module] = {"tests": sorted(named), "docstring": sorted(listed)}
    assert wrong == {}, "each module's docstring says 'Catalogue rows: ...' for the IDs in its test names"
