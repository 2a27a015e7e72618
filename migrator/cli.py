"""Click wiring only: parse → call ``api`` → render → exit code.

Exit codes (DESIGN.md): 0 pass; 1 gate failed; 2 usage/configuration; 3 database
or environment; 4 lock not acquired; 5 migration failed and rolled back; 70 bug.
``main`` is the one place that turns errors into exit codes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from migrator import __version__, api
from migrator.app.options import app_options
from migrator.config import CheckSettings, PgChoice
from migrator.errors import MigratorError, remember_secret, scrub, secret_scope
from migrator.postgres.dsn import check_dsn, remember_dsn

EXIT_BUG = 70
#: Options whose value must be a libpq connection string (``--pg`` may also be a name).
DSN_OPTIONS = ("dsn", "scratch_dsn", "threads_from")


def _progress(quiet: bool) -> Any:
    def report(message: str) -> None:
        if not quiet:
            click.echo(f"… {message}", err=True)

    return report


class _ScrubbedStream:
    """``sys.stdout``/``sys.stderr`` while the CLI runs: every password is masked.

    The output boundary: whatever prints (click, rich, tracebacks, warnings, code
    added later) passes :func:`migrator.errors.scrub`. Text goes out a line at a
    time, or on ``flush()``; a flush keeps back a last word that may be a DSN cut
    in two, until its line ends. There is no ``buffer``: bytes would get past.
    """

    _HOLD_MAX = 1 << 16
    #: A trailing word that may be the first half of a DSN or a password=... pair.
    _MAYBE_DSN = re.compile(r"//|:/|pass|pwd", re.IGNORECASE)

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._pending += text
            cut = self._pending.rfind("\n") + 1
            if len(self._pending) > self._HOLD_MAX:
                cut = len(self._pending)
            self._emit(cut)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            word = self._pending.rsplit(None, 1)[-1] if self._pending.strip() else ""
            held = len(word) if self._pending.endswith(word) and self._MAYBE_DSN.search(word) else 0
            self._emit(len(self._pending) - held)
        self._inner.flush()

    def close_out(self) -> None:
        """Write everything still held back (the run is over)."""
        with self._lock:
            self._emit(len(self._pending))
        self._inner.flush()

    def write_unscrubbed(self, text: str) -> None:
        """Write ``text`` as is: only for a value that is what the command produces."""
        self.close_out()
        self._inner.write(text)
        self._inner.flush()

    def _emit(self, cut: int) -> None:
        if cut > 0:
            self._inner.write(scrub(self._pending[:cut]))
            self._pending = self._pending[cut:]

    def __getattr__(self, name: str) -> Any:
        if name == "buffer":
            raise AttributeError(name)
        return getattr(self._inner, name)


@contextlib.contextmanager
def _scrubbed_output() -> Iterator[None]:
    """Route ``sys.stdout`` and ``sys.stderr`` through :class:`_ScrubbedStream`."""
    saved = sys.stdout, sys.stderr
    if isinstance(saved[0], _ScrubbedStream) or saved[0] is None or saved[1] is None:
        yield
        return
    sys.stdout, sys.stderr = _ScrubbedStream(saved[0]), _ScrubbedStream(saved[1])
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _ScrubbedStream):
                with contextlib.suppress(Exception):
                    stream.close_out()
        sys.stdout, sys.stderr = saved


def _remember_secrets(values: Iterable[object]) -> None:
    """Remember the passwords of DSNs among option values, to mask them anywhere."""
    for value in values:
        items = value if isinstance(value, (tuple, list)) else (value,)
        for item in items:
            if isinstance(item, str) and item:
                remember_dsn(item)


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


@cli.command("upgrade-check")
@app_options
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
    to_spec: str,
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
        fallback=fallback,
        accept_fallback=accept_fallback,
        policy_file=policy_file,
        pyproject=pyproject if pyproject.is_file() else None,
        worker_timeout=timeout,
    )
    result = api.upgrade_check(settings, progress=_progress(quiet))
    reports.render_text(result, show_values=show_values)
    if json_out:
        reports.write_json(result, json_out, show_values=show_values)
    if junit_out:
        reports.write_junit(result, junit_out, show_values=show_values)
    if html_out:
        from migrator.report_html import write_html

        write_html(result, html_out, show_values=show_values)
    from migrator.annotations import emit_annotations

    emit_annotations(result, pyproject=settings.pyproject, canaries=user_canaries)
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


@cli.command("backup")
@click.option("--dsn", required=True, metavar="DSN", help="The application database.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="A new or empty directory for the backup files and manifest.json.",
)
@click.option("--jobs", default=1, show_default=True, help="Connections copying in parallel.")
@click.option("--compress", is_flag=True, help="gzip each file (slower; see bench/README.md).")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def backup(dsn: str, out_dir: Path, jobs: int, compress: bool, quiet: bool) -> None:
    """Usage: langgraph-migrator backup --dsn DSN --out DIR [--jobs N] [--compress]

    Stream the checkpoint tables (and the tool's ledger rows) with binary COPY into
    DIR, all from one snapshot, with a manifest: versions, DDL, row counts, SHA-256.
    Exit 0 done, 2 bad usage (e.g. DIR not empty), 3 database unreachable.
    """
    manifest = api.backup(dsn, out_dir, jobs=jobs, compress=compress, progress=_progress(quiet))
    for table in manifest.tables:
        click.echo(f"{table.qualified}: {table.rows} rows in {len(table.files)} file(s)")
    click.echo(f"backup written to {out_dir} ({manifest.total_bytes} bytes)")


@cli.command("restore-backup")
@click.option("--dsn", required=True, metavar="DSN", help="The database to restore into.")
@click.argument("backup_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--into-new-schema",
    default=None,
    metavar="NAME",
    help="Restore into this new schema and leave the live tables alone.",
)
@click.option(
    "--wait", default=60.0, show_default=True, help="Seconds to wait for another migrator."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def restore_backup(
    dsn: str, backup_dir: Path, into_new_schema: str | None, wait: float, quiet: bool
) -> None:
    """Usage: langgraph-migrator restore-backup --dsn DSN DIR [--into-new-schema NAME]

    Verify the backup (checksums, counts, completeness) before writing anything, load
    it into a shadow schema, check the counts, then swap it in atomically; the previous
    live tables are kept in a langgraph_migrator_old_<ts> schema.
    Exit 0 done, 2 bad or mismatching backup, 3 database unreachable, 4 lock busy.
    """
    result = api.restore_backup(
        dsn, backup_dir, into_new_schema=into_new_schema, lock_wait=wait, progress=_progress(quiet)
    )
    for name, rows in result.tables.items():
        click.echo(f"{result.schema}.{name}: {rows} rows restored")
    if result.old_schema:
        click.echo(f"previous tables kept in schema {result.old_schema}")


@cli.command("dump")
@app_options
@click.option("--dsn", required=True, metavar="DSN", help="The database to dump (only read).")
@click.option(
    "--from",
    "from_spec",
    required=True,
    metavar="SPEC",
    help="The version set that wrote the data (its saver reads every thread).",
)
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--shard", default=None, metavar="I/N", help="Only threads hashing to shard I of N.")
@click.option("--thread", "threads", multiple=True, metavar="ID", help="Only this thread.")
@click.option(
    "--jobs",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Workers reading at once (one connection each); the dump gets one part per worker.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def dump(
    dsn: str,
    from_spec: str,
    out_path: Path,
    shard: str | None,
    threads: tuple[str, ...],
    jobs: int,
    quiet: bool,
) -> None:
    """Usage: langgraph-migrator dump --dsn DSN --from SPEC --out FILE [--shard I/N] [--jobs N]

    Read every thread through the old version's saver and write a type-tagged,
    compressed dump plus FILE.manifest.json (counts, type inventory, sha256).
    Exit 0 done, 2 bad usage, 3 database or environment error.
    """
    manifest = api.dump(
        dsn,
        from_spec,
        out_path,
        shard=shard,
        threads=threads,
        jobs=jobs,
        progress=_progress(quiet),
    )
    click.echo(
        f"{manifest.records} checkpoints of {len(manifest.threads)} thread(s) -> "
        f"{out_path} ({manifest.size} bytes, sha256 {manifest.sha256[:12]})"
    )
    if manifest.types:
        click.echo(f"types: {', '.join(manifest.types)}")
    for error in manifest.errors:
        click.echo(f"unreadable: {error}", err=True)


@cli.command("restore")
@app_options
@click.option("--dsn", required=True, metavar="DSN", help="The database to restore into.")
@click.argument(
    "dump_paths", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False)
)
@click.option(
    "--to", "to_spec", default="current", show_default=True, metavar="SPEC", help="New version."
)
@click.option(
    "--transform",
    default=None,
    metavar="task-id|MODULE:FUNCTION",
    help="task-id (H-TASK-ID cure) and/or your per-checkpoint function, comma-separated.",
)
@click.option("--allow-type", "allow_types", multiple=True, metavar="CLASS", help="Allow a class.")
@click.option(
    "--allow-file",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Allowed classes, one per line.",
)
@click.option("--dry-run", is_flag=True, help="Report what the transforms would change.")
@click.option("--no-swap", is_flag=True, help="Leave the restored tables in the shadow schema.")
@click.option(
    "--wait", default=60.0, show_default=True, help="Seconds to wait for another migrator."
)
@click.option(
    "--jobs",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Restore workers at once, each on its own parts of the dump(s).",
)
@click.option(
    "--verify",
    type=click.Choice(["full", "sample"]),
    default="full",
    show_default=True,
    help="Read back every restored checkpoint, or threads covering every type plus ~5%.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def restore(
    dsn: str,
    dump_paths: tuple[Path, ...],
    to_spec: str,
    transform: str | None,
    allow_types: tuple[str, ...],
    allow_file: Path | None,
    dry_run: bool,
    no_swap: bool,
    wait: float,
    jobs: int,
    verify: str,
    quiet: bool,
) -> None:
    """Usage: langgraph-migrator restore --dsn DSN DUMP... [--transform task-id] [--jobs N]

    Several DUMPs: the dumps of every shard (`dump --shard i/N`), restored
    together. Verify the dumps and their types against the allowlist before writing anything,
    rebuild the tables with the new version's setup() in a shadow schema, write
    every checkpoint through the new saver, verify, then swap atomically; the old
    tables stay in langgraph_migrator_old_<ts> until `cleanup`.
    Exit 0 done, 1 verification failed, 2 bad dump or type, 3 environment, 4 lock
    busy, 5 restore failed (live tables untouched).
    """
    result = api.restore(
        dsn,
        list(dump_paths),
        to_spec=to_spec,
        transform=transform,
        graph=None,  # the app profile's graphs, per thread (worker side)
        allow_types=allow_types,
        allow_file=allow_file,
        dry_run=dry_run,
        swap=not no_swap,
        lock_wait=wait,
        jobs=jobs,
        verify=verify,
        progress=_progress(quiet),
    )
    for change in result.changes:
        click.echo(f"{'would change' if dry_run else 'changed'}: {change}")
    for line in result.uncured:
        click.echo(f"warning: {line}", err=True)
    total = sum(t["checkpoints"] for t in result.threads.values())
    verb = "would restore" if dry_run else "restored"
    click.echo(f"{verb} {total} checkpoints of {len(result.threads)} thread(s)")
    if result.verified:
        checked = result.verified
        click.echo(f"read back and compared: {checked['threads']} of {checked['of']} thread(s)")
    if result.old_schema:
        click.echo(f"previous tables kept in schema {result.old_schema} (drop with `cleanup`)")
    elif result.shadow_schema and not dry_run:
        click.echo(f"restored tables left in schema {result.shadow_schema}")


@cli.command("cleanup")
@click.option("--dsn", required=True, metavar="DSN", help="The database.")
@click.option(
    "--wait", default=60.0, show_default=True, help="Seconds to wait for another migrator."
)
def cleanup(dsn: str, wait: float) -> None:
    """Usage: langgraph-migrator cleanup --dsn DSN

    Drop the old checkpoint tables a restore kept (langgraph_migrator_old_*) and
    leftover shadow schemas. Exit 0 done, 3 database unreachable, 4 lock busy.
    """
    dropped = api.cleanup(dsn, lock_wait=wait)
    click.echo(f"dropped {len(dropped)} schema(s){': ' + ', '.join(dropped) if dropped else ''}")


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
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def plan_cmd(
    dsn: str, to_spec: str, scratch_dsn: str | None, schema: str | None, as_json: bool, quiet: bool
) -> None:
    """Usage: langgraph-migrator plan --dsn DSN [--to SPEC|current] [--json]

    Read only: which MIGRATIONS setup() of the target will run, a rehearsal of them
    on an empty clone of the schema, the diff against the reference schema, and
    hazards with fixes. Exit 0 safe, 1 unsafe, 2 usage, 3 database or environment.
    """
    result = api.plan(
        dsn, to_spec, scratch_dsn=scratch_dsn, schema=schema, progress=_progress(quiet or as_json)
    )
    _emit_plan(result, as_json)


@cli.command("migrate")
@app_options
@click.option("--dsn", required=True, metavar="DSN", help="The app's database.")
@click.option("--to", "to_spec", default="current", show_default=True, metavar="SPEC|current")
@click.option("--scratch-dsn", default=None, metavar="DSN", help="Server for the rehearsal.")
@click.option("--schema", default=None, help="Schema of the checkpoint tables (default: current).")
@click.option("--wait", default=60.0, show_default=True, help="Seconds to wait for the lock.")
@click.option("--no-wait", is_flag=True, help="Exit 4 at once if another migrator runs.")
@click.option("--lock-timeout", default=5.0, show_default=True, help="Seconds per lock wait.")
@click.option(
    "--statement-timeout", default=900.0, show_default=True, help="Seconds per statement."
)
@click.option("--retries", default=5, show_default=True, help="Retries when a lock is in the way.")
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
@click.option("--dry-run", is_flag=True, help="Only plan (same as `plan`).")
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
    no_backup: bool,
    backup_dir: Path | None,
    fallback: str | None,
    from_spec: str | None,
    dry_run: bool,
    json_out: Path | None,
    quiet: bool,
) -> None:
    """Usage: langgraph-migrator migrate --dsn DSN [--to SPEC|current] [--wait S|--no-wait]
    [--no-backup|--backup-dir DIR] [--from SPEC --fallback dump-restore|none]

    One migrator at a time (advisory lock) -> plan -> backup -> setup() of the target
    with lock_timeout/statement_timeout and retries -> repair what differs from the
    reference schema -> verify canaries -> (breaking drift: the dump/restore fallback,
    then verify again) -> record the run. Exit 0 done, 1 unsafe plan or breaking drift
    without the fallback (undone), 2 usage, 3 database, 4 lock not acquired (safe to
    retry), 5 failed and undone or restored (the message says what state the database
    is in).
    """
    from migrator import report as reports
    from migrator.errors import ConfigError
    from migrator.execute import MigrateSettings, backup_hook

    if dry_run:
        result = api.plan(
            dsn, to_spec, scratch_dsn=scratch_dsn, schema=schema, progress=_progress(quiet)
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
        from_spec=from_spec,
        fallback=fallback or ("ask" if sys.stdin.isatty() and sys.stdout.isatty() else "none"),
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
    reports.render_text(outcome.report)
    if json_out:
        reports.write_json(outcome.report, json_out)
    if outcome.error is not None:
        raise outcome.error


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
    "--reseed", is_flag=True, help="Delete the existing canary threads (only those) first."
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
    setup(): the checkpoint tables must exist. Exit 0 ok, 1 a canary failed,
    2 usage (no tables, already seeded), 3 environment, 4 lock busy.
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


#: Exit status after SIGTERM (128 + 15, what a shell reports for a terminated job).
EXIT_TERMINATED = 143


class _Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C so that every cleanup runs."""


def _on_sigterm(signum: int, frame: object) -> None:
    # A second SIGTERM kills at once, as before: a cleanup that hangs is not a trap.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise _Terminated


def _unwind_on_sigterm() -> None:
    """Make SIGTERM (``timeout``, a cancelled CI job, a deploy hook) unwind like Ctrl-C.

    By default SIGTERM ends the process on the spot: its ephemeral Postgres keeps
    running, worker processes (in their own sessions) keep writing, and a fallback's
    shadow schema stays. Raised as an interrupt instead, the ``finally`` blocks kill
    the workers, drop the shadow schema and stop the server. Left alone when the
    embedding program has its own handler.
    """
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _remember_given_secrets(argv: list[str]) -> None:
    """Passwords the user handed us, however malformed the DSN: the argv and environment."""
    _remember_secrets(argv)
    _remember_secrets(os.environ.values())
    if os.environ.get("PGPASSWORD"):
        remember_secret(os.environ["PGPASSWORD"])


def main(argv: list[str] | None = None) -> None:
    """Console entry point: the one place that maps errors to exit codes.

    Everything printed from here on, an error's text included, passes
    :func:`migrator.errors.scrub`: no password reaches the terminal.
    """
    args = argv if argv is not None else sys.argv[1:]
    with secret_scope(), _scrubbed_output():
        _remember_given_secrets(args)
        _main(args, raiseerr="--raiseerr" in args)


def _main(argv: list[str], *, raiseerr: bool) -> None:
    _unwind_on_sigterm()
    try:
        rc = cli.main(args=argv, prog_name="langgraph-migrator", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, _Terminated):
            click.echo("terminated (SIGTERM): workers stopped, temporary state removed.", err=True)
            sys.exit(EXIT_TERMINATED)
        click.echo("aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MigratorError as exc:
        if raiseerr:
            # Printed here, not re-raised: the traceback must pass the filter too.
            import traceback

            traceback.print_exc()
        click.echo(scrub(f"error: {exc}"), err=True)
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
