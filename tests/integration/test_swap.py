"""The swap locks every table at once, briefly, and retries past a long transaction.

Before, the dump/restore swap moved the tables one at a time, each under a 10 s
lock timeout and without a retry: an application query queued behind the first
table's lock for as long as the swap waited for the next one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from migrator.errors import LockTimeoutError
from migrator.postgres import Server, scratch_database
from migrator.swap import swap_tables

TABLES = ("checkpoint_migrations", "checkpoints", "checkpoint_blobs", "checkpoint_writes")


@pytest.fixture
def two_schemas(pg_default: Server) -> Iterator[str]:
    with scratch_database(pg_default) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA shadow")
        for schema, rows in (("public", 1), ("shadow", 2)):
            for table in TABLES[1:]:
                conn.execute(f"CREATE TABLE {schema}.{table} (n int)")
                conn.execute(f"INSERT INTO {schema}.{table} SELECT generate_series(1, {rows})")
        yield dsn


def _count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def test_swap_moves_every_table_in_one_short_window(two_schemas: str) -> None:
    result = swap_tables(two_schemas, "shadow", "public", "old_1", TABLES)
    assert result.attempts == 1
    assert sorted(result.moved_out) == sorted(TABLES[1:])
    assert sorted(result.moved_in) == sorted(TABLES[1:])
    assert result.blocked_s < 1.0
    assert _count(two_schemas, "public.checkpoints") == 2
    assert _count(two_schemas, "old_1.checkpoints") == 1
    with psycopg.connect(two_schemas, autocommit=True) as conn:
        assert conn.execute("SELECT to_regnamespace('shadow')").fetchone() == (None,)


def test_swap_retries_past_a_long_transaction_and_writers_wait_at_most_lock_timeout(
    two_schemas: str,
) -> None:
    holder = psycopg.connect(two_schemas)
    holder.execute("INSERT INTO checkpoint_writes VALUES (99)")  # a long app transaction
    waits: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(two_schemas, autocommit=True) as conn:
            while not stop.is_set():
                t0 = time.monotonic()
                conn.execute("INSERT INTO checkpoints VALUES (7)")
                waits.append(time.monotonic() - t0)
                time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    threading.Timer(1.5, holder.commit).start()
    try:
        result = swap_tables(two_schemas, "shadow", "public", "old_2", TABLES, lock_timeout=0.3)
    finally:
        stop.set()
        thread.join()
        holder.close()
    assert result.attempts > 1
    assert max(waits) < 0.3 + 0.5, f"a writer waited {max(waits):.2f}s behind the swap"
    assert _count(two_schemas, "old_2.checkpoint_writes") == 2  # the held row went with them


def test_swap_gives_up_without_changing_anything(two_schemas: str) -> None:
    with psycopg.connect(two_schemas) as holder:
        holder.execute("LOCK TABLE checkpoint_blobs IN ROW EXCLUSIVE MODE")
        with pytest.raises(LockTimeoutError, match="stayed busy through 2 attempts"):
            swap_tables(
                two_schemas, "shadow", "public", "old_3", TABLES, lock_timeout=0.2, attempts=2
            )
        holder.rollback()
    assert _count(two_schemas, "public.checkpoints") == 1
    with psycopg.connect(two_schemas, autocommit=True) as conn:
        assert conn.execute("SELECT to_regnamespace('old_3')").fetchone() == (None,)
