"""The root click group, the command class every command uses, shared helpers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from migrator import __version__
from migrator.cli.output import _remember_secrets, _scrubbed_output
from migrator.postgres.dsn import check_dsn

EXIT_BUG = 70
#: Options whose value must be a libpq connection string (``--pg`` may also be a name).
DSN_OPTIONS = ("dsn", "scratch_dsn", "threads_from")


def _progress(quiet: bool) -> Any:
    def report(message: str) -> None:
        if not quiet:
            click.echo(f"… {message}", err=True)

    return report


class _Command(click.Command):
    """Every command: remember the passwords in its options, refuse a malformed DSN."""

    def invoke(self, ctx: click.Context) -> Any:
        _remember_secrets(ctx.params.values())
        for name in DSN_OPTIONS:
            value = ctx.params.get(name)
            if isinstance(value, str) and value:
                check_dsn(value, f"--{name.replace('_', '-')}")
        return super().invoke(ctx)


class _Group(click.Group):
    command_class = _Command
    group_class = type  # subgroups (pg, canary, ...) are _Group too


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="langgraph-migrator")
@click.option("--raiseerr", is_flag=True, help="Show the full traceback of any error.")
@click.pass_context
def cli(ctx: click.Context, raiseerr: bool) -> None:
    """langgraph-migrator: make LangGraph upgrades safe for checkpoints in PostgreSQL.

    Every option can also come from LANGGRAPH_MIGRATOR_<COMMAND>_<FLAG> (or
    LANGGRAPH_MIGRATOR_<FLAG>) or [tool.langgraph-migrator] in pyproject.toml;
    flag > env > file. See `langgraph-migrator config show`.
    """
    from migrator.settings_file import configure_context

    ctx.obj = {"raiseerr": raiseerr}
    # Also when `cli` is invoked without `main` (CliRunner, embedding programs).
    ctx.with_resource(_scrubbed_output())
    configure_context(ctx)


def _emit_ledger_report(
    result: Any, json_out: str | None, junit_out: Path | None, show_values: bool = False
) -> None:
    """Render a canary seed / verify report; ``--json -`` prints JSON only, on stdout."""
    from migrator import report as reports

    if json_out == "-":
        click.echo(reports.to_json(result, show_values))
    else:
        reports.render_text(result, show_values=show_values)
        if json_out:
            reports.write_json(result, Path(json_out), show_values=show_values)
    if junit_out:
        reports.write_junit(result, junit_out, show_values=show_values)
    reports.append_step_summary(result)
    if result.verdict == "fail":
        sys.exit(1)
