"""The tool's own ledger: schema ``langgraph_migrator``, managed by Alembic revisions.

Tables: ``canaries`` (thread id, canary name, versions that seeded it),
``goldens`` (the snapshot the seeding version read), ``runs`` (one row per
``migrate``/``verify``-like run: versions, plan, applied statements, repairs,
verdict, timings, who and where) and ``backups`` (archives, dumps, shadow
tables). Its Alembic version table is
``langgraph_migrator.migrator_ledger_version``; the app's ``alembic_version`` and
the checkpoint tables are never touched. See ``docs/ledger.md``.

Writers hold :func:`migrator.lock.advisory_lock` and call :func:`upgrade_ledger`
first; readers (:func:`load_goldens`, :func:`list_canaries`, ...) never create
anything and see an empty ledger where there is none.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Json, Jsonb

from migrator.errors import ConfigError, ConnectError
from migrator.postgres.dsn import connect, redact_dsn, redact_text
from migrator.postgres.writes import write_refused_hint
from migrator.worker.faults import pause_point

LEDGER_SCHEMA = "langgraph_migrator"
VERSION_TABLE = "migrator_ledger_version"
SCRIPT_LOCATION = "migrator:ledger"
BACKUP_KINDS = ("backup", "dump", "shadow-tables")

_S = sql.Identifier(LEDGER_SCHEMA)

#: ``revision``/``down_revision`` assignments of an alembic version file.
_REVISION_RE = re.compile(r"^revision(?::[^=]*)?=\s*[\"'](?P<rev>[^\"']+)[\"']", re.M)
_DOWN_REVISION_RE = re.compile(
    r"^down_revision(?::[^=]*)?=\s*(?:None|[\"'](?P<rev>[^\"']+)[\"'])\s*$", re.M
)
CURRENT_REVISION_SQL = sql.SQL("SELECT version_num FROM {}.{}").format(
    _S, sql.Identifier(VERSION_TABLE)
)
LEDGER_EXISTS_SQL = "SELECT to_regclass(%s) IS NOT NULL"
UPSERT_CANARY_SQL = sql.SQL(
    """
    INSERT INTO {}.canaries (thread_id, canary, versions, user_canaries, status, seed_trace)
    VALUES (%(thread_id)s, %(canary)s, %(versions)s, %(user_canaries)s, %(status)s, %(trace)s)
    ON CONFLICT (thread_id) DO UPDATE SET
        canary = EXCLUDED.canary, versions = EXCLUDED.versions,
        user_canaries = EXCLUDED.user_canaries, status = EXCLUDED.status,
        seed_trace = EXCLUDED.seed_trace, seeded_by = current_user, seeded_at = now()
    """
).format(_S)
UPSERT_GOLDEN_SQL = sql.SQL(
    """
    INSERT INTO {}.goldens (thread_id, canary, snapshot, versions)
    VALUES (%(thread_id)s, %(canary)s, %(snapshot)s, %(versions)s)
    ON CONFLICT (thread_id) DO UPDATE SET
        canary = EXCLUDED.canary, snapshot = EXCLUDED.snapshot,
        versions = EXCLUDED.versions, seeded_at = now()
    """
).format(_S)
SELECT_GOLDENS_SQL = sql.SQL(
    "SELECT thread_id, canary, snapshot, versions, seeded_at FROM {}.goldens ORDER BY thread_id"
).format(_S)
SELECT_CANARIES_SQL = sql.SQL(
    "SELECT thread_id, canary, versions, user_canaries, status, seeded_by, seeded_at"
    " FROM {}.canaries ORDER BY thread_id"
).format(_S)
DELETE_CANARIES_SQL = sql.SQL("DELETE FROM {}.canaries WHERE thread_id = ANY(%s)").format(_S)
DELETE_GOLDENS_SQL = sql.SQL("DELETE FROM {}.goldens WHERE thread_id = ANY(%s)").format(_S)
INSERT_RUN_SQL = sql.SQL(
    """
    INSERT INTO {}.runs (command, from_versions, to_versions, plan, applied_statements,
        repairs, verdict, timings, client_host, tool_version, started_at, finished_at, details)
    VALUES (%(command)s, %(from_versions)s, %(to_versions)s, %(plan)s, %(applied_statements)s,
        %(repairs)s, %(verdict)s, %(timings)s, %(client_host)s, %(tool_version)s,
        %(started_at)s, %(finished_at)s, %(details)s)
    RETURNING id
    """
).format(_S)
SELECT_RUNS_SQL = sql.SQL(
    "SELECT id, command, from_versions, to_versions, plan, applied_statements, repairs,"
    " verdict, timings, db_user, client_host, host(client_addr) AS client_addr, tool_version,"
    " started_at, finished_at, details FROM {}.runs ORDER BY id"
).format(_S)
INSERT_BACKUP_SQL = sql.SQL(
    "INSERT INTO {}.backups (kind, location, manifest, status, details)"
    " VALUES (%s, %s, %s, %s, %s) RETURNING id"
).format(_S)
UPDATE_BACKUP_SQL = sql.SQL("UPDATE {}.backups SET status = %s WHERE id = %s").format(_S)
SELECT_BACKUPS_SQL = sql.SQL(
    "SELECT id, kind, location, manifest, status, details, created_at FROM {}.backups ORDER BY id"
).format(_S)

RUN_FIELDS = (
    "command",
    "from_versions",
    "to_versions",
    "plan",
    "applied_statements",
    "repairs",
    "verdict",
    "timings",
    "client_host",
    "tool_version",
    "started_at",
    "finished_at",
    "details",
)
_JSON_RUN_FIELDS = ("plan", "applied_statements", "repairs", "details")
_JSONB_RUN_FIELDS = ("from_versions", "to_versions", "timings")


@dataclass(frozen=True)
class Golden:
    """The snapshot of one thread as the seeding version read it.

    Attributes:
        thread_id: The thread (``canary:<name>`` for canaries).
        canary: The canary name, or None for a watched real thread.
        snapshot: That thread's entry of the snapshot (``snapshot["threads"][id]``).
        versions: The seeding version set (the snapshot's ``versions``).
        seeded_at: When it was stored.
    """

    thread_id: str
    canary: str | None
    snapshot: dict[str, Any]
    versions: dict[str, Any]
    seeded_at: dt.datetime


@dataclass(frozen=True)
class CanaryRecord:
    """A canary thread seeded into this database."""

    thread_id: str
    canary: str
    versions: dict[str, Any]
    user_canaries: str | None
    status: str
    seeded_by: str | None
    seeded_at: dt.datetime


@dataclass(frozen=True)
class BackupRecord:
    """A backup, dump or set of shadow tables the fallback work made."""

    id: int
    kind: str
    location: str
    manifest: Any
    status: str
    details: Any
    created_at: dt.datetime


@dataclass(frozen=True)
class RunRecord:
    """One recorded run (see :func:`record_run` for the fields)."""

    id: int
    command: str
    from_versions: Any
    to_versions: Any
    plan: Any
    applied_statements: Any
    repairs: Any
    verdict: str | None
    timings: Any
    db_user: str | None
    client_host: str | None
    client_addr: str | None
    tool_version: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    details: Any


# ------------------------------------------------------------------ alembic


def sqlalchemy_url(dsn: str) -> Any:
    """The SQLAlchemy URL (``postgresql+psycopg``) of a libpq DSN in URL or key=value form.

    Unix-socket and multi-host ``host`` values go into the query string, as
    SQLAlchemy's psycopg dialect expects.

    Args:
        dsn: A libpq connection string.

    Returns:
        A ``sqlalchemy.engine.URL``.

    Raises:
        ConfigError: The DSN cannot be parsed.
    """
    from sqlalchemy.engine import URL

    try:
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            f"cannot parse the DSN {redact_dsn(dsn)}: {redact_text(str(exc), dsn)}",
            hint="use postgresql://user@host:port/dbname or 'host=... dbname=...'",
        ) from exc
    user = params.pop("user", None)
    password = params.pop("password", None)
    dbname = params.pop("dbname", None)
    host = params.pop("host", None)
    port = params.pop("port", None)
    if host and (host.startswith("/") or "," in host):
        params["host"] = host
        if port:
            params["port"] = port
        host = port = None
    return URL.create(
        "postgresql+psycopg",
        username=user,
        password=password,
        host=host,
        port=int(port) if port else None,
        database=dbname,
        query=params,
    )


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def head_revision() -> str:
    """The newest ledger revision shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the ledger has no revisions"
    return head


def shipped_head() -> str | None:
    """The newest ledger revision, read from the version files' text (no alembic import).

    Returns:
        The one revision no other names as its ``down_revision``; None when a file
        does not read as expected (then ask alembic: :func:`head_revision`).
    """
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in (Path(__file__).resolve().parent / "versions").glob("[!_]*.py"):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION_RE.search(text), _DOWN_REVISION_RE.search(text)
        if revision is None or down is None:
            return None
        revisions.add(revision["rev"])
        if down["rev"]:
            downs.add(down["rev"])
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def upgrade_ledger(dsn: str) -> str:
    """Create or upgrade the ledger schema to the newest revision (idempotent).

    The caller holds :func:`migrator.lock.advisory_lock`. Runs in one transaction:
    a failed upgrade leaves the ledger as it was. A ledger already at the newest
    revision is left alone without importing alembic and SQLAlchemy: that alone
    costs ~0.9 s of CPU, which ``migrate`` spends beside the live application.

    Args:
        dsn: The app's database.

    Returns:
        The head revision the ledger is now at.

    Raises:
        ConnectError: The database cannot be reached, or the role may not create
            the schema.
    """
    head = shipped_head()
    if head is not None and ledger_revision(dsn) == head:
        return head
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    config = _alembic_config()
    engine = create_engine(sqlalchemy_url(dsn), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise ConnectError(
            f"could not create or upgrade the ledger schema {LEDGER_SCHEMA!r} in "
            f"{redact_dsn(dsn)}: {redact_text(detail, dsn)[:300]}",
            hint=write_refused_hint(
                exc,
                "the role needs CREATE on the database (or create the schema "
                f"{LEDGER_SCHEMA!r} owned by it)",
            ),
        ) from exc
    finally:
        engine.dispose()
    revision = ledger_revision(dsn)
    assert revision == head_revision(), (revision, head_revision())
    return revision


def ledger_revision(dsn: str) -> str | None:
    """The ledger's current revision, or None when the database has no ledger (read only).

    Raises:
        ConnectError: The database cannot be reached.
        LedgerDamagedError: The version table lost its column.
    """
    with connect(dsn) as conn, _shape_errors(dsn):
        if not _ledger_exists(conn):
            return None
        row = conn.execute(CURRENT_REVISION_SQL).fetchone()
    return None if row is None else str(row[0])


@contextmanager
def _shape_errors(dsn: str) -> Iterator[None]:
    """A query that met a ledger of another shape raises ``LedgerDamagedError`` (exit 3)."""
    try:
        yield
    except psycopg.Error as exc:
        from migrator.ledger.health import damaged_error

        damaged = damaged_error(dsn, exc)
        if damaged is None:
            raise
        raise damaged from exc


def _ledger_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(LEDGER_EXISTS_SQL, (f"{LEDGER_SCHEMA}.{VERSION_TABLE}",)).fetchone()
    return bool(row and row[0])


@contextmanager
def _ledger_conn(
    dsn: str, *, write: bool, conn: psycopg.Connection[Any] | None = None
) -> Iterator[psycopg.Connection[dict[str, Any]] | None]:
    """A connection in one transaction; None (readers) when there is no ledger.

    With ``conn``, that one in a savepoint: the caller's transaction holds the writes.
    """
    with contextlib.ExitStack() as stack:
        raw = conn if conn is not None else stack.enter_context(connect(dsn, autocommit=True))
        stack.enter_context(_shape_errors(dsn))
        if not _ledger_exists(raw):
            if write:
                raise ConfigError(
                    f"{redact_dsn(dsn)} has no {LEDGER_SCHEMA!r} ledger yet.",
                    hint="call migrator.ledger.upgrade_ledger(dsn) under the migrator lock first",
                )
            yield None
            return
        saved = raw.row_factory
        raw.row_factory = dict_row
        try:
            with raw.transaction():
                yield raw  # type: ignore[misc]
        finally:
            raw.row_factory = saved


# ------------------------------------------------------------------ canaries


def record_canary(
    dsn: str,
    thread_id: str,
    canary: str,
    versions: Mapping[str, Any],
    *,
    user_canaries: str | None = None,
    status: str = "seeded",
    trace: Sequence[Any] | None = None,
    conn: psycopg.Connection[Any] | None = None,
) -> None:
    """Record (or replace) a canary thread seeded into this database.

    Args:
        dsn: The app's database (ledger upgraded).
        thread_id: The canary's thread id.
        canary: Its name.
        versions: The version set that seeded it.
        user_canaries: ``module:attr`` the canary came from, for user canaries.
        status: ``seeded`` (or what the seed op said).
        trace: The nodes its seed executed.
        conn: Write in this connection's transaction (default: a connection of its own).
    """
    with _ledger_conn(dsn, write=True, conn=conn) as ledger:
        assert ledger is not None
        ledger.execute(
            UPSERT_CANARY_SQL,
            {
                "thread_id": thread_id,
                "canary": canary,
                "versions": Jsonb(dict(versions)),
                "user_canaries": user_canaries,
                "status": status,
                "trace": Json(list(trace) if trace is not None else None),
            },
        )


def save_golden(
    dsn: str,
    thread_id: str,
    canary: str | None,
    snapshot: Mapping[str, Any],
    versions: Mapping[str, Any],
    *,
    conn: psycopg.Connection[Any] | None = None,
) -> None:
    """Store (or replace) the golden snapshot of one thread.

    Args:
        dsn: The app's database (ledger upgraded).
        thread_id: The thread.
        canary: Its canary name, or None for a watched real thread.
        snapshot: The thread's entry of a snapshot; a whole snapshot (with
            ``threads``) is accepted too and reduced to that entry.
        versions: The version set that read it.
        conn: Write in this connection's transaction (default: a connection of its own).

    Raises:
        ConfigError: A whole snapshot was given that does not hold ``thread_id``.
    """
    entry = _thread_entry(snapshot, thread_id)
    with _ledger_conn(dsn, write=True, conn=conn) as ledger:
        assert ledger is not None
        ledger.execute(
            UPSERT_GOLDEN_SQL,
            {
                "thread_id": thread_id,
                "canary": canary,
                "snapshot": Json(entry),
                "versions": Jsonb(dict(versions)),
            },
        )


def _thread_entry(snapshot: Mapping[str, Any], thread_id: str) -> dict[str, Any]:
    threads = snapshot.get("threads")
    if isinstance(threads, Mapping) and "format" in snapshot:
        if thread_id not in threads:
            raise ConfigError(f"the snapshot holds no thread {thread_id!r}.")
        return dict(threads[thread_id])
    return dict(snapshot)


def load_goldens(dsn: str) -> list[Golden]:
    """Every golden stored in this database, by thread id (empty when there is no ledger)."""
    with _ledger_conn(dsn, write=False) as conn:
        if conn is None:
            return []
        rows = conn.execute(SELECT_GOLDENS_SQL).fetchall()
    return [Golden(**row) for row in rows]


def list_canaries(dsn: str) -> list[CanaryRecord]:
    """Every canary seeded into this database (empty when there is no ledger)."""
    with _ledger_conn(dsn, write=False) as conn:
        if conn is None:
            return []
        rows = conn.execute(SELECT_CANARIES_SQL).fetchall()
    return [CanaryRecord(**row) for row in rows]


def forget_threads(
    dsn: str, thread_ids: Sequence[str], *, conn: psycopg.Connection[Any] | None = None
) -> int:
    """Delete the ledger's canary and golden rows of these threads (in ``conn``'s tx).

    Returns:
        Canary rows deleted (0 when there is no ledger).
    """
    with _ledger_conn(dsn, write=False, conn=conn) as ledger:
        if ledger is None:
            return 0
        ledger.execute(DELETE_GOLDENS_SQL, (list(thread_ids),))
        return ledger.execute(DELETE_CANARIES_SQL, (list(thread_ids),)).rowcount


# ------------------------------------------------------------------ runs


def _timestamp(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    raise ValueError(f"not a timestamp: {value!r}")


def record_run(
    dsn: str, run: Mapping[str, Any], *, conn: psycopg.Connection[Any] | None = None
) -> int:
    """Record one run of the tool against this database.

    Args:
        dsn: The app's database (ledger upgraded).
        run: Any of ``command`` (default ``migrate``), ``from_versions``,
            ``to_versions``, ``timings`` (JSON objects); ``plan``,
            ``applied_statements``, ``repairs``, ``details`` (any JSON);
            ``verdict`` (text); ``started_at``, ``finished_at`` (datetime, epoch
            seconds or ISO text); ``client_host`` (default: this machine's host
            name); ``tool_version`` (default: this package's). The database role
            and client address are filled in by the server.
        conn: Write in this connection's transaction (default: a connection of its own).

    Returns:
        The run's id.

    Raises:
        ValueError: ``run`` has a key not listed above.
    """
    from migrator import __version__

    unknown = sorted(set(run) - set(RUN_FIELDS))
    if unknown:
        raise ValueError(f"record_run: unknown field(s) {unknown}; known: {list(RUN_FIELDS)}")
    params: dict[str, Any] = {name: run.get(name) for name in RUN_FIELDS}
    params["command"] = params["command"] or "migrate"
    params["client_host"] = params["client_host"] or socket.gethostname()
    params["tool_version"] = params["tool_version"] or __version__
    for name in _JSON_RUN_FIELDS:
        params[name] = None if params[name] is None else Json(params[name])
    for name in _JSONB_RUN_FIELDS:
        params[name] = None if params[name] is None else Jsonb(params[name])
    params["started_at"] = _timestamp(params["started_at"])
    params["finished_at"] = _timestamp(params["finished_at"])
    with _ledger_conn(dsn, write=True, conn=conn) as ledger:
        assert ledger is not None
        row = ledger.execute(INSERT_RUN_SQL, params).fetchone()
        pause_point("ledger.written")  # the reliability suite: inserted, not committed
    assert row is not None
    return int(row["id"])


def list_runs(dsn: str) -> list[RunRecord]:
    """Every recorded run, oldest first (empty when there is no ledger)."""
    with _ledger_conn(dsn, write=False) as conn:
        if conn is None:
            return []
        rows = conn.execute(SELECT_RUNS_SQL).fetchall()
    return [RunRecord(**row) for row in rows]


# ------------------------------------------------------------------ backups


def record_backup(
    dsn: str,
    kind: str,
    location: str,
    manifest: Any = None,
    *,
    status: str = "created",
    details: Any = None,
) -> int:
    """Record a backup archive, a dump or a set of shadow tables.

    Args:
        dsn: The app's database (ledger upgraded).
        kind: ``backup``, ``dump`` or ``shadow-tables``.
        location: Where it is (a path, URL or ``schema.table`` list).
        manifest: Its manifest (JSON).
        status: E.g. ``created``, ``verified``, ``restored``, ``deleted``.
        details: Anything else (JSON).

    Returns:
        The backup's id.

    Raises:
        ValueError: Unknown ``kind``.
    """
    if kind not in BACKUP_KINDS:
        raise ValueError(f"backup kind must be one of {BACKUP_KINDS}, not {kind!r}")
    with _ledger_conn(dsn, write=True) as conn:
        assert conn is not None
        row = conn.execute(
            INSERT_BACKUP_SQL, (kind, location, Json(manifest), status, Json(details))
        ).fetchone()
    assert row is not None
    return int(row["id"])


def set_backup_status(dsn: str, backup_id: int, status: str) -> None:
    """Change a recorded backup's status (e.g. ``restored``, ``deleted``).

    Raises:
        ConfigError: No backup has that id.
    """
    with _ledger_conn(dsn, write=True) as conn:
        assert conn is not None
        if conn.execute(UPDATE_BACKUP_SQL, (status, backup_id)).rowcount != 1:
            raise ConfigError(f"no backup with id {backup_id} in the ledger.")


def list_backups(dsn: str) -> list[BackupRecord]:
    """Every recorded backup, oldest first (empty when there is no ledger)."""
    with _ledger_conn(dsn, write=False) as conn:
        if conn is None:
            return []
        rows = conn.execute(SELECT_BACKUPS_SQL).fetchall()
    return [BackupRecord(**row) for row in rows]
