"""Swap a shadow schema's checkpoint tables in, with the shortest blocking window we can get.

Moving a table to another schema takes an ``ACCESS EXCLUSIVE`` lock on it, and
while that lock is *requested* every later query of the table queues behind the
request. Taking the tables' locks one at a time, each with a long timeout, lets
the application queue behind the first table while we wait for the next one.
:func:`swap_tables` instead asks for every table's lock in one ``LOCK TABLE``
statement with a short ``lock_timeout`` (what the application can be made to wait,
at most), and when a long application transaction is in the way it gives up,
rolls back (the queue drains) and tries again a little later. Once the locks are
granted, the moves are catalog updates: the window is milliseconds. The lock,
the moves and the drop of the shadow schema go to the server in one pipeline,
then the commit: two round trips, not one per statement (on a host where the tool
is descheduled, it runs niced beside the application, or on a slow link, ten round
trips were ten times the window). The commit is not pipelined behind the lock on
purpose: a tool killed while it waited for the locks must not have its swap
committed later, when they come (a deploy that killed it goes on with the old
tables); the session's client check ends such a wait within a second (PG 14+).

Used by the dump/restore swap and by ``migrate``'s fallback (``docs/reliability.md``).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from migrator.errors import LockTimeoutError
from migrator.worker.faults import armed, pause_point

Progress = Callable[[str], None]

#: Seconds one attempt may wait for the locks: the longest an app query queues behind us.
SWAP_LOCK_TIMEOUT_S = 1.0
#: Attempts before the swap gives up (nothing changed; safe to retry).
SWAP_ATTEMPTS = 20
#: First pause between attempts (doubles, with jitter, at most 2 s).
SWAP_BACKOFF_S = 0.1


def schema_stamp() -> str:
    """The UTC time suffix of every schema the tool creates or keeps (``20261205_021243_594640``).

    One format for the shadow, pre-migrate and kept ``*_old_*`` schemas of dump/restore,
    ``restore-backup`` and ``migrate``'s fallback, so that they sort by time together.
    """
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S_%f")


SET_LOCK_TIMEOUT_SQL = "SELECT set_config('lock_timeout', %s, true)"
SET_CLIENT_CHECK_SQL = "SELECT set_config('client_connection_check_interval', '1000', true)"
CREATE_SCHEMA_SQL = "CREATE SCHEMA {}"
DROP_SCHEMA_SQL = "DROP SCHEMA IF EXISTS {} CASCADE"
TABLES_IN_SCHEMA_SQL = (
    "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename = ANY(%s)"
    " ORDER BY tablename"
)
LOCK_TABLES_SQL = "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE"
MOVE_TABLE_SQL = "ALTER TABLE {}.{} SET SCHEMA {}"
#: The server's clock, read before and after the lock request: how long the locks took.
CLOCK_SQL = "SELECT clock_timestamp()"


@dataclass(frozen=True)
class SwapResult:
    """What one swap did and how long the application could have waited for it.

    Attributes:
        moved_out: Live tables moved to ``old``.
        moved_in: Shadow tables moved to ``live``.
        attempts: Lock attempts (1 when the first one got every lock).
        blocked_s: From the successful ``LOCK TABLE`` request to the commit: the
            longest a query of the tables waited behind the swap.
        waited_s: Of ``blocked_s``, the time spent waiting for the locks.
        gave_up_s: Time spent in failed attempts (each at most the lock timeout).
    """

    moved_out: tuple[str, ...]
    moved_in: tuple[str, ...]
    attempts: int
    blocked_s: float
    waited_s: float
    gave_up_s: float

    def summary(self) -> str:
        """One line for progress output and reports."""
        return (
            f"swap: {len(self.moved_out) + len(self.moved_in)} table(s) locked at once and moved "
            f"in {self.blocked_s * 1000:.0f} ms (lock wait {self.waited_s * 1000:.0f} ms, "
            f"attempt {self.attempts}); application queries waited at most "
            f"{max(self.blocked_s, SWAP_LOCK_TIMEOUT_S if self.attempts > 1 else 0) * 1000:.0f} ms"
        )


def swap_tables(
    dsn: str,
    shadow: str,
    live: str,
    old: str,
    tables: Sequence[str],
    *,
    lock_timeout: float = SWAP_LOCK_TIMEOUT_S,
    attempts: int = SWAP_ATTEMPTS,
    backoff: float = SWAP_BACKOFF_S,
    progress: Progress = lambda _m: None,
) -> SwapResult:
    """One transaction: live ``tables`` -> schema ``old`` (created), ``shadow``'s -> ``live``.

    Every table of both schemas is locked by one ``LOCK TABLE`` statement under
    ``lock_timeout``; on a lock timeout the transaction is rolled back and retried
    after a short, growing pause. ``shadow`` is dropped in the same transaction.

    Args:
        dsn: The database.
        shadow: Schema holding the new tables.
        live: Schema the application reads.
        old: New schema for the live tables (must not exist).
        tables: Table names a swap moves, when present.
        lock_timeout: Seconds one attempt may wait for the locks.
        attempts: Attempts in all.
        backoff: First pause between attempts.
        progress: Receives a line per failed attempt.

    Returns:
        What moved, and the blocking window.

    Raises:
        LockTimeoutError: No attempt got the locks (nothing changed; safe to retry).
        psycopg.Error: Anything else (the transaction is rolled back).
    """
    gave_up = 0.0
    for attempt in range(1, attempts + 1):
        asked = time.monotonic()
        try:
            return _attempt(dsn, shadow, live, old, tables, lock_timeout, attempt, gave_up)
        except pg_errors.LockNotAvailable:
            gave_up += time.monotonic() - asked
            if attempt == attempts:
                break
            pause = min(backoff * 2 ** (attempt - 1), 2.0) * random.uniform(0.5, 1.0)  # noqa: S311
            progress(
                f"swap: tables busy for {lock_timeout:g}s (attempt {attempt}/{attempts}); "
                f"retrying in {pause:.1f}s"
            )
            time.sleep(pause)
    raise LockTimeoutError(
        f"swap: the checkpoint tables stayed busy through {attempts} attempts of "
        f"{lock_timeout:g}s each; rolled back, live tables untouched.",
        hint="a long transaction holds the checkpoint tables (pg_stat_activity); end it "
        "and retry (safe)",
    )


def _attempt(
    dsn: str,
    shadow: str,
    live: str,
    old: str,
    tables: Sequence[str],
    lock_timeout: float,
    attempt: int,
    gave_up: float,
) -> SwapResult:
    ident = sql.Identifier
    with psycopg.connect(dsn) as conn:  # an error rolls the transaction back
        conn.execute(SET_LOCK_TIMEOUT_SQL, (f"{int(lock_timeout * 1000)}ms",))
        if conn.info.server_version >= 140000:
            # A swap whose tool was killed while it waited for the locks gives up
            # within a second instead of holding them (tests/reliability). PG 14+.
            conn.execute(SET_CLIENT_CHECK_SQL)
        present = [r[0] for r in conn.execute(TABLES_IN_SCHEMA_SQL, (live, list(tables)))]
        incoming = [r[0] for r in conn.execute(TABLES_IN_SCHEMA_SQL, (shadow, list(tables)))]
        conn.execute(sql.SQL(CREATE_SCHEMA_SQL).format(ident(old)))
        names = [ident(live, t) for t in present] + [ident(shadow, t) for t in incoming]
        moves = [sql.SQL(MOVE_TABLE_SQL).format(ident(live), ident(t), ident(old)) for t in present]
        moves += [
            sql.SQL(MOVE_TABLE_SQL).format(ident(shadow), ident(t), ident(live)) for t in incoming
        ]
        asked = time.monotonic()
        # From the lock request to the commit, one round trip: the server never waits
        # for this process (on a busy host, or a slow link, round trips are the window).
        with conn.pipeline() as pipeline:
            stamps = [conn.execute(CLOCK_SQL)]
            if names:
                conn.execute(sql.SQL(LOCK_TABLES_SQL).format(sql.SQL(", ").join(names)))
            stamps.append(conn.execute(CLOCK_SQL))
            for move in moves:
                conn.execute(move)
            conn.execute(sql.SQL(DROP_SCHEMA_SQL).format(ident(shadow)))
            # The COMMIT is sent only once the moves are done: had it waited in the
            # server's buffer behind the lock, a swap whose tool was killed meanwhile
            # would still commit when the locks came (the client check only notices
            # a dead client once a second). One more round trip in the window.
            pipeline.sync()
            if armed("swap.locked"):  # the reliability suite: moved, not committed
                pause_point("swap.locked", shadow)
            conn.commit()
        committed = time.monotonic()
        before, after = (_fetch_stamp(c) for c in stamps)
    return SwapResult(
        moved_out=tuple(present),
        moved_in=tuple(incoming),
        attempts=attempt,
        blocked_s=committed - asked,
        waited_s=max(0.0, (after - before).total_seconds()),
        gave_up_s=gave_up,
    )


def _fetch_stamp(cursor: psycopg.Cursor[Any]) -> dt.datetime:
    row = cursor.fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]
