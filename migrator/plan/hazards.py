"""Assemble a plan and its hazards from the live schema and the rehearsal (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from migrator.plan.blast import DataScan
from migrator.plan.model import (
    ALREADY_EXISTS,
    LOCK_RISK_BYTES,
    LOCK_RISK_ROWS,
    ConnectionProbe,
    Hazard,
    Plan,
    Repair,
    Step,
    TargetInfo,
)
from migrator.plan.repairs import _ident, repairs_for
from migrator.plan.statements import conflicting_locks, statement_locks
from migrator.schema import (
    LEDGER_TABLE,
    SchemaModel,
    diff_schemas,
)


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
    data: DataScan | None = None,
    data_found: Sequence[Hazard] = (),
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
        data: The thread scan (:mod:`migrator.plan.blast`), if it ran.
        data_found: The data hazards :func:`~migrator.plan.blast.data_hazards` found.

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
                    "error",
                    f"{_ledger_text(live.ledger)} is ahead of the target's "
                    f"{len(target.migrations)} migrations: a newer version set this database "
                    "up, and the target neither knows its schema nor reads what it wrote",
                    "deploy the version that set the database up (or a newer one); to go back, "
                    "restore a backup taken before the upgrade (`restore-backup`)",
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
                + (
                    ", which do not exist yet"
                    if len(unreadable) > 1
                    else ", which does not exist yet"
                )
                + ": new pods that serve before the migration fail "
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
    hazards += data_found
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
        data=data,
    )
