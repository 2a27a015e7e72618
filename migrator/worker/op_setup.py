"""Worker op ``setup``: run this version's plain ``PostgresSaver.setup()``.

``blocking_lock_timeout_ms`` in the request: a ``MIGRATIONS`` statement that blocks
the application while it waits for its lock (``ALTER TABLE``, a ``CREATE INDEX``
without ``CONCURRENTLY``: every query of the table queues behind the request)
runs under that shorter ``lock_timeout``; the others keep the connection's.
``LockNotAvailable`` ends the op, and the host retries ``setup()``, which
resumes where the ledger stopped. A ``CREATE INDEX CONCURRENTLY`` keeps the long
timeout: it blocks no writer, and cancelling it leaves an INVALID index.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from migrator.worker import faults
from migrator.worker.saver import ledger_version, open_connection

#: Statements whose lock request queues the application's queries of the table.
BLOCKING_RE = re.compile(
    r"^\s*(ALTER\s+TABLE|CREATE\s+(UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)|DROP\s+INDEX\s+(?!CONCURRENTLY))",
    re.I,
)
SET_LOCK_TIMEOUT_SQL = "SELECT set_config('lock_timeout', %s, false)"
SHOW_LOCK_TIMEOUT_SQL = "SELECT current_setting('lock_timeout')"


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Run ``setup()`` on ``request["dsn"]``; report the ledger before and after."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with open_connection(request["dsn"]) as conn:
        before = ledger_version(conn)
        if faults.armed_any("setup."):
            conn.cursor_factory = faults.setup_cursor_factory(
                list(PostgresSaver.MIGRATIONS), conn.cursor_factory
            )
        short = request.get("blocking_lock_timeout_ms")
        if short:
            conn.cursor_factory = blocking_timeout_cursor_factory(
                list(PostgresSaver.MIGRATIONS), conn.cursor_factory, int(short)
            )
        PostgresSaver(conn).setup()
        after = ledger_version(conn)
        faults.pause_point("setup.done", conn.info.dbname)
    return {"ledger_before": before, "ledger_after": after}


def blocking_timeout_cursor_factory(migrations: list[str], base: Any, timeout_ms: int) -> Any:
    """A cursor class running the blocking ``migrations`` under ``timeout_ms`` of lock_timeout."""
    blocking = {m for m in migrations if BLOCKING_RE.match(m)}

    class ShortLockCursor(base):  # type: ignore[misc]
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            text = query if isinstance(query, str) else str(query)
            if text not in blocking:
                return super().execute(query, *args, **kwargs)
            conn = self.connection
            row = conn.execute(SHOW_LOCK_TIMEOUT_SQL).fetchone()
            previous = row["current_setting"] if isinstance(row, dict) else row[0]
            conn.execute(SET_LOCK_TIMEOUT_SQL, (f"{timeout_ms}ms",))
            try:
                result = super().execute(query, *args, **kwargs)
            except BaseException:
                with contextlib.suppress(Exception):  # the statement's error is the news
                    conn.execute(SET_LOCK_TIMEOUT_SQL, (previous,))
                raise
            conn.execute(SET_LOCK_TIMEOUT_SQL, (previous,))
            return result

    return ShortLockCursor
