"""Physical backups of the checkpoint tables: binary COPY files plus a manifest.

``create_backup`` streams every checkpoint table (and every table of the tool's
ledger schema, when it exists) with ``COPY ... TO STDOUT (FORMAT binary)`` into one
file per table, or per ``thread_id`` hash partition with ``jobs > 1``. All
connections read ONE snapshot: the first exports it (``pg_export_snapshot()`` in a
REPEATABLE READ transaction) and the others import it (``SET TRANSACTION
SNAPSHOT``). Memory stays flat: one protocol message (one row) at a time.

Row counts come from the protocol, not from a second scan: in copy-out mode the
server sends exactly one CopyData message per row, and in binary format the
header rides on the first message and the trailer has one of its own, so a file
holds ``messages - 1`` rows. The count is exact for the snapshot the file was
written from, costs nothing, and needs no Python-level parsing of the stream.
``restore_backup`` checks it again with ``count(*)`` before it swaps anything in.

``verify_backup`` needs no database: manifest integrity, completeness, sizes,
SHA-256 of every file, the binary COPY signature and trailer.

``restore_backup`` verifies first, takes the migrator's advisory lock, loads the
files into a shadow schema, checks the counts, and in the same transaction moves
the live tables into ``langgraph_migrator_old_<ts>`` (kept, never dropped) and
the restored ones into place with ``ALTER TABLE ... SET SCHEMA``. Any failure
rolls the whole transaction back: the live tables are untouched and no shadow
schema is left. Ledger tables are backed up for the record and for inspection;
a restore never rewrites the ledger (it holds the history of runs and backups).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import importlib
import inspect
import json
import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from migrator import __version__
from migrator.errors import ConfigError, ConnectError, LockTimeoutError, MigratorError
from migrator.fixtures import CHECKPOINT_TABLES, table_ddl
from migrator.postgres.dsn import connect, redact_dsn, redact_text

BACKUP_FORMAT = "langgraph-migrator/backup@1"
MANIFEST = "manifest.json"
LEDGER_SCHEMA = "langgraph_migrator"
PGCOPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
PGCOPY_TRAILER = b"\xff\xff"
#: Read/write buffer: large enough that syscalls do not matter, small enough to be flat.
CHUNK = 1 << 20
#: ``lock_timeout`` for the swap: waiting longer would queue every app query behind us.
SWAP_LOCK_TIMEOUT = "10s"

Progress = Callable[[str], None]

EXPORT_SNAPSHOT_SQL = "SELECT pg_export_snapshot()"
SET_SNAPSHOT_SQL = "SET TRANSACTION SNAPSHOT {}"
TABLE_SCHEMA_SQL = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s)
"""
CURRENT_SCHEMA_SQL = "SELECT current_schema()"
SCHEMA_EXISTS_SQL = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"
SCHEMA_TABLES_SQL = "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1"
HAS_THREAD_ID_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = %s::regclass AND attname = 'thread_id' AND NOT attisdropped)
"""
TABLE_SIZE_SQL = "SELECT pg_total_relation_size(%s::regclass)"
SEARCH_PATH_SQL = "SELECT current_setting('search_path')"
SET_SEARCH_PATH_SQL = "SELECT set_config('search_path', %s, true)"
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
COPY_IN_SQL = "COPY {} FROM STDIN (FORMAT binary, FREEZE)"
COUNT_SQL = "SELECT count(*) FROM {}.{}"
CREATE_SCHEMA_SQL = "CREATE SCHEMA {}"
DROP_SCHEMA_SQL = "DROP SCHEMA {}"
LOCK_TABLE_SQL = "LOCK TABLE {}.{} IN ACCESS EXCLUSIVE MODE"
SET_LOCK_TIMEOUT_SQL = "SELECT set_config('lock_timeout', %s, true)"
SET_SCHEMA_SQL = "ALTER TABLE {}.{} SET SCHEMA {}"

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SCHEMA_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _quiet(_: str) -> None:
    return None


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class BackupFile:
    """One data file: a table, or one ``thread_id`` hash partition of it."""

    file: str
    part: int
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class BackupTable:
    """One table of a backup: where it came from, its DDL, its rows and files."""

    role: str  # "checkpoint" or "ledger"
    schema: str
    name: str
    ddl: tuple[str, ...]
    rows: int
    files: tuple[BackupFile, ...]

    @property
    def qualified(self) -> str:
        """``schema.name``."""
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class BackupManifest:
    """What a backup directory holds (``manifest.json``), verified or just written."""

    path: Path
    created_at: str
    versions: Mapping[str, Any]
    tables: tuple[BackupTable, ...]
    compression: str | None
    jobs: int
    database: str = ""

    @property
    def rows(self) -> dict[str, int]:
        """Rows per table (``schema.name``)."""
        return {t.qualified: t.rows for t in self.tables}

    @property
    def total_bytes(self) -> int:
        """Bytes of all data files."""
        return sum(f.bytes for t in self.tables for f in t.files)

    def checkpoint_tables(self) -> tuple[BackupTable, ...]:
        """The checkpoint tables, in load order."""
        return tuple(t for t in self.tables if t.role == "checkpoint")

    def to_dict(self) -> dict[str, Any]:
        """The manifest body (without ``path`` and the self-checksum)."""
        return {
            "format": BACKUP_FORMAT,
            "created_at": self.created_at,
            "database": self.database,
            "versions": dict(self.versions),
            "compression": self.compression,
            "jobs": self.jobs,
            "tables": [
                {
                    "role": t.role,
                    "schema": t.schema,
                    "name": t.name,
                    "ddl": list(t.ddl),
                    "rows": t.rows,
                    "files": [
                        {
                            "file": f.file,
                            "part": f.part,
                            "rows": f.rows,
                            "bytes": f.bytes,
                            "sha256": f.sha256,
                        }
                        for f in t.files
                    ],
                }
                for t in self.tables
            ],
        }


@dataclass(frozen=True)
class RestoreResult:
    """What ``restore_backup`` did."""

    backup: Path
    schema: str
    tables: Mapping[str, int]
    swapped: bool
    old_schema: str | None = None
    moved_aside: tuple[str, ...] = field(default_factory=tuple)


# ----------------------------------------------------------------- helpers


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _db_error(what: str, dsn: str, exc: BaseException) -> ConnectError:
    return ConnectError(f"{what} on {redact_dsn(dsn)} failed: {redact_text(_first_line(exc), dsn)}")


def _digest(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _one(conn: psycopg.Connection[Any], query: Any, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


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


class _DirectWriter:
    """Writes blocks to ``out`` in the calling thread (measured faster with one job)."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.first = b""

    def put(self, block: bytes) -> None:
        if not self.first:
            self.first = block[:16]
        self.out.write(block)

    def __enter__(self) -> _DirectWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _BlockWriter:
    """Writes blocks to ``out`` on its own thread, at most a few blocks behind."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.first = b""
        self.error: BaseException | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self.out.write(block)
                except BaseException as exc:  # noqa: BLE001 - re-raised by put()/close
                    self.error = exc

    def put(self, block: bytes) -> None:
        if self.error is not None:
            raise self.error
        if not self.first:
            self.first = block[:16]
        self._queue.put(block)

    def __enter__(self) -> _BlockWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error


# ------------------------------------------------------------------ backup


@dataclass(frozen=True)
class _Task:
    role: str
    schema: str
    name: str
    part: int
    parts: int
    file: str
    size: int


def _resolve_checkpoint_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    found = []
    for table in CHECKPOINT_TABLES:
        schema = _one(conn, TABLE_SCHEMA_SQL, (table,))
        if schema is not None:
            found.append((str(schema), table))
    return found


@contextmanager
def _search_path(conn: psycopg.Connection[Any], schema: str) -> Iterator[None]:
    saved = _one(conn, SEARCH_PATH_SQL)
    conn.execute(SET_SEARCH_PATH_SQL, (sql.Identifier(schema).as_string(conn),))
    try:
        yield
    finally:
        conn.execute(SET_SEARCH_PATH_SQL, (saved,))


def _ddl_in(conn: psycopg.Connection[Any], schema: str, table: str) -> tuple[str, ...]:
    with _search_path(conn, schema):
        return table_ddl(conn, table)


def _versions(
    conn: psycopg.Connection[Any], tables: Sequence[tuple[str, str, str]]
) -> dict[str, Any]:
    server_version, server_version_num = conn.execute(SERVER_VERSION_SQL).fetchone() or ("", 0)
    migrations_v = None
    revision = None
    for role, schema, name in tables:
        if role == "checkpoint" and name == "checkpoint_migrations":
            migrations_v = _one(
                conn, sql.SQL(MIGRATIONS_V_SQL).format(*map(sql.Identifier, (schema, name)))
            )
        if role == "ledger" and name.endswith("_version"):
            try:
                with conn.transaction():
                    query = sql.SQL(LEDGER_REVISION_SQL).format(
                        sql.Identifier(schema), sql.Identifier(name)
                    )
                    revision = _one(conn, query)
            except psycopg.errors.UndefinedColumn:
                pass
    return {
        "checkpoint_migrations_v": None if migrations_v is None else int(migrations_v),
        "server_version": str(server_version),
        "server_version_num": int(server_version_num),
        "tool_version": __version__,
        "ledger_revision": None if revision is None else str(revision),
    }


def _copy_out(
    conn: psycopg.Connection[Any], task: _Task, path: Path, compress: bool, *, threaded: bool
) -> BackupFile:
    table = (sql.Identifier(task.schema), sql.Identifier(task.name))
    if task.parts == 1:
        query = sql.SQL(COPY_TABLE_OUT_SQL).format(*table)
    else:
        query = sql.SQL(COPY_PART_OUT_SQL).format(
            *table, sql.Literal(task.parts), sql.Literal(task.part)
        )
    messages = 0
    last = b""
    buf = bytearray()
    with open(path, "xb", buffering=0) as raw:
        sink = _HashingWriter(raw)
        with ExitStack() as stack:
            out: Any = sink
            if compress:
                out = stack.enter_context(
                    gzip.GzipFile(filename="", fileobj=sink, mode="wb", compresslevel=1, mtime=0)
                )
            # With one job, writing in this thread measured faster; with several, the
            # copier threads already contend for the GIL and a writer thread helps
            # (bench/README.md).
            writer: _DirectWriter | _BlockWriter = (
                _BlockWriter(out) if threaded else _DirectWriter(out)
            )
            stack.enter_context(writer)
            with conn.cursor().copy(query) as copy:
                # Per row only an append: hashing, compressing and writing happen on
                # 1 MiB blocks (hashlib, zlib and write release the GIL).
                for chunk in copy:
                    messages += 1
                    buf += chunk
                    if len(buf) >= CHUNK:
                        writer.put(bytes(buf))
                        buf.clear()
                    last = chunk  # type: ignore[assignment]
            if buf:
                writer.put(bytes(buf))
    if (
        writer.first[: len(PGCOPY_SIGNATURE)] != PGCOPY_SIGNATURE
        or bytes(last[-2:]) != PGCOPY_TRAILER
    ):
        raise ConnectError(f"COPY of {task.schema}.{task.name} returned an unexpected stream")
    # One CopyData message per row; the binary header rides on the first, the trailer
    # is its own message.
    return BackupFile(task.file, task.part, messages - 1, sink.size, sink.sha.hexdigest())


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
        progress(f"backup not recorded in the ledger: {redact_text(_first_line(exc), dsn)}")


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
    say = progress or _quiet
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.", hint="use --jobs 1 or more.")
    existed = _check_out_dir(out_dir)
    leader = connect(dsn, autocommit=False)
    created: list[Path] = []
    success = False
    try:
        leader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        leader.read_only = True
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest = _run_backup(dsn, leader, out_dir, jobs, compress, created, say)
        success = True
    except psycopg.Error as exc:
        raise _db_error("backup", dsn, exc) from exc
    finally:
        leader.close()
        if not success:
            for path in created:
                path.unlink(missing_ok=True)
            if not existed:
                shutil.rmtree(out_dir, ignore_errors=True)
    _record_in_ledger(dsn, manifest, say)
    return manifest


def _run_backup(
    dsn: str,
    leader: psycopg.Connection[Any],
    out_dir: Path,
    jobs: int,
    compress: bool,
    created: list[Path],
    say: Progress,
) -> BackupManifest:
    snapshot = str(_one(leader, EXPORT_SNAPSHOT_SQL))  # also pins the transaction snapshot
    found = [("checkpoint", schema, name) for schema, name in _resolve_checkpoint_tables(leader)]
    if not any(name != "checkpoint_migrations" for _, _, name in found):
        raise ConfigError(
            f"no checkpoint tables in {redact_dsn(dsn)} "
            f"(searched: {_one(leader, SEARCH_PATH_SQL)}).",
            hint="point --dsn at the database (and search_path) your PostgresSaver uses.",
        )
    if _one(leader, SCHEMA_EXISTS_SQL, (LEDGER_SCHEMA,)):
        found += [
            ("ledger", LEDGER_SCHEMA, str(row[0]))
            for row in leader.execute(SCHEMA_TABLES_SQL, (LEDGER_SCHEMA,)).fetchall()
        ]
    suffix = ".pgcopy.gz" if compress else ".pgcopy"
    ddl: dict[tuple[str, str], tuple[str, ...]] = {}
    tasks: list[_Task] = []
    for role, schema, name in found:
        qualified = _ident(schema, name).as_string(leader)
        ddl[(schema, name)] = _ddl_in(leader, schema, name)
        size = int(_one(leader, TABLE_SIZE_SQL, (qualified,)) or 0)
        split = jobs > 1 and role == "checkpoint" and _one(leader, HAS_THREAD_ID_SQL, (qualified,))
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
    body = manifest.to_dict()
    body["manifest_sha256"] = _digest(body)
    tmp = out_dir / f".{MANIFEST}.tmp"
    created.append(tmp)
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    created.append(out_dir / MANIFEST)
    os.replace(tmp, out_dir / MANIFEST)
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
                done = _copy_out(conn, task, out_dir / task.file, compress, threaded=jobs > 1)
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


# ------------------------------------------------------------------ verify


def _bad(path: Path, reason: str) -> ConfigError:
    return ConfigError(
        f"backup {path.parent.name}: {path.name}: {reason}; nothing was restored.",
        hint="use another backup; files of a backup are never edited.",
    )


def _parse_manifest(backup_dir: Path, body: Any) -> BackupManifest:
    where = backup_dir / MANIFEST
    if not isinstance(body, dict) or body.get("format") != BACKUP_FORMAT:
        fmt = body.get("format") if isinstance(body, dict) else None
        raise _bad(where, f"not a {BACKUP_FORMAT} manifest (format {fmt!r})")
    claimed = body.pop("manifest_sha256", None)
    if claimed != _digest(body):
        raise _bad(where, "does not match its own checksum (manifest_sha256): edited or damaged")
    try:
        tables = []
        for t in body["tables"]:
            files = tuple(
                BackupFile(
                    str(f["file"]),
                    int(f["part"]),
                    int(f["rows"]),
                    int(f["bytes"]),
                    str(f["sha256"]),
                )
                for f in t["files"]
            )
            if t["role"] not in ("checkpoint", "ledger") or not files:
                raise ValueError(f"bad table entry {t.get('name')!r}")
            for f in files:
                if not _FILE_RE.match(f.file) or not _SHA256_RE.match(f.sha256):
                    raise ValueError(f"bad file entry {f.file!r}")
            if sum(f.rows for f in files) != int(t["rows"]):
                raise ValueError(f"rows of {t['name']} do not add up over its files")
            if t["role"] == "checkpoint" and t["name"] not in CHECKPOINT_TABLES:
                raise ValueError(f"unknown checkpoint table {t['name']!r}")
            tables.append(
                BackupTable(
                    str(t["role"]),
                    str(t["schema"]),
                    str(t["name"]),
                    tuple(str(s) for s in t["ddl"]),
                    int(t["rows"]),
                    files,
                )
            )
        return BackupManifest(
            path=backup_dir,
            created_at=str(body["created_at"]),
            versions=dict(body["versions"]),
            tables=tuple(tables),
            compression=body.get("compression"),
            jobs=int(body["jobs"]),
            database=str(body.get("database", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(where, f"malformed: {exc}") from exc


def _check_file(path: Path, entry: BackupFile, compressed: bool) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _bad(path, "missing: the backup is incomplete") from None
    if size != entry.bytes:
        cut = "truncated" if size < entry.bytes else "longer than recorded"
        raise _bad(path, f"{cut}: {size} bytes, the manifest says {entry.bytes}")
    sha = hashlib.sha256()
    head = b""
    tail = b""
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(CHUNK):
            if not head:
                head = chunk[: len(PGCOPY_SIGNATURE)]
            sha.update(chunk)
            tail = (tail + chunk)[-2:]
    if sha.hexdigest() != entry.sha256:
        raise _bad(path, "corrupt: its SHA-256 does not match the manifest")
    if not compressed and (head != PGCOPY_SIGNATURE or tail != PGCOPY_TRAILER):
        raise _bad(path, "not a complete binary COPY stream (signature or trailer missing)")


def verify_backup(backup_dir: Path) -> BackupManifest:
    """Check a backup without a database: manifest, completeness, sizes, checksums.

    Args:
        backup_dir: A directory written by :func:`create_backup`.

    Returns:
        The verified manifest.

    Raises:
        ConfigError: Missing, incomplete, truncated, corrupt or edited; the message
            names the file and the reason.
    """
    where = backup_dir / MANIFEST
    if not backup_dir.is_dir():
        raise ConfigError(
            f"backup {backup_dir} is not a directory.", hint="pass a backup directory."
        )
    try:
        body = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _bad(where, "missing: not a backup, or the backup did not finish") from None
    except (OSError, ValueError) as exc:
        raise _bad(where, f"unreadable: {_first_line(exc)}") from exc
    manifest = _parse_manifest(backup_dir, body)
    if not manifest.checkpoint_tables():
        raise _bad(where, "lists no checkpoint tables")
    entries = [f for t in manifest.tables for f in t.files]
    # hashlib releases the GIL: two files at a time on two cores.
    errors: list[ConfigError] = []

    def check(entry: BackupFile) -> None:
        try:
            _check_file(backup_dir / entry.file, entry, manifest.compression is not None)
        except ConfigError as exc:
            errors.append(exc)

    pending = list(entries)
    while pending and not errors:
        batch, pending = pending[:2], pending[2:]
        threads = [threading.Thread(target=check, args=(e,)) for e in batch]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return manifest


# ----------------------------------------------------------------- restore


def _check_schema_name(name: str) -> None:
    if (
        not _SCHEMA_NAME_RE.match(name)
        or name.startswith("pg_")
        or name == "information_schema"
        or name.startswith(LEDGER_SCHEMA)
    ):
        raise ConfigError(
            f"--into-new-schema {name!r} is not a usable schema name.",
            hint="use lower-case letters, digits and _ (not pg_*, not langgraph_migrator*).",
        )


def _copy_in(conn: psycopg.Connection[Any], path: Path, table: str, compressed: bool) -> None:
    query = sql.SQL(COPY_IN_SQL).format(sql.Identifier(table))
    fh = gzip.open(path, "rb") if compressed else open(path, "rb", buffering=0)
    with fh, conn.cursor().copy(query) as copy:
        while chunk := fh.read(CHUNK):
            copy.write(chunk)


def _ddl_mismatch(
    conn: psycopg.Connection[Any], live_schema: str, live: list[str], tables: Sequence[BackupTable]
) -> str | None:
    wanted = [t.name for t in tables]
    if sorted(live) != sorted(wanted):
        return f"live tables {sorted(live)} differ from the backup's {sorted(wanted)}"
    for t in tables:
        current = _ddl_in(conn, live_schema, t.name)
        if current != t.ddl:
            for ours, theirs in zip(current, t.ddl, strict=False):
                if ours != theirs:
                    return f"{t.name}: live DDL `{_short(ours)}` vs backup `{_short(theirs)}`"
            return f"{t.name}: {len(current)} live DDL statements vs {len(t.ddl)} in the backup"
    return None


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 160 else flat[:157] + "..."


def restore_backup(
    dsn: str,
    backup_dir: Path,
    *,
    into_new_schema: str | None = None,
    lock_wait: float | None = 60.0,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore a backup's checkpoint tables: verify, load into a shadow schema, swap.

    Args:
        dsn: The database to restore into.
        backup_dir: A directory written by :func:`create_backup`.
        into_new_schema: Restore into this new schema and leave the live tables alone
            (needed when the live tables' DDL differs from the backup's).
        lock_wait: Seconds to wait for the migrator lock (``None``: forever).
        progress: receives one line per step.

    Returns:
        Where the tables went, their rows, and where the previous live tables were kept.

    Raises:
        ConfigError: The backup is incomplete, corrupt or edited; its DDL does not
            match the live tables; the new schema exists already. Nothing was written.
        LockTimeoutError: Another migrator holds the lock, or the live tables stayed
            locked by the application during the swap. Nothing was written.
        ConnectError: The database cannot be reached.
    """
    from migrator.lock import advisory_lock

    say = progress or _quiet
    if into_new_schema is not None:
        _check_schema_name(into_new_schema)
    say(f"verifying backup {backup_dir.name}")
    manifest = verify_backup(backup_dir)
    tables = manifest.checkpoint_tables()
    conn = connect(dsn, autocommit=False)  # first: its error carries the hint
    with conn, advisory_lock(dsn, wait=lock_wait):
        try:
            return _restore(conn, manifest, tables, into_new_schema, say)
        except psycopg.errors.LockNotAvailable as exc:
            raise LockTimeoutError(
                f"restore of {backup_dir.name}: the live tables stayed locked for "
                f"{SWAP_LOCK_TIMEOUT}; nothing was changed.",
                hint="retry when the application is quiet (safe to retry).",
            ) from exc
        except psycopg.Error as exc:
            raise _db_error("restore", dsn, exc) from exc


def _restore(
    conn: psycopg.Connection[Any],
    manifest: BackupManifest,
    tables: Sequence[BackupTable],
    into_new_schema: str | None,
    say: Progress,
) -> RestoreResult:
    name = manifest.path.name
    with conn.transaction():  # everything or nothing: no shadow schema survives a failure
        live = _resolve_checkpoint_tables(conn)
        live_schemas = {schema for schema, _ in live}
        if len(live_schemas) > 1:
            raise ConfigError(
                f"checkpoint tables are spread over schemas {sorted(live_schemas)}.",
                hint="restore with --into-new-schema NAME.",
            )
        live_schema = live_schemas.pop() if live_schemas else str(_one(conn, CURRENT_SCHEMA_SQL))
        live_names = [n for _, n in live]
        if into_new_schema is not None:
            if _one(conn, SCHEMA_EXISTS_SQL, (into_new_schema,)):
                raise ConfigError(
                    f"schema {into_new_schema} already exists; nothing was restored.",
                    hint="pass a new schema name to --into-new-schema.",
                )
        elif live_names:
            mismatch = _ddl_mismatch(conn, live_schema, live_names, tables)
            if mismatch:
                raise ConfigError(
                    f"backup {name} does not fit the live tables: {mismatch}; "
                    "nothing was restored.",
                    hint="restore with --into-new-schema NAME to load it beside them.",
                )
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S_%f")
        target = into_new_schema or f"{LEDGER_SCHEMA}_shadow_{stamp}"
        conn.execute(sql.SQL(CREATE_SCHEMA_SQL).format(sql.Identifier(target)))
        restored: dict[str, int] = {}
        with _search_path(conn, target):
            for t in tables:
                say(f"loading {t.name} ({t.rows} rows)")
                conn.execute(t.ddl[0])  # CREATE TABLE: constraints inline
                for f in t.files:
                    _copy_in(conn, manifest.path / f.file, t.name, manifest.compression is not None)
                for statement in t.ddl[1:]:  # secondary indexes: built once, after the load
                    conn.execute(statement)
                count = int(
                    _one(conn, sql.SQL(COUNT_SQL).format(*map(sql.Identifier, (target, t.name))))
                )
                if count != t.rows:
                    raise _bad(
                        manifest.path / t.files[0].file,
                        f"{t.name} loaded {count} rows, the manifest says {t.rows}",
                    )
                restored[t.name] = count
        if into_new_schema is not None:
            say(f"restored into schema {target}; live tables untouched")
            return RestoreResult(manifest.path, target, restored, swapped=False)
        conn.execute(SET_LOCK_TIMEOUT_SQL, (SWAP_LOCK_TIMEOUT,))
        old_schema = None
        if live_names:
            for table in live_names:
                conn.execute(
                    sql.SQL(LOCK_TABLE_SQL).format(*map(sql.Identifier, (live_schema, table)))
                )
            # Re-check under the lock: nothing may have altered them since.
            mismatch = _ddl_mismatch(conn, live_schema, live_names, tables)
            if mismatch:
                raise ConfigError(f"live tables changed during the restore: {mismatch}.")
            old_schema = f"{LEDGER_SCHEMA}_old_{stamp}"
            conn.execute(sql.SQL(CREATE_SCHEMA_SQL).format(sql.Identifier(old_schema)))
            for table in live_names:
                conn.execute(
                    sql.SQL(SET_SCHEMA_SQL).format(
                        *map(sql.Identifier, (live_schema, table, old_schema))
                    )
                )
        for t in tables:
            conn.execute(
                sql.SQL(SET_SCHEMA_SQL).format(*map(sql.Identifier, (target, t.name, live_schema)))
            )
        conn.execute(sql.SQL(DROP_SCHEMA_SQL).format(sql.Identifier(target)))
    say(
        f"restored {name} into {live_schema}"
        + (f"; previous tables kept in schema {old_schema}" if old_schema else "")
    )
    return RestoreResult(
        manifest.path,
        live_schema,
        restored,
        swapped=True,
        old_schema=old_schema,
        moved_aside=tuple(live_names),
    )
