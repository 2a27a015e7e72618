"""Physical backups of the checkpoint tables: binary COPY files plus a manifest.

``create_backup`` streams every checkpoint table (and every table of the tool's
ledger schema, when it exists) with ``COPY ... TO STDOUT (FORMAT binary)`` into one
file per table, or per ``thread_id`` hash partition with ``jobs > 1``. All
connections read ONE snapshot: the first exports it (``pg_export_snapshot()`` in a
REPEATABLE READ transaction) and the others import it (``SET TRANSACTION
SNAPSHOT``).

Per protocol message (one row) the copying thread does one ``memcpy`` into a
preallocated 1 MiB block; a second thread hashes (SHA-256), optionally gzips, and
writes full blocks, then hands them back. ``hashlib``, ``zlib`` and ``write``
release the GIL for such buffers, so hashing overlaps the COPY, and memory stays
flat: a few blocks per job, nothing kept per row.

Row counts come from the server, not from a second scan: the ``COPY n`` command
tag that ends the COPY (``cursor.rowcount``) is exact for the snapshot the file was
written from and costs nothing per row. ``restore_backup`` checks it again with
``count(*)`` before it swaps anything in.

Verification (``verify_backup``) and the manifest live in ``migrator.backup.manifest``,
the restore (``restore_backup``) in ``migrator.backup.restore``; all of them are
importable from here.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import importlib
import inspect
import queue
import shutil
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from migrator import __version__
from migrator.backup.ddl import check_restorable
from migrator.backup.manifest import (
    BACKUP_FORMAT,
    CHUNK,
    LEDGER_SCHEMA,
    MANIFEST,
    PGCOPY_SIGNATURE,
    PGCOPY_TRAILER,
    BackupFile,
    BackupManifest,
    BackupTable,
    Progress,
    db_error,
    ddl_in,
    fetch_one,
    first_line,
    quiet,
    resolve_checkpoint_tables,
    verify_backup,
    write_manifest,
)
from migrator.backup.restore import RestoreResult, restore_backup
from migrator.errors import ConfigError, ConnectError, MigratorError
from migrator.output import output_error
from migrator.postgres.capacity import cap_jobs, distinct_threads, server_capacity
from migrator.postgres.dsn import connect, redact_dsn, redact_text
from migrator.worker.privatefiles import FILE_MODE, open_private, private_dir

__all__ = [
    "BACKUP_FORMAT",
    "MANIFEST",
    "BackupFile",
    "BackupManifest",
    "BackupTable",
    "RestoreResult",
    "create_backup",
    "restore_backup",
    "verify_backup",
]

#: Blocks in flight per job: the copier fills one while the writer drains the others.
BLOCKS = 4

EXPORT_SNAPSHOT_SQL = "SELECT pg_export_snapshot()"
SET_SNAPSHOT_SQL = "SET TRANSACTION SNAPSHOT {}"
SCHEMA_EXISTS_SQL = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"
SCHEMA_TABLES_SQL = "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1"
HAS_THREAD_ID_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = %s::regclass AND attname = 'thread_id' AND NOT attisdropped)
"""
#: The role's rights on one table the backup reads (by oid: no name lookup to fail).
PRIVILEGES_SQL = """
SELECT has_schema_privilege(n.oid, 'USAGE'), has_table_privilege(c.oid, 'SELECT')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""
TABLE_SIZE_SQL = "SELECT pg_total_relation_size(%s::regclass)"
SEARCH_PATH_SQL = "SELECT current_setting('search_path')"
MIGRATIONS_V_SQL = "SELECT max(v) FROM {}.{}"
LEDGER_REVISION_SQL = "SELECT version_num FROM {}.{}"
SERVER_VERSION_SQL = (
    "SELECT current_setting('server_version'), current_setting('server_version_num')"
)
COPY_TABLE_OUT_SQL = "COPY {}.{} TO STDOUT (FORMAT binary)"
COPY_PART_OUT_SQL = (
    "COPY (SELECT * FROM {}.{} WHERE mod(hashtext(thread_id) & 2147483647, {}) = {})"
    " TO STDOUT (FORMAT binary)"
)


def _ident(*names: str) -> sql.Composed:
    return sql.SQL(".").join(sql.Identifier(n) for n in names)


class _HashingWriter:
    """A binary file that hashes and counts what is written through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class _BlockWriter:
    """Writes blocks to ``out`` on its own thread and hands pool blocks back for reuse.

    Blocks are preallocated once: a fresh 1 MiB buffer per block costs page faults
    (kernel time) on every one of them, which measured more than the copy itself.
    """

    def __init__(self, out: Any) -> None:
        self.out = out
        self.head = b""
        self.tail = b""
        self.error: BaseException | None = None
        self.free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(BLOCKS):
            self.free.put(memoryview(bytearray(CHUNK)))
        self._full: queue.SimpleQueue[tuple[memoryview, int, bool] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while (item := self._full.get()) is not None:
            block, size, pooled = item
            if self.error is None and size:
                try:
                    data = block[:size]
                    if not self.head:
                        self.head = bytes(data[: len(PGCOPY_SIGNATURE)])
                    self.tail = (self.tail + bytes(data[-2:]))[-2:]
                    self.out.write(data)
                except BaseException as exc:  # noqa: BLE001 - re-raised by put()/close
                    self.error = exc
            if pooled:
                self.free.put(block)

    def put(self, block: memoryview, size: int, *, pooled: bool = True) -> None:
        """Queue ``block[:size]``; a pooled block comes back through ``free``."""
        if self.error is not None:
            raise self.error
        self._full.put((block, size, pooled))

    def __enter__(self) -> _BlockWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._full.put(None)
        self._thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error


@dataclass(frozen=True)
class _Task:
    role: str
    schema: str
    name: str
    part: int
    parts: int
    file: str
    size: int


def _versions(
    conn: psycopg.Connection[Any], tables: Sequence[tuple[str, str, str]]
) -> dict[str, Any]:
    server_version, server_version_num = conn.execute(SERVER_VERSION_SQL).fetchone() or ("", 0)
    migrations_v = None
    revision = None
    for role, schema, name in tables:
        if role == "checkpoint" and name == "checkpoint_migrations":
            migrations_v = fetch_one(
                conn, sql.SQL(MIGRATIONS_V_SQL).format(*map(sql.Identifier, (schema, name)))
            )
        if role == "ledger" and name.endswith("_version"):
            try:
                with conn.transaction():
                    query = sql.SQL(LEDGER_REVISION_SQL).format(
                        sql.Identifier(schema), sql.Identifier(name)
                    )
                    revision = fetch_one(conn, query)
            except psycopg.errors.UndefinedColumn:
                pass
    return {
        "checkpoint_migrations_v": None if migrations_v is None else int(migrations_v),
        "server_version": str(server_version),
        "server_version_num": int(server_version_num),
        "tool_version": __version__,
        "ledger_revision": None if revision is None else str(revision),
    }


def _copy_out(conn: psycopg.Connection[Any], task: _Task, path: Path, compress: bool) -> BackupFile:
    table = (sql.Identifier(task.schema), sql.Identifier(task.name))
    if task.parts == 1:
        query = sql.SQL(COPY_TABLE_OUT_SQL).format(*table)
    else:
        query = sql.SQL(COPY_PART_OUT_SQL).format(
            *table, sql.Literal(task.parts), sql.Literal(task.part)
        )
    cursor = conn.cursor()
    with open_private(path, "xb", buffering=0) as raw:
        sink = _HashingWriter(raw)
        with ExitStack() as stack:
            out: Any = sink
            if compress:
                out = stack.enter_context(
                    gzip.GzipFile(filename="", fileobj=sink, mode="wb", compresslevel=1, mtime=0)
                )
            writer = stack.enter_context(_BlockWriter(out))
            take, put = writer.free.get, writer.put
            block, used = take(), 0
            with cursor.copy(query) as copy:
                # Per message (one row) only a memcpy into the current block.
                for chunk in copy:
                    end = used + len(chunk)
                    if end > CHUNK:
                        put(block, used)
                        block, used, end = take(), 0, len(chunk)
                        if end > CHUNK:  # a row larger than a block travels alone
                            put(memoryview(bytes(chunk)), end, pooled=False)
                            continue
                    block[used:end] = chunk
                    used = end
            put(block, used)
    if writer.head != PGCOPY_SIGNATURE or writer.tail != PGCOPY_TRAILER:
        raise ConnectError(f"COPY of {task.schema}.{task.name} returned an unexpected stream")
    # The server's own count, from the ``COPY n`` command tag.
    rows = cursor.rowcount
    if rows < 0:
        raise ConnectError(f"COPY of {task.schema}.{task.name} reported no row count")
    return BackupFile(task.file, task.part, rows, sink.size, sink.sha.hexdigest())


def _check_out_dir(out_dir: Path) -> bool:
    """Refuse anything but a missing or empty directory; return whether it existed."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ConfigError(
                f"backup target {out_dir} exists and is not a directory.",
                hint="pass --out a new or empty directory.",
            )
        if any(out_dir.iterdir()):
            raise ConfigError(
                f"backup target {out_dir} is not empty; refusing to mix backups.",
                hint="pass --out a new or empty directory.",
            )
        return True
    return False


def _record_in_ledger(dsn: str, manifest: BackupManifest, progress: Progress) -> None:
    """Call ``migrator.ledger.record_backup`` when it exists and the ledger schema does."""
    if not any(t.role == "ledger" for t in manifest.tables):
        return
    try:
        ledger = importlib.import_module("migrator.ledger")
    except ImportError:
        return
    record = getattr(ledger, "record_backup", None)
    if not callable(record):
        return
    offered: dict[str, Any] = {
        "kind": "backup",
        "location": str(manifest.path),
        "manifest": manifest.to_dict(),
        "status": "created",
        "details": {"rows": manifest.rows, "bytes": manifest.total_bytes},
    }
    try:
        params = inspect.signature(record).parameters
        has_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in offered.items() if has_kwargs or k in params}
        record(dsn, **kwargs)
    except (MigratorError, psycopg.Error, TypeError, ValueError) as exc:
        # The backup itself is complete and verified; a ledger hiccup must not void it.
        progress(f"backup not recorded in the ledger: {redact_text(first_line(exc), dsn)}")


def create_backup(
    dsn: str,
    out_dir: Path,
    *,
    jobs: int = 1,
    compress: bool = False,
    progress: Progress | None = None,
) -> BackupManifest:
    """Back up the checkpoint tables (and the ledger's tables) of ``dsn`` into ``out_dir``.

    Args:
        dsn: The application database.
        out_dir: A new or empty directory; ``manifest.json`` is written last.
        jobs: Connections copying in parallel; with more than one, tables with a
            ``thread_id`` column are split into ``jobs`` hash partitions. All of them
            read the same snapshot.
        compress: gzip (level 1) each file; costs throughput (see bench/README.md).
        progress: receives one line per step.

    Returns:
        The manifest written.

    Raises:
        ConfigError: ``out_dir`` is not new or empty, ``jobs`` < 1, or the database
            has no checkpoint tables.
        ConnectError: The database cannot be reached or a COPY failed.
    """
    say = progress or quiet
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.", hint="use --jobs 1 or more.")
    try:
        existed = _check_out_dir(out_dir)
    except OSError as exc:
        raise output_error(out_dir, exc) from exc
    leader = connect(dsn, autocommit=False)
    created: list[Path] = []
    success = False
    try:
        leader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        leader.read_only = True
        private_dir(out_dir, own_existing=True)  # owner-only, like every file in it
        manifest = _run_backup(dsn, leader, out_dir, jobs, compress, created, say)
        success = True
    except psycopg.Error as exc:
        raise db_error("backup", dsn, exc) from exc
    except OSError as exc:  # read-only, full disk: the files written so far go (below)
        raise output_error(out_dir, exc) from exc
    finally:
        leader.close()
        if not success:
            for path in created:
                path.unlink(missing_ok=True)
            if not existed:
                shutil.rmtree(out_dir, ignore_errors=True)
    _record_in_ledger(dsn, manifest, say)
    return manifest


def _check_privileges(
    dsn: str, conn: psycopg.Connection[Any], found: Sequence[tuple[str, str, str]]
) -> None:
    """Refuse up front, naming it, a schema or table the role may not read.

    Without this the first statement that meets the missing right fails, and what the
    user sees may be a later consequence ("relation does not exist" for a schema
    without USAGE, "current transaction is aborted") instead of the permission.
    """
    for _role, schema, name in found:
        row = conn.execute(PRIVILEGES_SQL, (schema, name)).fetchone()
        if row is None or all(row):
            continue
        usage, _select = row
        missing = (
            f"permission denied for schema {schema} (USAGE)"
            if not usage
            else f"permission denied for table {schema}.{name} (SELECT)"
        )
        raise ConnectError(
            f"backup on {redact_dsn(dsn)}: {missing}; nothing was written.",
            hint="backup reads the checkpoint tables and the ledger's tables: run it as "
            "the role that owns them, or grant this role USAGE on their schemas and "
            "SELECT on them",
        )


def _run_backup(
    dsn: str,
    leader: psycopg.Connection[Any],
    out_dir: Path,
    jobs: int,
    compress: bool,
    created: list[Path],
    say: Progress,
) -> BackupManifest:
    snapshot = str(fetch_one(leader, EXPORT_SNAPSHOT_SQL))  # also pins the transaction snapshot
    found = [("checkpoint", schema, name) for schema, name in resolve_checkpoint_tables(leader)]
    if not any(name != "checkpoint_migrations" for _, _, name in found):
        raise ConfigError(
            f"no checkpoint tables in {redact_dsn(dsn)} "
            f"(searched: {fetch_one(leader, SEARCH_PATH_SQL)}).",
            hint="point --dsn at the database (and search_path) your PostgresSaver uses.",
        )
    if fetch_one(leader, SCHEMA_EXISTS_SQL, (LEDGER_SCHEMA,)):
        found += [
            ("ledger", LEDGER_SCHEMA, str(row[0]))
            for row in leader.execute(SCHEMA_TABLES_SQL, (LEDGER_SCHEMA,)).fetchall()
        ]
    _check_privileges(dsn, leader, found)
    if jobs > 1:  # no more connections than the server can spare, or partitions than threads
        jobs, note = cap_jobs(
            jobs,
            capacity=server_capacity(leader),
            work=distinct_threads(leader, jobs),
        )
        if note:
            say(f"note: {note}")
    suffix = ".pgcopy.gz" if compress else ".pgcopy"
    ddl: dict[tuple[str, str], tuple[str, ...]] = {}
    tasks: list[_Task] = []
    for role, schema, name in found:
        qualified = _ident(schema, name).as_string(leader)
        ddl[(schema, name)] = ddl_in(leader, schema, name)
        if role == "checkpoint":  # a backup restore-backup refuses is no backup
            check_restorable(schema, name, ddl[(schema, name)])
        size = int(fetch_one(leader, TABLE_SIZE_SQL, (qualified,)) or 0)
        split = (
            jobs > 1 and role == "checkpoint" and fetch_one(leader, HAS_THREAD_ID_SQL, (qualified,))
        )
        parts = jobs if split else 1
        stem = name if role == "checkpoint" else f"{schema}.{name}"
        for part in range(parts):
            file = f"{stem}.{part}{suffix}"
            tasks.append(_Task(role, schema, name, part, parts, file, size // parts))
    versions = _versions(leader, found)
    say(f"backing up {len(found)} table(s) as {len(tasks)} file(s) with {jobs} job(s)")
    results = _run_tasks(dsn, leader, snapshot, tasks, out_dir, jobs, compress, created, say)
    tables = []
    for role, schema, name in found:
        files = tuple(
            sorted(
                (results[t.file] for t in tasks if (t.schema, t.name) == (schema, name)),
                key=lambda f: f.part,
            )
        )
        tables.append(
            BackupTable(role, schema, name, ddl[(schema, name)], sum(f.rows for f in files), files)
        )
    manifest = BackupManifest(
        path=out_dir,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        versions=versions,
        tables=tuple(tables),
        compression="gzip" if compress else None,
        jobs=jobs,
        database=str(leader.info.dbname),
    )
    write_manifest(manifest, created)
    (out_dir / MANIFEST).chmod(FILE_MODE)  # written by backup.manifest: owner-only too
    say(f"backup complete: {sum(t.rows for t in tables)} rows, {manifest.total_bytes} bytes")
    return manifest


def _run_tasks(
    dsn: str,
    leader: psycopg.Connection[Any],
    snapshot: str,
    tasks: list[_Task],
    out_dir: Path,
    jobs: int,
    compress: bool,
    created: list[Path],
    say: Progress,
) -> dict[str, BackupFile]:
    """Copy every task out; with ``jobs > 1`` on that many connections in one snapshot."""
    results: dict[str, BackupFile] = {}
    pending: queue.Queue[_Task] = queue.Queue()
    for task in sorted(tasks, key=lambda t: -t.size):  # biggest first: balanced jobs
        pending.put(task)
        created.append(out_dir / task.file)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(conn: psycopg.Connection[Any]) -> None:
        while not errors:
            try:
                task = pending.get_nowait()
            except queue.Empty:
                return
            try:
                done = _copy_out(conn, task, out_dir / task.file, compress)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                errors.append(exc)
                return
            with lock:
                results[task.file] = done
            say(f"{task.schema}.{task.name} part {task.part}: {done.rows} rows")

    workers: list[psycopg.Connection[Any]] = []
    try:
        for _ in range(min(jobs, len(tasks)) - 1):
            conn = connect(dsn, autocommit=False)
            workers.append(conn)
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            conn.execute(sql.SQL(SET_SNAPSHOT_SQL).format(sql.Literal(snapshot)))
        threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in workers]
        for thread in threads:
            thread.start()
        work(leader)
        for thread in threads:
            thread.join()
    finally:
        for conn in workers:
            conn.close()
    if errors:
        raise errors[0]
    return results
