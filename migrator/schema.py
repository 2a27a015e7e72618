"""Introspect the checkpoint schema: catalog I/O, a pure model, and a pure diff.

Three layers, so that everything but one function is testable without a database:

- :func:`read_catalog` runs read-only catalog queries (tables, columns, primary
  keys and other constraints, indexes with ``indisvalid``, the
  ``checkpoint_migrations`` rows, table sizes, the connecting role's privileges,
  relation locks other sessions hold) and returns JSON-ready data;
- :meth:`SchemaModel.from_catalog` turns that data into frozen value types;
- :func:`diff_schemas` compares a live model with the **reference schema** (what
  the target version's ``setup()`` builds on an empty schema; never hard-coded).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql

#: The tables ``setup()`` manages, in creation order.
CHECKPOINT_TABLES = (
    "checkpoint_migrations",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
)
LEDGER_TABLE = "checkpoint_migrations"

Severity = Literal["error", "warning", "info"]

SERVER_SQL = """
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       current_setting('port') AS port,
       current_database() AS database,
       current_user AS role,
       pg_backend_pid() AS backend_pid
"""

PRIVILEGES_SQL = """
SELECT n.oid IS NOT NULL AS schema_exists,
       COALESCE(has_schema_privilege(n.oid, 'CREATE'), false) AS schema_create,
       COALESCE(has_schema_privilege(n.oid, 'USAGE'), false) AS schema_usage,
       has_database_privilege(current_database(), 'CREATE') AS database_create,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser
FROM (SELECT 1) AS one
LEFT JOIN pg_namespace n ON n.nspname = %(schema)s
"""

TABLES_SQL = """
SELECT c.relname AS name,
       pg_get_userbyid(c.relowner) AS owner,
       pg_has_role(c.relowner, 'USAGE') AS owned,
       GREATEST(c.reltuples, 0)::bigint AS rows_estimate,
       pg_total_relation_size(c.oid) AS total_bytes,
       has_table_privilege(c.oid, 'SELECT') AS can_select,
       has_table_privilege(c.oid, 'INSERT') AS can_insert,
       has_table_privilege(c.oid, 'UPDATE') AS can_update,
       has_table_privilege(c.oid, 'DELETE') AS can_delete
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
ORDER BY c.relname
"""

COLUMNS_SQL = """
SELECT c.relname AS table_name, a.attname AS name,
       format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default_expr
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

# Primary key, unique, check and foreign key constraints only: Postgres 18 also
# lists NOT NULL constraints, which the columns carry themselves.
CONSTRAINTS_SQL = """
SELECT c.relname AS table_name, k.conname AS name, k.contype::text AS kind,
       pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND k.contype IN ('p', 'u', 'c', 'f')
ORDER BY c.relname, k.conname
"""

INDEXES_SQL = """
SELECT t.relname AS table_name, i.relname AS name,
       pg_get_indexdef(x.indexrelid) AS definition,
       x.indisunique AS is_unique, x.indisprimary AS is_primary,
       x.indisvalid AS valid, x.indisready AS ready,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid) AS constraint_backed,
       pg_relation_size(x.indexrelid) AS bytes
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %(schema)s AND t.relkind IN ('r', 'p')
ORDER BY t.relname, i.relname
"""

LOCKS_SQL = """
SELECT c.relname AS table_name, l.mode, l.granted, l.pid,
       a.state, a.application_name,
       EXTRACT(EPOCH FROM now() - a.xact_start)::float8 AS xact_age_s
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.pid <> pg_backend_pid()
  AND n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
ORDER BY c.relname, l.pid
"""

LEDGER_ROWS_SQL = sql.SQL("SELECT v FROM {}.{} ORDER BY v")

#: `` ON [ONLY] schema.table USING `` in an index definition (names quoted or not).
_NAME = r'(?:"(?:[^"]|"")+"|[^\s."]+)'
_INDEX_ON_RE = re.compile(rf" ON (?P<only>ONLY )?{_NAME}\.(?P<table>{_NAME}) USING ")
_INDEX_HEAD_RE = re.compile(r"^CREATE (?P<unique>UNIQUE )?INDEX (?P<name>\S+) ON ")


# ------------------------------------------------------------------ I/O


def read_catalog(conn: psycopg.Connection[Any], schema: str = "public") -> dict[str, Any]:
    """Read what the tool needs to know about ``schema`` (read-only queries only).

    Args:
        conn: Any open connection; nothing is written, and the caller owns the
            transaction (open it ``READ ONLY`` to make that a guarantee).
        schema: The schema holding the checkpoint tables.

    Returns:
        JSON-ready data for :meth:`SchemaModel.from_catalog`.
    """

    def rows(query: str) -> list[dict[str, Any]]:
        with conn.cursor() as cur:
            cur.execute(query, {"schema": schema})
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    server = rows(SERVER_SQL)[0]
    privileges = rows(PRIVILEGES_SQL)[0]
    tables = rows(TABLES_SQL)
    ledger: list[int] | None = None
    if any(t["name"] == LEDGER_TABLE for t in tables):
        query = LEDGER_ROWS_SQL.format(sql.Identifier(schema), sql.Identifier(LEDGER_TABLE))
        ledger = [int(r[0]) for r in conn.execute(query).fetchall()]
    return {
        "schema": schema,
        "server": server,
        "privileges": privileges,
        "tables": tables,
        "columns": rows(COLUMNS_SQL),
        "constraints": rows(CONSTRAINTS_SQL),
        "indexes": rows(INDEXES_SQL),
        "ledger": ledger,
        "locks": rows(LOCKS_SQL),
    }


# ---------------------------------------------------------------- model


@dataclass(frozen=True)
class Column:
    """One column as ``setup()`` (or someone else) left it."""

    name: str
    type: str
    not_null: bool
    default: str | None

    def definition(self) -> str:
        """``"name" type [DEFAULT ...] [NOT NULL]`` (the default is catalog text)."""
        text = f"{_quote(self.name)} {self.type}"
        if self.default is not None:
            text += f" DEFAULT {self.default}"
        return text + (" NOT NULL" if self.not_null else "")


@dataclass(frozen=True)
class Constraint:
    """A primary key, unique, check or foreign key constraint."""

    name: str
    kind: str
    definition: str


@dataclass(frozen=True)
class Index:
    """An index; ``valid`` is ``pg_index.indisvalid`` (False after an interrupted build)."""

    name: str
    table: str
    definition: str
    unique: bool
    primary: bool
    valid: bool
    ready: bool
    constraint_backed: bool
    bytes: int = 0

    @property
    def shape(self) -> str:
        """The definition without the index name and schema: what two indexes share if equal."""
        text = _INDEX_ON_RE.sub(
            lambda m: f" ON {m['only'] or ''}{m['table']} USING ", self.definition
        )
        return _INDEX_HEAD_RE.sub(lambda m: f"CREATE {m['unique'] or ''}INDEX ON ", text)

    def create_sql(self, *, concurrently: bool = True) -> str:
        """A ``CREATE INDEX [CONCURRENTLY] IF NOT EXISTS`` for this index, unqualified table."""
        text = _INDEX_ON_RE.sub(
            lambda m: f" ON {m['only'] or ''}{m['table']} USING ", self.definition
        )
        head = "CONCURRENTLY IF NOT EXISTS " if concurrently else "IF NOT EXISTS "
        return re.sub(r"^CREATE (UNIQUE )?INDEX ", lambda m: f"{m[0]}{head}", text, count=1)


@dataclass(frozen=True)
class Table:
    """A table: columns in order, constraints, indexes, size and what the role may do."""

    name: str
    columns: tuple[Column, ...]
    constraints: tuple[Constraint, ...] = ()
    indexes: tuple[Index, ...] = ()
    owner: str = ""
    owned: bool = True
    rows_estimate: int = 0
    total_bytes: int = 0
    privileges: tuple[str, ...] = ("SELECT", "INSERT", "UPDATE", "DELETE")

    def column(self, name: str) -> Column | None:
        """The column called ``name``, if any."""
        return next((c for c in self.columns if c.name == name), None)

    def index(self, name: str) -> Index | None:
        """The index called ``name``, if any."""
        return next((i for i in self.indexes if i.name == name), None)

    @property
    def primary_key(self) -> Constraint | None:
        """The primary key constraint, if any."""
        return next((c for c in self.constraints if c.kind == "p"), None)

    def create_sql(self) -> list[str]:
        """``CREATE TABLE`` (columns + constraints) and its other indexes: structure only."""
        parts = [c.definition() for c in self.columns]
        parts += [f"CONSTRAINT {_quote(k.name)} {k.definition}" for k in self.constraints]
        statements = [f"CREATE TABLE {_quote(self.name)} (\n  " + ",\n  ".join(parts) + "\n)"]
        statements += [
            i.create_sql(concurrently=False) for i in self.indexes if not i.constraint_backed
        ]
        return statements


@dataclass(frozen=True)
class Privileges:
    """What the connecting role may do in the schema."""

    role: str = ""
    schema_exists: bool = True
    schema_create: bool = True
    schema_usage: bool = True
    database_create: bool = True
    superuser: bool = False


@dataclass(frozen=True)
class LockHeld:
    """A relation lock another session holds (or waits for) on a table of the schema."""

    table: str
    mode: str
    granted: bool
    pid: int
    state: str | None
    application_name: str | None
    xact_age_s: float | None


@dataclass(frozen=True)
class SchemaModel:
    """The schema as the catalog describes it.

    Attributes:
        schema: The schema name.
        tables: Every ordinary or partitioned table of the schema, by name.
        ledger: ``checkpoint_migrations.v`` values in order, or None without that table.
        privileges: The connecting role's rights.
        server: Server facts (``version_num``, ``port``, ``role``, ``backend_pid`` ...).
        locks: Relation locks other sessions hold on tables of the schema.
    """

    schema: str
    tables: Mapping[str, Table]
    ledger: tuple[int, ...] | None = None
    privileges: Privileges = field(default_factory=Privileges)
    server: Mapping[str, Any] = field(default_factory=dict)
    locks: tuple[LockHeld, ...] = ()

    @classmethod
    def from_catalog(cls, catalog: Mapping[str, Any]) -> SchemaModel:
        """Build the model from :func:`read_catalog` data (pure).

        Args:
            catalog: The dict :func:`read_catalog` returned (or a JSON copy of it).

        Returns:
            The model.
        """
        columns: dict[str, list[Column]] = {}
        for c in catalog.get("columns", ()):
            columns.setdefault(c["table_name"], []).append(
                Column(c["name"], c["type"], bool(c["not_null"]), c["default_expr"])
            )
        constraints: dict[str, list[Constraint]] = {}
        for k in catalog.get("constraints", ()):
            constraints.setdefault(k["table_name"], []).append(
                Constraint(k["name"], k["kind"], k["definition"])
            )
        indexes: dict[str, list[Index]] = {}
        for i in catalog.get("indexes", ()):
            indexes.setdefault(i["table_name"], []).append(
                Index(
                    name=i["name"],
                    table=i["table_name"],
                    definition=i["definition"],
                    unique=bool(i["is_unique"]),
                    primary=bool(i["is_primary"]),
                    valid=bool(i["valid"]),
                    ready=bool(i["ready"]),
                    constraint_backed=bool(i["constraint_backed"]),
                    bytes=int(i.get("bytes") or 0),
                )
            )
        tables: dict[str, Table] = {}
        for t in catalog.get("tables", ()):
            name = t["name"]
            privs = tuple(
                p
                for p in ("SELECT", "INSERT", "UPDATE", "DELETE")
                if t.get(f"can_{p.lower()}", True)
            )
            tables[name] = Table(
                name=name,
                columns=tuple(columns.get(name, ())),
                constraints=tuple(constraints.get(name, ())),
                indexes=tuple(indexes.get(name, ())),
                owner=str(t.get("owner") or ""),
                owned=bool(t.get("owned", True)),
                rows_estimate=int(t.get("rows_estimate") or 0),
                total_bytes=int(t.get("total_bytes") or 0),
                privileges=privs,
            )
        p = catalog.get("privileges") or {}
        server = dict(catalog.get("server") or {})
        ledger = catalog.get("ledger")
        return cls(
            schema=str(catalog.get("schema", "public")),
            tables=tables,
            ledger=None if ledger is None else tuple(int(v) for v in ledger),
            privileges=Privileges(
                role=str(server.get("role", "")),
                schema_exists=bool(p.get("schema_exists", True)),
                schema_create=bool(p.get("schema_create", True)),
                schema_usage=bool(p.get("schema_usage", True)),
                database_create=bool(p.get("database_create", True)),
                superuser=bool(p.get("superuser", False)),
            ),
            server=server,
            locks=tuple(
                LockHeld(
                    table=lk["table_name"],
                    mode=lk["mode"],
                    granted=bool(lk["granted"]),
                    pid=int(lk["pid"]),
                    state=lk.get("state"),
                    application_name=lk.get("application_name"),
                    xact_age_s=lk.get("xact_age_s"),
                )
                for lk in catalog.get("locks", ())
            ),
        )

    @property
    def ledger_max(self) -> int | None:
        """Highest ledger ``v`` (what ``setup()`` resumes after), or None."""
        return max(self.ledger) if self.ledger else None

    @property
    def has_checkpoint_tables(self) -> bool:
        """True when any table ``setup()`` creates (besides the ledger) exists."""
        return any(t in self.tables for t in CHECKPOINT_TABLES if t != LEDGER_TABLE)

    @property
    def invalid_indexes(self) -> list[Index]:
        """Indexes left INVALID (e.g. by an interrupted ``CREATE INDEX CONCURRENTLY``)."""
        return [i for t in self.tables.values() for i in t.indexes if not i.valid]


# ----------------------------------------------------------------- diff


@dataclass(frozen=True)
class SchemaDifference:
    """One way the actual schema differs from the reference.

    Attributes:
        kind: ``missing_table``, ``missing_column``, ``column_type``,
            ``column_nullability``, ``column_default``, ``extra_column``,
            ``primary_key``, ``missing_index``, ``index_definition``,
            ``invalid_index``, ``ledger_rows``.
        table: The table concerned.
        name: The column, index or constraint concerned (None for a table).
        expected: What the reference has (text), or None.
        actual: What the actual schema has (text), or None.
        severity: ``error`` (reads or writes of the target version fail, or data
            integrity is not enforced), ``warning`` (works, but differs: slower, or
            the ledger disagrees) or ``info``.
    """

    kind: str
    table: str
    name: str | None
    expected: str | None
    actual: str | None
    severity: Severity

    @property
    def where(self) -> str:
        """``table.name`` or ``table``."""
        return f"{self.table}.{self.name}" if self.name else self.table

    def summary(self) -> str:
        """One line for people."""
        return (
            f"{self.severity} {self.kind} {self.where}: expected {self.expected or '-'}, "
            f"found {self.actual or '-'}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "kind": self.kind,
            "table": self.table,
            "name": self.name,
            "expected": self.expected,
            "actual": self.actual,
            "severity": self.severity,
        }


def _diff_columns(actual: Table, ref: Table) -> list[SchemaDifference]:
    out: list[SchemaDifference] = []
    for rc in ref.columns:
        ac = actual.column(rc.name)
        if ac is None:
            out.append(
                SchemaDifference(
                    "missing_column", ref.name, rc.name, rc.definition(), None, "error"
                )
            )
            continue
        if ac.type != rc.type:
            out.append(
                SchemaDifference("column_type", ref.name, rc.name, rc.type, ac.type, "error")
            )
        if ac.not_null != rc.not_null:
            # NOT NULL where the target writes NULLs breaks its writes; the reverse
            # only loosens a check.
            out.append(
                SchemaDifference(
                    "column_nullability",
                    ref.name,
                    rc.name,
                    "NOT NULL" if rc.not_null else "NULL",
                    "NOT NULL" if ac.not_null else "NULL",
                    "error" if ac.not_null else "warning",
                )
            )
        if ac.default != rc.default:
            breaks = rc.not_null and ac.default is None
            out.append(
                SchemaDifference(
                    "column_default",
                    ref.name,
                    rc.name,
                    rc.default,
                    ac.default,
                    "error" if breaks else "warning",
                )
            )
    for ac in actual.columns:
        if ref.column(ac.name) is None:
            # The target's INSERTs do not name it: it must accept its default.
            blocks = ac.not_null and ac.default is None
            out.append(
                SchemaDifference(
                    "extra_column",
                    ref.name,
                    ac.name,
                    None,
                    ac.definition(),
                    "error" if blocks else "info",
                )
            )
    return out


def _diff_indexes(actual: Table, ref: Table) -> list[SchemaDifference]:
    out: list[SchemaDifference] = []
    rpk, apk = ref.primary_key, actual.primary_key
    if rpk is not None and (apk is None or apk.definition != rpk.definition):
        out.append(
            SchemaDifference(
                "primary_key",
                ref.name,
                rpk.name,
                rpk.definition,
                apk.definition if apk else None,
                "error",
            )
        )
    for ri in ref.indexes:
        if ri.constraint_backed:
            continue
        ai = actual.index(ri.name) or next(
            (i for i in actual.indexes if i.shape == ri.shape and i.valid), None
        )
        if ai is None:
            out.append(
                SchemaDifference("missing_index", ref.name, ri.name, ri.shape, None, "warning")
            )
        elif not ai.valid:
            out.append(
                SchemaDifference(
                    "invalid_index",
                    ref.name,
                    ai.name,
                    ri.shape,
                    f"INVALID {ai.shape}",
                    "error" if ai.unique else "warning",
                )
            )
        elif ai.shape != ri.shape:
            out.append(
                SchemaDifference(
                    "index_definition", ref.name, ai.name, ri.shape, ai.shape, "warning"
                )
            )
    known = {i.name for i in ref.indexes}
    for ai in actual.indexes:
        if not ai.valid and ai.name not in known:
            out.append(
                SchemaDifference(
                    "invalid_index",
                    ref.name,
                    ai.name,
                    None,
                    f"INVALID {ai.shape}",
                    "error" if ai.unique else "warning",
                )
            )
    return out


def diff_schemas(
    actual: SchemaModel, reference: SchemaModel, *, ledger: bool = True
) -> list[SchemaDifference]:
    """How ``actual`` differs from ``reference`` on the reference's tables (pure).

    Tables the reference does not have (the application's own) are ignored.

    Args:
        actual: The live (or rehearsed) schema.
        reference: What the target's ``setup()`` builds on an empty schema.
        ledger: Also compare the ``checkpoint_migrations`` rows.

    Returns:
        Differences, in table order of the reference.
    """
    out: list[SchemaDifference] = []
    for name, ref in reference.tables.items():
        act = actual.tables.get(name)
        if act is None:
            out.append(SchemaDifference("missing_table", name, None, "table", None, "error"))
            continue
        out += _diff_columns(act, ref)
        out += _diff_indexes(act, ref)
    # A missing ledger table is reported above as missing_table; compare rows only
    # when both have one.
    if ledger and reference.ledger is not None and actual.ledger is not None:
        if actual.ledger != reference.ledger:
            out.append(
                SchemaDifference(
                    "ledger_rows",
                    LEDGER_TABLE,
                    "v",
                    _ledger_text(reference.ledger),
                    _ledger_text(actual.ledger),
                    "warning",
                )
            )
    return out


def _ledger_text(rows: Sequence[int]) -> str:
    if not rows:
        return "no rows"
    if list(rows) == list(range(rows[0], rows[-1] + 1)):
        return f"v{rows[0]}..v{rows[-1]}"
    return "v" + ",".join(str(v) for v in rows)


def _quote(name: str) -> str:
    return sql.Identifier(name).as_string(None)
