"""Idempotent DDL that turns a schema into the reference, and its undo (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from migrator.plan.model import Repair
from migrator.schema import (
    CHECKPOINT_TABLES,
    LEDGER_TABLE,
    SchemaDifference,
    SchemaModel,
)


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
