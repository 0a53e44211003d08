"""Generate docs/api.md from the facades' docstrings: ``python docs/gen_api.py``.

tests/test_docs.py checks that the committed page is what this script writes.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from typing import TypeVar

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import mtia_async  # noqa: E402
import mtia_async.memory  # noqa: E402
import mtia_async.profiler  # noqa: E402
import mtia_async.sanitizer  # noqa: E402
import mtia_async.sync  # noqa: E402

WAITING = {
    "Event", "Stream", "current_stream", "default_stream", "synchronize", "graph",
    # results sized by the data: awaited in mtia_async, blocking in mtia_async.sync (docs/arrays.md)
    "nonzero", "argwhere", "flatnonzero", "unique", "histogram", "getitem",
}  # fmt: skip


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


#: What the generic type variables of the facade code stand for in a facade's API.
TYPEVAR_NAMES = {"S": "Stream", "E": "Event"}
#: Dunder methods worth listing (``with s:``, ``await e``).
DUNDERS = ("__await__", "__enter__")


def _name_typevars(obj: object, annotation: object) -> object:
    """``'S'`` -> ``'Stream'``, ``'E | None'`` -> ``'Event | None'``: the type variables
    of the function's module (``from __future__ import annotations`` keeps them as text)."""
    if not isinstance(annotation, str):
        return annotation
    scope = getattr(inspect.unwrap(obj), "__globals__", {})  # type: ignore[arg-type]

    def name(match: re.Match[str]) -> str:
        word = match.group(0)
        return TYPEVAR_NAMES.get(word, word) if isinstance(scope.get(word), TypeVar) else word

    return re.sub(r"\b[A-Z]\w*\b", name, annotation)


def _signature(name: str, obj: object) -> str:
    try:
        sig = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return name
    if inspect.isclass(obj):  # a constructor returns the instance: no "-> 'S'" / "-> 'None'"
        sig = sig.replace(return_annotation=inspect.Signature.empty)
    params = [p.replace(annotation=_name_typevars(obj, p.annotation)) for p in sig.parameters.values()]
    sig = sig.replace(parameters=params, return_annotation=_name_typevars(obj, sig.return_annotation))
    return f"{name}{sig}"


def _members(cls: type) -> dict[str, object]:
    """Public members of ``cls`` and of its mtia_async base classes (the subclass's win)."""
    members: dict[str, object] = {}
    for base in reversed(cls.__mro__):
        if base.__module__.startswith("mtia_async"):
            members.update(vars(base))
    return members


def _entry(prefix: str, name: str, obj: object) -> list[str]:
    lines = [f"### `{prefix}{_signature(name, obj)}`", "", _summary(obj), ""]
    if inspect.isclass(obj) and not issubclass(obj, BaseException):
        for attr, member in sorted(_members(obj).items()):
            if attr.startswith("_") and (attr not in DUNDERS or not inspect.getdoc(member)):
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
        "`synchronize`, `graph`, and the functions whose result is sized by the data:",
        "`nonzero`, `argwhere`, `flatnonzero`, `unique`, `histogram`, `getitem`) differ",
        "only in colour and are listed for each facade.",
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
    out += [
        "## `mtia_async.memory`",
        "",
        _summary(mtia_async.memory),
        "",
        ", ".join(f"`{name}`" for name in mtia_async.memory.__all__)
        + ": the same objects as the facades' (above). Also torch's private spellings "
        "`_record_memory_history`, `_snapshot`, `_dump_snapshot`.",
        "",
        "## `mtia_async.profiler`",
        "",
        _summary(mtia_async.profiler),
        "",
    ]
    for name in mtia_async.profiler.__all__:
        obj = getattr(mtia_async.profiler, name)
        if callable(obj):  # not DEFAULT_MAX_EVENTS
            out += _entry("mtia_async.profiler.", name, obj)
    out += ["## `mtia_async.sanitizer`", "", _summary(mtia_async.sanitizer), ""]
    for name in mtia_async.sanitizer.__all__:
        obj = getattr(mtia_async.sanitizer, name)
        if inspect.isfunction(obj):  # the exception and the warning are listed with the facades' names
            out += _entry("mtia_async.sanitizer.", name, obj)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    with open(os.path.join(HERE, "api.md"), "w") as f:
        f.write(render())
