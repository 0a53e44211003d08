"""The package layout: imports run one way, modules stay small (docs/design.md, "Layout").

The layers, bottom up (a module may import its own layer and the ones below, never above):

    0 leaves     _exceptions, _log, _config, _thread_role, _forksafe
    1 _memory    the caching allocator
    2 _core      marks, waits, streams, devices, runtime, context
    3 _arrays    DeviceArray and numpy's operations on it
    4 _random    generators and random kernels
    5 features   _graphs, _profiler, _sanitizer, _cluster (when present)
    6 _facade    what both facades share, and each facade's waiting names
    7 public     mtia_async (__init__), sync, testing, memory, profiler, sanitizer
    8 tools      _cli, bench (the public API only), __main__

Every import counts, late ones inside functions included; imports under
``if TYPE_CHECKING:`` count too (a type-only arrow up is still an arrow up).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mtia_async")

LAYERS = {
    "_exceptions": 0,
    "_log": 0,
    "_config": 0,
    "_thread_role": 0,
    "_forksafe": 0,
    "_memory": 1,
    "_core": 2,
    "_arrays": 3,
    "_random": 4,
    "_graphs": 5,
    "_profiler": 5,
    "_sanitizer": 5,
    "_cluster": 5,
    "_facade": 6,
    "__init__": 7,
    "sync": 7,
    "testing": 7,
    "memory": 7,
    "profiler": 7,
    "sanitizer": 7,
    "_cli": 8,
    "bench": 8,
    "__main__": 8,
}
PUBLIC = {"mtia_async", "mtia_async.sync", "mtia_async.testing", "mtia_async.memory", "mtia_async.profiler",
          "mtia_async.sanitizer"}  # fmt: skip
MAX_LINES = 520  # "well under ~500" is the aim (STYLE.md); this is the hard stop


def _modules() -> Iterator[tuple[str, str]]:
    """(dotted module name, path) of every module of the package."""
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                yield (rel[: -len(".__init__")] if rel.endswith(".__init__") else rel), path


def _layer(module: str) -> int:
    parts = module.split(".")
    if parts == ["mtia_async"]:
        return LAYERS["__init__"]
    top = parts[1]
    if top not in LAYERS:
        raise AssertionError(f"{module}: {top!r} has no layer; add it to LAYERS here and to docs/design.md")
    return LAYERS[top]


def _imports(module: str, path: str) -> Iterator[tuple[int, str]]:
    """(line, imported mtia_async module) of every import in the file, relative ones resolved."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mtia_async":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mtia_async":
                continue
            if node.module is None or node.level and target.count(".") < 2:
                # `from . import x` / `from .. import _core`: each name may be a module
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
            else:
                yield node.lineno, target


def _resolve(target: str) -> str:
    """The module a dotted import names (``pkg.mod.name`` -> ``pkg.mod`` when name is not a module)."""
    parts = target.split(".")
    while parts:
        candidate = os.path.join(os.path.dirname(PACKAGE), *parts)
        if os.path.isdir(candidate) or os.path.exists(candidate + ".py"):
            return ".".join(parts)
        parts.pop()
    return target


MODULES = dict(_modules())


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_one_way(module: str) -> None:
    """No module imports a layer above its own (the arrow that runs back up)."""
    mine = _layer(module)
    bad = []
    for line, target in _imports(module, MODULES[module]):
        target = _resolve(target)
        if target not in MODULES:
            continue
        theirs = _layer(target)
        if theirs > mine:
            bad.append(f"line {line}: imports {target} (layer {theirs}) from layer {mine}")
        if LAYERS.get(module.split(".")[1] if "." in module else "", -1) == LAYERS["bench"] and target not in PUBLIC:
            if not target.startswith(("mtia_async.bench", "mtia_async._cli")):
                bad.append(f"line {line}: the tools use the public API only, not {target}")
    assert not bad, f"{module}:\n  " + "\n  ".join(bad)


def test_the_import_order_check_catches_an_arrow_up(tmp_path: object) -> None:
    """The checker itself: an upward import in a core module is reported."""
    assert _layer("mtia_async._core.stream") < _layer("mtia_async._arrays.array")
    assert _resolve("mtia_async._arrays.array.DeviceArray") == "mtia_async._arrays.array"
    found = list(_imports("mtia_async._core.device", MODULES["mtia_async._core.device"]))
    assert any(_resolve(t) == "mtia_async._memory" for _, t in found)  # relative `from .._memory import`


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    with open(MODULES[module], encoding="utf-8") as f:
        lines = sum(1 for _ in f)
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by concept (docs/design.md)"
