"""Resolving a class named in a file (a dump) without following anything else.

A dump names classes as ``module.Qualname`` text. Text read from a file is never
trusted: a name is rebuilt only when it is *exactly* on the allowlist, only a
module whose name is a prefix of that allow-listed name is imported, and the
object found must be a class defined in that module under that qualified name.
Attribute lookups never pass through a module object, so
``langchain_core.messages.base.<some module it imported>.os.system`` cannot walk
from an allowed package into ``os`` (the hole this module closes).

Message classes are the one namespace allowed without an allowlist entry: a
bare class name (one identifier) that ``langchain_core.messages`` exports and
that is a ``BaseMessage`` subclass.

Stdlib only: runs in every version environment.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

MESSAGE_MODULE = "langchain_core.messages"


class ClassRefusedError(Exception):
    """A class name is not allowed, not a class, or cannot be imported here."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"class {name} {why}")
        self.name = name


def is_message_name(name: str) -> bool:
    """``langchain_core.messages.<Identifier>``: the only form a message class takes."""
    head, _, tail = name.rpartition(".")
    return head == MESSAGE_MODULE and tail.isidentifier()


def is_allowed(name: str, allowed: Iterable[str] | frozenset[str]) -> bool:
    """Whether ``name`` may be rebuilt: an exact allowlist entry or a message name."""
    return is_message_name(name) or name in allowed


def resolve_message(class_name: str) -> type:
    """The message class ``langchain_core.messages`` exports as ``class_name``.

    Raises:
        ClassRefusedError: not one identifier, or not a ``BaseMessage`` subclass.
    """
    full = f"{MESSAGE_MODULE}.{class_name}"
    if not isinstance(class_name, str) or not class_name.isidentifier():
        raise ClassRefusedError(full, "is not a message class name")
    module = importlib.import_module(MESSAGE_MODULE)
    obj = module.__dict__.get(class_name)
    if obj is None:
        obj = getattr(module, class_name, None)  # lazily exported names
    base = getattr(module, "BaseMessage", None)
    if not isinstance(obj, type) or base is None or not issubclass(obj, base):
        raise ClassRefusedError(full, f"is not a message class of {MESSAGE_MODULE}")
    return obj


def resolve_class(name: str, allowed: Iterable[str] | frozenset[str]) -> type:
    """The class ``name`` (``module.Qualname``), only if the allowlist holds it exactly.

    Tries each split of ``name`` into a module and a qualified name, the longest
    module first; a split is taken only when that exact module imports and the
    qualified name leads, through classes only, to a class whose ``__module__``
    and ``__qualname__`` are that split.

    Raises:
        ClassRefusedError: not on the allowlist, not a class defined where it
            says, or its module cannot be imported (the import error named).
    """
    if is_message_name(name):
        return resolve_message(name.rpartition(".")[2])
    if name not in allowed:
        raise ClassRefusedError(name, "is not in the allowlist")
    parts = name.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        raise ClassRefusedError(name, "is not a module.Qualname class path")
    import_failure: str | None = None
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not module_name.startswith(exc.name):
                import_failure = f"{module_name}: {exc}"  # the module exists, its import failed
            continue
        except Exception as exc:  # noqa: BLE001 - the app's module raised at import
            raise ClassRefusedError(
                name, f"cannot be imported: module {module_name} raised {type(exc).__name__}: {exc}"
            ) from exc
        found = _walk_classes(module, parts[cut:])
        qualname = ".".join(parts[cut:])
        if (
            found is not None
            and getattr(found, "__module__", None) == module_name
            and getattr(found, "__qualname__", None) == qualname
        ):
            return found
        raise ClassRefusedError(name, f"is not a class defined in module {module_name}")
    if import_failure:
        raise ClassRefusedError(name, f"cannot be imported: {import_failure}")
    raise ClassRefusedError(name, "cannot be imported here (no such module)")


def _walk_classes(module: Any, names: list[str]) -> type | None:
    """``module.a.b``, where every step is a class found in the namespace itself."""
    obj: Any = module
    for attr in names:
        namespace = getattr(obj, "__dict__", {})
        if attr not in namespace:
            return None
        obj = namespace[attr]
        if not isinstance(obj, type):
            return None  # never through a module, a function or an instance
    return obj if isinstance(obj, type) else None
