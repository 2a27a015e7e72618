"""Copy real threads (``--thread ID``) from the user's database into a check database.

``upgrade-check`` never runs the new version against the user's database: it copies
the named threads' rows (every namespace, blob and pending write) into its own
scratch database, where the old version's ``setup()`` already built the tables, and
watches them like canaries. Only columns both sides have are copied, so a source
written by a slightly different release still copies; a thread that does not exist
is a usage error before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from migrator.errors import ConfigError, ConnectError
from migrator.postgres import redact_dsn

#: Tables holding a thread's data, each keyed by ``thread_id``.
THREAD_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")

COLUMNS_SQL = """
SELECT column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = %s
ORDER BY ordinal_position
"""

EXISTING_THREADS_SQL = "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id = ANY(%s)"


def _columns(conn: psycopg.Connection[tuple[object, ...]], table: str) -> list[str]:
    return [str(r[0]) for r in conn.execute(COLUMNS_SQL, (table,)).fetchall()]


def copy_threads(source_dsn: str, target_dsn: str, thread_ids: Sequence[str]) -> dict[str, int]:
    """Copy the rows of ``thread_ids`` from ``source_dsn`` into ``target_dsn``.

    Args:
        source_dsn: the user's database (only read).
        target_dsn: a check database whose checkpoint tables exist and are empty of these threads.
        thread_ids: the threads to copy.

    Returns:
        Rows copied per table.

    Raises:
        ConfigError: a thread does not exist in the source.
        ConnectError: the source cannot be read.
    """
    ids = list(dict.fromkeys(thread_ids))
    copied: dict[str, int] = {}
    try:
        with (
            psycopg.connect(source_dsn) as src,
            psycopg.connect(target_dsn) as dst,
        ):
            src.read_only = True
            if src.execute("SELECT to_regclass('checkpoints')").fetchone() == (None,):
                raise ConfigError(
                    f"{redact_dsn(source_dsn)} has no langgraph checkpoint tables.",
                    hint="point --threads-from at the database your app's checkpointer uses",
                )
            found = {r[0] for r in src.execute(EXISTING_THREADS_SQL, (ids,)).fetchall()}
            missing = [t for t in ids if t not in found]
            if missing:
                raise ConfigError(
                    f"thread(s) not found in {redact_dsn(source_dsn)}: {', '.join(missing)}",
                    hint="check the ids (SELECT DISTINCT thread_id FROM checkpoints)",
                )
            for table in THREAD_TABLES:
                cols = [c for c in _columns(src, table) if c in set(_columns(dst, table))]
                if not cols:
                    continue
                col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
                out = sql.SQL(
                    "COPY (SELECT {} FROM {} WHERE thread_id = ANY({})) TO STDOUT"
                ).format(col_list, sql.Identifier(table), sql.Literal(ids))
                into = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), col_list)
                rows = 0
                with src.cursor().copy(out) as reader, dst.cursor().copy(into) as writer:
                    for chunk in reader:
                        rows += bytes(chunk).count(b"\n")
                        writer.write(chunk)
                copied[table] = rows
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectError(
            f"could not copy threads from {redact_dsn(source_dsn)}: {type(exc).__name__}: {first}",
            hint="the source must hold langgraph checkpoint tables readable by this role",
        ) from exc
    return copied
