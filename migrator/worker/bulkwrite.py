"""Writing records through the new saver: ``put``/``put_writes``, or the same rows by COPY.

:class:`BulkWriter` runs the saver's own calls on a recording cursor and loads
the captured rows with binary COPY: the rows ``put`` would write, without a round
trip per checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from migrator.worker.serde_cache import ListEncodingSerde

BLOBS_TABLE = "checkpoint_blobs"
COPY_SQL = "COPY {} ({}) FROM STDIN{}"
COLUMN_TYPES_SQL = (
    "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
    " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped"
)
#: The savers' upserts: ``INSERT INTO t (cols) VALUES (...) ON CONFLICT (keys) ...``.
INSERT_RE = re.compile(
    r"\s*INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*\([^)]*\)\s*"
    r"ON\s+CONFLICT\s*\(([^)]*)\)",
    re.IGNORECASE,
)


def write_record(
    saver: Any, record: dict[str, Any], new_versions: dict[str, Any] | None = None
) -> None:
    """Write one checkpoint and its pending writes through the saver's public API.

    Args:
        saver: The new version's saver.
        record: A decoded (and transformed) record.
        new_versions: The ``new_versions`` passed to ``put`` (default: every
            channel version of the checkpoint, so every blob is written).
    """
    parent = {"thread_id": record["thread_id"], "checkpoint_ns": record["checkpoint_ns"]}
    if record["parent_checkpoint_id"] is not None:
        parent["checkpoint_id"] = record["parent_checkpoint_id"]
    checkpoint = record["checkpoint"]
    if new_versions is None:
        new_versions = dict(checkpoint.get("channel_versions") or {})
    config = saver.put({"configurable": parent}, checkpoint, record["metadata"], new_versions)
    tasks: dict[str, tuple[str, list[tuple[str, Any]]]] = {}
    for w in record["pending_writes"]:
        tasks.setdefault(w["task_id"], (w.get("task_path") or "", []))[1].append(
            (w["channel"], w["value"])
        )
    for task_id, (task_path, writes) in tasks.items():
        try:
            saver.put_writes(config, writes, task_id, task_path)
        except TypeError:  # versions before put_writes took a task path
            saver.put_writes(config, writes, task_id)


class _Statement:
    """An ``INSERT INTO t (cols) VALUES ... ON CONFLICT (keys) ...`` the saver issued."""

    def __init__(self, query: str) -> None:
        self.query = query
        match = INSERT_RE.match(query)
        self.table = match.group(1) if match else None
        self.columns = [c.strip() for c in match.group(2).split(",")] if match else []
        keys = [c.strip() for c in match.group(3).split(",")] if match else []
        self.key_index = [self.columns.index(k) for k in keys if k in self.columns]
        if len(self.key_index) != len(keys):
            self.table = None

    def key(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(row[i] for i in self.key_index)


class _RecordingCursor:
    """Stands in for the saver's cursor: keeps each statement's rows instead of sending them."""

    def __init__(self, sink: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        self._sink = sink

    def execute(self, query: Any, params: Any = None, **_: Any) -> None:
        self._sink.append((str(query), [tuple(params or ())]))

    def executemany(self, query: Any, params_seq: Any, **_: Any) -> None:
        self._sink.append((str(query), [tuple(p) for p in params_seq]))


class BulkWriter:
    """Writes exactly the rows the saver's ``put``/``put_writes`` write, in bulk.

    The saver's own ``put``/``put_writes`` run unchanged (its serializer and
    row helpers, whatever this version has), but on a cursor that records
    their statements and parameters; :meth:`flush` loads the rows with COPY.
    Two things make that equal to the ``put()`` path's tables:

    * a blob row is captured once per (thread, ns, channel, version): later
      checkpoints pass ``new_versions`` without the keys already written, where
      the ``put()`` path's repeated insert is ``ON CONFLICT DO NOTHING``
      (the first row stays either way) — and this skips re-serializing values;
    * a statement whose rows repeat a conflict key within a flush is run with
      ``executemany`` instead of COPY, so its own ``ON CONFLICT`` decides.

    The saver's serializer gets a :class:`ListEncodingSerde` in front (same
    bytes; a message shared by later versions of a list is serialized once).

    Args:
        saver: The new version's saver (its ``_cursor`` and ``serde`` are
            replaced on this instance).
        conn: The connection the rows are loaded on (in a transaction).
    """

    def __init__(self, saver: Any, conn: Any) -> None:
        self.saver = saver
        self.conn = conn
        self.captured: list[tuple[str, list[tuple[Any, ...]]]] = []
        self.blob_keys: set[tuple[Any, ...]] = set()
        self._statements: dict[str, _Statement] = {}
        self._types: dict[str, list[str]] = {}
        saver._cursor = self._cursor
        self.serde: ListEncodingSerde | None = None
        if ListEncodingSerde.supports(saver.serde):
            self.serde = saver.serde = ListEncodingSerde(saver.serde)

    @staticmethod
    def available(saver: Any) -> bool:
        """The saver writes through ``_cursor`` (every checkpoint-postgres 1.0 … 3.x)."""
        return callable(getattr(saver, "_cursor", None))

    @contextmanager
    def _cursor(self, *, pipeline: bool = False) -> Iterator[_RecordingCursor]:
        yield _RecordingCursor(self.captured)

    def _statement(self, query: str) -> _Statement:
        if query not in self._statements:
            self._statements[query] = _Statement(query)
        return self._statements[query]

    def write(self, record: dict[str, Any]) -> None:
        """Capture one record's rows (blobs not written yet for this thread only)."""
        thread_id, ns = record["thread_id"], record["checkpoint_ns"]
        versions = {
            channel: version
            for channel, version in (record["checkpoint"].get("channel_versions") or {}).items()
            if (thread_id, ns, channel, version) not in self.blob_keys
        }
        start = len(self.captured)
        write_record(self.saver, record, versions)
        for query, rows in self.captured[start:]:
            statement = self._statement(query)
            if statement.table == BLOBS_TABLE:
                self.blob_keys.update(statement.key(row) for row in rows)

    def take(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """The statements captured since the last call (for :meth:`load`)."""
        captured, self.captured = self.captured, []
        return captured

    def load(self, captured: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """Load captured rows (COPY per statement) on the connection and commit.

        Only this touches the connection, so it may run in another thread
        while the next batch is decoded and captured.
        """
        from psycopg import sql as psycopg_sql

        grouped: dict[str, list[tuple[Any, ...]]] = {}
        for query, rows in captured:
            grouped.setdefault(query, []).extend(rows)
        for query, rows in grouped.items():
            statement = self._statement(query)
            if statement.table is None or len({statement.key(r) for r in rows}) != len(rows):
                with self.conn.pipeline(), self.conn.cursor() as cur:
                    cur.executemany(query, rows)
                continue
            types = self._binary_types(statement, rows)
            copy_sql = psycopg_sql.SQL(COPY_SQL).format(
                psycopg_sql.Identifier(statement.table),
                psycopg_sql.SQL(", ").join(map(psycopg_sql.Identifier, statement.columns)),
                psycopg_sql.SQL(" (FORMAT binary)" if types else ""),
            )
            with self.conn.cursor() as cur, cur.copy(copy_sql) as copy:
                if types:
                    copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        self.conn.commit()

    def _binary_types(self, statement: _Statement, rows: list[tuple[Any, ...]]) -> list[str]:
        """The columns' type names when every value has the Python type binary COPY
        dumps as that column's type (else ``[]``: text COPY, where Postgres parses
        each value as ``INSERT`` does)."""
        from psycopg.rows import tuple_row
        from psycopg.types.json import Jsonb

        assert statement.table is not None
        if statement.table not in self._types:
            # a tuple row factory: the restore's connections return dicts
            with self.conn.cursor(row_factory=tuple_row) as cur:
                found = dict(cur.execute(COLUMN_TYPES_SQL, (statement.table,)).fetchall())
            self._types[statement.table] = [str(found.get(c, "")) for c in statement.columns]
        types = self._types[statement.table]
        expected = {"text": str, "bytea": bytes, "int4": int, "jsonb": Jsonb}
        wanted = [expected.get(t) for t in types]
        if None in wanted:
            return []
        for row in rows:
            for value, cls in zip(row, wanted, strict=True):
                if value is not None and type(value) is not cls:
                    return []
        return types

    def forget_thread(self, thread_id: str) -> None:
        """Drop a finished thread's blob keys and memoized encodings (threads never
        come back: by_thread)."""
        self.blob_keys = {k for k in self.blob_keys if k[0] != thread_id}
        if self.serde is not None:
            self.serde.clear()
