"""Click wiring only: parse → call ``api`` → render → exit code.

Exit codes (DESIGN.md): 0 pass; 1 gate failed; 2 usage/configuration; 3 database
or environment; 4 lock not acquired; 5 migration failed and rolled back; 70 bug.
``main`` is the one place that turns errors into exit codes.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from migrator import __version__, api
from migrator.config import CheckSettings, PgChoice
from migrator.errors import MigratorError

EXIT_BUG = 70


def _progress(quiet: bool) -> Any:
    def report(message: str) -> None:
        if not quiet:
            click.echo(f"… {message}", err=True)

    return report


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="langgraph-migrator")
@click.option("--raiseerr", is_flag=True, help="Show the full traceback of any error.")
@click.pass_context
def cli(ctx: click.Context, raiseerr: bool) -> None:
    """langgraph-migrator: make LangGraph upgrades safe for checkpoints in PostgreSQL."""
    ctx.obj = {"raiseerr": raiseerr}


@cli.command("upgrade-check")
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
    "to_spec",
    default="current",
    show_default=True,
    metavar="SPEC",
    help="Version set to upgrade to; 'current' is the one this tool runs on.",
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
@click.option("--show-values", is_flag=True, help="Print differing values, not only hashes.")
@click.option(
    "--timeout", default=600.0, show_default=True, help="Seconds one worker step may take."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def upgrade_check(
    from_spec: str,
    to_spec: str,
    pg: str | None,
    canaries: tuple[str, ...],
    user_canaries: str | None,
    threads: tuple[str, ...],
    threads_from: str | None,
    policy_file: Path | None,
    json_out: Path | None,
    junit_out: Path | None,
    show_values: bool,
    timeout: float,
    quiet: bool,
) -> None:
    """Usage: langgraph-migrator upgrade-check --from SPEC [--to SPEC|current]

    Seed canary threads under the old version on an ephemeral Postgres, upgrade to
    the new one, and prove every thread still loads unchanged and keeps running.
    Exit 0 pass, 1 breaking drift, 2 usage, 3 environment.
    """
    from migrator import report as reports

    pyproject = Path("pyproject.toml")
    settings = CheckSettings(
        from_spec=from_spec,
        to_spec=to_spec,
        pg=PgChoice.parse(pg),
        canaries=canaries,
        user_canaries=user_canaries,
        threads=threads,
        threads_from=threads_from,
        policy_file=policy_file,
        pyproject=pyproject if pyproject.is_file() else None,
        worker_timeout=timeout,
    )
    result = api.upgrade_check(settings, progress=_progress(quiet))
    reports.render_text(result, show_values=show_values)
    if json_out:
        reports.write_json(result, json_out)
    if junit_out:
        reports.write_junit(result, junit_out)
    reports.append_step_summary(result)
    if result.verdict == "fail":
        sys.exit(1)


@cli.group("pg")
def pg_group() -> None:
    """Usage: langgraph-migrator pg up|down|list

    Ephemeral PostgreSQL servers: local binaries (no Docker needed) or Docker.
    """


@pg_group.command("up")
@click.option("--major", type=int, default=None, help="Postgres major (default: 18, embedded).")
@click.option(
    "--provider",
    type=click.Choice(["auto", "local", "docker"]),
    default="auto",
    show_default=True,
    help="Where the server comes from.",
)
@click.option("--name", default="default", show_default=True, help="Name for `pg down`.")
def pg_up(major: int | None, provider: str, name: str) -> None:
    """Usage: langgraph-migrator pg up [--major N] [--provider auto|local|docker]

    Start an ephemeral server, print its DSN on stdout, and keep it running until
    `langgraph-migrator pg down` or Ctrl-C. Nothing is left behind when it stops.
    """
    from migrator.postgres import start_detached, stop_detached, wait_until_stopped

    server = start_detached(provider, major, name=name)

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        click.echo(server.dsn)
        click.echo(
            f"PostgreSQL {server.version} ({server.source}) is up; "
            f"stop it with `langgraph-migrator pg down --name {name}` or Ctrl-C.",
            err=True,
        )
        wait_until_stopped(server)
    except KeyboardInterrupt:
        pass
    finally:
        stop_detached(name)
        click.echo("stopped.", err=True)


@pg_group.command("down")
@click.option("--name", default=None, help="Stop only this server (default: all).")
def pg_down(name: str | None) -> None:
    """Usage: langgraph-migrator pg down [--name NAME]

    Stop servers started with `pg up` (from any process) and remove their files.
    """
    from migrator.postgres import list_detached, stop_detached

    names = [name] if name else [s.name for s in list_detached()]
    stopped = [n for n in names if stop_detached(n) is not None]
    click.echo(f"stopped {len(stopped)} server(s){': ' + ', '.join(stopped) if stopped else ''}.")


@pg_group.command("list")
def pg_list() -> None:
    """Usage: langgraph-migrator pg list

    Show the Postgres majors this machine can provide, and from where.
    """
    from rich.console import Console
    from rich.table import Table

    from migrator.postgres import list_sources

    table = Table(title="Postgres majors this machine can provide")
    for col in ("major", "kind", "installed", "where"):
        table.add_column(col)
    for src in list_sources():
        table.add_row(
            str(src.major), src.kind, "yes" if src.installed else "on demand", src.description
        )
    Console().print(table)


@cli.group("env")
def env_group() -> None:
    """Usage: langgraph-migrator env info SPEC

    Version environments: one cached virtualenv per version set.
    """


@env_group.command("info")
@click.argument("spec")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def env_info(spec: str, as_json: bool) -> None:
    """Usage: langgraph-migrator env info SPEC

    Build (or reuse) the environment for SPEC and print its versions and the
    MIGRATIONS its setup() would run.
    """
    info = api.env_info(spec, progress=_progress(as_json))
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    click.echo(f"environment: {info['env']['label']} (key {info['env']['key']})")
    for name, version in sorted(info.get("versions", {}).items()):
        click.echo(f"  {name}=={version}")
    migrations = info.get("migrations") or []
    click.echo(f"MIGRATIONS: {len(migrations)} entries")
    for i, stmt in enumerate(migrations):
        first = " ".join(str(stmt).split())[:90]
        click.echo(f"  v{i}: {first}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: the one place that maps errors to exit codes."""
    raiseerr = "--raiseerr" in (argv if argv is not None else sys.argv[1:])
    try:
        rc = cli.main(args=argv, prog_name="langgraph-migrator", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MigratorError as exc:
        if raiseerr:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001 - the one place that turns a bug into exit 70
        import traceback

        traceback.print_exc()
        click.echo(
            "error: unexpected failure (a bug in langgraph-migrator); "
            "please report it with the traceback above.",
            err=True,
        )
        sys.exit(EXIT_BUG)
    sys.exit(rc if isinstance(rc, int) else 0)
