"""One thread's raw differences: checkpoints, pending writes, tasks, state and history."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from migrator.compare.valuediff import _MISSING, _SECTION_LABELS, _Collector, _diff_keys, _q
from migrator.rules import (
    strip_task_ids,
)
from migrator.values import canonical_json

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
