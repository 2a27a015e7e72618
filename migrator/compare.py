"""Snapshot x Snapshot -> Diff: the drift between what two langgraph versions read.

Pure: no I/O, no langgraph import. Every difference carries a JSON-ish path that
addresses things by identity, not by list position, so one missing item is one
difference and not a cascade::

    threads["canary:messages"]
      .checkpoints[ns="",id="1ef..."]            checkpoints by (checkpoint_ns, checkpoint_id)
      .channel_values.messages[2].fields.content  values: .key / ["odd key"] / [index]
      .pending_writes[task_id="...",channel="x"]  pending writes by (task_id, channel[, i])
      .state.tasks[name="agent",i=1]              tasks by name (+ index among that name)
      .history[id="1ef..."]                       history entries by checkpoint id
    resume.threads["t"].trace[node="tools"]       resume comparisons

Classification of each difference, in order (the rules live in ``rules.py``; their
names are re-exported here):

1. hazard attribution (``rules.attribute_hazard``): a recognised pattern of a catalogued
   hazard (``HAZARDS.md``) is breaking and names the hazard id;
2. built-in benign rules (``rules.BENIGN_RULES``): documented or observed format
   evolutions between released versions, each limited to an old and a new
   version range; applied only when no hazard was attributed;
3. the user's ``Policy`` (ignore / benign / hazards_ignore), which may override both;
4. everything else is breaking.

Then, per thread, follow-on differences in derived views (``state``/``history``
values and next, a resume's outcome/next/digest) that carry no hazard inherit the
one hazard that caused them (``_consequences``); a resume that failed with a
catalogued error, or lost its ``Send`` fan-out, attributes the work not done to it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from migrator.policy import Policy
from migrator.rules import (
    BENIGN_RULES,
    BenignRule,
    Context,
    Predicate,
    VersionRange,
    attribute_hazard,
    contains_send,
    crosses_task_id_boundary,
    hazard_for_error,
    parse_version,
    strip_task_ids,
)
from migrator.values import canonical_json, error_text, redact_difference, short_hash, type_tag

__all__ = [
    "BENIGN_RULES",
    "DIFF_FORMAT",
    "SNAPSHOT_FORMAT",
    "BenignRule",
    "Context",
    "Diff",
    "Difference",
    "Predicate",
    "Severity",
    "TraceKey",
    "VersionRange",
    "attribute_hazard",
    "canonical_json",
    "compare_resumes",
    "compare_snapshots",
    "crosses_task_id_boundary",
    "diff_values",
    "hazard_for_error",
    "parse_version",
    "reclassify",
    "short_hash",
    "type_tag",
]

Severity = Literal["breaking", "benign", "ignored"]

SNAPSHOT_FORMAT = "langgraph-migrator/snapshot@1"
DIFF_FORMAT = "langgraph-migrator/diff@1"
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


# --------------------------------------------------------------------------- snapshots


def _occurrences(
    items: Iterable[Any], key: Callable[[Any], tuple[Any, ...]]
) -> dict[tuple[Any, ...], Any]:
    """Key each item by ``key(item) + (index among items with that key,)``."""
    seen: Counter[tuple[Any, ...]] = Counter()
    found: dict[tuple[Any, ...], Any] = {}
    for item in items:
        k = key(item)
        found[(*k, seen[k])] = item
        seen[k] += 1
    return found


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else None


def _list(obj: Any, key: str) -> list[Any]:
    value = _get(obj, key)
    return list(value) if isinstance(value, list | tuple) else []


def _cp_path(base: str, ns: Any, cid: Any) -> str:
    return f"{base}.checkpoints[ns={_q(ns)},id={_q(cid)}]"


def _write_path(base: str, task_id: Any, channel: Any, i: int) -> str:
    suffix = f",i={i}" if i else ""
    return f"{base}.pending_writes[task_id={_q(task_id)},channel={_q(channel)}{suffix}]"


def _task_path(base: str, name: Any, i: int) -> str:
    return f"{base}.tasks[name={_q(name)}{f',i={i}' if i else ''}]"


def _diff_rest(out: _Collector, path: str, old: Any, new: Any, handled: Sequence[str]) -> None:
    """Generic diff of the keys a section handler does not know (forward compatibility)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        rest_old = {k: v for k, v in old.items() if k not in handled}
        rest_new = {k: v for k, v in new.items() if k not in handled}
        _diff_keys(out, path, rest_old, rest_new, skip=())


def _diff_next(out: _Collector, path: str, old: Any, new: Any) -> None:
    a = sorted(map(str, old or []))
    b = sorted(map(str, new or []))
    if a != b:
        out.add(path, "next_changed", list(old or []), list(new or []))


def _write_key(write: Any) -> tuple[str, str]:
    return str(_get(write, "task_id")), str(_get(write, "channel"))


def _checkpoint_key(cp: Any) -> tuple[str, str]:
    return str(_get(cp, "checkpoint_ns") or ""), str(_get(cp, "checkpoint_id"))


def _is_error(value: Any) -> bool:
    return isinstance(value, Mapping) and "__error__" in value


def _diff_whole(out: _Collector, path: str, old: Any, new: Any, kind: str, note: str = "") -> bool:
    """Report a list section that is absent or unreadable on a side as one difference.

    Returns:
        False when both sides are lists (the caller compares them item by item);
        True otherwise (handled here).
    """
    if isinstance(old, list) and isinstance(new, list):
        return False
    if canonical_json(old) != canonical_json(new):
        out.add(path, "value_error" if _is_error(new) else kind, old, new, note)
    return True


def _pair_tasks(base: str, old: Sequence[Any], new: Sequence[Any]) -> list[tuple[str, Any, Any]]:
    """Pair tasks of the same name: same id, else same content, else in order.

    Paths use the index among same-named tasks on the old side (new side for
    added tasks), so a fan-out (several ``Send`` tasks of one node) whose ids all
    changed still pairs each task with its counterpart.
    """
    out: list[tuple[str, Any, Any]] = []
    names = sorted({str(_get(t, "name")) for t in [*old, *new]})
    for name in names:
        left = [t for t in old if str(_get(t, "name")) == name]
        right = [t for t in new if str(_get(t, "name")) == name]
        free = list(range(len(right)))
        match: dict[int, int] = {}
        for same in (
            lambda a, b: _get(a, "id") == _get(b, "id"),
            lambda a, b: _without_id(a) == _without_id(b),
            lambda a, b: True,
        ):
            for i, a in enumerate(left):
                if i in match:
                    continue
                j = next((j for j in free if same(a, right[j])), None)
                if j is not None:
                    match[i] = j
                    free.remove(j)
        for i, a in enumerate(left):
            b = right[match[i]] if i in match else None
            out.append((_task_path(base, name, i), a, b))
        out += [(_task_path(base, name, len(left) + n), None, right[j]) for n, j in enumerate(free)]
    return out


def _without_id(task: Any) -> str:
    return (
        canonical_json({k: v for k, v in task.items() if k != "id"})
        if isinstance(task, Mapping)
        else canonical_json(task)
    )


def _diff_tasks(out: _Collector, base: str, old: Any, new: Any) -> None:
    """Tasks by name (+ index among tasks of that name); ``None`` = field absent."""
    if _diff_whole(out, base + ".tasks", old, new, "tasks_changed", "tasks not available"):
        return
    for path, a, b in _pair_tasks(base, old, new):
        if b is None:
            out.add(path, "tasks_changed", a, _MISSING, "task missing")
        elif a is None:
            out.add(path, "tasks_changed", _MISSING, b, "task added")
        else:
            for field_name in ("id", "error"):  # plain strings, not tagged values
                if _get(a, field_name) != _get(b, field_name):
                    out.add(
                        f"{path}.{field_name}",
                        "value_changed",
                        _get(a, field_name),
                        _get(b, field_name),
                    )
            _diff_interrupts(
                out, path + ".interrupts", _get(a, "interrupts"), _get(b, "interrupts")
            )
            _diff_state(out, path + ".state", _get(a, "state"), _get(b, "state"))
            _diff_rest(out, path, a, b, ("id", "name", "error", "interrupts", "state"))


def _diff_interrupts(out: _Collector, path: str, old: Any, new: Any) -> None:
    if not _diff_whole(out, path, old, new, "interrupts_changed", "interrupts not available"):
        out.values(path, old, new, _SECTION_LABELS["interrupts"])


def _diff_state(out: _Collector, path: str, old: Any, new: Any) -> None:
    """A ``state`` record (values, next, tasks, interrupts); nested for subgraph tasks."""
    if (
        not isinstance(old, Mapping)
        or not isinstance(new, Mapping)
        or _is_error(old)
        or _is_error(new)
    ):
        if canonical_json(old) != canonical_json(new):
            kind = "value_error" if _is_error(new) else "value_changed"
            out.add(path, kind, old, new, "state lost" if new is None else "")
        return
    out.values(path + ".values", _get(old, "values"), _get(new, "values"))
    _diff_next(out, path + ".next", _get(old, "next"), _get(new, "next"))
    _diff_tasks(out, path, _get(old, "tasks"), _get(new, "tasks"))
    _diff_interrupts(out, path + ".interrupts", _get(old, "interrupts"), _get(new, "interrupts"))
    _diff_rest(out, path, old, new, ("values", "next", "tasks", "interrupts"))


def _diff_writes(out: _Collector, base: str, old: Sequence[Any], new: Sequence[Any]) -> None:
    """Pending writes by (task_id, channel); unmatched ones are then paired by channel.

    The second pass ignores task ids, so a task-id change (H-TASK-ID) shows up as
    one ``task_id`` difference per write instead of a missing plus an added write.
    """
    m_old, m_new = _occurrences(old, _write_key), _occurrences(new, _write_key)
    pairs = [(k, k) for k in sorted(set(m_old) & set(m_new))]
    left = sorted(set(m_old) - set(m_new))
    right = sorted(set(m_new) - set(m_old))
    for same_value in (True, False):
        for ko in list(left):
            for kn in right:
                if ko[1] != kn[1]:
                    continue
                v_old, v_new = _get(m_old[ko], "value"), _get(m_new[kn], "value")
                if not same_value or canonical_json(v_old) == canonical_json(v_new):
                    pairs.append((ko, kn))
                    left.remove(ko)
                    right.remove(kn)
                    break
    for ko, kn in pairs:
        a, b = m_old[ko], m_new[kn]
        path = _write_path(base, *ko)
        if ko != kn:
            out.add(path + ".task_id", "value_changed", _get(a, "task_id"), _get(b, "task_id"))
        out.values(path + ".value", _get(a, "value"), _get(b, "value"))
        _diff_rest(out, path, a, b, ("task_id", "channel", "value"))
    for ko in left:
        out.add(
            _write_path(base, *ko), "pending_writes_changed", m_old[ko], _MISSING, "write missing"
        )
    for kn in right:
        out.add(
            _write_path(base, *kn), "pending_writes_changed", _MISSING, m_new[kn], "write added"
        )


def _diff_checkpoint(
    out: _Collector, path: str, old: Mapping[str, Any], new: Mapping[str, Any]
) -> None:
    e_old, e_new = _get(old, "error"), _get(new, "error")
    if e_new and e_new != e_old:
        out.add(path, "checkpoint_error", e_old, e_new)
        return
    if e_old and not e_new:
        out.add(path + ".error", "value_changed", e_old, e_new, "old side could not read it")
        return
    if _get(old, "checkpoint_ns") != _get(new, "checkpoint_ns"):
        out.add(
            path + ".checkpoint_ns",
            "value_changed",
            _get(old, "checkpoint_ns"),
            _get(new, "checkpoint_ns"),
        )
    p_old, p_new = _get(old, "parent_checkpoint_id"), _get(new, "parent_checkpoint_id")
    if p_old != p_new:
        out.add(path + ".parent_checkpoint_id", "parent_changed", p_old, p_new)
    out.values(
        path + ".metadata",
        _get(old, "metadata"),
        _get(new, "metadata"),
        _SECTION_LABELS["metadata"],
    )
    out.values(path + ".channel_values", _get(old, "channel_values"), _get(new, "channel_values"))
    _diff_writes(out, path, _list(old, "pending_writes"), _list(new, "pending_writes"))
    handled = (
        "checkpoint_ns",
        "checkpoint_id",
        "parent_checkpoint_id",
        "metadata",
        "channel_values",
        "pending_writes",
        "error",
    )
    _diff_rest(out, path, old, new, handled)


def _diff_checkpoints(
    out: _Collector, base: str, old: Sequence[Any], new: Sequence[Any]
) -> set[str]:
    """Checkpoints by (ns, id), then by (ns without task ids, id). Returns ids reported whole."""
    m_old = {_checkpoint_key(c): c for c in old if isinstance(c, Mapping)}
    m_new = {_checkpoint_key(c): c for c in new if isinstance(c, Mapping)}
    pairs = [(k, k) for k in sorted(set(m_old) & set(m_new))]
    right = sorted(set(m_new) - set(m_old))
    left: list[tuple[str, str]] = []
    for ko in sorted(set(m_old) - set(m_new)):
        match = next(
            (
                kn
                for kn in right
                if kn[1] == ko[1] and strip_task_ids(kn[0]) == strip_task_ids(ko[0])
            ),
            None,
        )
        if match is None:
            left.append(ko)
        else:
            right.remove(match)
            pairs.append((ko, match))
    whole: set[str] = set()
    for ko, kn in pairs:
        _diff_checkpoint(out, _cp_path(base, *ko), m_old[ko], m_new[kn])
        if _get(m_new[kn], "error"):
            whole.add(ko[1])
    for ko in left:
        out.add(_cp_path(base, *ko), "checkpoint_missing", m_old[ko], _MISSING)
        whole.add(ko[1])
    for kn in right:
        out.add(_cp_path(base, *kn), "checkpoint_added", _MISSING, m_new[kn])
        whole.add(kn[1])
    return whole


def _diff_history(out: _Collector, base: str, old: Any, new: Any, skip: set[str]) -> None:
    """History entries by checkpoint id; ``None`` (not collected) on a side is skipped."""
    if old is None or new is None:
        return
    if _diff_whole(out, base + ".history", old, new, "value_changed", "history not readable"):
        return
    m_old = {str(_get(h, "checkpoint_id")): h for h in old if isinstance(h, Mapping)}
    m_new = {str(_get(h, "checkpoint_id")): h for h in new if isinstance(h, Mapping)}
    for cid in sorted(set(m_old) | set(m_new)):
        if cid in skip:  # already reported as one checkpoint difference
            continue
        path = f"{base}.history[id={_q(cid)}]"
        a, b = m_old.get(cid), m_new.get(cid)
        if b is None:
            out.add(path, "checkpoint_missing", a, _MISSING)
            continue
        if a is None:
            out.add(path, "checkpoint_added", _MISSING, b)
            continue
        if _get(a, "parent_checkpoint_id") != _get(b, "parent_checkpoint_id"):
            out.add(
                path + ".parent_checkpoint_id",
                "parent_changed",
                _get(a, "parent_checkpoint_id"),
                _get(b, "parent_checkpoint_id"),
            )
        _diff_next(out, path + ".next", _get(a, "next"), _get(b, "next"))
        out.values(path + ".values", _get(a, "values"), _get(b, "values"))
        out.values(
            path + ".metadata",
            _get(a, "metadata"),
            _get(b, "metadata"),
            _SECTION_LABELS["metadata"],
        )
        _diff_tasks(out, path, _get(a, "tasks"), _get(b, "tasks"))
        _diff_rest(
            out,
            path,
            a,
            b,
            ("checkpoint_id", "parent_checkpoint_id", "next", "values", "metadata", "tasks"),
        )


def _diff_thread(
    out: _Collector, base: str, old: Mapping[str, Any], new: Mapping[str, Any]
) -> None:
    e_old, e_new = _get(old, "error"), _get(new, "error")
    if e_new and e_new != e_old:
        out.add(base, "thread_error", e_old, e_new)
        return
    if e_old and not e_new:
        out.add(base + ".error", "value_changed", e_old, e_new, "old side could not read it")
        return
    if _get(old, "canary") != _get(new, "canary"):
        out.add(base + ".canary", "value_changed", _get(old, "canary"), _get(new, "canary"))
    whole = _diff_checkpoints(out, base, _list(old, "checkpoints"), _list(new, "checkpoints"))
    _diff_state(out, base + ".state", _get(old, "state"), _get(new, "state"))
    _diff_history(out, base, _get(old, "history"), _get(new, "history"), whole)
    _diff_rest(out, base, old, new, ("canary", "error", "checkpoints", "state", "history"))


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Difference:
    """One classified difference between two snapshots (or resume results).

    Attributes:
        path: Where, e.g. ``threads["t"].checkpoints[ns="",id="1ef"].channel_values.x``.
        kind: What happened (``type_changed``, ``checkpoint_missing``, ...).
        old: The old value (None where it was absent).
        new: The new value (None where it is absent).
        severity: ``breaking``, ``benign`` or ``ignored``.
        rule: Id of the rule that classified it (a built-in rule or ``policy:...``).
        hazard: HAZARDS.md id it is evidence of, e.g. ``H-STRICT-MSGPACK``.
        thread_id: The thread it belongs to, or None.
        message: One human sentence.
    """

    path: str
    kind: str
    old: Any
    new: Any
    severity: Severity = "breaking"
    rule: str | None = None
    hazard: str | None = None
    thread_id: str | None = None
    message: str = ""

    def summary(self, show_values: bool = False) -> str:
        """One line for a report.

        Args:
            show_values: Show the values (truncated to about 200 characters) instead
                of their type tags and short hashes (values may hold user data).

        Returns:
            ``"<severity> <path>: <kind> <old> -> <new> [hazard] [rule] - message"``.
        """
        if show_values:
            shown = f"{_trunc(self.old)} -> {_trunc(self.new)}"
        else:
            shown = f"{_brief(self.old)} -> {_brief(self.new)}"
        tags = "".join(f" [{t}]" for t in (self.hazard, self.rule) if t)
        text = f"{self.severity} {self.path}: {self.kind} {shown}{tags}"
        return f"{text} - {self.message}" if self.message else text

    def to_dict(self, show_values: bool = False) -> dict[str, Any]:
        """JSON-ready dict: path, kind, type tags and short hashes of the values.

        Args:
            show_values: Include the values themselves (``old``, ``new``); they may
                hold user data, so only when the user asked (``--show-values``).
        """
        full = {
            "path": self.path,
            "kind": self.kind,
            "severity": self.severity,
            "rule": self.rule,
            "hazard": self.hazard,
            "thread_id": self.thread_id,
            "message": self.message,
            "old": self.old,
            "new": self.new,
            "old_type": type_tag(self.old),
            "new_type": type_tag(self.new),
            "old_hash": short_hash(self.old),
            "new_hash": short_hash(self.new),
        }
        return redact_difference(full, show_values)

    def report_entry(self) -> dict[str, Any]:
        """What a report ``Check`` keeps of this difference, values and both summaries included.

        A report withholds the values when it is rendered (``Check.to_dict``,
        :func:`migrator.values.redact_difference`) unless ``--show-values`` is given.
        """
        return self.to_dict(show_values=True) | {
            "summary": self.summary(),
            "summary_values": self.summary(True),
        }


def _brief(value: Any) -> str:
    return "absent" if value is None else f"{type_tag(value)}#{short_hash(value)}"


def _trunc(value: Any, limit: int = 200) -> str:
    text = canonical_json(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Diff:
    """All differences of one comparison."""

    differences: tuple[Difference, ...] = ()

    @property
    def breaking(self) -> tuple[Difference, ...]:
        """Differences that fail the gate."""
        return tuple(d for d in self.differences if d.severity == "breaking")

    @property
    def benign(self) -> tuple[Difference, ...]:
        """Known-harmless differences (built-in rules or the user's ``benign``)."""
        return tuple(d for d in self.differences if d.severity == "benign")

    @property
    def ignored(self) -> tuple[Difference, ...]:
        """Differences the user's policy ignores."""
        return tuple(d for d in self.differences if d.severity == "ignored")

    @property
    def ok(self) -> bool:
        """True when nothing is breaking."""
        return not self.breaking

    @property
    def hazards(self) -> tuple[str, ...]:
        """Sorted hazard ids of the breaking differences."""
        return tuple(sorted({d.hazard for d in self.breaking if d.hazard}))

    def counts_by_thread(self) -> dict[str | None, dict[str, int]]:
        """``{thread_id: {"breaking": n, "benign": n, "ignored": n}}``."""
        counts: dict[str | None, dict[str, int]] = {}
        for d in self.differences:
            row = counts.setdefault(d.thread_id, {"breaking": 0, "benign": 0, "ignored": 0})
            row[d.severity] += 1
        return counts

    def for_thread(self, thread_id: str | None) -> Diff:
        """The differences of one thread."""
        return Diff(tuple(d for d in self.differences if d.thread_id == thread_id))

    def to_dict(self, show_values: bool = False) -> dict[str, Any]:
        """JSON-ready dict; values only with ``show_values`` (see ``Difference.to_dict``)."""
        return {
            "format": DIFF_FORMAT,
            "ok": self.ok,
            "counts": {
                "breaking": len(self.breaking),
                "benign": len(self.benign),
                "ignored": len(self.ignored),
            },
            "hazards": list(self.hazards),
            "by_thread": {str(k): v for k, v in self.counts_by_thread().items()},
            "differences": [d.to_dict(show_values) for d in self.differences],
        }


_MESSAGES: dict[str, str] = {
    "thread_missing": "thread is gone",
    "thread_added": "thread appeared",
    "thread_error": "the new version cannot read this thread",
    "checkpoint_missing": "checkpoint is gone",
    "checkpoint_added": "checkpoint appeared",
    "checkpoint_error": "the new version cannot read this checkpoint",
    "value_changed": "value changed",
    "type_changed": "type changed",
    "value_error": "value no longer loads",
    "key_missing": "key is gone",
    "key_added": "key appeared",
    "item_missing": "item is gone",
    "item_added": "item appeared",
    "length_changed": "length changed",
    "next_changed": "next nodes changed",
    "interrupts_changed": "interrupts changed",
    "tasks_changed": "tasks changed",
    "pending_writes_changed": "pending writes changed",
    "parent_changed": "parent checkpoint changed",
    "metadata_changed": "metadata changed",
    "outcome_changed": "resume outcome changed",
    "node_reexecuted": "node ran more often",
    "node_not_executed": "node ran less often",
}


def _message(raw: _Raw) -> str:
    if raw.kind in ("node_reexecuted", "node_not_executed"):
        return raw.note
    base = _MESSAGES.get(raw.kind, raw.kind.replace("_", " "))
    if raw.kind == "type_changed":
        base = f"type changed: {type_tag(raw.old)} -> {type_tag(raw.new)}"
    elif raw.kind in ("value_error", "checkpoint_error", "thread_error"):
        base = f"{base}: {error_text(raw.new)}"
    return f"{base} ({raw.note})" if raw.note else base


@dataclass(frozen=True)
class _Classifier:
    policy: Policy | None
    context: Context
    old_versions: Mapping[str, Any]
    new_versions: Mapping[str, Any]

    def __call__(self, raw: _Raw, thread_id: str | None, old_has_send: bool = False) -> Difference:
        boundary = crosses_task_id_boundary(self.old_versions, self.new_versions)
        hazard = attribute_hazard(
            raw.path,
            raw.kind,
            raw.old,
            raw.new,
            context=self.context,
            task_id_boundary=boundary,
            old_has_send=old_has_send,
        )
        severity: Severity = "breaking"
        rule: str | None = None
        if hazard is None:
            for r in BENIGN_RULES:
                if r.applies(
                    raw.path, raw.kind, raw.old, raw.new, self.old_versions, self.new_versions
                ):
                    severity, rule = "benign", r.id
                    break
        if self.policy is not None:
            decided = self.policy.classify(raw.path, hazard)
            if decided is not None:
                severity, rule = decided
        return Difference(
            path=raw.path,
            kind=raw.kind,
            old=raw.old,
            new=raw.new,
            severity=severity,
            rule=rule,
            hazard=hazard,
            thread_id=thread_id,
            message=_message(raw),
        )


def _threads(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    threads = snapshot.get("threads", {})
    return dict(threads) if isinstance(threads, Mapping) else {}


def compare_snapshots(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    policy: Policy | None = None,
    context: Context = "upgrade",
) -> Diff:
    """Compare two snapshots (see docs/snapshot-format.md).

    Args:
        old: The golden snapshot (what the old version read).
        new: What the new version reads from the same database.
        policy: The user's policy (ignore / benign / hazards_ignore).
        context: Which read ``new`` is: ``upgrade`` (after the new ``setup()``),
            ``read-before-setup`` (rolling deploy), ``rollback`` (old code reading
            what new code wrote). Decides which hazard a schema error points at.

    Returns:
        The classified differences, ordered by thread id, then as found.
    """
    classify = _Classifier(policy, context, _versions(old), _versions(new))
    t_old, t_new = _threads(old), _threads(new)
    result: list[Difference] = []
    for tid in sorted(set(t_old) | set(t_new)):
        base = f"threads[{_q(tid)}]"
        a, b = t_old.get(tid), t_new.get(tid)
        out = _Collector()
        if b is None:
            out.add(base, "thread_missing", a, _MISSING)
        elif a is None:
            out.add(base, "thread_added", _MISSING, b)
        else:
            _diff_thread(out, base, a, b)
        has_send = contains_send(a)
        result += _consequences(
            [classify(raw, tid, has_send) for raw in out.items], _DERIVED_VIEW, policy
        )
    return Diff(tuple(result))


# Views a version computes from the stored data (StateSnapshot, history, a resume's
# outcome), as opposed to the stored data itself (``.checkpoints[...]``).
_DERIVED_VIEW = re.compile(r"\.(?:state|history\[id=[^\]]*\])\.(?:values|next)\b")
_RESUME_EFFECT = re.compile(r"\.(?:outcome|next|values_digest|state\..*)$")
_RESUME_CAUSE = re.compile(r"\.(?:error|trace\[.*\])$")


def _consequences(
    diffs: list[Difference], effects: re.Pattern[str], policy: Policy | None
) -> list[Difference]:
    """Give one thread's unattributed follow-on differences the hazard that caused them.

    A derived view (``state.values``/``next``, a history entry's, a resume's
    outcome/next/digest) that changed with no hazard of its own inherits the
    thread's hazard when exactly one hazard was attributed in that thread and no
    unattributed breaking difference could explain it instead: for a snapshot, one
    in the stored data (``.checkpoints[...]``); for a resume, an error or a trace
    difference. Example (H-TASK-ID): a completed sibling's orphaned writes are not
    applied, so ``state.values.log`` is one item short. Severities do not change.
    """
    breaking = [d for d in diffs if d.severity == "breaking"]
    hazards = {d.hazard for d in diffs if d.hazard}  # whatever the policy made of them
    if len(hazards) != 1:
        return diffs
    (hazard,) = hazards
    unexplained = any(
        d.hazard is None and (".checkpoints[" in d.path or _RESUME_CAUSE.search(d.path))
        for d in breaking
    )
    if unexplained:
        return diffs
    out = []
    for d in diffs:
        if d.severity == "breaking" and d.hazard is None and effects.search(d.path):
            d = _with_hazard(d, hazard, policy)
        out.append(d)
    return out


def _with_hazard(d: Difference, hazard: str, policy: Policy | None) -> Difference:
    """``d`` attributed to ``hazard``; the policy's ``hazards_ignore`` may now match."""
    if d.severity != "breaking":
        return d
    d = replace(d, hazard=hazard)
    decided = policy.classify(d.path, hazard) if policy is not None else None
    return replace(d, severity=decided[0], rule=decided[1]) if decided is not None else d


def _versions(side: Mapping[str, Any]) -> Mapping[str, Any]:
    versions = side.get("versions")
    if not isinstance(versions, Mapping):
        versions = _get(side.get("snapshot"), "versions")
    return versions if isinstance(versions, Mapping) else {}


def compare_resumes(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    policy: Policy | None = None,
    context: Context = "upgrade",
) -> Diff:
    """Compare the results of the worker op ``resume`` under the old and the new version.

    Each side is ``{"threads": [{"thread_id", "canary", "outcome", "error", "trace",
    "next", "values_digest"}], "versions"?: {...}, "snapshot"?: <snapshot>}``. The
    versions are read from ``versions`` or from the embedded snapshot. When both
    sides carry a post-resume snapshot, each thread's final ``state`` is compared too
    (not its checkpoints: their ids are new on each side).

    A thread the old version skipped (``outcome: skipped``) has no baseline and is
    not compared; one the new version skips is ``outcome_changed``.

    Breaking: an outcome that differs, an error that appears (with its hazard), a
    node that runs in new more often than in old (``node_reexecuted``, H-TASK-ID when
    crossing langgraph 0.3.17) or less often (``node_not_executed``), a different
    ``next``, a different ``values_digest`` (``value_changed``).

    Args:
        old: The old version's resume result.
        new: The new version's resume result.
        policy: The user's policy.
        context: See ``compare_snapshots``.

    Returns:
        The classified differences.
    """
    old_versions, new_versions = _versions(old), _versions(new)
    classify = _Classifier(policy, context, old_versions, new_versions)
    boundary = crosses_task_id_boundary(old_versions, new_versions)
    r_old = {str(_get(t, "thread_id")): t for t in _list(old, "threads")}
    r_new = {str(_get(t, "thread_id")): t for t in _list(new, "threads")}
    s_old, s_new = _threads(_get(old, "snapshot") or {}), _threads(_get(new, "snapshot") or {})
    result: list[Difference] = []
    for tid in sorted(set(r_old) | set(r_new)):
        base = f"resume.threads[{_q(tid)}]"
        a, b = r_old.get(tid), r_new.get(tid)
        out = _Collector()
        if b is None:
            out.add(base, "thread_missing", a, _MISSING, "not resumed by the new version")
        elif a is None:
            out.add(base, "thread_added", _MISSING, b, "not resumed by the old version")
        else:
            _diff_resume(out, base, a, b, boundary)
            if tid in s_old and tid in s_new:
                _diff_state(
                    out, base + ".state", _get(s_old[tid], "state"), _get(s_new[tid], "state")
                )
        diffs = [classify(raw, tid) for raw in out.items]
        cause = next((d.hazard for d in diffs if d.path == base + ".error" and d.hazard), None)
        if cause is None and a is not None and b is not None and _sends_dropped(a, b):
            cause = "H-SEND-DROPPED"
        if cause is not None:  # work not done and its effects follow from the cause
            diffs = [
                _with_hazard(d, cause, policy)
                if d.kind == "node_not_executed" or _RESUME_EFFECT.search(d.path)
                else d
                for d in diffs
            ]
        result += _consequences(diffs, _RESUME_EFFECT, policy)
    return Diff(tuple(result))


def _sends_dropped(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """The old version ran mapped (``Send``) tasks on resume; the new ran nothing and is done.

    Canary nodes record a mapped task as ``node:item`` (``worker/trace.py``). A new
    version that finds nothing to run and reports the thread finished has lost the
    paused ``Send`` packets (H-SEND-DROPPED), not re-derived task ids.
    """
    ran_mapped = any(":" in dict(_trace_key(e))["node"] for e in _list(old, "trace"))
    return (
        ran_mapped
        and not _list(new, "trace")
        and _get(new, "outcome") == "completed"
        and not _get(new, "next")
    )


def _diff_resume(
    out: _Collector, base: str, old: Mapping[str, Any], new: Mapping[str, Any], boundary: bool
) -> None:
    e_old, e_new = _get(old, "error"), _get(new, "error")
    o_old, o_new = _get(old, "outcome"), _get(new, "outcome")
    if o_old == "skipped":  # no baseline: the old version did not resume this thread
        return
    if o_new == "skipped":
        reason = _get(new, "reason") or "no reason given"
        out.add(base + ".outcome", "outcome_changed", o_old, o_new, f"not resumed: {reason}")
        return
    if e_new and e_new != e_old:
        note = f"outcome {o_old} -> {o_new}" if o_old != o_new else ""
        out.add(base + ".error", "value_error", e_old, e_new, note)
    elif o_old != o_new:
        out.add(base + ".outcome", "outcome_changed", o_old, o_new)
    canary = _get(new, "canary") or _get(old, "canary")
    c_old = Counter(_trace_key(e, canary) for e in _list(old, "trace"))
    c_new = Counter(_trace_key(e, canary) for e in _list(new, "trace"))
    for key in sorted(set(c_old) | set(c_new)):
        n_old, n_new = c_old[key], c_new[key]
        if n_new == n_old:
            continue
        node = dict(key)["node"]
        path = f"{base}.trace[{','.join(f'{k}={_q(v)}' for k, v in key)}]"
        where = "".join(f" ({k} {v})" for k, v in key[1:])
        times = f"node {node}{where} ran {n_new} time(s) after the upgrade, {n_old} before"
        if n_new > n_old:
            why = "completed work re-executed" if n_old else "a node ran that did not run before"
            if boundary and n_old:
                why += " (task ids changed in langgraph 0.3.17: H-TASK-ID)"
            out.add(path, "node_reexecuted", n_old, n_new, f"{times}: {why}")
        else:
            out.add(path, "node_not_executed", n_old, n_new, f"{times}: work not done")
    _diff_next(out, base + ".next", _get(old, "next"), _get(new, "next"))
    d_old, d_new = _get(old, "values_digest"), _get(new, "values_digest")
    if d_old != d_new:
        out.add(base + ".values_digest", "value_changed", d_old, d_new, "final values differ")


TraceKey = tuple[tuple[str, str], ...]


def _trace_key(entry: Any, canary: Any = None) -> TraceKey:
    """What identifies one entry of a resume trace: ``(("node", name), ...)``.

    The worker reports ``{"node": "step_1"}`` (older workers: a bare ``"step_1"``).
    ``ns`` is kept only when non-empty, with its task ids stripped (they change
    across langgraph 0.3.17, H-TASK-ID, and must not split one node into two);
    ``canary`` only when it names another canary than the thread's. Other keys
    (timings, steps) are ignored: they are not identity.

    Args:
        entry: One trace entry.
        canary: The canary of the thread the trace belongs to.

    Returns:
        ``(("node", name),)`` plus ``("ns", ...)``/``("canary", ...)`` when meaningful.
    """
    if not isinstance(entry, Mapping):
        return (("node", str(entry)),)
    node = entry.get("node")
    key: list[tuple[str, str]] = [
        ("node", str(node) if node is not None else canonical_json(entry))
    ]
    ns = entry.get("ns")
    if isinstance(ns, str) and ns:
        key.append(("ns", strip_task_ids(ns)))
    other = entry.get("canary")
    if isinstance(other, str) and other and other != canary:
        key.append(("canary", other))
    return tuple(key)


def reclassify(diff: Diff, policy: Policy) -> Diff:
    """Apply a (further) user policy to an existing diff.

    Args:
        diff: A diff.
        policy: The policy to apply on top of the current classification.

    Returns:
        A new diff with the policy's decisions applied.
    """
    out = []
    for d in diff.differences:
        decided = policy.classify(d.path, d.hazard)
        out.append(replace(d, severity=decided[0], rule=decided[1]) if decided else d)
    return Diff(tuple(out))
