"""One typed function per command. The CLI calls these; so can tests and scripts.

Functions here raise ``MigratorError`` subclasses and never exit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migrator import envs
from migrator.config import CheckSettings, PgChoice
from migrator.gate import Progress, run_upgrade_check, run_upgrade_checks

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from migrator.backup import BackupManifest, RestoreResult
    from migrator.dumprestore import RestoreResult as DumpRestoreResult
    from migrator.dumprestore.manifest import DumpManifest
    from migrator.execute import Backup, Confirm, MigrateOutcome, MigrateSettings
    from migrator.plan import Plan
    from migrator.postgres import Server
    from migrator.report import Report, TargetsReport


def _quiet(_: str) -> None:
    return None


def upgrade_check(settings: CheckSettings, *, progress: Progress = _quiet) -> Report:
    """Seed canaries under ``settings.from_spec``, upgrade to ``settings.to_spec``, compare.

    Args:
        settings: what to check and where.
        progress: receives a one-line message as each step starts.

    Returns:
        The report. Its ``verdict`` is ``fail`` when the upgrade is not safe.
    """
    return run_upgrade_check(settings, progress=progress)


def upgrade_check_targets(settings: CheckSettings, *, progress: Progress = _quiet) -> TargetsReport:
    """Seed once under ``settings.from_spec``, then check every target of ``settings.to_specs``.

    Args:
        settings: what to check and where; ``to_specs`` names the targets.
        progress: receives a one-line message as each step starts (a target's steps
            start with ``[target i/n]``).

    Returns:
        One report per target. ``exit_code`` is the worst target's (0 < 1 < 4 < 5 < 3 < 2).
    """
    return run_upgrade_checks(settings, progress=progress)


def pg_up(pg: PgChoice) -> Server:
    """Start (or attach to) a Postgres server as chosen by ``pg``.

    Returns:
        The running server; the caller stops it (``Server.stop()``).
    """
    from migrator.postgres import provision

    return provision(pg.provider, pg.major, pg.dsn)


def env_info(spec: str, *, progress: Progress = _quiet, timeout: float = 300.0) -> dict[str, Any]:
    """Build (or reuse) the version environment for ``spec`` and report what it holds.

    Returns:
        The worker's ``info`` answer: installed versions and that version's ``MIGRATIONS``,
        plus ``env`` (label, python, cache key) and, with an app profile active,
        ``app`` (the profile, whose code was imported in that environment).
    """
    from migrator.app.profile import active_profile

    version_set = envs.parse_version_set(spec)
    env = envs.ensure_env(version_set, progress=progress)  # imports the app's code there
    info = envs.run_worker(env, "info", {}, timeout=timeout)
    info["env"] = {
        "label": env.label,
        "key": version_set.key,
        "python": str(env.python),
        "path": str(env.path) if env.path else None,
    }
    profile = active_profile()
    if profile is not None:
        info["app"] = {**profile.to_dict(), "imports": "ok", "summary": profile.describe()}
    return info


def plan(
    dsn: str,
    to_spec: str = "current",
    *,
    scratch_dsn: str | None = None,
    schema: str | None = None,
    progress: Progress = _quiet,
    timeout: float = 600.0,
    from_spec: str | None = None,
) -> Plan:
    """What ``setup()`` of ``to_spec`` will do to ``dsn``, rehearsed on a scratch server.

    Read only: the live database is never written. ``from_spec`` (the version set
    that wrote the data) refines the era of the stored threads and is named in the
    check that proves a data hazard.

    Returns:
        The plan; ``plan.unsafe`` when a hazard would make the deploy fail or lose data.
    """
    from migrator.plan import make_plan

    return make_plan(
        dsn,
        to_spec,
        scratch_dsn=scratch_dsn,
        schema=schema,
        progress=progress,
        timeout=timeout,
        from_spec=from_spec,
    )


def migrate(
    settings: MigrateSettings,
    *,
    backup: Backup | None = None,
    progress: Progress = _quiet,
    confirm: Confirm | None = None,
) -> MigrateOutcome:
    """Lock, plan, back up (``backup`` hook), ``setup()``, repair, verify, record.

    ``backup=None`` takes no backup (the CLI passes ``execute.backup_hook`` unless
    ``--no-backup``); ``settings.fallback="dump-restore"`` needs one. ``confirm``
    answers the fallback question when ``settings.fallback == "ask"``.

    Returns:
        The outcome: its ``report``, and ``error`` (exit 1, 4 or 5) when it did not succeed.
    """
    from migrator.execute import migrate as run_migrate

    return run_migrate(settings, backup=backup, progress=progress, confirm=confirm)


def canary_seed(
    dsn: str,
    spec: str,
    *,
    canaries: tuple[str, ...] = (),
    user_canaries: str | None = None,
    reseed: bool = False,
    timeout: float = 600.0,
    lock_wait: float | None = 60.0,
    progress: Progress = _quiet,
) -> Report:
    """Seed canaries into the app's database under ``spec`` and store their goldens.

    Never runs ``setup()``: the checkpoint tables must exist (see ``migrator.seeding``).

    Returns:
        The report; ``verdict == "fail"`` when a canary could not be seeded or read back.
    """
    from migrator.seeding import seed_canaries

    env = envs.ensure_env(envs.parse_version_set(spec), progress=progress)
    return seed_canaries(
        dsn,
        env,
        canaries=canaries or None,
        user_canaries=user_canaries,
        reseed=reseed,
        timeout=timeout,
        lock_wait=lock_wait,
        progress=progress,
    )


def verify(
    dsn: str,
    spec: str = "current",
    *,
    policy_file: Path | None = None,
    pyproject: Path | None = None,
    user_canaries: str | None = None,
    timeout: float = 600.0,
    lock_wait: float | None = 60.0,
    progress: Progress = _quiet,
) -> Report:
    """Compare what ``spec`` reads now with the goldens stored by ``canary seed``.

    Upgrades an outdated ledger first (under the migrator lock); otherwise read only.

    Returns:
        The report; ``verdict == "fail"`` on breaking drift or a golden thread that is gone.

    Raises:
        ConfigError: The database holds no goldens, or the user canaries do not load (exit 2).
        LedgerDamagedError: The ledger lacks a table or column of its revision (exit 3).
    """
    from migrator import ledger
    from migrator.errors import ConfigError
    from migrator.ledger.health import check_ledger
    from migrator.lock import advisory_lock
    from migrator.policy import load_policy
    from migrator.postgres import redact_dsn
    from migrator.verify import verify_goldens

    policy = load_policy(pyproject, policy_file)
    check_ledger(dsn)
    revision = ledger.ledger_revision(dsn)
    if revision is None or not ledger.load_goldens(dsn):
        raise ConfigError(
            f"{redact_dsn(dsn)} holds no goldens to verify against.",
            hint="run `langgraph-migrator canary seed --dsn DSN --with SPEC` with the version "
            "the app runs today, before you migrate",
        )
    # Before the ledger upgrade (a write): an unknown version or app code that does not
    # import there is refused with nothing done.
    env = envs.ensure_env(envs.parse_version_set(spec), progress=progress)
    if revision != ledger.head_revision():
        with advisory_lock(dsn, wait=lock_wait):
            ledger.upgrade_ledger(dsn)
    return verify_goldens(
        dsn, env, policy=policy, timeout=timeout, user_canaries=user_canaries, progress=progress
    )


def canary_list(dsn: str | None = None) -> dict[str, Any]:
    """The built-in canaries and, with ``dsn``, those seeded in that database.

    Returns:
        ``{"builtin": [{"name", "thread_id", "covers"}], "seeded": [...] | None}``; each
        seeded entry has ``thread_id``, ``canary``, ``versions``, ``status``,
        ``user_canaries``, ``seeded_by``, ``seeded_at`` (ISO text).
    """
    from migrator import ledger
    from migrator.seeding import builtin_canaries

    seeded: list[dict[str, Any]] | None = None
    if dsn is not None:
        seeded = [
            {
                "thread_id": c.thread_id,
                "canary": c.canary,
                "versions": c.versions,
                "status": c.status,
                "user_canaries": c.user_canaries,
                "seeded_by": c.seeded_by,
                "seeded_at": c.seeded_at.isoformat(),
            }
            for c in ledger.list_canaries(dsn)
        ]
    return {"builtin": builtin_canaries(), "seeded": seeded}


def backup(
    dsn: str,
    out_dir: Path,
    *,
    jobs: int = 1,
    compress: bool = False,
    progress: Progress = _quiet,
) -> BackupManifest:
    """Back up the checkpoint tables and ledger rows of ``dsn`` (binary COPY + manifest).

    Returns:
        The manifest written to ``out_dir`` (see ``docs/backup.md``).
    """
    from migrator.backup import create_backup

    return create_backup(dsn, out_dir, jobs=jobs, compress=compress, progress=progress)


def restore_backup(
    dsn: str,
    backup_dir: Path,
    *,
    into_new_schema: str | None = None,
    lock_wait: float | None = 60.0,
    progress: Progress = _quiet,
) -> RestoreResult:
    """Verify a backup, then restore its checkpoint tables (swap, or into a new schema).

    Returns:
        Where the tables went and where the previous live tables were kept.
    """
    from migrator.backup import restore_backup as restore

    return restore(
        dsn, backup_dir, into_new_schema=into_new_schema, lock_wait=lock_wait, progress=progress
    )


def dump(
    dsn: str,
    from_spec: str,
    out_path: Path,
    *,
    shard: str | None = None,
    threads: tuple[str, ...] = (),
    jobs: int = 1,
    progress: Progress = _quiet,
    timeout: float = 3600.0,
) -> DumpManifest:
    """Dump every thread through the saver of ``from_spec`` (the version that wrote them).

    Returns:
        The manifest (also written to ``<out_path>.manifest.json``).
    """
    from migrator.dumprestore import dump_threads
    from migrator.dumprestore.manifest import parse_shard

    shard_pair = parse_shard(shard)
    env = envs.ensure_env(envs.parse_version_set(from_spec), progress=progress)
    return dump_threads(
        dsn,
        env,
        out_path,
        shard=shard_pair,
        threads=threads or None,
        jobs=jobs,
        progress=progress,
        timeout=timeout,
    )


def restore(
    dsn: str,
    dump_path: Path | Sequence[Path],
    *,
    to_spec: str = "current",
    transform: str | None = None,
    graph: str | None = None,
    allow_types: tuple[str, ...] = (),
    allow_file: Path | None = None,
    dry_run: bool = False,
    swap: bool = True,
    lock_wait: float = 60.0,
    jobs: int = 1,
    verify: str = "full",
    progress: Progress = _quiet,
    timeout: float = 3600.0,
) -> DumpRestoreResult:
    """Restore a dump (or every shard's dump) through the saver of ``to_spec``
    into a shadow schema, verify, swap.

    Returns:
        What was restored (or would be, with ``dry_run``) and where the old tables went.
    """
    import os

    from migrator.app.profile import active_profile
    from migrator.dumprestore import restore_dump
    from migrator.dumprestore.manifest import read_allow_file

    profile = active_profile()
    allowed = (
        list(allow_types)
        + (read_allow_file(allow_file) if allow_file else [])
        + list(profile.allow_types if profile else ())
    )
    env = envs.ensure_env(envs.parse_version_set(to_spec), progress=progress)
    # User transforms and graphs are imported from the app's checkout (cwd).
    search = [str(envs.worker_source_dir()), os.getcwd()]
    return restore_dump(
        dsn,
        env,
        dump_path,
        transform=transform,
        graph=graph,
        allow_types=allowed,
        dry_run=dry_run,
        swap=swap,
        lock_wait=lock_wait,
        progress=progress,
        timeout=timeout,
        extra_env={"PYTHONPATH": os.pathsep.join(search)},
        jobs=jobs,
        verify=verify,
    )


def cleanup(dsn: str, *, lock_wait: float = 60.0) -> list[str]:
    """Drop the old checkpoint tables a restore kept, and leftover shadow schemas.

    Returns:
        The schemas dropped.
    """
    from migrator.dumprestore import cleanup as drop_kept

    return drop_kept(dsn, lock_wait=lock_wait)
