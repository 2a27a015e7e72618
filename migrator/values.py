"""Low-level helpers for tagged snapshot values, shared by ``rules.py`` and ``migrator.compare``.

Pure, no I/O. ``canonical_json`` and ``short_hash`` are deliberately not
``snapshot.dumps``/``snapshot.short_hash``: these accept anything (non-JSON values
become ``str``, NaN is allowed) and hash to 10 hex digits, which is what diff
reports and their tests show; the snapshot ones refuse such values and hash to 12.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: The keys of a reported difference that hold state values (or text made of them):
#: present only when the user asked for values (``--show-values``).
VALUE_KEYS = ("old", "new", "summary_values")

_PLAIN_NAMES = ("dict", "list", "str", "int", "float", "bool", "null")
_CLASSED_TAGS = (
    "pydantic",
    "dataclass",
    "message",
    "enum",
    "object",
    "namedtuple",
    "number",
    "str",
)


def canonical_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) used for hashing and matching."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def short_hash(value: Any) -> str:
    """First 10 hex digits of the sha256 of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:10]


def type_tag(value: Any) -> str:
    """The type a tagged value stands for: ``pydantic(app.Model)``, ``dict``, ``str``, ...

    Args:
        value: A tagged snapshot value.

    Returns:
        ``error`` for ``{"__error__": ...}``; the ``__type__`` (with its class, where
        it has one) for tagged values; otherwise the JSON type name.
    """
    if isinstance(value, dict):
        if "__error__" in value:
            return "error"
        tag = value.get("__type__")
        if isinstance(tag, str):
            cls = value.get("class")
            if tag in _CLASSED_TAGS and cls:
                return f"{tag}({cls})"
            return f"tagged-{tag}" if tag in _PLAIN_NAMES else tag
        return "dict"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def is_plain(value: Any) -> bool:
    """True for plain JSON (no ``__type__`` tag, no ``__error__``) at the top level."""
    return not (isinstance(value, Mapping) and ("__type__" in value or "__error__" in value))


def base_tag(value: Any) -> str:
    """``type_tag`` without its class: ``pydantic(app.Model)`` -> ``pydantic``."""
    return type_tag(value).split("(", 1)[0]


def error_text(value: Any) -> str:
    """The message of an ``{"__error__": ...}`` marker (or the value as text)."""
    if isinstance(value, Mapping):
        return str(value.get("__error__", canonical_json(value)))
    return "" if value is None else str(value)


def redact_difference(difference: Mapping[str, Any], show_values: bool) -> dict[str, Any]:
    """A reported difference as a report may show it: the one place values are withheld.

    Every report format (terminal, ``--json``, JUnit, Markdown, HTML, the ledger's
    run records) renders differences through this function, so none can show a
    state value the user did not ask for.

    Args:
        difference: ``Difference.report_entry()`` (or any dict of that shape).
        show_values: The user passed ``--show-values``.

    Returns:
        A copy; without ``show_values``, with the :data:`VALUE_KEYS` removed, so
        that only the path, kind, type tags and short hashes of the values remain.
    """
    out = dict(difference)
    if not show_values:
        for key in VALUE_KEYS:
            out.pop(key, None)
    return out
