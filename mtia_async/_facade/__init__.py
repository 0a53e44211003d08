"""The facade layer: what users import, over the core, arrays and random numbers.

``shared`` lists the never-waiting names both facades export (one list); ``common``
implements the shared stream/device API (``StreamBase`` generic in the facade's
``Event``, ``stream_getters`` for ``current_stream``/``default_stream``); ``event``
holds ``EventBase``; ``memory`` the memory API; ``aio`` and ``blocking`` the only
names whose waiting differs (``await`` or block). ``mtia_async/__init__.py`` and
``mtia_async/sync.py`` only re-export.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

__all__ = ["set_public_module"]


def set_public_module(namespace: MutableMapping[str, Any], names: Iterable[str], module: str) -> None:
    """Show public objects as ``module.X``, not the private module they live in (as trio does).

    An object already shown under a public module (a name both facades share, fixed by
    ``mtia_async`` first) keeps it.
    """
    for name in names:
        obj = namespace[name]
        if getattr(obj, "__module__", "").startswith("mtia_async._"):
            try:
                obj.__module__ = module
            except (AttributeError, TypeError):  # pragma: no cover - builtins
                pass
