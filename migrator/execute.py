"""``migrate``: lock → plan → backup → ``setup()`` with timeouts and retries → repair → verify.

1. A session-level advisory lock on its own autocommit connection
   (:func:`migrator.lock.advisory_lock`): one migrator at a time; the others wait,
   then find nothing to do.
2. The plan (:func:`migrator.plan.make_plan`); errors ``migrate`` cannot handle
   (privileges, poolers, statements failing for other reasons) stop it before
   anything is written (exit 1).
3. The ``backup`` hook, if given.
4. Until no other session holds a lock the work needs (read from ``pg_locks``,
   so waiting takes no lock), with backoff; exit 4 when it never clears, before
   any change.
5. The target's own ``setup()`` in its worker, on an autocommit connection with
   ``lock_timeout`` and ``statement_timeout``; on ``LockNotAvailable`` or
   ``QueryCanceled`` it retries with backoff (each statement is its own
   transaction, so a retry resumes where the ledger stopped). A step the plan
   predicted to fail with "already exists" (H-DUP-COLUMN) is recorded in the
   ledger and ``setup()`` runs again.
6. Introspect, compare with the reference, repair with idempotent DDL.
7. ``migrator.verify.verify_goldens`` and ``migrator.ledger.record_run`` when installed.
8. Breaking drift after 7 (``DriftError``) and ``fallback="dump-restore"`` (or
   ``"ask"`` and ``confirm`` says yes): still holding the lock, restore the
   pre-migrate backup (beside the live tables, then one swap), dump with ``from_spec`` and
   restore with the target (:func:`migrator.dumprestore.run_fallback`, ``task-id``
   transform), check the schema, verify again, and add one ``fallback`` check per
   golden thread saying whether it was cured. Not cured: the backup is restored
   again, exit 5. No fallback: undo as below, exit 1, and say how to run it.

Any failure after changes began: undo what can be undone (the objects and ledger
rows this run added), say exactly what state the database is in, exit 5.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from migrator import envs
from migrator.errors import (
    ConfigError,
    LockTimeoutError,
    MigrationError,
    MigratorError,
    VerificationError,
    WorkerError,
)
from migrator.lock import advisory_lock
from migrator.plan import (
    ALREADY_EXISTS,
    Plan,
    conflicting_locks,
    make_plan,
    read_live,
    repairs_for,
    statement_locks,
    target_env,
    undo_statements,
)
from migrator.postgres import redact_dsn
from migrator.report import Check, Report, Status
from migrator.schema import SchemaModel, diff_schemas

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
        statement_timeout: Seconds one statement may run.
        retries: Attempts after the first when a lock is in the way.
        backoff: First retry delay in seconds (doubles each time, at most 30 s).
        worker_timeout: Seconds a worker step may take.
        from_spec: The version set that wrote the data (needed by the fallback).
        fallback: After breaking drift: ``dump-restore``, ``none`` or ``ask``.
    """

    dsn: str
    to_spec: str = "current"
    scratch_dsn: str | None = None
    schema: str | None = None
    wait: float | None = 60.0
    lock_timeout: float = 5.0
    statement_timeout: float = 900.0
    retries: int = 5
    backoff: float = 1.0
    worker_timeout: float = 900.0
    from_spec: str | None = None
    fallback: str = "none"


class DriftError(VerificationError):
    """Breaking drift against the goldens after the in-place migration."""

    def __init__(self, message: str, failed: list[Check]) -> None:
        super().__init__(message)
        self.failed = failed


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


def _timeout_dsn(settings: MigrateSettings) -> str:
    options = f"-c lock_timeout={_ms(settings.lock_timeout)} " + (
        f"-c statement_timeout={_ms(settings.statement_timeout)}"
    )
    return make_conninfo(settings.dsn, options=options, application_name="langgraph-migrator")


def _execute(settings: MigrateSettings, statements: tuple[str, ...] | list[str]) -> None:
    """Run statements one by one in autocommit, with the lock and statement timeouts."""
    with psycopg.connect(_timeout_dsn(settings), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _wait_for_locks(run: _Run, plan: Plan) -> None:
    """Wait (reading ``pg_locks`` only) until no session holds a lock the work needs."""
    wanted = [lk for s in plan.pending for lk in statement_locks(s.sql)]
    wanted += [lk for r in plan.repairs for lk in r.locks]
    if not wanted:
        return
    for attempt in range(run.settings.retries + 1):
        live, _ = read_live(run.settings.dsn, run.settings.schema)
        holders = conflicting_locks(live, wanted)
        if not holders:
            return
        who = "; ".join(
            f"pid {pid} holds {mode} on {table}"
            + (f" ({age:.0f}s into its transaction)" if age is not None else "")
            for table, mode, pid, age in holders
        )
        if attempt == run.settings.retries:
            raise LockTimeoutError(
                f"tables the migration needs stay locked by other sessions: {who}. "
                "Nothing was changed.",
                hint="end those transactions (pg_stat_activity) and run migrate again (safe)",
            )
        run.progress(f"waiting for other sessions' locks ({who})")
        run.sleep(attempt)


def _run_setup(run: _Run, env: envs.VersionEnv, plan: Plan) -> dict[str, Any]:
    """The target's ``setup()`` with timeouts; retries on locks; records predicted duplicates."""
    settings = run.settings
    predicted = {s.v for s in plan.steps if s.outcome == "fails" and s.error_kind in ALREADY_EXISTS}
    recorded: list[int] = []
    lock_retries = 0
    first: dict[str, Any] | None = None
    while True:
        try:
            result = envs.run_worker(
                env, "setup", {"dsn": _timeout_dsn(settings)}, timeout=settings.worker_timeout
            )
            before = first["ledger_before"] if first else result.get("ledger_before")
            return {
                "ledger_before": before,
                "ledger_after": result.get("ledger_after"),
                "recorded_already_done": recorded,
                "lock_retries": lock_retries,
            }
        except WorkerError as exc:
            if exc.kind in RETRYABLE and lock_retries < settings.retries:
                run.progress(f"setup() hit {exc.kind}; retrying")
                run.sleep(lock_retries)
                lock_retries += 1
                continue
            if exc.kind in RETRYABLE:
                raise LockTimeoutError(
                    f"setup() kept failing with {exc.kind} after {lock_retries} retries "
                    f"(lock_timeout {settings.lock_timeout:g}s).",
                    hint="end the sessions holding locks on the checkpoint tables, then retry",
                ) from exc
            live, _ = read_live(settings.dsn, settings.schema)
            failed_v = (live.ledger_max if live.ledger_max is not None else -1) + 1
            if exc.kind in ALREADY_EXISTS and failed_v in predicted and failed_v not in recorded:
                # The object is there (the rehearsal proved it); the ledger is behind.
                run.progress(f"v{failed_v} already applied ({exc.kind}); recording it")
                if first is None:
                    first = {"ledger_before": live.ledger_max}
                with psycopg.connect(_timeout_dsn(settings), autocommit=True) as conn:
                    conn.execute(INSERT_LEDGER_SQL, (failed_v,))
                recorded.append(failed_v)
                continue
            raise


def _undo(settings: MigrateSettings, before: SchemaModel) -> tuple[list[str], list[str]]:
    """Take back what this run added; returns (statements done, statements that failed)."""
    after, _ = read_live(settings.dsn, settings.schema)
    done: list[str] = []
    failed: list[str] = []
    for statement in undo_statements(before, after):
        try:
            _execute(settings, [statement])
            done.append(statement)
        except psycopg.Error as exc:
            failed.append(f"{statement} ({type(exc).__name__})")
    return done, failed


def _state(settings: MigrateSettings, before: SchemaModel, reference: SchemaModel | None) -> str:
    """One sentence: where the database stands now, compared with before and the target."""
    now, _ = read_live(settings.dsn, settings.schema)
    back = [d for d in diff_schemas(now, before) if d.severity != "info"]
    ledger = "no ledger table" if now.ledger is None else f"ledger max v{now.ledger_max}"
    if not back:
        return f"the database is as it was before migrate ({ledger})"
    parts = ", ".join(d.where + f" ({d.kind})" for d in back[:6])
    if reference is not None and not [d for d in diff_schemas(now, reference)]:
        return f"the database is fully migrated to the target ({ledger})"
    return f"the database differs from its state before migrate in: {parts} ({ledger})"


def migrate(
    settings: MigrateSettings,
    *,
    backup: Backup | None = None,
    progress: Progress = lambda _m: None,
    confirm: Confirm | None = None,
) -> MigrateOutcome:
    """Migrate the live database to ``settings.to_spec``, safely; see the module doc.

    Args:
        settings: What to migrate and how patiently.
        backup: Called with the DSN before anything changes; returns the backup
            directory (``migrator.backup.create_backup``). None: no backup.
        progress: Receives one-line status messages.
        confirm: Asked (with a question) whether to run the fallback when
            ``settings.fallback == "ask"``; None means no.

    Returns:
        The outcome: a ``Report`` (checks ``lock``, ``plan``, ``setup``, ``repair``
        (one per repair), ``verify``, ``fallback`` (one per golden thread, when the
        fallback ran), ``record``) and the error, if any, that the CLI exits with
        (1 unsafe plan or breaking drift without the fallback, 4 lock, 5 failed and
        undone or restored).

    Raises:
        LockTimeoutError: Another migrator held the lock for longer than ``wait``.
        ConnectError: The database cannot be reached.
        ConfigError: Bad version spec; ``fallback="dump-restore"`` without a backup
            or without ``from_spec``.
    """
    _check_fallback_settings(settings, backup)
    run = _Run(settings, progress)
    started = time.monotonic()
    env, target = target_env(settings.to_spec, progress=progress, timeout=settings.worker_timeout)
    outcome = MigrateOutcome(report=Report("migrate", ()))
    drift: DriftError | None = None
    backup_path: Path | None = None
    progress(f"taking the migrator lock on {redact_dsn(settings.dsn)}")
    with advisory_lock(settings.dsn, wait=settings.wait):
        waited = time.monotonic() - started
        run.checks.append(Check("lock", "pass", f"migrator advisory lock held ({waited:.1f}s)"))
        plan = make_plan(
            settings.dsn,
            settings.to_spec,
            scratch_dsn=settings.scratch_dsn,
            schema=settings.schema,
            progress=progress,
            timeout=settings.worker_timeout,
            env_and_target=(env, target),
        )
        outcome.plan = plan
        run.checks.append(_plan_check(plan))
        if plan.blocking:
            outcome.error = VerificationError(
                "the plan has errors migrate cannot handle: "
                + "; ".join(f"{h.id}: {h.message}" for h in plan.blocking)
                + ". Nothing was changed.",
                hint="; ".join(h.fix for h in plan.blocking),
            )
            outcome.state = "unchanged"
            outcome.report = _report(run, plan, started)
            return outcome
        # The tool's own ledger after the plan: a role the plan rejects writes nothing.
        upgrade_ledger = _optional("migrator.ledger", "upgrade_ledger")
        if upgrade_ledger is not None:
            upgrade_ledger(settings.dsn)
        else:
            run.notes.append("tool ledger not available (migrator.ledger): not upgraded")
        before, _ = read_live(settings.dsn, settings.schema)
        if (
            backup is not None
            and not plan.pending
            and not plan.repairs
            and (settings.fallback != "dump-restore")
        ):
            run.notes.append("no backup taken: the plan has nothing to change")
        elif backup is not None:
            backup_path = backup(settings.dsn)
            run.notes.append(f"backup written before any change: {backup_path}")
        else:
            run.notes.append("no backup taken (no backup hook given)")
        _wait_for_locks(run, plan)
        try:
            _apply(run, env, plan, before, outcome)
        except DriftError as exc:
            if _wants_fallback(run, exc, backup_path, confirm):
                drift = exc
            else:
                _undo_after_failure(run, outcome, env, plan, before, _no_fallback_error(run, exc))
        except (MigratorError, psycopg.Error) as exc:
            _undo_after_failure(run, outcome, env, plan, before, exc)
        if drift is not None and backup_path is not None:
            # Still under the lock: no other migrator between the undo and the swap.
            _fallback(run, outcome, drift, backup_path, env, plan, before)
    outcome.report = _report(run, plan, started)
    return outcome


def _check_fallback_settings(settings: MigrateSettings, backup: Backup | None) -> None:
    """Refuse fallback settings that cannot work, before anything is read or written."""
    if settings.fallback not in FALLBACKS:
        raise ConfigError(
            f"--fallback {settings.fallback!r} is not one of dump-restore, none.",
            hint="use --fallback dump-restore or --fallback none",
        )
    if settings.fallback != "dump-restore":
        return
    if backup is None:
        raise ConfigError(
            "--fallback dump-restore needs the pre-migrate backup, but backups are off "
            "(--no-backup). Nothing was changed.",
            hint="drop --no-backup (or pass --backup-dir DIR), or use --fallback none",
        )
    if not settings.from_spec:
        raise ConfigError(
            "--fallback dump-restore needs the version set that wrote the data "
            "(it dumps with it). Nothing was changed.",
            hint="pass --from SPEC, e.g. --from langgraph-checkpoint-postgres==2.0.8",
        )


def _fallback_command(settings: MigrateSettings) -> str:
    spec = settings.from_spec or "SPEC"
    return f"langgraph-migrator migrate --from {spec} --fallback dump-restore"


def _wants_fallback(
    run: _Run, drift: DriftError, backup_path: Path | None, confirm: Confirm | None
) -> bool:
    """Whether the fallback runs after ``drift``; notes why not when it does not."""
    settings = run.settings
    if settings.fallback == "dump-restore":
        return backup_path is not None
    if settings.fallback == "ask" and confirm is not None:
        missing = [
            what
            for what, ok in (("--from SPEC", settings.from_spec), ("a backup", backup_path))
            if not ok
        ]
        if missing:
            run.notes.append(f"fallback not offered: it needs {' and '.join(missing)}")
            return False
        return confirm(
            f"{len(drift.failed)} canary thread(s) read differently after the in-place "
            f"migration. Restore the backup and run the dump/restore fallback "
            f"(dump with {settings.from_spec}, restore with {settings.to_spec})?"
        )
    return False


def _no_fallback_error(run: _Run, drift: DriftError) -> VerificationError:
    command = _fallback_command(run.settings)
    run.notes.append(
        f"fallback not run: the dump/restore fallback would run with `{command}` "
        "(it restores the backup taken by this run, then dumps and restores)"
    )
    return VerificationError(
        f"{drift.message} The in-place migration was undone.",
        hint=f"run `{command}` to let the dump/restore fallback cure it",
    )


def _undo_after_failure(
    run: _Run,
    outcome: MigrateOutcome,
    env: envs.VersionEnv,
    plan: Plan,
    before: SchemaModel,
    exc: BaseException,
) -> None:
    """Take back what this run added and set ``outcome.error`` (exit 1, 4 or 5)."""
    settings = run.settings
    try:
        reference: SchemaModel | None = _reference(plan, env, settings)
    except MigratorError:
        reference = None
    run.progress("migrate failed; undoing what this run added")
    done, failed = _undo(settings, before)
    state = _state(settings, before, reference)
    outcome.state = state
    undo_text = f"undone: {len(done)} statement(s)" + (
        f"; could not undo: {', '.join(failed)}" if failed else ""
    )
    run.notes.append(undo_text)
    run.notes.append(f"state: {state}")
    message = f"{type(exc).__name__}: {exc}".strip()
    if isinstance(exc, LockTimeoutError):
        outcome.error = LockTimeoutError(f"{exc.message} {undo_text}; {state}.", hint=exc.hint)
    elif isinstance(exc, VerificationError):
        outcome.error = VerificationError(f"{exc.message} {undo_text}; {state}.", hint=exc.hint)
    else:
        outcome.error = MigrationError(
            f"migrate failed: {message}. {undo_text}; {state}.",
            hint="fix the cause shown above and run migrate again; "
            "`langgraph-migrator plan` shows what it would do",
        )


def _live_schema(settings: MigrateSettings) -> str:
    if settings.schema:
        return settings.schema
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        row = conn.execute(LIVE_SCHEMA_SQL).fetchone()
        if row is None:
            row = conn.execute(CURRENT_SCHEMA_SQL).fetchone()
    return str(row[0]) if row else "public"


def _restore_pre_migrate(run: _Run, backup_path: Path) -> str:
    """Load the backup beside the live tables, then swap it in; returns where they went.

    Runs under the migrator lock that :func:`migrate` holds.
    """
    from migrator.backup import restore_backup
    from migrator.dumprestore import OLD_PREFIX, _swap

    settings = run.settings
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S_%f")
    shadow = f"{PRE_MIGRATE_PREFIX}{stamp}"
    live = _live_schema(settings)
    run.progress(f"restoring the pre-migrate backup {backup_path.name}")
    restore_backup(
        settings.dsn,
        backup_path,
        into_new_schema=shadow,
        lock_held=True,
        progress=run.progress,
    )
    return _swap(settings.dsn, shadow, live, f"{OLD_PREFIX}{stamp}")


def _fallback(
    run: _Run,
    outcome: MigrateOutcome,
    drift: DriftError,
    backup_path: Path,
    env: envs.VersionEnv,
    plan: Plan,
    before: SchemaModel,
) -> None:
    """Restore the backup, dump/restore across versions, verify again, say what it cured."""
    from migrator.dumprestore import run_fallback

    settings = run.settings
    assert settings.from_spec is not None  # checked by _wants_fallback / _check_fallback_settings
    kept: list[str] = []
    t0 = time.monotonic()
    try:
        old_env = envs.ensure_env(envs.parse_version_set(settings.from_spec), progress=run.progress)
        kept.append(_restore_pre_migrate(run, backup_path))
        run.checks.append(
            Check(
                "fallback-restore",
                "pass",
                f"pre-migrate backup {backup_path.name} restored; the in-place migrated "
                f"tables are kept in schema {kept[-1]}",
            )
        )
        run.progress(f"fallback: dump with {old_env.label}, restore with {env.label}")
        with tempfile.TemporaryDirectory(prefix="lgm-fallback-") as work:
            result = run_fallback(
                settings.dsn,
                old_env,
                env,
                work_dir=Path(work),
                transform="task-id",
                progress=run.progress,
                lock_held=True,
            )
        if result.old_schema:
            kept.append(result.old_schema)
        run.checks.append(
            Check(
                "fallback-dump-restore",
                "pass",
                f"dumped with {old_env.label}, restored with {env.label} (task-id transform): "
                f"{len(result.threads)} thread(s), {len(result.changes)} change(s); "
                f"pre-migrate tables kept in schema {result.old_schema}",
                details=result.to_dict(),
            )
        )
        _fallback_schema(run, env, plan)
        verify_goldens = _optional("migrator.verify", "verify_goldens")
        assert verify_goldens is not None  # DriftError came from it
        again: Report = verify_goldens(settings.dsn, env, policy=None)
    except (MigratorError, psycopg.Error) as exc:
        run.timings["fallback"] = time.monotonic() - t0
        _fallback_failed(run, outcome, backup_path, before, kept, f"{type(exc).__name__}: {exc}")
        return
    run.timings["fallback"] = time.monotonic() - t0
    cured = _fallback_checks(run, drift, again)
    if cured:
        outcome.applied = True
        run.notes.append(
            f"the dump/restore fallback cured every drift; old tables kept in schema(s) "
            f"{', '.join(kept)} (drop them with `langgraph-migrator cleanup`)"
        )
        _record(run, plan, outcome)
        return
    _fallback_failed(
        run,
        outcome,
        backup_path,
        before,
        kept,
        "the dump/restore fallback did not cure the drift (see the fallback checks)",
    )


def _fallback_schema(run: _Run, env: envs.VersionEnv, plan: Plan) -> None:
    """After the fallback's restore: the schema must equal the reference (repair if not)."""
    settings = run.settings
    reference = _reference(plan, env, settings)
    now, _ = read_live(settings.dsn, settings.schema)
    diffs = diff_schemas(now, reference)
    for repair in repairs_for(diffs, reference, now):
        run.progress(f"repair after fallback: {repair.label}")
        _execute(settings, list(repair.sql))
        run.checks.append(
            Check(
                "repair",
                "pass",
                f"{repair.label}: " + "; ".join(repair.sql),
                thread_id=repair.label,
            )
        )
    final, _ = read_live(settings.dsn, settings.schema)
    left = [d for d in diff_schemas(final, reference) if d.severity != "info"]
    if left:
        raise MigrationError(
            "after the fallback the schema still differs from the reference: "
            + "; ".join(d.summary() for d in left)
        )


def _fallback_checks(run: _Run, drift: DriftError, again: Report) -> bool:
    """One ``fallback`` check per golden thread; in-place failures it cured become warnings."""
    failed_keys = {(c.canary, c.thread_id) for c in drift.failed}
    after = {(c.canary, c.thread_id): c for c in again.checks}
    cured_all = True
    verdicts: list[Check] = []
    for key, now in after.items():
        canary, thread_id = key
        was_failing = key in failed_keys
        ok = now.status != "fail"
        cured_all = cured_all and ok
        if was_failing:
            summary = (
                f"cured by dump/restore ({now.summary} after)"
                if ok
                else f"not cured: still {now.summary} after dump/restore"
            )
        else:
            summary = (
                f"unchanged by dump/restore ({now.summary})"
                if ok
                else f"broken by dump/restore: {now.summary}"
            )
        verdicts.append(
            Check(
                "fallback",
                "pass" if ok else "fail",
                summary,
                canary=canary,
                thread_id=thread_id,
                hazards=now.hazards,
                differences=() if ok else now.differences,
                details={"cured": ok, "failed_in_place": was_failing},
            )
        )
    if cured_all:
        run.checks[:] = [
            Check(
                c.check,
                "warn",
                f"{c.summary} (in place); cured by the dump/restore fallback",
                canary=c.canary,
                thread_id=c.thread_id,
                hazards=c.hazards,
                differences=c.differences,
                details=c.details,
            )
            if c.check == "verify" and c.status == "fail"
            else c
            for c in run.checks
        ]
    run.checks.extend(verdicts)
    return cured_all


def _fallback_failed(
    run: _Run,
    outcome: MigrateOutcome,
    backup_path: Path,
    before: SchemaModel,
    kept: list[str],
    why: str,
) -> None:
    """Put the pre-migrate backup back and say exactly where the database stands (exit 5)."""
    settings = run.settings
    run.progress("fallback did not succeed; restoring the pre-migrate backup")
    swapped_before = bool(kept)
    try:
        kept.append(_restore_pre_migrate(run, backup_path))
        restored = (
            f"the pre-migrate backup {backup_path} was restored: the checkpoint tables hold "
            "the data and schema they had before migrate"
        )
    except (MigratorError, psycopg.Error) as exc:
        restored = (
            f"restoring the pre-migrate backup {backup_path} FAILED ({type(exc).__name__}: "
            f"{exc}); restore it with `langgraph-migrator restore-backup`"
        )
        if not swapped_before:  # the live tables are still the in-place migrated ones
            done, failed = _undo(settings, before)
            restored += f"; the in-place migration was undone ({len(done)} statement(s))" + (
                f", could not undo: {', '.join(failed)}" if failed else ""
            )
    state = f"{restored}; {_state(settings, before, None)}"
    if kept:
        state += f"; other versions of the tables are kept in schema(s) {', '.join(kept)}"
    outcome.state = state
    run.notes.append(f"state: {state}")
    outcome.error = MigrationError(
        f"migrate --fallback dump-restore failed: {why}. {state}.",
        hint="the old version keeps working on the restored tables; report the drift, "
        "or upgrade to another version",
    )


def _plan_check(plan: Plan) -> Check:
    errors = [h for h in plan.hazards if h.severity == "error"]
    status: Status = "fail" if plan.blocking else ("warn" if errors else "pass")
    summary = f"{len(plan.pending)} pending statement(s), {len(plan.repairs)} repair(s); " + (
        f"hazards: {', '.join(plan.hazard_ids)}" if plan.hazards else "no hazards"
    )
    return Check(
        "plan",
        status,
        summary,
        hazards=tuple(plan.hazard_ids),
        details={"hazards": [h.to_dict() for h in plan.hazards]},
    )


def _apply(
    run: _Run, env: envs.VersionEnv, plan: Plan, before: SchemaModel, outcome: MigrateOutcome
) -> None:
    settings = run.settings
    run.progress(f"running setup() of {plan.target}")
    t0 = time.monotonic()
    result = _run_setup(run, env, plan)
    run.timings["setup"] = time.monotonic() - t0
    applied = result["ledger_before"] != result["ledger_after"]
    outcome.applied = applied
    run.checks.append(
        Check(
            "setup",
            "pass",
            (
                f"ledger {_v(result['ledger_before'])} -> {_v(result['ledger_after'])}"
                if applied
                else f"nothing to do (ledger {_v(result['ledger_after'])})"
            )
            + (
                f"; recorded already-applied step(s) v{result['recorded_already_done']}"
                if result["recorded_already_done"]
                else ""
            ),
            hazards=("H-DUP-COLUMN",) if result["recorded_already_done"] else (),
            details=result | {"applied": applied},
        )
    )
    reference = _reference(plan, env, settings)
    now, _ = read_live(settings.dsn, settings.schema)
    diffs = diff_schemas(now, reference)
    repairs = repairs_for(diffs, reference, now)
    for repair in repairs:
        run.progress(f"repair: {repair.label}")
        _execute(settings, list(repair.sql))
        outcome.applied = True
        hazard = {
            "missing_column": "H-LEDGER-SHIFT",
            "missing_index": "H-LEDGER-SHIFT",
            "missing_table": "H-LEDGER-SHIFT",
            "invalid_index": "H-INVALID-INDEX",
        }.get(repair.kind)
        run.checks.append(
            Check(
                "repair",
                "pass",
                f"{repair.label}: " + "; ".join(repair.sql),
                thread_id=repair.label,
                hazards=(hazard,) if hazard else (),
                details=repair.to_dict(),
            )
        )
    final, _ = read_live(settings.dsn, settings.schema)
    left = [d for d in diff_schemas(final, reference) if d.severity != "info"]
    if left:
        raise MigrationError(
            "after setup() and repairs the schema still differs from the reference: "
            + "; ".join(d.summary() for d in left)
        )
    _verify(run, env, settings)
    _record(run, plan, outcome)


def _reference(plan: Plan, env: envs.VersionEnv, settings: MigrateSettings) -> SchemaModel:
    from migrator import plan as plan_module

    cached = [m for (key, _), m in plan_module._REFERENCES.items() if key == env.version_set.key]
    if cached:
        return cached[-1]
    notes: list[str] = []
    live, _ = read_live(settings.dsn, settings.schema)
    major = int(live.server.get("version_num", 0)) // 10000
    with plan_module.scratch_server(major, settings.scratch_dsn, notes) as server:
        return plan_module.build_reference(env, server, timeout=settings.worker_timeout)


def _verify(run: _Run, env: envs.VersionEnv, settings: MigrateSettings) -> None:
    verify_goldens = _optional("migrator.verify", "verify_goldens")
    if verify_goldens is None:
        run.checks.append(
            Check("verify", "skip", "migrator.verify not available: canaries not verified")
        )
        return
    report: Report = verify_goldens(settings.dsn, env, policy=None)
    failed = [c for c in report.checks if c.status == "fail"]
    run.checks.extend(report.checks)
    if failed:
        raise DriftError(
            f"{len(failed)} canary check(s) failed against their goldens: "
            + "; ".join(f"{c.name}: {c.summary}" for c in failed[:3])
            + ".",
            failed,
        )


def _record(run: _Run, plan: Plan, outcome: MigrateOutcome) -> None:
    record_run = _optional("migrator.ledger", "record_run")
    if record_run is None:
        run.checks.append(
            Check("record", "skip", "migrator.ledger not available: run not recorded")
        )
        return
    repairs = [c.details for c in run.checks if c.check == "repair"]
    run_id = record_run(
        run.settings.dsn,
        {
            "command": "migrate",
            "to_versions": dict(plan.versions),
            "plan": plan.to_dict(),
            "applied_statements": [s.sql for s in plan.pending] if outcome.applied else [],
            "repairs": repairs,
            "verdict": "pass",
            "details": {"applied": outcome.applied, "checks": [c.to_dict() for c in run.checks]},
            "timings": dict(run.timings),
        },
    )
    run.checks.append(Check("record", "pass", f"run recorded in the tool ledger (id {run_id})"))


def _v(value: Any) -> str:
    return "none" if value is None else f"v{value}"


def _report(run: _Run, plan: Plan, started: float) -> Report:
    run.timings["total"] = time.monotonic() - started
    return Report(
        "migrate",
        tuple(run.checks),
        versions=dict(plan.versions),
        server={"database": plan.database, "version": plan.server_version},
        timings=dict(run.timings),
        notes=tuple(run.notes) + tuple(plan.notes),
    )


def default_backup_dir() -> Path:
    """``./langgraph-migrator-backups/<UTC timestamp>`` under the working directory."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S_%fZ")
    return Path.cwd() / "langgraph-migrator-backups" / stamp


def backup_hook(out_dir: Path | None = None, *, progress: Progress | None = None) -> Backup:
    """The ``backup`` hook the CLI passes: :func:`migrator.backup.create_backup`.

    Args:
        out_dir: A new or empty directory (default: :func:`default_backup_dir`, chosen
            when the hook runs).
        progress: Receives one line per backup step.

    Returns:
        A callable taking the DSN and returning the backup directory.
    """

    def take(dsn: str) -> Path:
        from migrator.backup import create_backup

        target = out_dir if out_dir is not None else default_backup_dir()
        if progress is not None:
            progress(f"backing up the checkpoint tables into {target}")
        return create_backup(dsn, target, progress=progress).path

    return take
