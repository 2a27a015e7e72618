"""What dump and restore share: constants, the restore's result, connections, and
running parts in parallel."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

from migrator.errors import (
    ConnectError,
)
from migrator.postgres import redact_dsn

Progress = Callable[[str], None]

T = TypeVar("T")
#: Default seconds a dump or restore worker may make no progress (no fixed limit).
IDLE_TIMEOUT_S = 900.0
SHADOW_PREFIX = "langgraph_migrator_shadow_"
#: Where ``migrate``'s fallback loads the pre-migrate backup before its swap
#: (``migrator.execute.model.PRE_MIGRATE_PREFIX``): a killed run leaves one behind.
PRE_MIGRATE_PREFIX = "lgm_premigrate_"
OLD_PREFIX = "langgraph_migrator_old_"
#: Tables a swap moves, when present.
SWAP_TABLES = ("checkpoint_migrations", "checkpoints", "checkpoint_blobs", "checkpoint_writes")
BUILTIN_TRANSFORMS = ("task-id",)
WRITE_MODES = ("bulk", "put")
VERIFY_MODES = ("full", "sample")
#: The ledger's ``backups.kind`` for a kept old-tables or shadow schema.
LEDGER_KIND = "shadow-tables"

CREATE_SCHEMA_SQL = "CREATE SCHEMA {}"
DROP_SCHEMA_SQL = "DROP SCHEMA IF EXISTS {} CASCADE"
LIST_TOOL_SCHEMAS_SQL = (
    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'langgraph\\_migrator\\_old\\_%'"
    " OR nspname LIKE 'langgraph\\_migrator\\_shadow\\_%'"
    " OR nspname LIKE 'lgm\\_premigrate\\_%' ORDER BY nspname"
)
TABLES_IN_SCHEMA_SQL = (
    "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename = ANY(%s)"
)
MOVE_TABLE_SQL = "ALTER TABLE {}.{} SET SCHEMA {}"
LOCK_TIMEOUT_SQL = "SET LOCAL lock_timeout = '10s'"
THREAD_COUNTS_SQL = (
    "SELECT thread_id, count(*) AS n FROM {}.checkpoints GROUP BY thread_id ORDER BY thread_id"
)
WRITE_COUNTS_SQL = "SELECT thread_id, count(*) AS n FROM {}.checkpoint_writes GROUP BY thread_id"


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class RestoreResult:
    """Outcome of a restore.

    Attributes:
        threads: Per thread: ``checkpoints``, ``writes`` written (or that would be).
        changes: What the transforms changed (``old -> new`` lines).
        uncured: Threads the task-id transform could not be applied to, and why
            (no graph of the app profile matches them): listed, never skipped silently.
        dry_run: Nothing was written.
        swapped: The shadow tables are live now.
        shadow_schema: The schema the restore wrote to (gone after a swap).
        old_schema: Where the previous live tables went (until :func:`cleanup`).
        versions: The versions that restored.
        seconds: Wall time.
        write_mode: ``bulk`` or ``put`` (how the rows were written).
        timings: Seconds per phase (``worker`` and its ``worker_*`` parts,
            ``counts_and_swap``, ``ledger``).
        verified: ``{"mode", "threads", "of"}``: threads read back and compared.
    """

    threads: dict[str, dict[str, int]]
    changes: tuple[str, ...] = ()
    uncured: tuple[str, ...] = ()
    dry_run: bool = False
    swapped: bool = False
    shadow_schema: str | None = None
    old_schema: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    write_mode: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    verified: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "write_mode": self.write_mode,
            "timings": self.timings,
            "verified": self.verified,
            "threads": self.threads,
            "changes": list(self.changes),
            "uncured": list(self.uncured),
            "dry_run": self.dry_run,
            "swapped": self.swapped,
            "shadow_schema": self.shadow_schema,
            "old_schema": self.old_schema,
            "versions": self.versions,
            "seconds": round(self.seconds, 3),
        }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connect(dsn: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise ConnectError(f"cannot connect to {redact_dsn(dsn)}: {_first_line(exc)}") from exc


def run_parallel(jobs: int, calls: Sequence[Callable[..., T]]) -> list[T]:
    """``call(cancel=event)`` for each call, ``jobs`` at a time; the results in order.

    The first call that fails (or an interrupt of the caller) stops the rest:
    calls not started are dropped, running ones see ``event`` set (a worker's
    process group is killed, :func:`migrator.envs.run_worker`), and that first
    failure is raised once they have all stopped.
    """
    stop = threading.Event()
    results: dict[int, T] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(call, cancel=stop): i for i, call in enumerate(calls)}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [results[i] for i in range(len(calls))]
