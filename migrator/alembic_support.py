"""Alembic coexistence for apps that keep LangGraph checkpoints in their own database.

Two things an app's Alembic setup needs (see ``docs/alembic.md``):

* autogenerate must never propose changes to the checkpoint tables (created by
  ``PostgresSaver.setup()``, not by the app's models) or to this tool's ledger
  schema: pass :func:`include_name` and :func:`include_object` to
  ``context.configure`` in the app's ``env.py``;
* a revision that runs the checkpoint migrations must run them outside the
  migration's transaction, because some of them are ``CREATE INDEX CONCURRENTLY``
  (H-TX-CONCURRENTLY), and one migrator at a time (H-SETUP-RACE):
  :func:`run_checkpoint_migrations` does both, with the langgraph the app has
  installed (the app process is the version environment).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg.rows import dict_row

from migrator.errors import ConfigError, LockTimeoutError, MigrationError
from migrator.ledger import LEDGER_SCHEMA
from migrator.lock import MIGRATOR_LOCK_KEY, TRY_LOCK_SQL, UNLOCK_SQL

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.engine import Connection

#: Tables ``PostgresSaver.setup()`` owns, in whatever schema the app's search_path puts them.
CHECKPOINT_TABLES = frozenset(
    {"checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations"}
)
#: Schemas this tool owns.
EXCLUDED_SCHEMAS = frozenset({LEDGER_SCHEMA})

LEDGER_TABLE_SQL = "SELECT to_regclass('checkpoint_migrations') IS NOT NULL"
CHECKPOINT_LEDGER_SQL = "SELECT max(v) FROM checkpoint_migrations"


class _Operations(Protocol):
    """What :func:`run_checkpoint_migrations` uses of ``alembic.op``."""

    def get_context(self) -> MigrationContext: ...

    def get_bind(self) -> Connection: ...


def include_name(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
    """Alembic ``include_name`` hook: skip the checkpoint tables and the ledger schema.

    Args:
        name: The reflected object's name (None for the default schema).
        type_: ``schema``, ``table``, ``column``, ``index``, ``unique_constraint``
            or ``foreign_key_constraint``.
        parent_names: ``schema_name``, ``table_name`` etc. of the object's parents.

    Returns:
        False for anything in ``langgraph_migrator`` or belonging to a checkpoint table.
    """
    if type_ == "schema":
        return name not in EXCLUDED_SCHEMAS
    if parent_names.get("schema_name") in EXCLUDED_SCHEMAS:
        return False
    if type_ == "table":
        return name not in CHECKPOINT_TABLES
    return parent_names.get("table_name") not in CHECKPOINT_TABLES


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic ``include_object`` hook: the same exclusions, for model and reflected objects.

    Args:
        obj: The ``Table``, ``Column``, ``Index``, constraint ...
        name: Its name.
        type_: ``table``, ``column``, ``index``, ``unique_constraint``,
            ``foreign_key_constraint``.
        reflected: Whether it comes from the database.
        compare_to: The object it is compared with, or None.

    Returns:
        False for the checkpoint tables, their columns/indexes/constraints, and the ledger.
    """
    table = obj if type_ == "table" else getattr(obj, "table", None)
    if table is None:
        return True
    if getattr(table, "schema", None) in EXCLUDED_SCHEMAS:
        return False
    return getattr(table, "name", None) not in CHECKPOINT_TABLES


def _first(row: Any) -> Any:
    """The first column of a tuple or dict row (None for no row)."""
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


@contextmanager
def _migrator_lock(conn: psycopg.Connection[Any], wait: float | None) -> Iterator[None]:
    """The migrator's session advisory lock, taken on ``conn`` (an autocommit connection)."""
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        if _first(conn.execute(TRY_LOCK_SQL, (MIGRATOR_LOCK_KEY,)).fetchone()):
            break
        if deadline is not None and time.monotonic() >= deadline:
            raise LockTimeoutError(
                f"another migrator holds the lock on this database; gave up after {wait:g}s.",
                hint="wait for it (langgraph-migrator migrate, another replica) and retry",
            )
        time.sleep(0.25)
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute(UNLOCK_SQL, (MIGRATOR_LOCK_KEY,))


def _psycopg_connection(bind: Connection) -> tuple[psycopg.Connection[Any], bool]:
    """The psycopg 3 connection under ``bind``, or a new one for other drivers (owned)."""
    driver = bind.connection.driver_connection
    if isinstance(driver, psycopg.Connection):
        return driver, False
    url = bind.engine.url.set(drivername="postgresql")
    conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
    return conn, True


def _ledger_version(conn: psycopg.Connection[Any]) -> int | None:
    if not _first(conn.execute(LEDGER_TABLE_SQL).fetchone()):
        return None
    value = _first(conn.execute(CHECKPOINT_LEDGER_SQL).fetchone())
    return None if value is None else int(value)


def run_checkpoint_migrations(
    op: _Operations, *, lock_wait: float | None = 60.0
) -> dict[str, int | None]:
    """Run ``PostgresSaver.setup()`` of the app's installed langgraph from an Alembic revision.

    Call it in ``upgrade()`` as ``run_checkpoint_migrations(op)``. It commits the
    migration's transaction so far (Alembic ``autocommit_block``), takes the
    migrator advisory lock on the same connection, runs ``setup()`` in autocommit
    mode (``CREATE INDEX CONCURRENTLY`` cannot run in a transaction block), and
    lets Alembic open a new transaction for what follows. It works with
    ``transaction_per_migration`` on or off.

    Args:
        op: ``alembic.op``.
        lock_wait: Seconds to wait for another migrator; None waits forever.

    Returns:
        ``{"ledger_before": v | None, "ledger_after": v}``: the highest entry of
        ``checkpoint_migrations`` before and after.

    Raises:
        ConfigError: Offline (``--sql``) mode; ``setup()`` needs a live connection.
        LockTimeoutError: Another migrator held the lock for longer than ``lock_wait``.
        MigrationError: The connection is still inside a transaction block.
        psycopg.Error: ``setup()`` failed (the migrations before the failing one stay
            applied, as with a plain ``setup()``).
    """
    from langgraph.checkpoint.postgres import PostgresSaver

    context = op.get_context()
    if context.as_sql:
        raise ConfigError(
            "run_checkpoint_migrations cannot run in offline (--sql) mode.",
            hint="run `alembic upgrade` against the database, or `langgraph-migrator plan` "
            "to see the SQL",
        )
    with context.autocommit_block():
        conn, owned = _psycopg_connection(op.get_bind())
        saved_factory = conn.row_factory
        try:
            idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            if not (conn.autocommit and idle):
                raise MigrationError(
                    "the connection is inside a transaction block; setup() would fail with "
                    "ActiveSqlTransaction (H-TX-CONCURRENTLY).",
                    hint="let Alembic manage the transaction (context.begin_transaction()) "
                    "instead of connection.begin() in env.py",
                )
            conn.row_factory = dict_row  # older savers read rows by column name
            with _migrator_lock(conn, lock_wait):
                before = _ledger_version(conn)
                PostgresSaver(conn).setup()
                after = _ledger_version(conn)
        finally:
            conn.row_factory = saved_factory
            if owned:
                conn.close()
    return {"ledger_before": before, "ledger_after": after}
