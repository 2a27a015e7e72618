"""What a difference means: version ranges, built-in benign rules, hazard attribution.

Pure, no I/O, no langgraph import. ``migrator.compare`` finds the differences; this
module decides what each one is evidence of:

- ``parse_version`` / ``VersionRange``: dependency-free version ordering, so a
  rule applies only between the releases it was documented or observed for;
- ``BENIGN_RULES``: known, harmless format evolutions between released versions;
- ``crosses_task_id_boundary``: whether a comparison crosses langgraph 0.3.17
  (H-TASK-ID);
- ``hazard_for_error`` / ``attribute_hazard``: which catalogued hazard
  (``HAZARDS.md``) a difference or an error message points at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from migrator.values import base_tag, error_text, is_plain

Context = Literal["upgrade", "read-before-setup", "rollback"]

# --------------------------------------------------------------------------- versions


def parse_version(text: str) -> tuple[tuple[int, ...], int]:
    """A tiny, dependency-free version sort key.

    ``"0.3.17"`` -> ``((0, 3, 17), 1)``. Trailing zeros are dropped so ``1.0`` equals
    ``1.0.0``. A pre-release (``a``, ``b``, ``rc``, ``dev``) sorts before its release
    (``0``), a post-release after it (``2``); their numbers are not compared.

    Args:
        text: A version such as ``"2.0.8"``, ``"1.0.0rc1"`` or ``"0.2.56.post1"``.

    Returns:
        A tuple that orders like the versions.

    Raises:
        ValueError: ``text`` does not start with a number.
    """
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)(.*)", text)
    if not m:
        raise ValueError(f"not a version: {text!r}")
    release = [int(p) for p in m.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    rest = m.group(2).lower().lstrip(".-_+")
    phase = 1
    if rest.startswith(("a", "b", "c", "rc", "dev", "pre")):
        phase = 0
    elif rest.startswith(("post", "r")):
        phase = 2
    return tuple(release), phase


@dataclass(frozen=True)
class VersionRange:
    """A half-open range ``[at_least, below)``; either bound may be open (None).

    A range with a bound never contains an unknown version, so a rule whose
    versions cannot be checked does not apply (the difference stays breaking).
    """

    at_least: str | None = None
    below: str | None = None

    def contains(self, version: str | None) -> bool:
        """Whether ``version`` lies in the range.

        Args:
            version: A version string, or None when unknown.

        Returns:
            True when inside; False for an unknown or unparsable version under a bound.
        """
        if self.at_least is None and self.below is None:
            return True
        if not version:
            return False
        try:
            key = parse_version(version)
        except ValueError:
            return False
        if self.at_least is not None and key < parse_version(self.at_least):
            return False
        return not (self.below is not None and key >= parse_version(self.below))

    def __str__(self) -> str:
        if self.at_least and self.below:
            return f">={self.at_least},<{self.below}"
        if self.at_least:
            return f">={self.at_least}"
        return f"<{self.below}" if self.below else "any"


# --------------------------------------------------------------------------- rules


Predicate = Callable[[str, str, Any, Any], bool]
_Q = r'"(?:[^"\\]|\\.)*"'  # a JSON string inside a path


def _path_re(pattern: str, kinds: Iterable[str]) -> Predicate:
    rx = re.compile(pattern)
    wanted = frozenset(kinds)
    return lambda path, kind, old, new: kind in wanted and rx.search(path) is not None


def strip_task_ids(ns: str) -> str:
    """``"sub:1f2e|inner:9a8b"`` -> ``"sub|inner"`` (checkpoint_ns without task ids)."""
    return "|".join(part.split(":", 1)[0] for part in ns.split("|")) if ns else ns


def _task_id_predicate(path: str, kind: str, old: Any, new: Any) -> bool:
    if kind != "value_changed":
        return False
    if re.search(rf"\.tasks\[name={_Q}(?:,i=\d+)?\]\.id$", path):
        return True
    if re.search(rf"\.pending_writes\[task_id={_Q},channel={_Q}(?:,i=\d+)?\]\.task_id$", path):
        return True
    return (
        path.endswith(".checkpoint_ns")
        and isinstance(old, str)
        and isinstance(new, str)
        and strip_task_ids(old) == strip_task_ids(new)
    )


_INTERRUPT_AT = r'(?:\.interrupts\[\d+\]|channel="__interrupt__"(?:,i=\d+)?\]\.value\[\d+\])'
_CONFIG_COPIES = (
    "thread_id|checkpoint_ns|checkpoint_id|checkpoint_map|"
    "langgraph_step|langgraph_node|langgraph_triggers|langgraph_path|langgraph_checkpoint_ns"
)


def _field_absent_on_old(path: str, kind: str, old: Any, new: Any) -> bool:
    return (
        kind in ("tasks_changed", "interrupts_changed")
        and path.endswith((".tasks", ".interrupts"))
        and old is None
        and isinstance(new, list)
    )


def _interrupt_fields(path: str, kind: str, old: Any, new: Any) -> bool:
    if kind == "key_missing":
        return re.search(rf"{_INTERRUPT_AT}\.(?:resumable|ns|when)$", path) is not None
    if kind == "key_added":
        return re.search(rf"{_INTERRUPT_AT}\.(?:id|interrupt_id)$", path) is not None
    return False


@dataclass(frozen=True)
class BenignRule:
    """A known, harmless format evolution between released versions.

    Attributes:
        id: Stable id, shown in reports as the difference's ``rule``.
        description: What changes and why it is harmless; starts with the evidence
            ("documented: <source>" or "observed: <how>").
        evidence: ``"documented"`` (release notes, source) or ``"observed"`` (measured).
        package: The distribution whose versions the ranges refer to.
        old: Versions of ``package`` on the old side the rule applies to.
        new: Versions of ``package`` on the new side the rule applies to.
        predicate: ``(path, kind, old, new) -> bool``; keep it narrow.
    """

    id: str
    description: str
    evidence: Literal["documented", "observed"]
    package: str
    old: VersionRange
    new: VersionRange
    predicate: Predicate = field(repr=False, compare=False)

    def applies(
        self,
        path: str,
        kind: str,
        old: Any,
        new: Any,
        old_versions: Mapping[str, Any],
        new_versions: Mapping[str, Any],
    ) -> bool:
        """Whether this rule classifies the difference as benign.

        Args:
            path: Difference path.
            kind: Difference kind.
            old: Old value.
            new: New value.
            old_versions: The old snapshot's ``versions``.
            new_versions: The new snapshot's ``versions``.

        Returns:
            True when both sides' versions are in range and the predicate holds.
        """
        return (
            self.old.contains(_version_of(old_versions, self.package))
            and self.new.contains(_version_of(new_versions, self.package))
            and self.predicate(path, kind, old, new)
        )


def _sends_as_pregel_tasks(path: str, kind: str, old: Any, new: Any) -> bool:
    """Paused Send packets read back as the ``__pregel_tasks`` channel value (Sends only)."""
    return (
        kind == "key_added"
        and path.endswith(".channel_values.__pregel_tasks")
        and isinstance(new, list)
        and bool(new)
        and all(base_tag(v) == "Send" for v in new)
    )


BENIGN_RULES: tuple[BenignRule, ...] = (
    BenignRule(
        id="state-tasks-absent-0.2",
        description=(
            "observed (the snapshot worker reads no StateSnapshot.tasks from langgraph "
            "0.2.0, so state tasks/interrupts are null on that side): there is nothing "
            "old to compare with. Only null -> list on the old side is benign; a list "
            "that becomes null, or any task or interrupt that differs, stays breaking."
        ),
        evidence="observed",
        package="langgraph",
        old=VersionRange(below="0.3"),
        new=VersionRange(),
        predicate=_field_absent_on_old,
    ),
    BenignRule(
        id="task-id-derivation-0.3.17",
        description=(
            "observed (HAZARDS.md H-TASK-ID, measured 0.3.16 vs 0.3.17 and newer): task ids "
            "are derived differently from langgraph 0.3.17, so tasks[].id, "
            "pending_writes[].task_id and the task-id suffix of checkpoint_ns "
            "(sub:<task_id>) differ. Benign in themselves; their consequences (orphaned "
            "writes, grown next, lost subgraph state, re-executed nodes) stay breaking."
        ),
        evidence="observed",
        package="langgraph",
        old=VersionRange(below="0.3.17"),
        new=VersionRange(at_least="0.3.17"),
        predicate=_task_id_predicate,
    ),
    BenignRule(
        id="interrupt-fields-0.6",
        description=(
            "documented (langgraph 0.6 release notes, Interrupt class): Interrupt lost its "
            "resumable/ns/when fields and gained an id; an interrupt's value is still "
            "compared and a change there stays breaking. (The built-in snapshot encoder "
            "keeps only Interrupt.value, so this matters for richer encodings only.)"
        ),
        evidence="documented",
        package="langgraph",
        old=VersionRange(below="0.6"),
        new=VersionRange(at_least="0.6"),
        predicate=_interrupt_fields,
    ),
    BenignRule(
        id="pending-sends-migrated-2.0.25",
        description=(
            "documented (langgraph-checkpoint-postgres BasePostgresSaver._migrate_pending_sends, "
            "absent up to 2.0.13, present from 2.0.25) and observed (2.0.8 ... 2.0.13 -> "
            "3.2.0): a checkpoint whose parent left Send packets in checkpoint_writes is "
            "read with those packets as the __pregel_tasks channel value. Only the key "
            "appearing with Send values is benign; anything else in it is H-SEND-DROPPED."
        ),
        evidence="documented",
        package="langgraph-checkpoint-postgres",
        old=VersionRange(at_least="1.0.9", below="2.0.14"),
        new=VersionRange(at_least="2.0.25"),
        predicate=_sends_as_pregel_tasks,
    ),
    BenignRule(
        id="pending-sends-restored-1.0.0",
        description=(
            "observed (checkpoint-postgres 1.0.0 -> 3.2.0 through the dump/restore "
            "fallback, the send_paused canary: the restored thread resumes with work x3, "
            "then reduce, as 1.0.0 does): 1.0.0 kept paused Send packets in the checkpoint "
            "JSON (pending_sends); the restore writes them as the parent's __pregel_tasks "
            "writes, which newer versions read as the __pregel_tasks channel value. Only "
            "the key appearing with Send values is benign; read in place, 1.0.0's sends "
            "are dropped (next becomes empty: H-SEND-DROPPED, breaking)."
        ),
        evidence="observed",
        package="langgraph-checkpoint-postgres",
        old=VersionRange(at_least="1.0.0", below="1.0.9"),
        new=VersionRange(at_least="2.0.25"),
        predicate=_sends_as_pregel_tasks,
    ),
    BenignRule(
        id="metadata-config-copies",
        description=(
            "documented (langgraph-checkpoint get_checkpoint_metadata / "
            "EXCLUDED_METADATA_KEYS, langgraph#5133): checkpoint metadata may or may not "
            "carry copies of the config address (thread_id, checkpoint_ns, checkpoint_id, "
            "checkpoint_map, langgraph_step/node/triggers/path/checkpoint_ns) depending on "
            "the version that wrote it; the checkpoint's own columns hold the truth. Only "
            "a key appearing or disappearing is benign, a changed value is not."
        ),
        evidence="documented",
        package="langgraph",
        old=VersionRange(),
        new=VersionRange(),
        predicate=_path_re(rf"\.metadata\.(?:{_CONFIG_COPIES})$", ("key_missing", "key_added")),
    ),
    BenignRule(
        id="metadata-writes-dropped-0.5",
        description=(
            "documented (langgraph#4822, #5009; first release inferred, not measured): "
            "checkpoints written by langgraph 0.5 and newer carry no metadata.writes (the "
            "same data is in checkpoint_writes). Only the key's absence is benign; stored "
            "writes read back as raw envelopes are H-METADATA-WRITES, breaking."
        ),
        evidence="documented",
        package="langgraph",
        old=VersionRange(below="0.5"),
        new=VersionRange(at_least="0.5"),
        predicate=_path_re(r"\.metadata\.writes$", ("key_missing",)),
    ),
)


def _version_of(versions: Mapping[str, Any], package: str) -> str | None:
    value = versions.get(package) if isinstance(versions, Mapping) else None
    return value if isinstance(value, str) else None


def crosses_task_id_boundary(
    old_versions: Mapping[str, Any], new_versions: Mapping[str, Any]
) -> bool:
    """Whether old langgraph is <= 0.3.16 and new is >= 0.3.17 (H-TASK-ID).

    Args:
        old_versions: The old side's ``versions`` mapping.
        new_versions: The new side's ``versions`` mapping.

    Returns:
        True when the task-id derivation differs between the two sides.
    """
    return VersionRange(below="0.3.17").contains(
        _version_of(old_versions, "langgraph")
    ) and VersionRange(at_least="0.3.17").contains(_version_of(new_versions, "langgraph"))


# --------------------------------------------------------------------------- hazards


def contains_send(value: Any) -> bool:
    """Whether a tagged value holds a ``Send`` anywhere (a paused fan-out)."""
    if isinstance(value, Mapping):
        if value.get("__type__") == "Send":
            return True
        return any(contains_send(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_send(v) for v in value)
    return False


_ERROR_HAZARDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("Unknown serialization type", "KeyError: 'pending_sends'"), "H-ROLLBACK-NULL"),
    (("'Interrupt' object is not subscriptable",), "H-INTERRUPT-RESUME"),
    (("DuplicateColumn",), "H-DUP-COLUMN"),
    (("cannot run inside a transaction block", "ActiveSqlTransaction"), "H-TX-CONCURRENTLY"),
    (("not JSON serializable",), "H-1.0.0-JSON"),
)


def hazard_for_error(text: str, context: Context = "upgrade") -> str | None:
    """The hazard an error message points at, if it is a recognised one.

    Args:
        text: An error text such as ``"UndefinedColumn: column cw.task_path does not exist"``.
        context: ``read-before-setup`` when the read ran before the new ``setup()``
            (rolling deploy), ``upgrade`` after it, ``rollback`` for old code reading
            what new code wrote.

    Returns:
        A hazard id, or None.
    """
    for needles, hazard in _ERROR_HAZARDS:
        if any(n in text for n in needles):
            return hazard
    if "task_path" in text or "UndefinedColumn" in text:
        return "H-READ-BEFORE-SETUP" if context == "read-before-setup" else "H-LEDGER-SHIFT"
    return None


_NESTED_STATE = re.compile(r"\.tasks\[name=.*\]\.state\.")  # a subgraph task's own state


def _is_lc_envelope(value: Any) -> bool:
    return isinstance(value, Mapping) and "lc" in value and "type" in value and "id" in value


def attribute_hazard(
    path: str,
    kind: str,
    old: Any,
    new: Any,
    *,
    context: Context = "upgrade",
    task_id_boundary: bool = False,
    old_has_send: bool = False,
) -> str | None:
    """Tag a difference with the hazard it is evidence of, when the pattern is recognisable.

    Args:
        path: Difference path.
        kind: Difference kind.
        old: Old value.
        new: New value.
        context: See ``hazard_for_error``.
        task_id_boundary: Old langgraph <= 0.3.16 and new >= 0.3.17.
        old_has_send: The old thread held ``Send`` values (paused fan-out).

    Returns:
        A hazard id from HAZARDS.md, or None.
    """
    if kind in ("value_error", "checkpoint_error", "thread_error") or (
        kind == "outcome_changed" and new == "error"
    ):
        return hazard_for_error(error_text(new), context)
    if kind == "type_changed":
        if ".metadata.writes" in path and (_is_lc_envelope(new) or base_tag(old) == "message"):
            return "H-METADATA-WRITES"
        if base_tag(old) == "Send" and is_plain(new):
            return "H-SEND-DROPPED"  # a stored Send reads back as a raw envelope: not a task
        if base_tag(old) in ("pydantic", "dataclass", "enum") and is_plain(new):
            return "H-STRICT-MSGPACK"
        return None
    if kind == "key_added" and path.endswith(".channel_values.__pregel_tasks"):
        if isinstance(new, list) and any(base_tag(v) != "Send" for v in new):
            return "H-SEND-DROPPED"  # pending sends migrated, but not as Send objects
        return None
    if kind == "next_changed":
        if old and not new and old_has_send:
            return "H-SEND-DROPPED"
        if task_id_boundary and set(map(str, new or [])) > set(map(str, old or [])):
            return "H-TASK-ID"
        if task_id_boundary and _NESTED_STATE.search(path):
            return "H-TASK-ID"  # paused subgraph state lost: the child starts over
        return None
    if kind == "value_changed" and path.endswith("].error") and isinstance(new, str) and new:
        return hazard_for_error(new, context)  # a task failed with a new error
    if not task_id_boundary or _field_absent_on_old(path, kind, old, new):
        return None  # nothing old to compare with: left to the benign rule
    if kind == "tasks_changed" and path.endswith("]"):  # one task missing or added
        return "H-TASK-ID"
    if kind in ("pending_writes_changed", "node_reexecuted", "node_not_executed"):
        return "H-TASK-ID"
    if kind == "value_changed" and re.search(r"\]\.error$", path) and old and not new:
        return "H-TASK-ID"  # a failed task's error disappeared: its writes were orphaned
    if kind == "value_changed" and path.endswith(".state") and old and not new:
        return "H-TASK-ID"  # paused subgraph state lost
    if _task_id_predicate(path, kind, old, new):
        return None  # the id difference itself: left to the benign rule
    if kind == "interrupts_changed" or _NESTED_STATE.search(path):
        return "H-TASK-ID"  # interrupts or nested subgraph state changed: new id, empty namespace
    return None
