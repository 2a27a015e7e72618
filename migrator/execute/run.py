"""``migrate`` itself: lock, plan, backup, apply, and the fallback or the undo."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import psycopg

from migrator import envs
from migrator.app.profile import active_profile
from migrator.errors import (
    MigratorError,
    VerificationError,
)
from migrator.execute.apply import (
    _apply,
    _plan_check,
    _report,
    _undo_after_failure,
    _wait_for_locks,
    refuse_unproven,
)
from migrator.execute.fallback import (
    _check_fallback_settings,
    _fallback,
    _no_fallback_error,
    _wants_fallback,
)
from migrator.execute.model import (
    Backup,
    Confirm,
    DriftError,
    MigrateOutcome,
    MigrateSettings,
    Progress,
    _optional,
    _Run,
)
from migrator.lock import advisory_lock
from migrator.plan import (
    make_plan,
    read_live,
    require_schema,
    target_env,
)
from migrator.postgres import redact_dsn
from migrator.report import Check, Report
from migrator.worker.priority import lower_priority


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
        ConfigError: Bad version spec (``to_spec``, or ``from_spec`` when the fallback
            may run: resolved first); ``fallback="dump-restore"`` without a backup
            or without ``from_spec``; a ``schema`` the database does not have.
    """
    _check_fallback_settings(settings, backup)
    if settings.nice > 0:
        # Before any worker starts: each inherits it (its own session's autogroup too).
        lower_priority(settings.nice)
    _resolve_from(settings, progress)
    require_schema(settings.dsn, settings.schema)
    run = _Run(settings, progress)
    started = time.monotonic()
    env, target = target_env(settings.to_spec, progress=progress, timeout=settings.worker_timeout)
    _prove_key(settings, env, progress)
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
            from_spec=settings.from_spec,
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
            outcome.report = agree(_report(run, plan, started), outcome.error)
            return outcome
        # A yes at the preflight prompt needs the backup the fallback restores.
        refusal = refuse_unproven(run, plan, confirm=confirm if backup is not None else None)
        if refusal is not None:
            outcome.error = refusal
            outcome.state = "unchanged"
            outcome.report = agree(_report(run, plan, started), outcome.error)
            return outcome
        settings = run.settings  # a yes at the preflight prompt chose the fallback
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
    outcome.report = agree(_report(run, plan, started), outcome.error)
    return outcome


def _prove_key(settings: MigrateSettings, env: envs.VersionEnv, progress: Progress) -> None:
    """With the app's serializer, one stored encrypted row per table must decrypt, first.

    Nothing else in an in-place migrate reads a value, so a wrong key used to pass it
    (and surface later, in the app or in the fallback). Read only.

    Raises:
        AppCodeError: The key does not decrypt the stored rows (exit 2, naming its variable).
    """
    profile = active_profile()
    if profile is None or not (profile.serde or profile.key_env):
        return
    progress("checking the app's key on the stored rows (read only)")
    envs.run_worker(
        env, "snapshot", {"dsn": settings.dsn, "threads": []}, timeout=settings.worker_timeout
    )


def _resolve_from(settings: MigrateSettings, progress: Progress) -> None:
    """Resolve ``--from`` before anything: an unknown version is exit 2 up front.

    The fallback dumps with it, after ``setup()`` ran and drift was found; resolved
    only then, a typo passed unnoticed whenever nothing drifted. When the fallback
    may run, its environment is built now (cached; the fallback reuses it).
    """
    if not settings.from_spec:
        return
    version_set = envs.parse_version_set(settings.from_spec)
    if settings.fallback in ("dump-restore", "ask"):
        envs.ensure_env(version_set, progress=progress)


def agree(report: Report, error: MigratorError | None) -> Report:
    """The report with a verdict that agrees with the exit code (DESIGN "Safety rules").

    When ``migrate`` ends in an error (exit 1, 4 or 5) but no check failed (the
    error came after every check passed: a restore, the ledger write), a
    ``migrate`` check carrying the error is added, so the printed verdict is FAIL.

    Args:
        report: The report as the run left it.
        error: The error the CLI exits with, or None.

    Returns:
        ``report``, or a copy with the failing ``migrate`` check.
    """
    if error is None or report.verdict == "fail":
        return report
    first = (str(error.message).strip().splitlines() or [type(error).__name__])[0]
    failed = Check("migrate", "fail", f"exit {error.exit_code}: {first}")
    return dataclasses.replace(report, checks=(*report.checks, failed))
