"""Worker op ``setup``: run this version's plain ``PostgresSaver.setup()``."""

from __future__ import annotations

from typing import Any

from migrator.worker import faults
from migrator.worker.saver import ledger_version, open_connection


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Run ``setup()`` on ``request["dsn"]``; report the ledger before and after."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with open_connection(request["dsn"]) as conn:
        before = ledger_version(conn)
        if faults.armed_any("setup."):
            conn.cursor_factory = faults.setup_cursor_factory(
                list(PostgresSaver.MIGRATIONS), conn.cursor_factory
            )
        PostgresSaver(conn).setup()
        after = ledger_version(conn)
        faults.pause_point("setup.done", conn.info.dbname)
    return {"ledger_before": before, "ledger_after": after}
