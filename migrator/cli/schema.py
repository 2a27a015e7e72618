"""Commands that change or plan the schema: ``plan``, ``migrate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from migrator import api
from migrator.app.options import app_options
from migrator.cli.root import _progress, cli


def _emit_plan(result: Any, as_json: bool) -> None:
    from migrator.plan import render_plan

    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        for line in render_plan(result):
            click.echo(line)
    if result.unsafe:
        sys.exit(1)


@cli.command("plan")
@click.option("--dsn", required=True, metavar="DSN", help="The app's database (only read).")
@click.option("--to", "to_spec", default="current", show_default=True, metavar="SPEC|current")
@click.option(
    "--scratch-dsn",
    default=None,
    metavar="DSN",
    help="Server for the reference and rehearsal (default: an ephemeral local cluster).",
)
@click.option("--schema", default=None, help="Schema of the checkpoint tables (default: current).")
@click.option(
    "--from",
    "from_spec",
    default=None,
    metavar="SPEC",
    help="Version set that wrote the data (refines its era; named in the proving check).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def plan_cmd(
    dsn: str,
    to_spec: str,
    scratch_dsn: str | None,
    schema: str | None,
    from_spec: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Usage: langgraph-migrator plan --dsn DSN [--to SPEC|current] [--from SPEC] [--json]

    Read only: which MIGRATIONS setup() of the target will run, a rehearsal of them
    on an empty clone of the schema, the diff against the reference schema, the era
    of the stored threads and, per data hazard of the target, how many threads it
    reaches (first 20 ids), and hazards with fixes. Exit 0 safe, 1 unsafe (a schema
    error, or a breaking data hazard reaching a thread), 2 usage, 3 database or
    environment.
    """
    result = api.plan(
        dsn,
        to_spec,
        scratch_dsn=scratch_dsn,
        schema=schema,
        progress=_progress(quiet or as_json),
        from_spec=from_spec,
    )
    _emit_plan(result, as_json)


@cli.command("migrate")
@app_options
@click.option("--dsn", required=True, metavar="DSN", help="The app's database.")
@click.option("--to", "to_spec", default="current", show_default=True, metavar="SPEC|current")
@click.option("--scratch-dsn", default=None, metavar="DSN", help="Server for the rehearsal.")
@click.option("--schema", default=None, help="Schema of the checkpoint tables (default: current).")
# Ranges: a negative value used to run the plan and the backup, then fail in setup() (exit 5).
@click.option(
    "--wait",
    default=60.0,
    type=click.FloatRange(min=0),
    show_default=True,
    help="Seconds to wait for the lock.",
)
@click.option("--no-wait", is_flag=True, help="Exit 4 at once if another migrator runs.")
@click.option(
    "--lock-timeout",
    default=5.0,
    type=click.FloatRange(min=0, min_open=True),
    show_default=True,
    help="Seconds per lock wait.",
)
@click.option(
    "--statement-timeout",
    default=900.0,
    type=click.FloatRange(min=0, min_open=True),
    show_default=True,
    help="Seconds per statement.",
)
@click.option(
    "--retries",
    default=5,
    type=click.IntRange(min=0),
    show_default=True,
    help="Retries when a lock is in the way.",
)
@click.option(
    "--nice",
    default=10,
    type=click.IntRange(min=0, max=19),
    show_default=True,
    help="CPU nice value of migrate and its workers, so that the application it runs "
    "beside keeps the CPU (0: unchanged).",
)
@click.option("--no-backup", is_flag=True, help="Take no backup before changing anything.")
@click.option(
    "--backup-dir",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Where the pre-migrate backup goes (default: "
    "./langgraph-migrator-backups/<UTC timestamp>).",
)
@click.option(
    "--fallback",
    type=click.Choice(["dump-restore", "none"]),
    default=None,
    help="After breaking drift: restore the backup, dump with --from, restore with the "
    "target (default: ask on a terminal, else none).",
)
@click.option(
    "--from",
    "from_spec",
    default=None,
    metavar="SPEC",
    help="Version set that wrote the data (needed by --fallback dump-restore).",
)
@click.option(
    "--accept-hazard",
    "accept_hazards",
    multiple=True,
    metavar="ID",
    help="A data hazard you accept for the stored threads it reaches (repeatable, e.g. "
    "H-TASK-ID): without it, threads at risk that nothing proves stop migrate.",
)
@click.option("--dry-run", is_flag=True, help="Only plan (same as `plan`).")
@click.option(
    "--conformance",
    is_flag=True,
    help="Afterwards run langgraph's checkpointer conformance suite (pinned) with your "
    "serde on a CREATE DATABASE ... TEMPLATE copy, never the live database.",
)
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the report.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def migrate_cmd(
    dsn: str,
    to_spec: str,
    scratch_dsn: str | None,
    schema: str | None,
    wait: float,
    no_wait: bool,
    lock_timeout: float,
    statement_timeout: float,
    retries: int,
    nice: int,
    no_backup: bool,
    backup_dir: Path | None,
    fallback: str | None,
    from_spec: str | None,
    accept_hazards: tuple[str, ...],
    dry_run: bool,
    conformance: bool,
    json_out: Path | None,
    quiet: bool,
) -> None:
    """Usage: langgraph-migrator migrate --dsn DSN [--to SPEC|current] [--wait S|--no-wait]
    [--no-backup|--backup-dir DIR] [--from SPEC --fallback dump-restore|none]

    One migrator at a time (advisory lock) -> plan -> backup -> setup() of the target
    with lock_timeout/statement_timeout and retries -> repair what differs from the
    reference schema -> verify canaries -> (breaking drift: the dump/restore fallback,
    then verify again) -> record the run. Stored threads a breaking data hazard
    reaches (plan's blast radius), with no canary to prove them, stop migrate before
    it changes anything, unless --fallback dump-restore cures them or --accept-hazard
    accepts the risk. Exit 0 done, 1 unsafe plan or breaking drift without the
    fallback (undone), 2 usage, 3 database, 4 lock not acquired (safe to retry),
    5 failed and undone or restored (the message says what state the database is
    in). With --conformance, a failed suite is exit 1 (the migration stays done).
    """
    from migrator import report as reports
    from migrator.errors import ConfigError
    from migrator.execute import MigrateSettings, backup_hook
    from migrator.plan import check_hazard_ids

    if dry_run:
        result = api.plan(
            dsn,
            to_spec,
            scratch_dsn=scratch_dsn,
            schema=schema,
            progress=_progress(quiet),
            from_spec=from_spec,
        )
        _emit_plan(result, False)
        return
    settings = MigrateSettings(
        dsn=dsn,
        to_spec=to_spec,
        scratch_dsn=scratch_dsn,
        schema=schema,
        wait=0.0 if no_wait else wait,
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
        retries=retries,
        nice=nice,
        from_spec=from_spec,
        fallback=fallback or ("ask" if sys.stdin.isatty() and sys.stdout.isatty() else "none"),
        accept_hazards=check_hazard_ids(accept_hazards),
    )
    if no_backup and backup_dir is not None:
        raise ConfigError(
            "--no-backup and --backup-dir contradict each other.", hint="pass only one of them"
        )
    outcome = api.migrate(
        settings,
        backup=None if no_backup else backup_hook(backup_dir, progress=_progress(quiet)),
        progress=_progress(quiet),
        confirm=lambda question: click.confirm(question, default=False, err=True),
    )
    report = outcome.report
    if conformance and outcome.error is None:
        report = _with_conformance(report, dsn, to_spec, schema, quiet)
    reports.render_text(report)
    if json_out:
        reports.write_json(report, json_out)
    if outcome.error is not None:
        raise outcome.error
    if any(c.check == "conformance" and c.status == "fail" for c in report.checks):
        sys.exit(1)


def _with_conformance(report: Any, dsn: str, to_spec: str, schema: str | None, quiet: bool) -> Any:
    """``report`` with the conformance suite's check (``migrate --conformance``)."""
    import dataclasses

    from migrator.conformance import run_conformance

    check = run_conformance(dsn, to_spec, schema=schema, progress=_progress(quiet))
    return dataclasses.replace(report, checks=(*report.checks, check))
