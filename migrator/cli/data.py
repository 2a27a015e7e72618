"""Commands that copy data out and back: backups, dumps, restores, cleanup."""

from __future__ import annotations

from pathlib import Path

import click

from migrator import api
from migrator.app.options import app_options
from migrator.cli.root import _progress, cli


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
    if manifest.encrypted:
        click.echo("encrypted with your serde's cipher: restoring it needs the same key")
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
