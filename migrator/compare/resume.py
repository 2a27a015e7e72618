"""Resume results -> drift: outcomes, node traces, ``Send`` fan-outs (``compare_resumes``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from migrator.compare.classify import (
    _RESUME_EFFECT,
    _Classifier,
    _consequences,
    _threads,
    _versions,
    _with_hazard,
)
from migrator.compare.model import Diff, Difference
from migrator.compare.threads import _diff_next, _diff_state, _get, _list
from migrator.compare.valuediff import _MISSING, _Collector, _q
from migrator.policy import Policy
from migrator.rules import (
    Context,
    crosses_task_id_boundary,
    strip_task_ids,
)
from migrator.values import canonical_json


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
