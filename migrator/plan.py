"""``plan``: what ``setup()`` of a target version will do to a live schema, and what breaks.

Pure part (no I/O): :func:`pending_statements` (which ``MIGRATIONS`` entries run,
from the ledger's max ``v``, exactly as ``setup()`` decides), :func:`statement_locks`,
:func:`repairs_for` (idempotent DDL that turns a schema into the reference),
:func:`undo_statements`, :func:`build_plan` (hazards with stable ids) and
:func:`render_plan`.

I/O part (:func:`make_plan`): the live database is only read, in a ``READ ONLY``
transaction. The reference schema and the rehearsal are built on a scratch server
(an ephemeral local cluster of the live server's major, or ``--scratch-dsn``):
the reference is the target's own ``setup()`` on an empty database; the rehearsal
is an empty clone of the live checkpoint tables (structure only, INVALID indexes
marked invalid again when the scratch role may, ledger rows copied) on which the
pending statements run one by one in autocommit, as ``setup()`` runs them.

Pooler detection: ``pg_backend_pid()`` is read in two consecutive transactions of
one connection; a different backend means a transaction-mode pooler, where the
migrator's session advisory lock does not hold (``P-POOLER``, error). A server
``port`` that differs from the port we connected to, or port 6432, means a proxy or
pooler in between (``P-POOLER``, warning).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql

from migrator import envs
from migrator.errors import ConfigError, ConnectError, ProvisionError
from migrator.postgres import redact_dsn, scratch_database
from migrator.postgres.dsn import redact_text
from migrator.schema import (
    CHECKPOINT_TABLES,
    LEDGER_TABLE,
    SchemaDifference,
    SchemaModel,
    diff_schemas,
    read_catalog,
)

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

CURRENT_SCHEMA_SQL = "SELECT current_schema()"
BACKEND_PID_SQL = "SELECT pg_backend_pid()"
INSERT_LEDGER_SQL = sql.SQL("INSERT INTO {} (v) VALUES (%s) ON CONFLICT DO NOTHING")
MARK_INVALID_SQL = "UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass"

#: Postgres' table-lock conflict matrix (docs: "Conflicting Lock Modes").
#: Postgres' table lock modes, weakest first.
LOCK_MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
#: Which modes each mode conflicts with, as indexes into ``LOCK_MODES``
#: (docs: "Conflicting Lock Modes").
_CONFLICT_INDEXES = (
    (7,),
    (6, 7),
    (4, 5, 6, 7),
    (3, 4, 5, 6, 7),
    (2, 3, 5, 6, 7),
    (2, 3, 4, 5, 6, 7),
    (1, 2, 3, 4, 5, 6, 7),
    (0, 1, 2, 3, 4, 5, 6, 7),
)
LOCK_CONFLICTS: Mapping[str, frozenset[str]] = {
    mode: frozenset(LOCK_MODES[i] for i in idx)
    for mode, idx in zip(LOCK_MODES, _CONFLICT_INDEXES, strict=True)
}

_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = rf"(?:{_IDENT}\.)?(?P<table>{_IDENT})"
_ALTER_RE = re.compile(rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?{_QUALIFIED}", re.I)
_INDEX_RE = re.compile(
    rf"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?P<conc>CONCURRENTLY\s+)?.*?\sON\s+(?:ONLY\s+)?"
    rf"{_QUALIFIED}",
    re.I | re.S,
)
_CONCURRENTLY_RE = re.compile(r"\bCONCURRENTLY\b", re.I)


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
    """

    id: str
    severity: HazardSeverity
    message: str
    fix: str
    migrate_repairs: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "id": self.id,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "migrate_repairs": self.migrate_repairs,
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

    @property
    def unsafe(self) -> bool:
        """A hazard would make the deploy fail or lose data (``plan`` exits 1)."""
        return any(h.severity == "error" for h in self.hazards)

    @property
    def blocking(self) -> list[Hazard]:
        """Errors ``migrate`` cannot handle itself: it refuses to start."""
        return [h for h in self.hazards if h.severity == "error" and not h.migrate_repairs]

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
        }


# ------------------------------------------------------------ pure logic


def pending_statements(
    target: TargetInfo, ledger: Sequence[int] | None
) -> list[tuple[int | None, str, bool]]:
    """Which statements ``setup()`` runs, decided as ``setup()`` decides (pure).

    ``setup()`` always runs ``MIGRATIONS[0]``, reads ``max(v)`` of the ledger
    (-1 when empty or absent) and runs every later entry. A version without a
    ledger runs its ``CREATE TABLE IF NOT EXISTS`` statements every time.

    Args:
        target: The target version's migrations.
        ledger: The live ledger rows, or None without a ledger table.

    Returns:
        ``(v, sql, always)`` triples in execution order.
    """
    if not target.has_ledger:
        return [(None, s, True) for s in target.setup_sql]
    if not target.migrations:
        return []
    done = max(ledger) if ledger else -1
    out: list[tuple[int | None, str, bool]] = [(0, target.migrations[0], done >= 0)]
    out += [
        (v, target.migrations[v], False) for v in range(max(done + 1, 1), len(target.migrations))
    ]
    return out


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def statement_locks(statement: str) -> list[tuple[str, str]]:
    """Table locks a migration statement takes (pure; best effort on its text).

    ``CREATE INDEX CONCURRENTLY`` takes SHARE UPDATE EXCLUSIVE and then waits for
    writers (a SHARE conflict), so both are listed.

    Args:
        statement: One SQL statement.

    Returns:
        ``(table, mode)`` pairs.
    """
    match = _ALTER_RE.match(statement)
    if match:
        return [(_unquote(match["table"]), "AccessExclusiveLock")]
    match = _INDEX_RE.match(statement)
    if match:
        table = _unquote(match["table"])
        if match.group("conc"):
            return [(table, "ShareUpdateExclusiveLock"), (table, "ShareLock")]
        return [(table, "ShareLock")]
    return []


def conflicting_locks(
    model: SchemaModel, wanted: Sequence[tuple[str, str]]
) -> list[tuple[str, str, int, float | None]]:
    """Locks other sessions hold that the ``wanted`` locks would wait for (pure).

    Args:
        model: A live model (its ``locks``).
        wanted: ``(table, mode)`` pairs.

    Returns:
        ``(table, held mode, pid, transaction age in seconds)``, one per holder.
    """
    out: list[tuple[str, str, int, float | None]] = []
    seen: set[tuple[str, int]] = set()
    for lock in model.locks:
        if not lock.granted or (lock.table, lock.pid) in seen:
            continue
        for table, mode in wanted:
            if table == lock.table and lock.mode in LOCK_CONFLICTS.get(mode, frozenset()):
                out.append((lock.table, lock.mode, lock.pid, lock.xact_age_s))
                seen.add((lock.table, lock.pid))
                break
    return out


def _ident(name: str) -> str:
    return sql.Identifier(name).as_string(None)


def repairs_for(
    diffs: Sequence[SchemaDifference], reference: SchemaModel, actual: SchemaModel
) -> list[Repair]:
    """Idempotent DDL that brings ``actual`` to ``reference`` (pure).

    Handled: missing tables, missing columns (with the reference's definition),
    nullability loosened by the reference, defaults, missing and INVALID indexes
    (dropped and rebuilt ``CONCURRENTLY``), and missing ledger rows (last, once
    the schema is right). Type or primary-key differences are not repaired.

    Args:
        diffs: From :func:`~migrator.schema.diff_schemas` (``actual`` vs ``reference``).
        reference: The reference schema.
        actual: The schema the diffs were computed on.

    Returns:
        Repairs in a safe order: tables, columns, indexes, ledger.
    """
    tables: list[Repair] = []
    columns: list[Repair] = []
    indexes: list[Repair] = []
    ledger: list[Repair] = []
    for d in diffs:
        ref_table = reference.tables.get(d.table)
        t = _ident(d.table)
        if d.kind == "missing_table" and ref_table is not None:
            tables.append(
                Repair(
                    d.kind,
                    d.table,
                    None,
                    tuple(
                        s.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1)
                        for s in ref_table.create_sql()
                    ),
                    undo=(f"DROP TABLE IF EXISTS {t}",),
                )
            )
        elif d.kind == "missing_column" and ref_table is not None and d.name:
            col = ref_table.column(d.name)
            if col is None or (col.not_null and col.default is None):
                continue  # cannot be added to a table with rows: reported, not repaired
            c = _ident(d.name)
            columns.append(
                Repair(
                    d.kind,
                    d.table,
                    d.name,
                    (f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {col.definition()}",),
                    undo=(f"ALTER TABLE {t} DROP COLUMN IF EXISTS {c}",),
                    locks=((d.table, "AccessExclusiveLock"),),
                )
            )
        elif d.kind == "column_nullability" and d.name and d.expected == "NULL":
            c = _ident(d.name)
            columns.append(
                Repair(
                    d.kind,
                    d.table,
                    d.name,
                    (f"ALTER TABLE {t} ALTER COLUMN {c} DROP NOT NULL",),
                    undo=(f"ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL",),
                    locks=((d.table, "AccessExclusiveLock"),),
                )
            )
        elif d.kind == "column_default" and d.name:
            c = _ident(d.name)

            def _set(expr: str | None, c: str = c, t: str = t) -> str:
                tail = "DROP DEFAULT" if expr is None else f"SET DEFAULT {expr}"
                return f"ALTER TABLE {t} ALTER COLUMN {c} {tail}"

            columns.append(
                Repair(
                    d.kind,
                    d.table,
                    d.name,
                    (_set(d.expected),),
                    undo=(_set(d.actual),),
                    locks=((d.table, "AccessExclusiveLock"),),
                )
            )
        elif d.kind in ("missing_index", "invalid_index") and d.name:
            ref_index = ref_table.index(d.name) if ref_table else None
            act_table = actual.tables.get(d.table)
            own = act_table.index(d.name) if act_table else None
            source = ref_index or own
            if source is None:
                continue
            statements: tuple[str, ...] = (source.create_sql(concurrently=True),)
            undo: tuple[str, ...] = (f"DROP INDEX CONCURRENTLY IF EXISTS {_ident(d.name)}",)
            if d.kind == "invalid_index":
                # IF NOT EXISTS skips an INVALID index forever: drop it first. Nothing
                # to undo: an INVALID index is never used.
                statements = (f"DROP INDEX CONCURRENTLY IF EXISTS {_ident(d.name)}",) + statements
                undo = ()
            indexes.append(
                Repair(
                    d.kind,
                    d.table,
                    d.name,
                    statements,
                    undo=undo,
                    locks=((d.table, "ShareUpdateExclusiveLock"), (d.table, "ShareLock")),
                )
            )
    if reference.ledger is not None:
        missing = sorted(set(reference.ledger) - set(actual.ledger or ()))
        if missing and (actual.ledger is not None or LEDGER_TABLE in reference.tables):
            values = ", ".join(f"({v})" for v in missing)
            vlist = ", ".join(str(v) for v in missing)
            lt = _ident(LEDGER_TABLE)
            ledger.append(
                Repair(
                    "ledger_rows",
                    LEDGER_TABLE,
                    "v",
                    (f"INSERT INTO {lt} (v) VALUES {values} ON CONFLICT DO NOTHING",),
                    undo=(f"DELETE FROM {lt} WHERE v IN ({vlist})",),
                    locks=((LEDGER_TABLE, "RowExclusiveLock"),),
                )
            )
    return tables + columns + indexes + ledger


def undo_statements(before: SchemaModel, after: SchemaModel) -> list[str]:
    """Statements that take ``after`` back to ``before`` where that is safe (pure).

    Drops tables, columns and indexes ``after`` added, restores NOT NULL that was
    dropped, and deletes ledger rows that were added (or drops a ledger table that
    did not exist). Rebuilt indexes are kept: they replace INVALID ones.

    Args:
        before: The schema before ``migrate`` changed anything.
        after: The schema now.

    Returns:
        Statements, in the order they should run.
    """
    out: list[str] = []
    for name in CHECKPOINT_TABLES:
        if name in after.tables and name not in before.tables and name != LEDGER_TABLE:
            out.append(f"DROP TABLE IF EXISTS {_ident(name)}")
    for name, at in after.tables.items():
        bt = before.tables.get(name)
        if bt is None:
            continue
        t = _ident(name)
        before_indexes = {i.name for i in bt.indexes}
        for index in at.indexes:
            if index.name not in before_indexes and not index.constraint_backed:
                out.append(f"DROP INDEX CONCURRENTLY IF EXISTS {_ident(index.name)}")
        for col in at.columns:
            old = bt.column(col.name)
            if old is None:
                out.append(f"ALTER TABLE {t} DROP COLUMN IF EXISTS {_ident(col.name)}")
            elif old.not_null and not col.not_null:
                out.append(f"ALTER TABLE {t} ALTER COLUMN {_ident(col.name)} SET NOT NULL")
    lt = _ident(LEDGER_TABLE)
    if after.ledger is not None and before.ledger is None:
        out.append(f"DROP TABLE IF EXISTS {lt}")
    elif after.ledger is not None and before.ledger is not None:
        added = sorted(set(after.ledger) - set(before.ledger))
        if added:
            out.append(f"DELETE FROM {lt} WHERE v IN ({', '.join(map(str, added))})")
    return out


def _size(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _ledger_text(ledger: Sequence[int] | None) -> str:
    if ledger is None:
        return "no ledger table"
    if not ledger:
        return "empty ledger"
    return f"ledger v{min(ledger)}..v{max(ledger)} ({len(ledger)} rows)"


def _privilege_hazards(
    live: SchemaModel, steps: Sequence[Step], repairs: Sequence[Repair]
) -> list[Hazard]:
    out: list[Hazard] = []
    p = live.privileges
    role = p.role or "the connecting role"
    if p.superuser:
        return out
    if steps and not p.schema_create:
        out.append(
            Hazard(
                "P-PRIVILEGE",
                "error",
                f"role {role} lacks CREATE on schema {live.schema}: setup() runs "
                f"CREATE TABLE IF NOT EXISTS on every call and fails with InsufficientPrivilege",
                f"GRANT CREATE ON SCHEMA {live.schema} TO {role}, or migrate as the tables' owner",
            )
        )
    touched = {t for s in steps for t, _ in statement_locks(s.sql)} | {
        t for r in repairs for t, _ in r.locks if r.kind != "ledger_rows"
    }
    not_owned = sorted(t for t in touched if t in live.tables and not live.tables[t].owned)
    if not_owned:
        owners = ", ".join(f"{t} (owner {live.tables[t].owner})" for t in not_owned)
        out.append(
            Hazard(
                "P-PRIVILEGE",
                "error",
                f"role {role} does not own {owners}: ALTER TABLE / CREATE INDEX will fail",
                "migrate as the tables' owner (or a member of the owner role)",
            )
        )
    ledger = live.tables.get(LEDGER_TABLE)
    if ledger is not None and "INSERT" not in ledger.privileges and steps:
        out.append(
            Hazard(
                "P-PRIVILEGE",
                "error",
                f"role {role} may not INSERT into {LEDGER_TABLE}: setup() cannot record steps",
                f"GRANT INSERT ON {LEDGER_TABLE} TO {role}",
            )
        )
    return out


def build_plan(
    *,
    live: SchemaModel,
    target: TargetInfo,
    steps: Sequence[Step],
    rehearsed: SchemaModel,
    reference: SchemaModel,
    probe: ConnectionProbe | None,
    database: str,
    notes: Sequence[str] = (),
) -> Plan:
    """Assemble the plan and its hazards (pure).

    Args:
        live: The live schema (read-only introspection).
        target: The target's migrations.
        steps: Pending statements with their rehearsal outcomes.
        rehearsed: The clone's schema after the rehearsal.
        reference: What the target's ``setup()`` builds on an empty schema.
        probe: The pooler probe of the live connection (None: not probed).
        database: Redacted DSN for the report.
        notes: Notes to carry.

    Returns:
        The plan.
    """
    live_diff = diff_schemas(live, reference)
    rehearsal_diff = diff_schemas(rehearsed, reference)
    # The rehearsal clone carries the ledger as migrate leaves it after "already
    # exists" steps; repairs are computed on what the real setup() will leave.
    repairs = repairs_for(rehearsal_diff, reference, rehearsed)
    hazards: list[Hazard] = []
    pending = [s for s in steps if not s.always]

    if live.has_checkpoint_tables and live.ledger is None:
        hazards.append(
            Hazard(
                "H-NO-LEDGER",
                "warning",
                f"checkpoint tables exist but there is no {LEDGER_TABLE} table (set up by "
                f"checkpoint-postgres 1.0.x): setup() will run all {len(pending)} migrations "
                "over existing tables and data",
                "run `langgraph-migrator migrate` (rehearsed below); do not treat this "
                "database as empty",
                migrate_repairs=True,
            )
        )
    for s in steps:
        if s.outcome != "fails":
            continue
        if s.error_kind in ALREADY_EXISTS:
            hazards.append(
                Hazard(
                    "H-DUP-COLUMN" if s.error_kind == "DuplicateColumn" else "P-STATEMENT-FAILS",
                    "error",
                    f"v{s.v} fails with {s.error_kind} ({s.error}): plain setup() raises "
                    "on every retry and the deploy never completes",
                    f"migrate records v{s.v} in the ledger once the object matches the "
                    "reference, then re-runs setup(); or target checkpoint-postgres >= 3.0.1",
                    migrate_repairs=True,
                )
            )
        else:
            hazards.append(
                Hazard(
                    "P-STATEMENT-FAILS",
                    "error",
                    f"v{s.v} fails with {s.error_kind}: {s.error}",
                    "fix the schema by hand (see the statement below) before deploying",
                )
            )
    for d in rehearsal_diff:
        if d.kind in ("missing_column", "missing_table", "missing_index"):
            repairable = any(r.table == d.table and r.name == d.name for r in repairs)
            fix_sql = next(
                (r.sql[-1] for r in repairs if r.table == d.table and r.name == d.name), None
            )
            hazards.append(
                Hazard(
                    "H-LEDGER-SHIFT",
                    "error" if d.kind != "missing_index" else "warning",
                    f"{_ledger_text(rehearsed.ledger)} after setup(), but {d.where} is "
                    f"missing ({d.kind}): "
                    + (
                        "every read of the target version fails"
                        if d.kind != "missing_index"
                        else "reads get slower"
                    ),
                    f"migrate repairs it: {fix_sql}" if fix_sql else "cannot be repaired here",
                    migrate_repairs=repairable,
                )
            )
        elif d.kind in ("column_type", "primary_key") or (
            d.severity == "error"
            and d.kind in ("column_nullability", "column_default", "extra_column")
        ):
            repairable = any(r.table == d.table and r.name == d.name for r in repairs)
            hazards.append(
                Hazard(
                    "P-SCHEMA-MISMATCH",
                    "error",
                    f"after setup(), {d.summary()}",
                    "migrate repairs it" if repairable else "alter it by hand before deploying",
                    migrate_repairs=repairable,
                )
            )
    for index in live.invalid_indexes:
        hazards.append(
            Hazard(
                "H-INVALID-INDEX",
                "error" if index.unique else "warning",
                f"index {index.name} on {index.table} is INVALID (an interrupted CREATE INDEX "
                "CONCURRENTLY); IF NOT EXISTS skips it forever"
                + (": its UNIQUE constraint is not enforced" if index.unique else ""),
                f"migrate drops and rebuilds it CONCURRENTLY: DROP INDEX CONCURRENTLY "
                f"{_ident(index.name)}; then CREATE INDEX CONCURRENTLY ...",
                migrate_repairs=True,
            )
        )
    if live.ledger is not None and target.has_ledger and live.ledger:
        if max(live.ledger) >= len(target.migrations):
            hazards.append(
                Hazard(
                    "P-LEDGER-AHEAD",
                    "warning",
                    f"{_ledger_text(live.ledger)} is ahead of the target's "
                    f"{len(target.migrations)} migrations: a newer version set this database up",
                    "this is a downgrade: check that the target reads what the newer version wrote",
                )
            )
    if any(not s.transactional for s in pending):
        n = sum(1 for s in pending if not s.transactional)
        hazards.append(
            Hazard(
                "H-TX-CONCURRENTLY",
                "advice",
                f"{n} pending statement(s) use CREATE INDEX CONCURRENTLY: setup() on a "
                "connection inside a transaction fails with ActiveSqlTransaction",
                "run setup() on an autocommit connection (migrate does)",
                migrate_repairs=True,
            )
        )
    if pending or repairs:
        hazards.append(
            Hazard(
                "H-SETUP-RACE",
                "advice",
                "replicas that call setup() at start-up race each other (UniqueViolation, "
                "DuplicateObject, deadlocks)",
                "run `langgraph-migrator migrate` once before the rollout (it holds an "
                "advisory lock); do not call setup() from every replica",
                migrate_repairs=True,
            )
        )
    unreadable = [
        d
        for d in live_diff
        if d.kind in ("missing_column", "missing_table") and d.table != LEDGER_TABLE
    ]
    if live.has_checkpoint_tables and unreadable and (pending or repairs):
        hazards.append(
            Hazard(
                "H-READ-BEFORE-SETUP",
                "warning",
                "new code reads "
                + ", ".join(d.where for d in unreadable)
                + ", which do not exist yet: new pods that serve before the migration fail "
                "on every thread",
                "finish `migrate` before any new pod serves traffic",
                migrate_repairs=True,
            )
        )
    wanted = [lk for s in pending for lk in statement_locks(s.sql)] + [
        lk for r in repairs for lk in r.locks
    ]
    for table, mode in sorted(set(wanted)):
        info = live.tables.get(table)
        if info is None or mode not in ("AccessExclusiveLock", "ShareLock"):
            continue
        if info.total_bytes >= LOCK_RISK_BYTES or info.rows_estimate >= LOCK_RISK_ROWS:
            hazards.append(
                Hazard(
                    "P-LOCK-RISK",
                    "warning",
                    f"{mode} on {table} ({_size(info.total_bytes)}, ~{info.rows_estimate} rows): "
                    "writes queue behind it while it waits or runs",
                    "migrate sets lock_timeout and retries; run it in a quiet window",
                )
            )
    for table, mode, pid, age in conflicting_locks(live, wanted):
        hazards.append(
            Hazard(
                "P-LOCK-BUSY",
                "warning",
                f"backend pid {pid} holds {mode} on {table}"
                + (f" (transaction open {age:.0f}s)" if age is not None else "")
                + ": the migration would wait for it",
                "end that transaction; migrate waits up to its lock budget, then exits 4 "
                "with nothing applied",
            )
        )
    hazards += _privilege_hazards(live, steps, repairs)
    if probe is not None and probe.pid_changed:
        hazards.append(
            Hazard(
                "P-POOLER",
                "error",
                f"two transactions on one connection ran on backends {probe.pid_first} and "
                f"{probe.pid_second}: a transaction-mode pooler; the migrator's session "
                "advisory lock does not hold through it",
                "point --dsn straight at Postgres (or a session-mode pool)",
            )
        )
    elif probe is not None and probe.proxied:
        hazards.append(
            Hazard(
                "P-POOLER",
                "warning",
                f"connected to port {probe.connected_port}, the server listens on "
                f"{probe.server_port}: a proxy or pooler is in between",
                "if it pools in transaction mode, point --dsn straight at Postgres",
            )
        )
    order = {"error": 0, "warning": 1, "advice": 2}
    hazards.sort(key=lambda h: order[h.severity])
    server = live.server
    return Plan(
        target=target.label,
        versions=dict(target.versions),
        database=database,
        schema=live.schema,
        server_version=str(server.get("version", "?")),
        ledger=live.ledger,
        steps=tuple(steps),
        live_diff=tuple(live_diff),
        rehearsal_diff=tuple(rehearsal_diff),
        repairs=tuple(repairs),
        hazards=tuple(hazards),
        notes=tuple(notes),
    )


def _one_line(statement: str, limit: int = 110) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_plan(plan: Plan, *, full_sql: bool = False) -> list[str]:
    """The plan as lines of text for people (pure).

    Args:
        plan: The plan.
        full_sql: Print statements in full instead of one shortened line each.

    Returns:
        Lines, without trailing newlines.
    """
    lines = [
        f"plan: {plan.database} (schema {plan.schema}, Postgres {plan.server_version}, "
        f"{_ledger_text(plan.ledger)})",
        f"  -> {plan.target}",
    ]
    pending = plan.pending
    lines.append(
        f"setup() will run {len(pending)} pending statement(s)"
        + (" after MIGRATIONS[0], which it runs on every call:" if plan.steps else ":")
    )
    for s in plan.steps:
        tag = "v?" if s.v is None else f"v{s.v}"
        mark = {"ok": "ok", "fails": "FAILS", "not_rehearsed": "?"}[s.outcome]
        text = s.sql.strip() if full_sql else _one_line(s.sql) or "(empty statement)"
        extra = " [always]" if s.always else ""
        extra += "" if s.transactional else " [non-transactional]"
        lines.append(f"  {tag:>4} {mark:<5} {text}{extra}")
        if s.error:
            lines.append(f"             {s.error_kind}: {s.error}")
    if plan.rehearsal_diff:
        lines.append("after the rehearsed setup(), the schema differs from the reference:")
        lines += [f"  {d.summary()}" for d in plan.rehearsal_diff]
    else:
        lines.append("after the rehearsed setup(), the schema equals the reference.")
    if plan.repairs:
        lines.append("repairs migrate will apply after setup():")
        for r in plan.repairs:
            lines += [f"  {_one_line(s) if not full_sql else s};" for s in r.sql]
    if plan.hazards:
        lines.append("hazards:")
        for h in plan.hazards:
            lines.append(f"  {h.severity.upper():<7} {h.id}: {h.message}")
            lines.append(f"          fix: {h.fix}")
    lines += [f"note: {n}" for n in plan.notes]
    if plan.unsafe:
        handled = not plan.blocking
        lines.append(
            "verdict: UNSAFE — plain setup() would fail or lose data"
            + ("; `migrate` handles every error above." if handled else "; fix the errors first.")
        )
    else:
        lines.append("verdict: SAFE")
    return lines


# ------------------------------------------------------------------- I/O

#: Reference schemas built in this process: (env key, server major) -> model.
_REFERENCES: dict[tuple[str, int], SchemaModel] = {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_live(dsn: str, schema: str | None = None) -> tuple[SchemaModel, ConnectionProbe]:
    """Introspect the live database in ``READ ONLY`` transactions, and probe for poolers.

    Args:
        dsn: The live database.
        schema: The checkpoint tables' schema (default: the connection's ``current_schema()``).

    Returns:
        The model and the connection probe.

    Raises:
        ConnectError: The database cannot be reached or read.
    """
    try:
        with psycopg.connect(
            dsn, connect_timeout=10, application_name="langgraph-migrator plan"
        ) as conn:
            conn.read_only = True
            schema = schema or str((conn.execute(CURRENT_SCHEMA_SQL).fetchone() or ["public"])[0])
            catalog = read_catalog(conn, schema)
            first = int((conn.execute(BACKEND_PID_SQL).fetchone() or [0])[0])
            conn.rollback()
            second = int((conn.execute(BACKEND_PID_SQL).fetchone() or [0])[0])
            conn.rollback()
            connected_port: int | None = int(conn.info.port) if conn.info.port else None
    except psycopg.Error as exc:
        raise ConnectError(
            f"cannot read {redact_dsn(dsn)}: {redact_text(_first_line(exc), dsn)}",
            hint="check host, port, user and password, and that the server is running.",
        ) from exc
    server_port = catalog["server"].get("port")
    probe = ConnectionProbe(
        pid_first=first,
        pid_second=second,
        connected_port=connected_port,
        server_port=int(server_port) if server_port else None,
    )
    return SchemaModel.from_catalog(catalog), probe


@contextmanager
def scratch_server(major: int, scratch_dsn: str | None, notes: list[str]) -> Iterator[str]:
    """A server to build the reference and rehearse on: never the live one.

    Args:
        major: The live server's major.
        scratch_dsn: A server the user gave (databases are created and dropped on it).
        notes: Receives a note when another major had to be used.

    Yields:
        A DSN on which scratch databases may be created.

    Raises:
        ProvisionError: No local Postgres could be started.
    """
    if scratch_dsn:
        yield scratch_dsn
        return
    from migrator.postgres import MAX_MAJOR, MIN_MAJOR, provision

    candidates = sorted(range(MIN_MAJOR, MAX_MAJOR + 1), key=lambda m: (abs(m - major), -m))
    last: Exception | None = None
    for candidate in candidates:
        try:
            server = provision("local", candidate)
        except (ProvisionError, ConfigError) as exc:
            last = exc
            continue
        if candidate != major:
            notes.append(
                f"rehearsed on Postgres {candidate}: no local Postgres {major} is available "
                "(give --scratch-dsn for an exact match)"
            )
        try:
            yield server.dsn
        finally:
            server.stop()
        return
    raise ProvisionError(
        f"no local Postgres could be started for the rehearsal: {last}",
        hint="pass --scratch-dsn with a server where the tool may create databases",
    )


def _introspect(dsn: str) -> SchemaModel:
    with psycopg.connect(dsn) as conn:
        return SchemaModel.from_catalog(read_catalog(conn, "public"))


def build_reference(
    env: envs.VersionEnv, server_dsn: str, *, timeout: float = 600.0
) -> SchemaModel:
    """What the target's ``setup()`` builds on an empty database (built, read, dropped).

    Args:
        env: The target version environment.
        server_dsn: A scratch server.
        timeout: Seconds the worker may take.

    Returns:
        The reference schema.
    """
    with psycopg.connect(server_dsn) as conn:
        major = int(conn.info.server_version) // 10000
    key = (env.version_set.key, major)
    if key not in _REFERENCES:
        with scratch_database(server_dsn) as dsn:
            envs.run_worker(env, "setup", {"dsn": dsn}, timeout=timeout)
            _REFERENCES[key] = _introspect(dsn)
    return _REFERENCES[key]


def rehearse(
    live: SchemaModel,
    target: TargetInfo,
    server_dsn: str,
    reference: SchemaModel,
    notes: list[str],
) -> tuple[list[Step], SchemaModel]:
    """Run the pending statements on an empty clone of the live checkpoint tables.

    Args:
        live: The live schema.
        target: The target's migrations.
        server_dsn: A scratch server.
        reference: The reference (its tables are cloned too when live has them).
        notes: Receives notes (e.g. an INVALID index that could not be reproduced).

    Returns:
        The steps with outcomes, and the clone's schema afterwards.
    """
    names = [t for t in (*CHECKPOINT_TABLES, *reference.tables) if t in live.tables]
    names = list(dict.fromkeys(names))
    pending = pending_statements(target, live.ledger)
    steps: list[Step] = []
    with scratch_database(server_dsn) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        for name in names:
            for statement in live.tables[name].create_sql():
                conn.execute(statement)
        for index in live.invalid_indexes:
            try:
                conn.execute(MARK_INVALID_SQL, (index.name,))
            except psycopg.Error as exc:
                notes.append(
                    f"could not mark {index.name} INVALID on the scratch server "
                    f"({_first_line(exc)}); it is carried into the plan from the live catalog"
                )
        ledger_ident = sql.Identifier(LEDGER_TABLE)
        for done in live.ledger or ():
            conn.execute(INSERT_LEDGER_SQL.format(ledger_ident), (done,))
        for v, statement, always in pending:
            transactional = _CONCURRENTLY_RE.search(statement) is None
            try:
                if statement.strip():
                    conn.execute(statement)
            except psycopg.Error as exc:
                kind = type(exc).__name__
                steps.append(
                    Step(v, statement, always, transactional, "fails", kind, _first_line(exc))
                )
                if kind not in ALREADY_EXISTS:
                    continue
                # migrate records an "already exists" step as done and carries on.
            else:
                steps.append(Step(v, statement, always, transactional, "ok"))
            if v is not None and not always and target.has_ledger:
                conn.execute(INSERT_LEDGER_SQL.format(ledger_ident), (v,))
        rehearsed = SchemaModel.from_catalog(read_catalog(conn, "public"))
    return steps, rehearsed


def target_env(
    to_spec: str, *, progress: Progress, timeout: float = 600.0
) -> tuple[envs.VersionEnv, TargetInfo]:
    """Build (or reuse) the target environment and read its migrations."""
    version_set = envs.parse_version_set(to_spec)
    env = envs.ensure_env(version_set, progress=progress)
    info = envs.run_worker(env, "info", {}, timeout=timeout)
    return env, TargetInfo.from_info(env.label, info)


def make_plan(
    dsn: str,
    to_spec: str = "current",
    *,
    scratch_dsn: str | None = None,
    schema: str | None = None,
    progress: Progress = lambda _m: None,
    timeout: float = 600.0,
    env_and_target: tuple[envs.VersionEnv, TargetInfo] | None = None,
) -> Plan:
    """Introspect, build the reference, rehearse, and find hazards. Never writes to ``dsn``.

    Args:
        dsn: The live database (read only).
        to_spec: The target version set.
        scratch_dsn: A server for the reference and the rehearsal (default: an
            ephemeral local cluster of the live major).
        schema: The checkpoint tables' schema (default: the connection's current schema).
        progress: Receives one-line status messages.
        timeout: Seconds a worker step may take.
        env_and_target: A target already resolved by :func:`target_env`.

    Returns:
        The plan.

    Raises:
        ConfigError: Bad version spec.
        ConnectError: The live database cannot be reached.
        ProvisionError: No scratch server could be started.
    """
    progress("reading the live schema (read only)")
    live, probe = read_live(dsn, schema)
    env, target = env_and_target or target_env(to_spec, progress=progress, timeout=timeout)
    notes: list[str] = []
    major = int(live.server.get("version_num", 0)) // 10000
    started = time.monotonic()
    with scratch_server(major, scratch_dsn, notes) as server_dsn:
        progress(f"building the reference schema of {target.label}")
        reference = build_reference(env, server_dsn, timeout=timeout)
        progress("rehearsing setup() on an empty clone of the live schema")
        steps, rehearsed = rehearse(live, target, server_dsn, reference, notes)
    notes.append(f"reference and rehearsal took {time.monotonic() - started:.1f}s")
    return build_plan(
        live=live,
        target=target,
        steps=steps,
        rehearsed=rehearsed,
        reference=reference,
        probe=probe,
        database=redact_dsn(dsn),
        notes=notes,
    )
