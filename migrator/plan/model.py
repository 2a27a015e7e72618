"""The plan's value types: target, steps, repairs, hazards, the plan itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from migrator.schema import (
    SchemaDifference,
)

if TYPE_CHECKING:
    from migrator.plan.blast import DataScan

HazardSeverity = Literal["error", "warning", "advice"]
Progress = Callable[[str], None]

PLAN_FORMAT = "langgraph-migrator/plan@1"
#: A table this big makes an ACCESS EXCLUSIVE or SHARE lock a deploy risk.
LOCK_RISK_BYTES = 1 << 30
LOCK_RISK_ROWS = 1_000_000
#: PgBouncer's default port.
POOLER_PORT = 6432
#: Errors that mean "the object is already there": migrate records the step as done.
ALREADY_EXISTS = frozenset({"DuplicateColumn", "DuplicateTable", "DuplicateObject"})


# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class TargetInfo:
    """The target version's migrations, from the worker's ``info`` op."""

    label: str
    migrations: tuple[str, ...]
    has_ledger: bool = True
    setup_sql: tuple[str, ...] = ()
    versions: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_info(cls, label: str, info: Mapping[str, Any]) -> TargetInfo:
        """Build from the ``info`` op's answer."""
        return cls(
            label=label,
            migrations=tuple(str(m) for m in info.get("migrations") or ()),
            has_ledger=bool(info.get("has_ledger", True)),
            setup_sql=tuple(str(s) for s in info.get("setup_sql") or ()),
            versions=dict(info.get("versions") or {}),
        )


@dataclass(frozen=True)
class Step:
    """One statement ``setup()`` will run, and what the rehearsal saw it do.

    Attributes:
        v: Its ``MIGRATIONS`` index (None for a ledger-less version's setup SQL).
        sql: The statement.
        always: ``MIGRATIONS[0]``, which ``setup()`` runs on every call.
        transactional: False for ``CONCURRENTLY`` (cannot run in a transaction block).
        outcome: ``ok``, ``fails`` or ``not_rehearsed``.
        error_kind: The exception class name (``DuplicateColumn``) when it fails.
        error: The first line of the error.
    """

    v: int | None
    sql: str
    always: bool = False
    transactional: bool = True
    outcome: str = "not_rehearsed"
    error_kind: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "v": self.v,
            "sql": self.sql,
            "always": self.always,
            "transactional": self.transactional,
            "outcome": self.outcome,
            "error_kind": self.error_kind,
            "error": self.error,
        }


@dataclass(frozen=True)
class Repair:
    """Idempotent DDL that fixes one difference from the reference.

    Attributes:
        kind: The difference kind it repairs.
        table: The table.
        name: The column or index.
        sql: Statements, run in order, each in autocommit.
        undo: Statements that take it back (empty when nothing needs undoing).
        locks: ``(table, lock mode)`` pairs the statements take.
    """

    kind: str
    table: str
    name: str | None
    sql: tuple[str, ...]
    undo: tuple[str, ...] = ()
    locks: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """``kind table.name``."""
        return f"{self.kind} {self.table}{'.' + self.name if self.name else ''}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "kind": self.kind,
            "table": self.table,
            "name": self.name,
            "sql": list(self.sql),
            "undo": list(self.undo),
        }


@dataclass(frozen=True)
class Hazard:
    """A reason the deploy could fail, lose data or need care.

    Attributes:
        id: Stable id: ``H-...`` from HAZARDS.md, ``P-...`` for plan-only findings.
        severity: ``error`` (the deploy would fail or lose data), ``warning``, ``advice``.
        message: One line: what and where.
        fix: One line: what to do.
        migrate_repairs: True when ``migrate`` handles it itself.
        data: A data hazard (stored threads the target reads or resumes wrongly),
            not a schema one: ``migrate`` does not refuse to start for it; its
            canary verification and the dump/restore fallback deal with it.
    """

    id: str
    severity: HazardSeverity
    message: str
    fix: str
    migrate_repairs: bool = False
    data: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "id": self.id,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "migrate_repairs": self.migrate_repairs,
            "data": self.data,
        }


@dataclass(frozen=True)
class ConnectionProbe:
    """What the live connection revealed about poolers in between."""

    pid_first: int
    pid_second: int
    connected_port: int | None
    server_port: int | None

    @property
    def pid_changed(self) -> bool:
        """Two transactions ran on two backends: a transaction-mode pooler."""
        return self.pid_first != self.pid_second

    @property
    def proxied(self) -> bool:
        """The port we reached is not the server's own, or is PgBouncer's default."""
        if self.connected_port is None or self.server_port is None:
            return False
        return self.connected_port != self.server_port or self.connected_port == POOLER_PORT


@dataclass(frozen=True)
class Plan:
    """Everything ``plan`` found; ``migrate`` follows it.

    Attributes:
        target: The target version set's label.
        versions: Installed versions of the target environment.
        database: Redacted DSN of the live database.
        schema: The schema of the checkpoint tables.
        server_version: The live server's version.
        ledger: The live ledger rows (None without a ledger table).
        steps: What ``setup()`` will run, with rehearsal outcomes.
        live_diff: Live schema vs reference (what new code would meet before ``setup()``).
        rehearsal_diff: Schema after the rehearsed ``setup()`` vs reference.
        repairs: What ``migrate`` will apply after ``setup()``.
        hazards: Findings, errors first.
        notes: Free text (scratch server used, fallbacks).
        data: The stored threads' era and the data hazards' blast radius (None:
            no checkpoint tables, or not scanned).
    """

    target: str
    versions: Mapping[str, Any]
    database: str
    schema: str
    server_version: str
    ledger: tuple[int, ...] | None
    steps: tuple[Step, ...]
    live_diff: tuple[SchemaDifference, ...]
    rehearsal_diff: tuple[SchemaDifference, ...]
    repairs: tuple[Repair, ...]
    hazards: tuple[Hazard, ...]
    notes: tuple[str, ...] = ()
    data: DataScan | None = None

    @property
    def unsafe(self) -> bool:
        """A hazard would make the deploy fail or lose data (``plan`` exits 1)."""
        return any(h.severity == "error" for h in self.hazards)

    @property
    def blocking(self) -> list[Hazard]:
        """Errors ``migrate`` cannot handle itself: it refuses to start."""
        return [
            h
            for h in self.hazards
            if h.severity == "error" and not h.migrate_repairs and not h.data
        ]

    @property
    def pending(self) -> list[Step]:
        """Steps that are new work (not the always-run ``MIGRATIONS[0]``)."""
        return [s for s in self.steps if not s.always]

    @property
    def hazard_ids(self) -> list[str]:
        """Distinct hazard ids, sorted."""
        return sorted({h.id for h in self.hazards})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``plan --json``)."""
        return {
            "format": PLAN_FORMAT,
            "verdict": "unsafe" if self.unsafe else "safe",
            "target": self.target,
            "versions": dict(self.versions),
            "database": self.database,
            "schema": self.schema,
            "server_version": self.server_version,
            "ledger": None if self.ledger is None else list(self.ledger),
            "steps": [s.to_dict() for s in self.steps],
            "live_diff": [d.to_dict() for d in self.live_diff],
            "rehearsal_diff": [d.to_dict() for d in self.rehearsal_diff],
            "repairs": [r.to_dict() for r in self.repairs],
            "hazards": [h.to_dict() for h in self.hazards],
            "hazard_ids": self.hazard_ids,
            "notes": list(self.notes),
            "data": None if self.data is None else self.data.to_dict(),
        }
