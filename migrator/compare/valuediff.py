"""Structural diff of two tagged values, addressed by identity (``diff_values``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrator.values import canonical_json, short_hash, type_tag

_MISSING: Any = None  # what ``old``/``new`` hold for the side where a thing is absent
_SECTION_LABELS: dict[str, dict[str, str]] = {
    "metadata": {"value_changed": "metadata_changed"},
    "interrupts": {"value_changed": "interrupts_changed", "length_changed": "interrupts_changed"},
}

# --------------------------------------------------------------------------- paths


def _key_segment(key: str) -> str:
    return f".{key}" if key.isidentifier() else f"[{json.dumps(key, ensure_ascii=False)}]"


def _q(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass
class _Raw:
    path: str
    kind: str
    old: Any
    new: Any
    note: str = ""


class _Collector:
    """Accumulates raw differences; ``labels`` renames generic kinds inside a section."""

    def __init__(self) -> None:
        self.items: list[_Raw] = []

    def add(self, path: str, kind: str, old: Any, new: Any, note: str = "") -> None:
        self.items.append(_Raw(path, kind, old, new, note))

    def values(
        self, path: str, old: Any, new: Any, labels: Mapping[str, str] | None = None
    ) -> None:
        start = len(self.items)
        _diff_value(self, path, old, new)
        if labels:
            for raw in self.items[start:]:
                raw.kind = labels.get(raw.kind, raw.kind)


def _diff_value(out: _Collector, path: str, old: Any, new: Any) -> None:
    """Structural diff of two tagged values."""
    t_old, t_new = type_tag(old), type_tag(new)
    if t_old != t_new:
        out.add(path, "value_error" if t_new == "error" else "type_changed", old, new)
        return
    if t_old == "error":
        if old != new:
            out.add(path, "value_error", old, new)
        return
    if isinstance(old, list | tuple):
        _diff_list(out, path, old, new)
        return
    if not isinstance(old, dict):
        if old != new:
            out.add(path, "value_changed", old, new)
        return
    tag = old.get("__type__") if isinstance(old.get("__type__"), str) else None
    if tag in ("set", "frozenset"):
        _diff_multiset(out, path + ".items", old.get("items", []), new.get("items", []))
        _diff_keys(out, path, old, new, skip=("__type__", "items"))
    elif tag == "dict":
        _diff_pairs(out, path + ".items", old.get("items", []), new.get("items", []))
        _diff_keys(out, path, old, new, skip=("__type__", "items"))
    else:
        _diff_keys(out, path, old, new, skip=("__type__", "class") if tag else ())


def _diff_keys(
    out: _Collector, path: str, old: Mapping[str, Any], new: Mapping[str, Any], skip: Sequence[str]
) -> None:
    for key in sorted(set(old) | set(new), key=str):
        if key in skip:
            continue
        sub = path + _key_segment(str(key))
        if key not in new:
            out.add(sub, "key_missing", old[key], _MISSING)
        elif key not in old:
            out.add(sub, "key_added", _MISSING, new[key])
        else:
            _diff_value(out, sub, old[key], new[key])


def _diff_list(out: _Collector, path: str, old: Sequence[Any], new: Sequence[Any]) -> None:
    for i in range(min(len(old), len(new))):
        _diff_value(out, f"{path}[{i}]", old[i], new[i])
    if len(old) != len(new):
        if len(new) < len(old):
            note = f"items [{len(new)}..{len(old) - 1}] missing"
        else:
            note = f"items [{len(old)}..{len(new) - 1}] added"
        out.add(path, "length_changed", len(old), len(new), note)


def _diff_multiset(out: _Collector, path: str, old: Sequence[Any], new: Sequence[Any]) -> None:
    # A set item is a value, not a name: its path segment is its short hash, so a
    # path (shown in every report) never carries state values.
    c_old = Counter(canonical_json(v) for v in old)
    c_new = Counter(canonical_json(v) for v in new)
    for key in sorted((c_old - c_new).elements()):
        item = json.loads(key)
        out.add(f"{path}[#{short_hash(item)}]", "item_missing", item, _MISSING)
    for key in sorted((c_new - c_old).elements()):
        item = json.loads(key)
        out.add(f"{path}[#{short_hash(item)}]", "item_added", _MISSING, item)


def _pairs(items: Sequence[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in items:
        if isinstance(item, list | tuple) and len(item) == 2:
            found[canonical_json(item[0])] = item[1]
        else:  # malformed; still compared, by the whole item
            found[canonical_json(item)] = item
    return found


def _diff_pairs(out: _Collector, path: str, old: Sequence[Any], new: Sequence[Any]) -> None:
    p_old, p_new = _pairs(old), _pairs(new)
    for key in sorted(set(p_old) | set(p_new)):
        sub = f"{path}[key={key}]"
        if key not in p_new:
            out.add(sub, "key_missing", p_old[key], _MISSING)
        elif key not in p_old:
            out.add(sub, "key_added", _MISSING, p_new[key])
        else:
            _diff_value(out, sub, p_old[key], p_new[key])


def diff_values(old: Any, new: Any, *, path: str = "$") -> tuple[tuple[str, str, Any, Any], ...]:
    """Unclassified structural diff of two tagged values (useful in tests and tools).

    Args:
        old: Old tagged value.
        new: New tagged value.
        path: Path prefix of the values.

    Returns:
        ``(path, kind, old, new)`` per difference.
    """
    out = _Collector()
    out.values(path, old, new)
    return tuple((r.path, r.kind, r.old, r.new) for r in out.items)
