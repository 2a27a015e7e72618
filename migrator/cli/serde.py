"""Serializer commands: ``scan-types``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from migrator.app.options import app_options
from migrator.cli.root import _progress, cli
from migrator.serde.scan import scan_types
from migrator.worker.privatefiles import write_private


@cli.command("scan-types")
@app_options
@click.option("--dsn", required=True, metavar="DSN", help="The database to scan (only read).")
@click.option(
    "--to",
    "to_spec",
    default="current",
    show_default=True,
    metavar="SPEC",
    help="The version whose strict msgpack mode you plan for (its safe types, its imports).",
)
@click.option(
    "--jobs",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Workers scanning disjoint thread shards at once (one connection each).",
)
@click.option(
    "--json", "json_out", default=None, metavar="PATH|-", help="JSON report ('-': stdout)."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def scan_types_command(
    dsn: str, to_spec: str, jobs: int, json_out: str | None, quiet: bool
) -> None:
    """Usage: langgraph-migrator scan-types --dsn DSN [--to SPEC] [--jobs N] [--json PATH|-]

    Read every blob, write and inline value (read-only) and list each stored type
    with counts and an example thread: msgpack classes (module, class, constructor
    kind), lc ids in JSON, pickle fallbacks, encrypted rows per cipher suffix (read
    through your app's serde and key), values that would not rebuild. Prints the
    allowed_msgpack_modules setting that keeps every stored type loading under the
    target's strict msgpack mode, and what would be degraded or blocked without it.
    Exit 0 every type loads, 1 some value would not rebuild or is blocked, 2 bad
    usage or a wrong/missing key, 3 database or environment.
    """
    scan = scan_types(dsn, to_spec, jobs=jobs, progress=_progress(quiet or json_out == "-"))
    if json_out == "-":
        click.echo(json.dumps(scan.to_dict(), indent=2, sort_keys=True))
    else:
        if json_out:
            write_private(
                Path(json_out), json.dumps(scan.to_dict(), indent=2, sort_keys=True) + "\n"
            )
        click.echo(scan.render_text())
    if not scan.ok:
        sys.exit(1)
