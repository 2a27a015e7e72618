"""``migrate``'s settings, outcome and run state, and the small helpers every phase uses."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from migrator.errors import (
    MigratorError,
    VerificationError,
)
from migrator.plan import (
    Plan,
)
from migrator.report import Check, Report

Progress = Callable[[str], None]
Backup = Callable[[str], Path]
Confirm = Callable[[str], bool]

#: ``fallback`` values: run it, never run it, ask ``confirm`` (interactive CLI).
FALLBACKS = ("dump-restore", "none", "ask")
#: Schema the pre-migrate backup is loaded into before it is swapped in.
PRE_MIGRATE_PREFIX = "lgm_premigrate_"
LIVE_SCHEMA_SQL = (
    "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.oid = to_regclass('checkpoints')"
)
CURRENT_SCHEMA_SQL = "SELECT current_schema()"

#: Worker errors that mean "a lock or timeout got in the way": retry.
RETRYABLE = frozenset({"LockNotAvailable", "QueryCanceled"})
INSERT_LEDGER_SQL = "INSERT INTO checkpoint_migrations (v) VALUES (%s) ON CONFLICT DO NOTHING"


@dataclass(frozen=True)
class MigrateSettings:
    """What ``migrate`` needs.

    Attributes:
        dsn: The live database.
        to_spec: The target version set.
        scratch_dsn: A server for the plan's reference and rehearsal.
        schema: The checkpoint tables' schema (default: the connection's current schema).
        wait: Seconds to wait for another migrator (None: forever, 0: not at all).
        lock_timeout: Seconds one statement may wait for a table lock.
        blocking_lock_timeout: Seconds a ``setup()`` statement whose lock request
            queues the application's queries (``ALTER TABLE``, a plain ``CREATE
            INDEX``) may wait for its lock (at most ``lock_timeout``); on a
            timeout ``setup()`` is retried like any lock timeout. The longest an
            application query waits behind such a request.
        statement_timeout: Seconds one statement may run.
        retries: Attempts after the first when a lock is in the way.
        backoff: First retry delay in seconds (doubles each time, at most 30 s).
        worker_timeout: Seconds a worker step may take.
        from_spec: The version set that wrote the data (needed by the fallback).
        fallback: After breaking drift: ``dump-restore``, ``none`` or ``ask``.
        accept_hazards: Data hazards the operator accepts (``--accept-hazard``): the
            stored threads they reach do not stop the run.
        nice: CPU nice value for the rest of the run, applied to the calling
            thread (and so to the backup's threads and every worker started
            after it; :mod:`migrator.worker.priority`). 0 leaves it; the CLI
            passes 10, so that the tool's own work yields the CPU to the
            application it migrates beside. A library caller's thread keeps
            the value afterwards: Linux lets nobody unprivileged lower it again.
    """

    dsn: str
    to_spec: str = "current"
    scratch_dsn: str | None = None
    schema: str | None = None
    wait: float | None = 60.0
    lock_timeout: float = 5.0
    blocking_lock_timeout: float = 1.0
    statement_timeout: float = 900.0
    retries: int = 5
    backoff: float = 1.0
    worker_timeout: float = 900.0
    from_spec: str | None = None
    fallback: str = "none"
    accept_hazards: tuple[str, ...] = ()
    nice: int = 0


class DriftError(VerificationError):
    """Breaking drift against the goldens after the in-place migration."""

    def __init__(
        self, message: str, failed: list[Check], *, unproven: bool = False, at_risk: str = ""
    ) -> None:
        super().__init__(message)
        self.failed = failed
        #: With ``unproven``: the threads at risk by hazard (``H-TASK-ID: 2 thread(s) (...)``).
        self.at_risk = at_risk
        #: From the plan's data hazards, with no canary to judge a cure by.
        self.unproven = unproven


@dataclass
class MigrateOutcome:
    """The report and, when it failed, the error the CLI exits with."""

    report: Report
    plan: Plan | None = None
    error: MigratorError | None = None
    applied: bool = False
    state: str = ""


@dataclass
class _Run:
    settings: MigrateSettings
    progress: Progress
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def sleep(self, attempt: int) -> None:
        time.sleep(min(self.settings.backoff * 2**attempt, 30.0))


def _optional(module: str, attr: str) -> Callable[..., Any] | None:
    """``module.attr`` when that module is installed (other engineers' work), else None."""
    if importlib.util.find_spec(module) is None:
        return None
    fn = getattr(importlib.import_module(module), attr, None)
    return fn if callable(fn) else None


def _ms(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms"


#: How often a session of ``migrate`` checks that its client is still there (PostgreSQL 14+).
CLIENT_CHECK_INTERVAL_MS = 1000
SERVER_VERSION_SQL = "SELECT current_setting('server_version_num')::int"


@functools.lru_cache(maxsize=16)
def _server_version(dsn: str) -> int:
    """The server's ``server_version_num`` (0 when it cannot be read: the caller's
    own connection then reports why)."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(SERVER_VERSION_SQL).fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


def _timeout_dsn(settings: MigrateSettings) -> str:
    """The DSN of ``migrate``'s DDL sessions: lock and statement timeouts, and a client check.

    Without the check, a ``CREATE INDEX CONCURRENTLY`` whose tool was killed goes on
    in the server (it waits for old snapshots and never notices the client is gone),
    then finishes without the migrator lock while a rerun works on the same table
    (found by ``tests/reliability/test_kill_repair.py``). PostgreSQL 14+ only.
    """
    options = f"-c lock_timeout={_ms(settings.lock_timeout)} " + (
        f"-c statement_timeout={_ms(settings.statement_timeout)}"
    )
    if _server_version(settings.dsn) >= 140000:
        options += f" -c client_connection_check_interval={CLIENT_CHECK_INTERVAL_MS}"
    return make_conninfo(settings.dsn, options=options, application_name="langgraph-migrator")


def _execute(settings: MigrateSettings, statements: tuple[str, ...] | list[str]) -> None:
    """Run statements one by one in autocommit, with the lock and statement timeouts."""
    with psycopg.connect(_timeout_dsn(settings), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _v(value: Any) -> str:
    return "none" if value is None else f"v{value}"
