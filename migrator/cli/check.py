"""Commands that judge an upgrade: ``upgrade-check``, ``canary``, ``verify``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from migrator import api
from migrator.app.options import app_options
from migrator.cli.root import _emit_ledger_report, _progress, cli
from migrator.config import CheckSettings, PgChoice
from migrator.serde.options import strict_options


@cli.command("upgrade-check")
@app_options
@strict_options
@click.option(
    "--from",
    "from_spec",
    required=True,
    metavar="SPEC",
    help="Version set deployed today: a spec such as "
    "'langgraph-checkpoint-postgres==2.0.8', a requirements/lock file.",
)
@click.option(
    "--to",
    "to_specs",
    multiple=True,
    default=["current"],
    show_default=True,
    metavar="SPEC",
    help="Version set to upgrade to: a spec, a requirements/lock file (uv.lock, "
    "poetry.lock, pylock.toml) that pins langgraph, or 'current' (the one this tool "
    "runs on). Repeatable: seeds once and checks each target on its own copy; "
    "the exit code is the worst target's.",
)
@click.option(
    "--pg",
    "pg",
    default=None,
    metavar="auto|local|docker|MAJOR|DSN",
    help="Postgres to run the check on (default: auto, or $LANGGRAPH_MIGRATOR_PG).",
)
@click.option(
    "--canary",
    "canaries",
    multiple=True,
    metavar="NAME",
    help="Run only these built-in canaries (repeatable; default: all).",
)
@click.option(
    "--canaries",
    "user_canaries",
    default=None,
    metavar="MODULE:ATTR",
    help="Your own canaries: a list of canary objects importable in both envs.",
)
@click.option(
    "--thread",
    "threads",
    multiple=True,
    metavar="ID",
    help="A real thread id to watch as well (repeatable; copied from --threads-from).",
)
@click.option(
    "--threads-from",
    "threads_from",
    default=None,
    metavar="DSN",
    help="Database holding the --thread ids (read only; default: the --pg DSN).",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Drift policy TOML (ignore/benign path patterns).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the report as JSON (docs/report-format.md).",
)
@click.option(
    "--junit",
    "junit_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the report as JUnit XML (one test case per canary and check).",
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a self-contained HTML report (old | new of every difference: "
    "type and hash, values with --show-values).",
)
@click.option(
    "--fallback",
    type=click.Choice(["dump-restore", "none"]),
    default="dump-restore",
    show_default=True,
    help="On breaking drift, also try the dump/restore fallback and report what it cures.",
)
@click.option(
    "--accept-fallback",
    is_flag=True,
    help="Pass the gate when the fallback cures every breaking difference "
    "(your deploy then runs `migrate --fallback dump-restore`).",
)
@click.option(
    "--accept-hazard",
    "accept_hazards",
    multiple=True,
    metavar="ID",
    help="A data hazard you accept (repeatable, e.g. H-METADATA-WRITES): its differences "
    "are reported as ignored and a check it alone fails as a warning, as `migrate "
    "--accept-hazard` accepts it for the stored threads.",
)
@click.option(
    "--if-changed",
    is_flag=True,
    help="For CI on lock-file changes: a --to that pins the same version set as --from "
    "is not checked, and when none is left the run passes (exit 0) saying so.",
)
@click.option(
    "--show-values",
    is_flag=True,
    help="Show differing values, not only types and hashes, in every report (terminal, "
    "--json, --junit, --html): they may hold user data.",
)
@click.option(
    "--timeout", default=600.0, show_default=True, help="Seconds one worker step may take."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def upgrade_check(
    from_spec: str,
    to_specs: tuple[str, ...],
    pg: str | None,
    canaries: tuple[str, ...],
    user_canaries: str | None,
    threads: tuple[str, ...],
    threads_from: str | None,
    policy_file: Path | None,
    json_out: Path | None,
    junit_out: Path | None,
    html_out: Path | None,
    fallback: str,
    accept_fallback: bool,
    accept_hazards: tuple[str, ...],
    if_changed: bool,
    show_values: bool,
    timeout: float,
    quiet: bool,
) -> None:
    """Usage: langgraph-migrator upgrade-check --from SPEC [--to SPEC|current ...]

    Seed canary threads under the old version on an ephemeral Postgres, upgrade to
    the new one, and prove every thread still loads unchanged and keeps running.
    Exit 0 pass, 1 breaking drift, 2 usage, 3 environment. With several --to
    targets: one report per target, and the worst target's exit code
    (0 < 1 < 3 < 2: a target that could not be checked outweighs a failed one).
    """
    from migrator import report as reports
    from migrator.plan import check_hazard_ids

    accepted = check_hazard_ids(accept_hazards)
    if if_changed:
        from migrator.gate import changed_targets

        kept, same = changed_targets(from_spec, to_specs)
        for label in same:
            click.echo(f"note: {label} pins what --from pins: nothing to upgrade, not checked")
        if not kept:
            click.echo(
                "verdict: PASS — nothing to check (--if-changed): no --to changes the "
                "version set of --from"
            )
            return
        to_specs = tuple(kept)
    pyproject = Path("pyproject.toml")
    settings = CheckSettings(
        from_spec=from_spec,
        to_spec=to_specs[0],
        to_specs=to_specs if len(to_specs) > 1 else (),
        pg=PgChoice.parse(pg),
        canaries=canaries,
        user_canaries=user_canaries,
        threads=threads,
        threads_from=threads_from,
        fallback=fallback,
        accept_fallback=accept_fallback,
        accept_hazards=accepted,
        policy_file=policy_file,
        pyproject=pyproject if pyproject.is_file() else None,
        worker_timeout=timeout,
    )
    if settings.to_specs:
        _upgrade_check_targets(settings, json_out, junit_out, html_out, show_values, quiet)
        return
    result = api.upgrade_check(settings, progress=_progress(quiet))
    reports.render_text(result, show_values=show_values)
    if json_out:
        reports.write_json(result, json_out, show_values=show_values)
    if junit_out:
        reports.write_junit(result, junit_out, show_values=show_values)
    if html_out:
        from migrator.report.html import write_html

        write_html(result, html_out, show_values=show_values)
    from migrator.annotations import emit_annotations

    emit_annotations(result, pyproject=settings.pyproject, canaries=user_canaries)
    reports.append_step_summary(result)
    if result.verdict == "fail":
        sys.exit(1)


def _upgrade_check_targets(
    settings: CheckSettings,
    json_out: Path | None,
    junit_out: Path | None,
    html_out: Path | None,
    show_values: bool,
    quiet: bool,
) -> None:
    """``upgrade-check`` with several ``--to``: one report per target, the worst exit code."""
    from migrator import report as reports
    from migrator.annotations import emit_annotations
    from migrator.report.html import write_html

    result = api.upgrade_check_targets(settings, progress=_progress(quiet))
    reports.render_targets_text(result, show_values=show_values)
    if json_out:
        reports.write_json(result, json_out, show_values=show_values)
    if junit_out:
        reports.write_junit(result, junit_out, show_values=show_values)
    if html_out:
        write_html(result, html_out, show_values=show_values)
    for target in result.targets:
        emit_annotations(
            target.report, pyproject=settings.pyproject, canaries=settings.user_canaries
        )
    reports.append_step_summary(result)
    if result.exit_code:
        sys.exit(result.exit_code)


@cli.group("canary")
def canary_group() -> None:
    """Usage: langgraph-migrator canary seed|list

    Canary threads in a real database: seed them under the version the app runs
    today (goldens go into the tool's ledger), list what exists.
    """


@canary_group.command("seed")
@app_options
@click.option("--dsn", required=True, metavar="DSN", help="The app's database.")
@click.option(
    "--with",
    "spec",
    required=True,
    metavar="SPEC",
    help="The version the app runs today, e.g. 'langgraph-checkpoint-postgres==2.0.25'.",
)
@click.option("--canary", "canaries", multiple=True, metavar="NAME", help="Only these canaries.")
@click.option("--canaries", "user_canaries", default=None, metavar="MODULE:ATTR", help="Your own.")
@click.option(
    "--reseed",
    is_flag=True,
    help="Replace the existing canary threads (only those), in one transaction with the new ones.",
)
@click.option("--wait", default=60.0, show_default=True, help="Seconds to wait for the lock.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds one step may take.")
@click.option("--json", "json_out", metavar="PATH|-", help="JSON report ('-': stdout).")
@click.option("--junit", "junit_out", type=click.Path(path_type=Path), help="JUnit XML report.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def canary_seed(
    dsn: str,
    spec: str,
    canaries: tuple[str, ...],
    user_canaries: str | None,
    reseed: bool,
    wait: float,
    timeout: float,
    json_out: str | None,
    junit_out: Path | None,
    quiet: bool,
) -> None:
    """Usage: langgraph-migrator canary seed --dsn DSN --with SPEC [--reseed]

    Seed canary threads into the app's database with the version it runs today
    and store what that version reads (the goldens) in the ledger. Never runs
    setup(): the checkpoint tables must exist. Seeds into a shadow copy first; the
    live tables change in one transaction at the end, or not at all. Exit 0 ok,
    1 a canary failed, 2 usage (no tables, already seeded, canaries that do not
    load), 3 environment (damaged ledger), 4 lock busy.
    """
    result = api.canary_seed(
        dsn,
        spec,
        canaries=canaries,
        user_canaries=user_canaries,
        reseed=reseed,
        timeout=timeout,
        lock_wait=wait,
        progress=_progress(quiet or json_out == "-"),
    )
    _emit_ledger_report(result, json_out, junit_out)


@canary_group.command("list")
@click.option("--dsn", default=None, metavar="DSN", help="Also list canaries seeded there.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def canary_list(dsn: str | None, as_json: bool) -> None:
    """Usage: langgraph-migrator canary list [--dsn DSN] [--json]

    The built-in canaries and what each covers; with --dsn, the canaries seeded
    in that database and the versions that seeded them.
    """
    listing = api.canary_list(dsn)
    if as_json:
        click.echo(json.dumps(listing, indent=2, sort_keys=True))
        return
    click.echo("built-in canaries:")
    for c in listing["builtin"]:
        click.echo(f"  {c['name']:<17} {c['covers']}")
    if listing["seeded"] is None:
        return
    click.echo("seeded in this database:" if listing["seeded"] else "none seeded in this database.")
    for c in listing["seeded"]:
        lg = c["versions"].get("langgraph-checkpoint-postgres") or "?"
        click.echo(
            f"  {c['thread_id']:<26} {c['status']:<8} checkpoint-postgres=={lg} {c['seeded_at']}"
        )


@cli.command("verify")
@app_options
@strict_options
@click.option("--dsn", required=True, metavar="DSN", help="The app's database.")
@click.option(
    "--with",
    "spec",
    default="current",
    show_default=True,
    metavar="SPEC|current",
    help="The version to read with (the one just deployed).",
)
@click.option("--canaries", "user_canaries", default=None, metavar="MODULE:ATTR", help="Your own.")
@click.option("--policy", "policy_file", type=click.Path(path_type=Path), help="Drift policy TOML.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds the snapshot may take.")
@click.option("--json", "json_out", metavar="PATH|-", help="JSON report ('-': stdout).")
@click.option("--junit", "junit_out", type=click.Path(path_type=Path), help="JUnit XML report.")
@click.option(
    "--show-values",
    is_flag=True,
    help="Show differing values, not only types and hashes, in every report (terminal, "
    "--json, --junit, --html): they may hold user data.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def verify(
    dsn: str,
    spec: str,
    user_canaries: str | None,
    policy_file: Path | None,
    timeout: float,
    json_out: str | None,
    junit_out: Path | None,
    show_values: bool,
    quiet: bool,
) -> None:
    """Usage: langgraph-migrator verify --dsn DSN [--with SPEC|current] [--json PATH|-]

    Read the canary threads with the deployed version and compare them with the
    goldens `canary seed` stored; no old environment needed. Run it after
    `migrate`. Exit 0 unchanged, 1 breaking drift, 2 no goldens, 3 environment.
    """
    pyproject = Path("pyproject.toml")
    result = api.verify(
        dsn,
        spec,
        policy_file=policy_file,
        pyproject=pyproject if pyproject.is_file() else None,
        user_canaries=user_canaries,
        timeout=timeout,
        progress=_progress(quiet or json_out == "-"),
    )
    _emit_ledger_report(result, json_out, junit_out, show_values)
