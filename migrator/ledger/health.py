"""Is the ledger whole? A damaged ledger is an environment problem (exit 3), said once.

The ledger's revision promises tables and columns; someone's hand (a manual
``ALTER TABLE``, a partial restore) can take them away. Every command that reads
or writes the ledger would then fail on a raw ``UndefinedColumn``. Commands that
destroy before they write (``canary seed --reseed``) call :func:`check_ledger`
first; every ledger query turns the same failure into :class:`LedgerDamagedError`
(:func:`damaged_error`).
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg

from migrator.errors import LedgerDamagedError
from migrator.ledger import CURRENT_REVISION_SQL, LEDGER_SCHEMA, VERSION_TABLE
from migrator.postgres.dsn import connect, redact_dsn

#: The columns each ledger table has at the head revision (the code reads and writes them).
LEDGER_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "canaries": (
        "thread_id",
        "canary",
        "versions",
        "user_canaries",
        "status",
        "seed_trace",
        "seeded_by",
        "seeded_at",
    ),
    "goldens": ("thread_id", "canary", "snapshot", "versions", "seeded_at"),
    "runs": (
        "id",
        "command",
        "from_versions",
        "to_versions",
        "plan",
        "applied_statements",
        "repairs",
        "verdict",
        "timings",
        "db_user",
        "client_host",
        "client_addr",
        "tool_version",
        "started_at",
        "finished_at",
        "details",
        "recorded_at",
    ),
    "backups": ("id", "kind", "location", "manifest", "status", "details", "created_at"),
    VERSION_TABLE: ("version_num",),
}

LEDGER_COLUMNS_SQL = """
    SELECT c.relname, a.attname
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = %s AND c.relkind IN ('r', 'p')
"""
SCHEMA_EXISTS_SQL = "SELECT 1 FROM pg_namespace WHERE nspname = %s"

#: SQLSTATEs of a query that met a ledger of another shape (class 42 but privileges).
_SHAPE_CLASS = "42"
_NOT_SHAPE = frozenset({"42501"})  # insufficient_privilege: a role problem, said as such


def fix_hint(dsn: str) -> str:
    """How to get a whole ledger back; the checkpoint tables are not involved."""
    return (
        f"the ledger only holds the tool's records (canaries, goldens, runs, backups): move it "
        f'aside with `ALTER SCHEMA {LEDGER_SCHEMA} RENAME TO "{LEDGER_SCHEMA}_damaged"` '
        f"and seed again with `langgraph-migrator canary seed --dsn {redact_dsn(dsn)} "
        "--with SPEC --reseed` (it rebuilds the ledger; the app's threads are not touched)"
    )


def missing_parts(found: Mapping[str, set[str]]) -> list[str]:
    """What the head revision's tables lack, as ``table.column`` (or ``table``).

    Args:
        found: Column names per table of the ledger schema.
    """
    missing: list[str] = []
    for table, columns in LEDGER_COLUMNS.items():
        if table not in found:
            missing.append(table)
            continue
        missing.extend(f"{table}.{c}" for c in columns if c not in found[table])
    return missing


def check_ledger(dsn: str) -> None:
    """Refuse a ledger whose tables lack what its revision promises (read only).

    A database without a ledger passes (it is created when first written). An
    older revision passes when its version table is whole (the upgrade adds the
    rest).

    Raises:
        LedgerDamagedError: A table or column is missing (exit 3).
        ConnectError: The database cannot be reached.
    """
    from migrator.ledger import head_revision

    with connect(dsn) as conn:
        if conn.execute(SCHEMA_EXISTS_SQL, (LEDGER_SCHEMA,)).fetchone() is None:
            return
        found: dict[str, set[str]] = {}
        for table, column in conn.execute(LEDGER_COLUMNS_SQL, (LEDGER_SCHEMA,)):
            found.setdefault(str(table), set()).add(str(column))
        if not found:
            return  # an empty schema: created by hand, or by a run killed at once
        revision = None
        if "version_num" in found.get(VERSION_TABLE, set()):
            row = conn.execute(CURRENT_REVISION_SQL).fetchone()
            revision = None if row is None else str(row[0])
    missing = missing_parts(found)
    if revision is not None and revision != head_revision():
        missing = [m for m in missing if m.split(".")[0] == VERSION_TABLE]
    if missing:
        raise LedgerDamagedError(
            f"the ledger is damaged: schema {LEDGER_SCHEMA} in {redact_dsn(dsn)} lacks "
            f"{', '.join(missing)} (ledger revision {revision or 'unknown'}); nothing was written.",
            hint=fix_hint(dsn),
        )


def damaged_error(dsn: str, exc: psycopg.Error) -> LedgerDamagedError | None:
    """The :class:`LedgerDamagedError` a failed ledger query means, or None.

    Args:
        dsn: The database.
        exc: What a query on the ledger raised.
    """
    state = getattr(exc, "sqlstate", None) or ""
    if not state.startswith(_SHAPE_CLASS) or state in _NOT_SHAPE:
        return None
    detail = " ".join(str(exc).split())[:200]
    return LedgerDamagedError(
        f"the ledger is damaged: a query on schema {LEDGER_SCHEMA} in {redact_dsn(dsn)} "
        f"failed: {detail}",
        hint=fix_hint(dsn),
    )
