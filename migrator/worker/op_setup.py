"""Worker op ``setup``: run this version's plain ``PostgresSaver.setup()``."""

from __future__ import annotations

from typing import Any

from migrator.worker.saver import ledger_version, open_connection


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Run ``setup()`` on ``request["dsn"]``; report the ledger before and after."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with open_connection(request["dsn"]) as conn:
        before = ledger_version(conn)
        PostgresSaver(conn).setup()
        after = ledger_version(conn)
    return {"ledger_before": before, "ledger_after": after}
