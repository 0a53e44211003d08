"""Generate docs/api.md from the facades' docstrings: ``python docs/gen_api.py``.

tests/test_docs.py checks that the committed page is what this script writes.
"""

from __future__ import annotations

import inspect
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import mtia_async  # noqa: E402
import mtia_async.sync  # noqa: E402

WAITING = {"Event", "Stream", "current_stream", "default_stream", "synchronize"}


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def _signature(name: str, obj: object) -> str:
    try:
        return f"{name}{inspect.signature(obj)}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return name


def _entry(prefix: str, name: str, obj: object) -> list[str]:
    lines = [f"### `{prefix}{_signature(name, obj)}`", "", _summary(obj), ""]
    if inspect.isclass(obj) and not issubclass(obj, BaseException):
        for attr, member in sorted(vars(obj).items()):
            if attr.startswith("_") and attr not in ("__await__",):
                continue
            target = member.fget if isinstance(member, property) else member
            if not callable(target) and not isinstance(member, property):
                continue
            kind = "property " if isinstance(member, property) else ""
            colour = "async " if inspect.iscoroutinefunction(target) else ""
            sig = attr if isinstance(member, property) else _signature(attr, target)
            lines.append(f"- {colour}{kind}`{sig}` — {_summary(target)}")
        lines.append("")
    return lines


def render() -> str:
    out = [
        "# API",
        "",
        "Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand.",
        "",
        "`import mtia_async as mtia` (async) and `import mtia_async.sync as mtia` (blocking)",
        "export the same names. Names that never wait are the same objects in both; the",
        "waiting ones (`Stream`, `Event`, `current_stream`, `default_stream`,",
        "`synchronize`) differ only in colour and are listed for each facade.",
        "",
        "## Shared by both facades",
        "",
    ]
    for name in mtia_async.__all__:
        if name not in WAITING:
            out += _entry("mtia.", name, getattr(mtia_async, name))
    out += ["## `mtia_async` (async)", ""]
    for name in sorted(WAITING):
        out += _entry("mtia_async.", name, getattr(mtia_async, name))
    out += ["## `mtia_async.sync` (blocking)", ""]
    for name in sorted(WAITING):
        out += _entry("mtia_async.sync.", name, getattr(mtia_async.sync, name))
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    with open(os.path.join(HERE, "api.md"), "w") as f:
        f.write(render())
