"""Commands around the checks: ``pg``, ``env``, ``config``."""

from __future__ import annotations

import json
import signal
import sys

import click

from migrator import api
from migrator.app.options import app_options
from migrator.cli.output import _ScrubbedStream
from migrator.cli.root import _progress, cli


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
        # The DSN is this command's product, with the password we generated for a
        # container (local clusters have none): the one line that bypasses the filter.
        out = sys.stdout
        if isinstance(out, _ScrubbedStream):
            out.write_unscrubbed(server.dsn + "\n")
        else:
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
@app_options
@click.argument("spec")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def env_info(spec: str, as_json: bool) -> None:
    """Usage: langgraph-migrator env info SPEC

    Build (or reuse) the environment for SPEC and print its versions and the
    MIGRATIONS its setup() would run. With an app profile, the environment gets
    the app's requirements and the app's graphs and serde are imported in it.
    """
    info = api.env_info(spec, progress=_progress(as_json))
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    click.echo(f"environment: {info['env']['label']} (key {info['env']['key']})")
    click.echo(f"  python: {info['env']['python']}")
    if info.get("app"):
        click.echo(f"{info['app']['summary']}: imports ok in this environment")
    for name, version in sorted(info.get("versions", {}).items()):
        click.echo(f"  {name}=={version}")
    migrations = info.get("migrations") or []
    click.echo(f"MIGRATIONS: {len(migrations)} entries")
    for i, stmt in enumerate(migrations):
        first = " ".join(str(stmt).split())[:90]
        click.echo(f"  v{i}: {first}")


@cli.group("config")
def config_group() -> None:
    """Usage: langgraph-migrator config show [COMMAND] [FLAGS...]

    Where options come from: flag > LANGGRAPH_MIGRATOR_* env > pyproject.toml > default.
    """


@config_group.command(
    "show",
    # Everything after COMMAND belongs to COMMAND (its own --json too).
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def config_show(ctx: click.Context, command: tuple[str, ...], as_json: bool) -> None:
    """Usage: langgraph-migrator config show [COMMAND [SUBCOMMAND]] [FLAGS...]

    Print each option's effective value and where it came from (flag, env, file,
    default), for one command or for all. Flags after COMMAND are resolved as that
    command would; passwords in DSNs are masked.
    """
    from migrator.settings_file import render_effective, resolve_show

    rows = resolve_show(ctx.find_root(), list(command))
    click.echo(render_effective(rows, as_json=as_json))
