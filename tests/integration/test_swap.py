"""The swap locks every table at once, briefly, and retries past a long transaction.

Before, the dump/restore swap moved the tables one at a time, each under a 10 s
lock timeout and without a retry: an application query queued behind the first
table's lock for as long as the swap waited for the next one.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

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


@contextmanager
def _writer(dsn: str, pause: float) -> Iterator[list[float]]:
    """The application: inserts into ``checkpoints`` every ``pause`` s on a connection of
    its own while the block runs; yields each insert's seconds (how long it waited)."""
    waits: list[float] = []
    stop = threading.Event()

    def write() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                t0 = time.monotonic()
                conn.execute("INSERT INTO checkpoints VALUES (7)")
                waits.append(time.monotonic() - t0)
                time.sleep(pause)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        yield waits
    finally:
        stop.set()
        thread.join()


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
    try:
        with _writer(two_schemas, 0.02) as waits:
            threading.Timer(1.5, holder.commit).start()
            result = swap_tables(two_schemas, "shadow", "public", "old_2", TABLES, lock_timeout=0.3)
    finally:
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


class _SlowLink:
    """A TCP proxy to the server that delays every client-to-server chunk by ``delay``.

    Chunks keep their order and are not delayed behind each other: a client that
    pipelines its statements pays the delay once, one that waits for each answer
    pays it per statement (what a busy client host or a remote link does).
    """

    def __init__(self, dsn: str, delay: float) -> None:
        info = conninfo_to_dict(dsn)
        self.target = (str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.dsn = make_conninfo(dsn, host="127.0.0.1", port=self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.target[0].startswith("/"):
                server = socket.socket(socket.AF_UNIX)
                server.connect(f"{self.target[0]}/.s.PGSQL.{self.target[1]}")
            else:
                server = socket.create_connection(self.target)
            chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()
            threading.Thread(target=self._read, args=(client, chunks), daemon=True).start()
            threading.Thread(target=self._send, args=(chunks, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _read(self, src: socket.socket, chunks: queue.Queue[tuple[float, bytes]]) -> None:
        while data := self._recv(src):
            chunks.put((time.monotonic() + self.delay, data))
        chunks.put((0.0, b""))

    def _send(self, chunks: queue.Queue[tuple[float, bytes]], dst: socket.socket) -> None:
        while True:
            due, data = chunks.get()
            if not data:
                dst.close()
                return
            time.sleep(max(0.0, due - time.monotonic()))
            dst.sendall(data)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while data := self._recv(src):
            dst.sendall(data)
        dst.close()

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(1 << 16)
        except OSError:
            return b""

    def close(self) -> None:
        self.listener.close()


def test_swap_window_is_two_round_trips_not_one_per_statement(two_schemas: str) -> None:
    """From the lock request to the commit the server waits for the client twice, not per statement.

    Before, the swap sent its lock, each move, the drop and the commit one after
    the other, each waiting for the previous answer: on a client slowed down by
    CPU contention (or a remote link) the tables stayed locked, and the
    application's queries queued, for a round trip per statement (10 here).
    """
    delay = 0.1
    link = _SlowLink(two_schemas, delay)
    try:
        with _writer(two_schemas, 0.005) as waits:  # the application, on a direct connection
            time.sleep(0.2)
            result = swap_tables(link.dsn, "shadow", "public", "old_4", TABLES)
    finally:
        link.close()
    assert result.attempts == 1
    assert sorted(result.moved_in) == sorted(TABLES[1:])
    # Two delayed trips to the server (the pipeline, then the commit), not ten.
    assert result.blocked_s < 5 * delay, result.summary()
    assert max(waits) < 5 * delay, f"a writer waited {max(waits):.2f}s behind the swap"
    assert result.waited_s < delay  # the server's own clock: no lock was in the way
    # Every acknowledged insert is in the old table (before the swap) or the new one.
    moved = _count(two_schemas, "old_4.checkpoints") + _count(two_schemas, "public.checkpoints")
    assert moved == 1 + 2 + len(waits)
