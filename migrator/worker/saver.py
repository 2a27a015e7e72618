"""Open the version's own ``PostgresSaver`` the way its README says to.

``setup()`` needs ``autocommit=True`` and ``row_factory=dict_row``; every
supported checkpoint-postgres (1.0.0 to the newest) takes a bare connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def open_connection(dsn: str) -> Iterator[Any]:
    """A psycopg connection configured as the savers expect (autocommit, dict rows)."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        yield conn


@contextmanager
def open_saver(dsn: str) -> Iterator[Any]:
    """The installed version's sync ``PostgresSaver`` over a fresh connection."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with open_connection(dsn) as conn:
        yield PostgresSaver(conn)


def ledger_version(conn: Any) -> int | None:
    """Highest ``v`` in ``checkpoint_migrations``, or None when the table is absent."""
    row = conn.execute("SELECT to_regclass('checkpoint_migrations') AS t").fetchone()
    if row["t"] is None:
        return None
    row = conn.execute("SELECT max(v) AS v FROM checkpoint_migrations").fetchone()
    return None if row["v"] is None else int(row["v"])
