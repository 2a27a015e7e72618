"""Raw differences -> classified ones (hazard, benign rule, policy); ``compare_snapshots``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from migrator.compare.model import Diff, Difference, Severity, _message
from migrator.compare.threads import _diff_thread, _get
from migrator.compare.valuediff import _MISSING, _Collector, _q, _Raw
from migrator.policy import Policy
from migrator.rules import (
    BENIGN_RULES,
    Context,
    attribute_hazard,
    contains_send,
    crosses_task_id_boundary,
)


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
