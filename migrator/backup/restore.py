"""restore-backup: verify a backup, load it into a shadow schema, swap it in.

``restore_backup`` verifies first (``verify_backup``, no database), takes the
migrator's advisory lock, creates each table with the statements the tool generates
(``migrator.backup.ddl``; the DDL text in the manifest is only compared with them,
never executed), loads the files with ``COPY ... FROM STDIN (FORMAT
binary, FREEZE)`` into a shadow schema, checks every table's ``count(*)`` against
the manifest, and in the same transaction moves the live tables into
``langgraph_migrator_old_<ts>`` (kept, never dropped) and the restored ones into
place with ``ALTER TABLE ... SET SCHEMA``. Any failure rolls the whole transaction
back: the live tables are untouched and no shadow schema is left. Ledger tables are
backed up for the record and for inspection; a restore never rewrites the ledger
(it holds the history of runs and backups).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from migrator.backup.manifest import (
    CHUNK,
    LEDGER_SCHEMA,
    BackupManifest,
    BackupTable,
    Progress,
    bad_backup,
    db_error,
    ddl_in,
    fetch_one,
    quiet,
    recognised_ddl,
    resolve_checkpoint_tables,
    search_path,
    verify_backup,
)
from migrator.errors import ConfigError, LockTimeoutError
from migrator.output.progress import ByteProgress
from migrator.postgres.dsn import connect
from migrator.swap import schema_stamp

#: ``lock_timeout`` for the swap: waiting longer would queue every app query behind us.
SWAP_LOCK_TIMEOUT = "10s"

CURRENT_SCHEMA_SQL = "SELECT current_schema()"
SCHEMA_EXISTS_SQL = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"
COPY_IN_SQL = "COPY {} FROM STDIN (FORMAT binary, FREEZE)"
COUNT_SQL = "SELECT count(*) FROM {}.{}"
CREATE_SCHEMA_SQL = "CREATE SCHEMA {}"
DROP_SCHEMA_SQL = "DROP SCHEMA {}"
LOCK_TABLE_SQL = "LOCK TABLE {}.{} IN ACCESS EXCLUSIVE MODE"
SET_LOCK_TIMEOUT_SQL = "SELECT set_config('lock_timeout', %s, true)"
SET_SCHEMA_SQL = "ALTER TABLE {}.{} SET SCHEMA {}"

_SCHEMA_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class RestoreResult:
    """What ``restore_backup`` did."""

    backup: Path
    schema: str
    tables: Mapping[str, int]
    swapped: bool
    old_schema: str | None = None
    moved_aside: tuple[str, ...] = field(default_factory=tuple)


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


def _copy_in(
    conn: psycopg.Connection[Any],
    path: Path,
    table: str,
    compressed: bool,
    meter: ByteProgress,
) -> None:
    query = sql.SQL(COPY_IN_SQL).format(sql.Identifier(table))
    raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below, with the reader
    fh = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
    read = 0
    with raw, fh, conn.cursor().copy(query) as copy:
        while chunk := fh.read(CHUNK):
            copy.write(chunk)
            meter.add(raw.tell() - read)  # file bytes: what the manifest's sizes count
            read = raw.tell()
        if raw.tell() > read:  # a gzip trailer read after the last data
            meter.add(raw.tell() - read)


def _ddl_mismatch(
    conn: psycopg.Connection[Any], live_schema: str, live: list[str], tables: Sequence[BackupTable]
) -> str | None:
    wanted = [t.name for t in tables]
    if sorted(live) != sorted(wanted):
        return f"live tables {sorted(live)} differ from the backup's {sorted(wanted)}"
    for t in tables:
        current = ddl_in(conn, live_schema, t.name)
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
    lock_held: bool = False,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore a backup's checkpoint tables: verify, load into a shadow schema, swap.

    Args:
        dsn: The database to restore into.
        backup_dir: A directory written by ``migrator.backup.create_backup``.
        into_new_schema: Restore into this new schema and leave the live tables alone
            (needed when the live tables' DDL differs from the backup's).
        lock_wait: Seconds to wait for the migrator lock (``None``: forever).
        lock_held: The caller holds the migrator lock (``migrate``'s fallback).
        progress: receives one line per step.

    Returns:
        Where the tables went, their rows, and where the previous live tables were kept.

    Raises:
        ConfigError: The backup is incomplete, corrupt or edited; its DDL is not what
            the tool generates, or does not match the live tables; the new schema
            exists already. Nothing was written.
        LockTimeoutError: Another migrator holds the lock, or the live tables stayed
            locked by the application during the swap. Nothing was written.
        ConnectError: The database cannot be reached.
    """
    from migrator.lock import migrator_lock

    say = progress or quiet
    if into_new_schema is not None:
        _check_schema_name(into_new_schema)
    say(f"verifying backup {backup_dir.name}")
    manifest = verify_backup(backup_dir)
    tables = manifest.checkpoint_tables()
    conn = connect(dsn, autocommit=False)  # first: its error carries the hint
    with conn, migrator_lock(dsn, wait=lock_wait, held=lock_held):
        try:
            return _restore(conn, manifest, tables, into_new_schema, say)
        except KeyboardInterrupt as exc:
            raise _rolled_back(exc) from None
        except psycopg.errors.LockNotAvailable as exc:
            if (interrupt := _interrupt_in(exc)) is not None:
                raise _rolled_back(interrupt) from None
            raise LockTimeoutError(
                f"restore of {backup_dir.name}: the live tables stayed locked for "
                f"{SWAP_LOCK_TIMEOUT}; nothing was changed.",
                hint="retry when the application is quiet (safe to retry).",
            ) from exc
        except psycopg.Error as exc:
            if (interrupt := _interrupt_in(exc)) is not None:
                raise _rolled_back(interrupt) from None
            raise db_error("restore", dsn, exc) from exc


#: What an interrupted restore says: it runs in one transaction, which is rolled back.
INTERRUPTED_NOTE = "interrupted; nothing changed (the restore's transaction was rolled back)"


def _interrupt_in(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM behind ``exc``: a statement in the aborted transaction (the
    ``search_path`` reset on the way out) fails with a psycopg error that hides it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _rolled_back(interrupt: KeyboardInterrupt) -> KeyboardInterrupt:
    """``interrupt`` (Ctrl-C or SIGTERM, its type kept) noting that nothing changed."""
    if INTERRUPTED_NOTE not in getattr(interrupt, "__notes__", ()):
        interrupt.add_note(INTERRUPTED_NOTE)
    return interrupt


def _restore(
    conn: psycopg.Connection[Any],
    manifest: BackupManifest,
    tables: Sequence[BackupTable],
    into_new_schema: str | None,
    say: Progress,
) -> RestoreResult:
    name = manifest.path.name
    # The tool's own statements; the manifest's DDL text is never executed.
    ddl = recognised_ddl(manifest)
    with conn.transaction():  # everything or nothing: no shadow schema survives a failure
        live = resolve_checkpoint_tables(conn)
        live_schemas = {schema for schema, _ in live}
        if len(live_schemas) > 1:
            raise ConfigError(
                f"checkpoint tables are spread over schemas {sorted(live_schemas)}.",
                hint="restore with --into-new-schema NAME.",
            )
        live_schema = (
            live_schemas.pop() if live_schemas else str(fetch_one(conn, CURRENT_SCHEMA_SQL))
        )
        live_names = [n for _, n in live]
        if into_new_schema is not None:
            if fetch_one(conn, SCHEMA_EXISTS_SQL, (into_new_schema,)):
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
        stamp = schema_stamp()
        target = into_new_schema or f"{LEDGER_SCHEMA}_shadow_{stamp}"
        conn.execute(sql.SQL(CREATE_SCHEMA_SQL).format(sql.Identifier(target)))
        restored: dict[str, int] = {}
        compressed = manifest.compression is not None
        with search_path(conn, target):
            for t in tables:
                say(f"loading {t.name} ({t.rows} rows)")
                conn.execute(ddl[t.name].create_table())  # constraints inline
                meter = ByteProgress(f"loading {t.name}", sum(f.bytes for f in t.files), say)
                for f in t.files:
                    _copy_in(conn, manifest.path / f.file, t.name, compressed, meter)
                indexes = ddl[t.name].create_indexes()
                if indexes:
                    say(f"indexing {t.name}")
                for statement in indexes:  # secondary indexes: built once, after the load
                    conn.execute(statement)
                count = int(
                    fetch_one(
                        conn, sql.SQL(COUNT_SQL).format(*map(sql.Identifier, (target, t.name)))
                    )
                )
                if count != t.rows:
                    raise bad_backup(
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
