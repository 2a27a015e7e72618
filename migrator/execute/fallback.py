"""The dump/restore fallback after breaking drift: restore the backup, dump, restore, judge."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from migrator import envs
from migrator.compare import compare_snapshots
from migrator.errors import (
    ConfigError,
    MigrationError,
    MigratorError,
    VerificationError,
)
from migrator.execute.apply import _record, _reference, _state, _undo
from migrator.execute.model import (
    CURRENT_SCHEMA_SQL,
    FALLBACKS,
    LIVE_SCHEMA_SQL,
    PRE_MIGRATE_PREFIX,
    Backup,
    Confirm,
    DriftError,
    MigrateOutcome,
    MigrateSettings,
    _execute,
    _optional,
    _Run,
)
from migrator.plan import (
    Plan,
    read_live,
    repairs_for,
)
from migrator.report import Check, Report
from migrator.schema import SchemaModel, diff_schemas
from migrator.swap import schema_stamp


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
    stamp = schema_stamp()
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
    return _swap(settings.dsn, shadow, live, f"{OLD_PREFIX}{stamp}", run.progress)


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
        at_risk = _at_risk_ids(run, plan) if drift.unproven else []
        # What the old version reads of the threads at risk, to judge the cure by.
        read_before = _read_threads(run, old_env, at_risk) if at_risk else None
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
        for line in result.uncured[:20]:
            run.notes.append(f"not cured: {line}")
        if result.uncured:
            shown = "; ".join(result.uncured[:3])
            run.checks.append(
                Check(
                    "fallback-cure",
                    "fail" if drift.unproven else "warn",
                    f"the task-id transform could not be applied to {len(result.uncured)} "
                    f"thread(s): {shown}",
                )
            )
            if drift.unproven:  # no canary to prove these threads safe: never claim a cure
                raise MigrationError(
                    f"the task-id transform could not be applied to {len(result.uncured)} "
                    f"thread(s) at risk ({shown})",
                    hint="name the app's graphs in [tool.langgraph-migrator.app] (or "
                    "--graph/--thread-graph) so every thread's graph is known, then rerun",
                )
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
        read_after = _read_threads(run, env, at_risk) if read_before is not None else None
        verify_goldens = _optional("migrator.verify", "verify_goldens")
        assert verify_goldens is not None  # DriftError came from it
        again: Report = verify_goldens(settings.dsn, env, policy=None)
    except (MigratorError, psycopg.Error) as exc:
        run.timings["fallback"] = time.monotonic() - t0
        _fallback_failed(run, outcome, backup_path, before, kept, f"{type(exc).__name__}: {exc}")
        return
    run.timings["fallback"] = time.monotonic() - t0
    reads = (read_before, read_after) if read_before is not None and read_after else None
    cured = _fallback_checks(run, drift, again, len(result.threads), reads)
    if cured:
        _writes_left_behind(run, kept)
        outcome.applied = True
        done = (
            "cured every drift"
            if not drift.unproven
            else "ran: the threads at risk read as the old version read them"
            if reads
            else "ran (not proven: see above)"
        )
        run.notes.append(
            f"the dump/restore fallback {done}; old tables kept in schema(s) "
            f"{', '.join(kept)} (drop them with `langgraph-migrator cleanup`)"
        )
        run.notes.append(ROLLBACK_AFTER_FALLBACK)
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


#: Rows of a kept schema's table that the live table does not have (by primary key).
LEFT_BEHIND_SQL = """
SELECT count(*) AS n, count(DISTINCT k.thread_id) AS threads,
       (array_agg(DISTINCT k.thread_id))[1:5] AS sample
FROM {kept} k
WHERE NOT EXISTS (SELECT 1 FROM {live} l WHERE {match})
"""
#: Checkpoints only, by (thread, id): the restore keeps checkpoint ids, but the task-id
#: transform rewrites pending writes' task ids and 1.0.0 subgraph namespaces.
_KEYS = {"checkpoints": ("thread_id", "checkpoint_id")}


def _writes_left_behind(run: _Run, kept: list[str]) -> None:
    """Say which application writes made while migrate ran are not in the live tables.

    The fallback restores the pre-migrate backup and swaps in tables rebuilt from it:
    checkpoints the application wrote after the backup stay in the kept schemas,
    not in the live tables (the threads continue from their earlier state). They
    are not destroyed, but an operator must know: counted here, by primary key,
    read only, and reported as a warning naming the schema and the first threads.
    Pending writes without a new checkpoint are not counted (their task ids are
    rewritten by the cure, so they cannot be matched).
    """
    settings = run.settings
    live = _live_schema(settings)
    found: list[str] = []
    threads: set[str] = set()
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        for schema in kept:
            counts = []
            for table, cols in _KEYS.items():
                exists = conn.execute(
                    "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".{table}',)
                ).fetchone()
                if not exists or not exists[0]:
                    continue
                query = sql.SQL(LEFT_BEHIND_SQL).format(
                    kept=sql.Identifier(schema, table),
                    live=sql.Identifier(live, table),
                    match=sql.SQL(" AND ").join(
                        sql.SQL("l.{c} = k.{c}").format(c=sql.Identifier(c)) for c in cols
                    ),
                )
                row = conn.execute(query).fetchone()
                if row and row[0]:
                    counts.append(f"{row[0]} {table} row(s)")
                    threads.update(str(t) for t in row[2] or ())
            if counts:
                found.append(f"{' and '.join(counts)} in schema {schema}")
    if not found:
        return
    shown = ", ".join(sorted(threads)[:5])
    run.checks.append(
        Check(
            "fallback-writes",
            "warn",
            "the application wrote while migrate ran; those writes are not in the live "
            f"tables: {'; '.join(found)} (threads {shown}). Those threads continue from "
            "their state at the pre-migrate backup; stop the writers during a fallback "
            "(docs/reliability.md)",
        )
    )
    run.notes.append(
        "writes made while migrate ran are kept, not live: do not run `cleanup` before "
        "deciding what to do with them (" + "; ".join(found) + ")"
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


def _in_place_failures_to_warnings(run: _Run, why: str) -> None:
    """The in-place ``verify`` failures the fallback dealt with become warnings, saying ``why``."""
    run.checks[:] = [
        dataclasses.replace(c, status="warn", summary=f"{c.summary} (in place); {why}")
        if c.check == "verify" and c.status == "fail"
        else c
        for c in run.checks
    ]


def _at_risk_ids(run: _Run, plan: Plan) -> list[str]:
    """The threads at risk the plan named (its first ids per hazard), to compare."""
    from migrator.execute.apply import _unproven_reaches

    return sorted({t for r in _unproven_reaches(run, plan) for t in r.thread_ids})


def _read_threads(run: _Run, env: envs.VersionEnv, thread_ids: list[str]) -> dict[str, Any]:
    """A snapshot of ``thread_ids`` as ``env`` reads them (through the app's graphs)."""
    run.progress(f"reading {len(thread_ids)} thread(s) at risk with {env.label}")
    return envs.run_worker(
        env,
        "snapshot",
        {
            "dsn": run.settings.dsn,
            "threads": [{"thread_id": t, "canary": None} for t in thread_ids],
        },
        timeout=run.settings.worker_timeout,
    )


def _compared_cure(
    run: _Run, drift: DriftError, threads: int, reads: tuple[dict[str, Any], dict[str, Any]]
) -> bool:
    """The fallback judged by reads: what the new version reads of the threads at risk
    after the cure against what the old version read before it (values, next, tasks,
    interrupts, history; no node runs)."""
    diff = compare_snapshots(reads[0], reads[1])
    ids = sorted(reads[0].get("threads", {}))
    broken: dict[str, list[Any]] = {}
    for d in diff.differences:
        if d.severity == "breaking":
            broken.setdefault(str(d.thread_id), []).append(d)
    for tid in ids:
        diffs = broken.get(tid, [])
        run.checks.append(
            Check(
                "fallback",
                "fail" if diffs else "pass",
                (
                    f"reads differently after dump/restore: {len(diffs)} breaking difference(s)"
                    if diffs
                    else "reads after dump/restore as the old version read it "
                    "(values, next, tasks, history; not resumed)"
                ),
                thread_id=tid,
                hazards=tuple(sorted({d.hazard for d in diffs if d.hazard})),
                differences=tuple(d.to_dict(False) for d in diffs),
            )
        )
    if broken:
        return False
    _in_place_failures_to_warnings(run, "the dump/restore fallback ran instead")
    run.notes.append(
        f"dump/restore (task-id transform) rewrote {threads} thread(s); the {len(ids)} at risk "
        f"({drift.at_risk}) read under the new version as under the old one"
    )
    return True


def _unproven_cure(run: _Run, drift: DriftError, threads: int) -> bool:
    """The fallback's verdict when no golden exists: what was done, and that nothing proved it.

    The threads at risk came from the plan, not from drift against goldens; with no
    golden there is nothing to compare the restored threads with. Claiming "cured"
    would be a guess, so the check says what was applied and how to prove it, as a
    warning (the run goes on: the operator asked for the fallback).
    """
    spec = run.settings.from_spec or "SPEC"
    summary = (
        f"dump/restore (task-id transform) rewrote {threads} thread(s), among them those "
        f"at risk ({drift.at_risk}); not proven: no golden to compare with (no canary seeded)"
    )
    run.checks.append(Check("fallback", "warn", summary, details={"cured": None}))
    _in_place_failures_to_warnings(run, "the dump/restore fallback ran instead")
    run.notes.append(
        "to prove them, run upgrade-check on the data as it was: `langgraph-migrator "
        f"restore-backup` the pre-migrate backup into a scratch database, then "
        f"`langgraph-migrator upgrade-check --from {spec} --threads-from <scratch DSN> "
        "--thread ID` (the migrated tables are written by the new version already)"
    )
    return True


def _fallback_checks(
    run: _Run,
    drift: DriftError,
    again: Report,
    threads: int = 0,
    reads: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> bool:
    """One ``fallback`` check per golden thread; in-place failures it cured become warnings.

    Without goldens (threads at risk from the plan), the threads at risk are compared
    as the old version read them before and the new one after (:func:`_compared_cure`);
    without those reads, the check says what was done, not proven.
    """
    if drift.unproven:
        if reads is not None:
            return _compared_cure(run, drift, threads, reads)
        return _unproven_cure(run, drift, threads)
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
        _in_place_failures_to_warnings(run, "cured by the dump/restore fallback")
    run.checks.extend(verdicts)
    return cured_all


#: Said after a fallback that swapped: every thread is now the new saver's writing.
ROLLBACK_AFTER_FALLBACK = (
    "every stored thread was rewritten by the new version's saver: an app rolled back to "
    "the old version reads them as it reads any thread the new version wrote (the gate's "
    "rollback column; H-ROLLBACK-NULL), so roll back the data with it: the old tables "
    "kept above, or `langgraph-migrator restore-backup`"
)


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
