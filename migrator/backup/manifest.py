"""The backup format: manifest values, writing and verifying a backup directory.

A backup directory holds one binary ``COPY`` file per table (or per ``thread_id``
hash partition) and ``manifest.json``, which lists every table (role, schema, name,
portable DDL, rows) and every file (rows, bytes, SHA-256), and seals itself with
``manifest_sha256`` over its canonical JSON (docs/backup.md).

``verify_backup`` needs no database: manifest integrity, completeness, sizes,
SHA-256 of every file, the binary COPY signature and trailer, and that each
checkpoint table's recorded DDL is DDL the tool itself generates
(``migrator.backup.ddl``: the restore runs the tool's statements, never that
text). The catalog lookups here (where the checkpoint tables live, their DDL) are
shared by ``migrator.backup`` (create) and ``migrator.backup.restore`` (restore),
so both read a database the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from migrator.backup.ddl import DdlRefused, TableDdl, parse_table_ddl
from migrator.errors import ConfigError, ConnectError
from migrator.fixtures import CHECKPOINT_TABLES, table_ddl
from migrator.postgres.dsn import redact_dsn, redact_text

BACKUP_FORMAT = "langgraph-migrator/backup@1"
MANIFEST = "manifest.json"
LEDGER_SCHEMA = "langgraph_migrator"
PGCOPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
PGCOPY_TRAILER = b"\xff\xff"
#: Read/write block: large enough that per-call costs vanish, small enough to stay flat.
CHUNK = 1 << 20

Progress = Callable[[str], None]

TABLE_SCHEMA_SQL = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s)
"""
SEARCH_PATH_SQL = "SELECT current_setting('search_path')"
SET_SEARCH_PATH_SQL = "SELECT set_config('search_path', %s, true)"

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def quiet(_: str) -> None:
    """A ``Progress`` that says nothing."""
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


# ----------------------------------------------------------------- helpers


def first_line(exc: BaseException) -> str:
    """The exception's message on one line (its type name when it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def db_error(what: str, dsn: str, exc: BaseException) -> ConnectError:
    """A one-line ``ConnectError`` for a failed database step, password hidden."""
    return ConnectError(f"{what} on {redact_dsn(dsn)} failed: {redact_text(first_line(exc), dsn)}")


def manifest_digest(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a manifest body (``manifest_sha256``)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fetch_one(conn: psycopg.Connection[Any], query: Any, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row, or None."""
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def resolve_checkpoint_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """``(schema, table)`` of each checkpoint table the connection's search_path finds."""
    found = []
    for table in CHECKPOINT_TABLES:
        schema = fetch_one(conn, TABLE_SCHEMA_SQL, (table,))
        if schema is not None:
            found.append((str(schema), table))
    return found


@contextmanager
def search_path(conn: psycopg.Connection[Any], schema: str) -> Iterator[None]:
    """Set ``search_path`` to ``schema`` (transaction-local) for the block.

    When a statement of the block failed, the transaction is aborted: the setting is
    left for its rollback to undo, since restoring it there would only raise
    "current transaction is aborted" in place of the error that matters (e.g.
    "permission denied for schema ...").
    """
    saved = fetch_one(conn, SEARCH_PATH_SQL)
    conn.execute(SET_SEARCH_PATH_SQL, (sql.Identifier(schema).as_string(conn),))
    try:
        yield
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            conn.execute(SET_SEARCH_PATH_SQL, (saved,))


def ddl_in(conn: psycopg.Connection[Any], schema: str, table: str) -> tuple[str, ...]:
    """The portable (schema-free) DDL of ``schema.table``."""
    with search_path(conn, schema):
        return table_ddl(conn, table)


def write_manifest(manifest: BackupManifest, created: list[Path]) -> None:
    """Write ``manifest.json`` atomically, sealed with its own checksum.

    Args:
        manifest: The manifest; written into ``manifest.path``.
        created: Receives every path written, so a failed backup can remove them.
    """
    body = manifest.to_dict()
    body["manifest_sha256"] = manifest_digest(body)
    tmp = manifest.path / f".{MANIFEST}.tmp"
    created.append(tmp)
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    created.append(manifest.path / MANIFEST)
    os.replace(tmp, manifest.path / MANIFEST)


# ------------------------------------------------------------------ verify


def bad_backup(path: Path, reason: str) -> ConfigError:
    """The error for a damaged backup: names the file and the reason."""
    return ConfigError(
        f"backup {path.parent.name}: {path.name}: {reason}; nothing was restored.",
        hint="use another backup; files of a backup are never edited.",
    )


def _parse_manifest(backup_dir: Path, body: Any) -> BackupManifest:
    where = backup_dir / MANIFEST
    if not isinstance(body, dict) or body.get("format") != BACKUP_FORMAT:
        fmt = body.get("format") if isinstance(body, dict) else None
        raise bad_backup(where, f"not a {BACKUP_FORMAT} manifest (format {fmt!r})")
    claimed = body.pop("manifest_sha256", None)
    if claimed != manifest_digest(body):
        raise bad_backup(
            where, "does not match its own checksum (manifest_sha256): edited or damaged"
        )
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
        raise bad_backup(where, f"malformed: {exc}") from exc


def recognised_ddl(manifest: BackupManifest) -> dict[str, TableDdl]:
    """Each checkpoint table's DDL as the tool will create it, recognised from the manifest.

    The manifest's checksum is not a signature: its DDL text is only compared with
    what the tool generates, never executed.

    Raises:
        ConfigError: A recorded statement is not recognised or differs from what the
            tool generates; the message names the table and the statement.
    """
    out: dict[str, TableDdl] = {}
    for t in manifest.checkpoint_tables():
        try:
            out[t.name] = parse_table_ddl(t.name, t.ddl)
        except DdlRefused as exc:
            raise bad_backup(manifest.path / MANIFEST, f"{t.name}: {exc}") from None
    return out


def _check_file(path: Path, entry: BackupFile, compressed: bool) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise bad_backup(path, "missing: the backup is incomplete") from None
    if size != entry.bytes:
        cut = "truncated" if size < entry.bytes else "longer than recorded"
        raise bad_backup(path, f"{cut}: {size} bytes, the manifest says {entry.bytes}")
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
        raise bad_backup(path, "corrupt: its SHA-256 does not match the manifest")
    if not compressed and (head != PGCOPY_SIGNATURE or tail != PGCOPY_TRAILER):
        raise bad_backup(path, "not a complete binary COPY stream (signature or trailer missing)")


def verify_backup(backup_dir: Path) -> BackupManifest:
    """Check a backup without a database: manifest, completeness, sizes, checksums.

    Args:
        backup_dir: A directory written by ``migrator.backup.create_backup``.

    Returns:
        The verified manifest.

    Raises:
        ConfigError: Missing, incomplete, truncated, corrupt or edited, or a
            checkpoint table's DDL is not what the tool generates; the message names
            the file and the reason.
    """
    where = backup_dir / MANIFEST
    if not backup_dir.is_dir():
        raise ConfigError(
            f"backup {backup_dir} is not a directory.", hint="pass a backup directory."
        )
    try:
        body = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise bad_backup(where, "missing: not a backup, or the backup did not finish") from None
    except (OSError, ValueError) as exc:
        raise bad_backup(where, f"unreadable: {first_line(exc)}") from exc
    manifest = _parse_manifest(backup_dir, body)
    if not manifest.checkpoint_tables():
        raise bad_backup(where, "lists no checkpoint tables")
    recognised_ddl(manifest)
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
