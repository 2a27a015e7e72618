"""One migrator at a time: a session-level advisory lock on its own autocommit connection.

``setup()`` has no lock of its own, and two replicas running it race
(H-SETUP-RACE). Every command that changes the database (``migrate``,
``canary seed``, the ledger upgrade, restores) holds this lock for its whole run.
The lock lives on a dedicated connection so that no migration transaction ever
holds it, and waiting for it never holds any other lock.

A transaction-mode pooler (PgBouncer ``pool_mode=transaction``) does not keep a
session lock: connect the migrator directly to Postgres (``plan`` warns).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import psycopg

from migrator.errors import ConnectError, LockTimeoutError
from migrator.postgres import redact_dsn
from migrator.worker.faults import pause_point

#: ``pg_advisory_lock`` key: the first 8 bytes of sha256("langgraph-migrator"), as bigint.
MIGRATOR_LOCK_KEY = 0x5F3A_21C4_7E09_B6D1 - (1 << 63)

TRY_LOCK_SQL = "SELECT pg_try_advisory_lock(%s)"
UNLOCK_SQL = "SELECT pg_advisory_unlock(%s)"
HOLDER_SQL = """
SELECT a.pid, a.application_name, a.client_addr::text AS client, now() - a.backend_start AS age
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND (l.classid::bigint << 32 | l.objid::bigint) = (%s::bigint & x'FFFFFFFFFFFFFFFF'::bigint)
LIMIT 1
"""


def migrator_lock(dsn: str, *, wait: float | None, held: bool) -> AbstractContextManager[Any]:
    """:func:`advisory_lock` for a step of a larger run, unless the run holds it (``held``).

    ``migrate`` keeps the lock from its plan to its fallback's last swap; the
    restores it runs on the way pass ``held=True``. Taking the lock again on a
    second connection would wait for the run's own first one until ``wait``
    ran out, and letting it go between steps would let another migrator in
    halfway through a fallback.
    """
    return nullcontext() if held else advisory_lock(dsn, wait=wait)


@contextmanager
def advisory_lock(
    dsn: str, *, wait: float | None = 60.0, poll: float = 0.25
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """Hold the migrator lock for the duration of the block.

    Args:
        dsn: database to lock (the lock is per database).
        wait: seconds to wait for another migrator; ``0`` = do not wait; ``None`` = forever.
        poll: seconds between attempts (``pg_try_advisory_lock`` never blocks, so
            waiting holds no lock and cannot deadlock).

    Yields:
        The autocommit connection holding the lock (keep it open; do not use it for DDL).

    Raises:
        LockTimeoutError: another migrator held the lock for longer than ``wait`` (exit 4).
        ConnectError: the database cannot be reached.
    """
    try:
        conn = psycopg.connect(dsn, autocommit=True, application_name="langgraph-migrator lock")
    except psycopg.Error as exc:
        raise ConnectError(
            f"cannot connect to {redact_dsn(dsn)}: {str(exc).strip().splitlines()[0]}"
        ) from exc
    try:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            row = conn.execute(TRY_LOCK_SQL, (MIGRATOR_LOCK_KEY,)).fetchone()
            if row and row[0]:
                break
            if deadline is not None and time.monotonic() >= deadline:
                holder = conn.execute(HOLDER_SQL, (MIGRATOR_LOCK_KEY,)).fetchone()
                who = (
                    f" (held by backend pid {holder[0]}, {holder[1] or 'no name'})"
                    if holder
                    else ""
                )
                raise LockTimeoutError(
                    f"another migrator holds the lock on {redact_dsn(dsn)}{who}; "
                    f"gave up after {wait:g}s.",
                    hint="wait for it to finish and retry (safe), or pass --wait SECONDS",
                )
            time.sleep(poll)
        pause_point("lock.held")
        try:
            yield conn
        finally:
            if not conn.closed:
                try:
                    conn.execute(UNLOCK_SQL, (MIGRATOR_LOCK_KEY,))
                except psycopg.Error:
                    pass  # closing the session below releases it anyway
    finally:
        conn.close()
