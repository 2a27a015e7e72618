"""Seed into a shadow schema, then replace the canary threads in one transaction.

``canary seed`` writes through the app's own saver in a worker process, on a
connection of its own: it cannot share a transaction with the host. So the worker
seeds into empty copies of the checkpoint tables in a schema of their own (its
connection's ``search_path`` points there), the goldens are read from that copy,
and only then, in one transaction on the live database, the old canary rows are
deleted, the new ones copied in and the ledger rows replaced. A canary that does
not load, a worker that crashes, a ledger that refuses its rows: the live tables
and the ledger stay as they were. The shadow schema is dropped on the way out;
one left by a killed run starts with the prefix ``cleanup`` drops.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from migrator.errors import ConfigError, ConnectError
from migrator.postgres.dsn import connect, redact_dsn
from migrator.postgres.writes import write_refused_hint
from migrator.swap import schema_stamp

#: Starts with the restore's shadow prefix, so that ``cleanup`` drops a leftover.
SEED_SHADOW_PREFIX = "langgraph_migrator_shadow_seed_"
#: Tables copied (empty) into the shadow; ``checkpoint_migrations`` with its rows, so
#: that what the worker reads of the schema's version is what the live tables say.
SHADOW_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
MIGRATIONS_TABLE = "checkpoint_migrations"

LIVE_SCHEMA_SQL = (
    "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.oid = to_regclass(%s)"
)
COLUMNS_SQL = (
    "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(%s)"
    " AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum"
)
CREATE_SCHEMA_SQL = "CREATE SCHEMA {}"
DROP_SCHEMA_SQL = "DROP SCHEMA IF EXISTS {} CASCADE"
CREATE_LIKE_SQL = "CREATE TABLE {}.{} (LIKE {}.{} INCLUDING ALL)"
COPY_ALL_SQL = "INSERT INTO {}.{} ({cols}) SELECT {cols} FROM {}.{}"
DELETE_THREADS_SQL = "DELETE FROM {}.{} WHERE thread_id = ANY(%s)"
COPY_THREADS_SQL = "INSERT INTO {}.{} ({cols}) SELECT {cols} FROM {}.{} WHERE thread_id = ANY(%s)"


@dataclass(frozen=True)
class Shadow:
    """Empty copies of the live checkpoint tables, and a DSN whose saver writes there.

    Attributes:
        live: The schema of the live checkpoint tables.
        schema: The shadow schema.
        dsn: The app's DSN with ``search_path`` set to the shadow schema.
    """

    live: str
    schema: str
    dsn: str


def _with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` whose sessions see only ``schema`` (other ``options`` are kept)."""
    options = str(conninfo_to_dict(dsn).get("options") or "")
    path = f"-c search_path={schema}"
    return make_conninfo(dsn, options=f"{options} {path}".strip())


def _live_schema(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(LIVE_SCHEMA_SQL, ("checkpoints",)).fetchone()
    if row is None:
        raise ConfigError("the checkpoint tables are gone; nothing was written.")
    return str(row[0])


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> sql.Composable:
    qualified = sql.Identifier(schema, table).as_string(conn)
    names = [str(r[0]) for r in conn.execute(COLUMNS_SQL, (qualified,))]
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


@contextmanager
def shadow_tables(dsn: str) -> Iterator[Shadow]:
    """A fresh shadow schema with empty copies of the checkpoint tables (dropped on exit).

    Args:
        dsn: The app's database; its checkpoint tables exist.

    Yields:
        The shadow, with the DSN a worker seeds through.

    Raises:
        ConnectError: The database cannot be reached, or the role may not create a schema.
    """
    schema = f"{SEED_SHADOW_PREFIX}{schema_stamp()}"
    with connect(dsn) as conn:
        live = _live_schema(conn)
        shadow = sql.Identifier(schema)
        try:
            with conn.transaction():
                conn.execute(sql.SQL(DROP_SCHEMA_SQL).format(shadow))
                conn.execute(sql.SQL(CREATE_SCHEMA_SQL).format(shadow))
                for table in (*SHADOW_TABLES, MIGRATIONS_TABLE):
                    if table == MIGRATIONS_TABLE and not _exists(conn, live, table):
                        continue
                    conn.execute(
                        sql.SQL(CREATE_LIKE_SQL).format(
                            shadow,
                            sql.Identifier(table),
                            sql.Identifier(live),
                            sql.Identifier(table),
                        )
                    )
                if _exists(conn, live, MIGRATIONS_TABLE):
                    cols = _columns(conn, live, MIGRATIONS_TABLE)
                    conn.execute(
                        sql.SQL(COPY_ALL_SQL).format(
                            shadow,
                            sql.Identifier(MIGRATIONS_TABLE),
                            sql.Identifier(live),
                            sql.Identifier(MIGRATIONS_TABLE),
                            cols=cols,
                        )
                    )
        except psycopg.Error as exc:
            raise ConnectError(
                f"could not create the seeding schema {schema} in {redact_dsn(dsn)}: "
                f"{' '.join(str(exc).split())[:200]}; nothing was written.",
                hint=write_refused_hint(
                    exc, "the role needs CREATE on the database to seed canaries"
                ),
            ) from exc
    try:
        yield Shadow(live=live, schema=schema, dsn=_with_search_path(dsn, schema))
    finally:
        with connect(dsn) as conn:
            conn.execute(sql.SQL(DROP_SCHEMA_SQL).format(shadow))


def _exists(conn: psycopg.Connection[Any], schema: str, table: str) -> bool:
    qualified = sql.Identifier(schema, table).as_string(conn)
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,)).fetchone()
    return bool(row and row[0])


def replace_threads(
    conn: psycopg.Connection[Any],
    shadow: Shadow,
    old: Sequence[str],
    new: Sequence[str],
) -> None:
    """In ``conn``'s transaction: delete ``old`` threads' rows, copy ``new`` ones in.

    Args:
        conn: A connection inside the transaction that also replaces the ledger rows.
        shadow: Where the new rows are.
        old: Thread ids whose live rows go.
        new: Thread ids whose shadow rows come in.
    """
    live = sql.Identifier(shadow.live)
    source = sql.Identifier(shadow.schema)
    for table in reversed(SHADOW_TABLES):  # writes and blobs before their checkpoints
        if old:
            conn.execute(
                sql.SQL(DELETE_THREADS_SQL).format(live, sql.Identifier(table)), (list(old),)
            )
    for table in SHADOW_TABLES:
        if new:
            cols = _columns(conn, shadow.live, table)
            conn.execute(
                sql.SQL(COPY_THREADS_SQL).format(
                    live, sql.Identifier(table), source, sql.Identifier(table), cols=cols
                ),
                (list(new),),
            )
