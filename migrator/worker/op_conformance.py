"""Worker op ``conformance``: langgraph's own checkpointer conformance suite on a copy.

Runs in the TARGET version environment, against a copy of the migrated database
the host made (never the live one): the copy's checkpoint tables are emptied
first (the suite writes and lists its own threads), and the suite
(``langgraph.checkpoint.conformance.validate``, package
``langgraph-checkpoint-conformance``) drives this version's
``AsyncPostgresSaver`` with the app's serializer over the migrated schema.

Request::

    {"dsn": str, "schema": str | null}

Result: ``available`` (the package is installed here), and per capability
``detected``, ``passed`` (None: skipped), test counts and the first failures.
"""

from __future__ import annotations

import asyncio
from importlib import metadata
from typing import Any

from migrator.worker import app as worker_app
from migrator.worker.saver import open_connection

PACKAGE = "langgraph-checkpoint-conformance"
TABLES = ("checkpoint_writes", "checkpoint_blobs", "checkpoints")
MAX_FAILURES = 5


def _empty_tables(dsn: str) -> None:
    with open_connection(dsn) as conn:
        present = [
            t
            for t in TABLES
            if conn.execute("SELECT to_regclass(%s) AS t", (t,)).fetchone()["t"] is not None
        ]
        if present:
            conn.execute("TRUNCATE " + ", ".join(present))  # names from TABLES only


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Run the suite against ``request["dsn"]`` (a copy) and return its report."""
    try:
        from langgraph.checkpoint.conformance import checkpointer_test, validate
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ImportError as exc:
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    dsn = str(request["dsn"])
    _empty_tables(dsn)
    serde = worker_app.make_serde()

    @checkpointer_test(name="migrated-postgres")
    async def factory() -> Any:
        async with AsyncPostgresSaver.from_conn_string(dsn) as saver:
            if serde is not None:
                saver.serde = serde
            yield saver

    report = asyncio.run(validate(factory))
    results = {}
    for name, result in sorted(report.results.items()):
        results[name] = {
            "detected": bool(result.detected),
            "passed": result.passed,
            "tests_passed": int(result.tests_passed),
            "tests_failed": int(result.tests_failed),
            "failures": [str(f).splitlines()[0][:300] for f in result.failures[:MAX_FAILURES]],
        }
    return {
        "available": True,
        "version": metadata.version(PACKAGE),
        "level": report.conformance_level(),
        "passed_all": bool(report.passed_all()),
        "results": results,
        "serde": type(serde).__name__ if serde is not None else None,
    }
