"""Difference and Diff: the classified drift, its counts and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from migrator.compare.valuediff import _Raw
from migrator.values import canonical_json, error_text, redact_difference, short_hash, type_tag

SNAPSHOT_FORMAT = "langgraph-migrator/snapshot@1"
DIFF_FORMAT = "langgraph-migrator/diff@1"

Severity = Literal["breaking", "benign", "ignored"]
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
        show = _trunc if show_values else _brief
        absent = absent_side(self.kind)
        old = "absent" if absent == "old" else show(self.old)
        new = "absent" if absent == "new" else show(self.new)
        shown = f"{old} -> {new}"
        tags = "".join(f" [{t}]" for t in (self.hazard, self.rule) if t)
        text = f"{self.severity} {self.path}: {self.kind} {shown}{tags}"
        return f"{text} - {self.message}" if self.message else text

    def to_dict(self, show_values: bool = False) -> dict[str, Any]:
        """JSON-ready dict: path, kind, type tags and short hashes of the values.

        Args:
            show_values: Include the values themselves (``old``, ``new``); they may
                hold user data, so only when the user asked (``--show-values``).
        """
        absent = absent_side(self.kind)
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
            "old_type": None if absent == "old" else type_tag(self.old),
            "new_type": None if absent == "new" else type_tag(self.new),
            "old_hash": None if absent == "old" else short_hash(self.old),
            "new_hash": None if absent == "new" else short_hash(self.new),
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


def absent_side(kind: str) -> str | None:
    """The side a difference of ``kind`` has nothing on: ``old`` for ``*_added``,
    ``new`` for ``*_missing``, else None (both sides hold a value, ``None`` included:
    a key added with the value None is "absent -> null", not "absent -> absent")."""
    if kind.endswith("_added"):
        return "old"
    if kind.endswith("_missing"):
        return "new"
    return None


def _brief(value: Any) -> str:
    return "null" if value is None else f"{type_tag(value)}#{short_hash(value)}"


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
