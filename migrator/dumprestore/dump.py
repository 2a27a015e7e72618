"""Dump: every thread read through the old version's saver, in parts (``--jobs``),
with a manifest."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from migrator import envs
from migrator.dumprestore.common import (
    IDLE_TIMEOUT_S,
    Progress,
    _quiet,
    run_parallel,
)
from migrator.dumprestore.manifest import (
    DumpManifest,
    manifest_path,
    merge_parts,
    sub_shards,
)
from migrator.errors import ConfigError, WorkerError
from migrator.output import output_error, remove_quietly, worker_output_error
from migrator.output.progress import PartProgress
from migrator.postgres.capacity import cap_jobs, distinct_threads, server_capacity
from migrator.postgres.dsn import connect, redact_dsn
from migrator.worker.privatefiles import open_private, write_private

#: Connections one dump worker opens (``migrator.worker.op_dump.READERS``).
CONNECTIONS_PER_WORKER = 2
SEARCH_PATH_SQL = "SHOW search_path"
TABLE_EXISTS_SQL = "SELECT to_regclass(%s) IS NOT NULL"


def dump_threads(
    dsn: str,
    env: envs.VersionEnv,
    out_path: Path,
    *,
    shard: tuple[int, int] | None = None,
    threads: Iterable[str] | None = None,
    jobs: int = 1,
    progress: Progress = _quiet,
    timeout: float = IDLE_TIMEOUT_S,
) -> DumpManifest:
    """Dump every thread of ``dsn`` through ``env``'s saver to ``out_path`` (+ manifest).

    With ``jobs`` > 1, that many workers read disjoint ``thread_id`` hash shards
    at once; the file is their gzip members in order (its manifest's ``parts``),
    which a restore reads with as many workers.

    Args:
        dsn: The database (read only).
        env: The version environment that wrote the data (the OLD one).
        out_path: The dump file to write (gzip JSON lines).
        shard: ``(i, n)``: only threads with ``hashtext(thread_id) mod n == i``.
        threads: Only these thread ids.
        jobs: Workers (and database connections) reading at once.
        progress: One-line progress messages.
        timeout: Seconds a worker may go without progress before it is killed
            (:mod:`migrator.output.progress`; a long run is not cut off).

    Returns:
        The manifest, also written to ``<out_path>.manifest.json``.

    Raises:
        ConfigError: ``out_path`` exists or its directory does not; ``jobs`` < 1; the
            database has no checkpoint tables.
        OutputError: ``out_path`` cannot be written (read-only, disk full); no file
            is left.
        WorkerError: the old version failed to read the data (no file is left).
    """
    out_path = Path(out_path).resolve()
    if out_path.exists():
        raise ConfigError(
            f"{out_path.name} already exists; a dump is never overwritten.",
            hint="choose a new file name or remove the old dump",
        )
    if not out_path.parent.is_dir():
        raise ConfigError(f"directory {out_path.parent.name!r} does not exist.", hint="create it")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs} is not a positive number.", hint="e.g. --jobs 2")
    selected = list(threads) if threads is not None else None
    jobs, note = _preflight(dsn, jobs, selected)
    if note:
        progress(f"note: {note}")
    done = False
    try:
        manifest = _dump(dsn, env, out_path, jobs, shard, selected, progress, timeout)
        done = True
        return manifest
    except OSError as exc:
        raise output_error(out_path, exc) from exc
    except WorkerError as exc:
        written = worker_output_error(out_path, exc)
        if written is not None:
            raise written from exc
        raise
    finally:
        # A failed dump leaves no file: not the dump, its manifest, nor a part.
        if not done:
            remove_quietly([out_path, manifest_path(out_path)])
        remove_quietly(out_path.parent.glob(f"{out_path.name}.partial"))
        remove_quietly(out_path.parent.glob(f".{out_path.name}.part*"))


def _preflight(dsn: str, jobs: int, selected: list[str] | None) -> tuple[int, str | None]:
    """Refuse a database without checkpoint tables (as ``backup`` does); cap ``jobs``."""
    with connect(dsn) as conn:
        row = conn.execute(TABLE_EXISTS_SQL, ("checkpoints",)).fetchone()
        if not (row and row[0]):
            searched = conn.execute(SEARCH_PATH_SQL).fetchone()
            raise ConfigError(
                f"no checkpoint tables in {redact_dsn(dsn)} "
                f"(searched: {searched[0] if searched else '?'}); nothing was written.",
                hint="point --dsn at the database (and search_path) your PostgresSaver uses.",
            )
        if jobs == 1:
            return 1, None
        work = len(selected) if selected is not None else distinct_threads(conn, jobs)
        return cap_jobs(
            jobs,
            capacity=server_capacity(conn),
            per_job=CONNECTIONS_PER_WORKER,
            work=work,
        )


def _dump(
    dsn: str,
    env: envs.VersionEnv,
    out_path: Path,
    jobs: int,
    shard: tuple[int, int] | None,
    selected: list[str] | None,
    progress: Progress,
    timeout: float,
) -> DumpManifest:
    requests: list[dict[str, Any]]
    if selected is not None:
        chunks = [selected[k::jobs] for k in range(min(jobs, max(1, len(selected))))]
        requests = [{"shard": None, "threads": chunk} for chunk in chunks]
    else:
        pairs = sub_shards(shard, jobs) if jobs > 1 else [shard]
        requests = [{"shard": list(p) if p else None, "threads": None} for p in pairs]
    with PartProgress("dump", len(requests), progress) as meter:
        if len(requests) == 1:
            progress(f"dumping threads with {env.label}")
            request = {"dsn": dsn, "path": str(out_path), **requests[0]}
            result = envs.run_worker(
                env,
                "dump",
                {**request, "progress_path": meter.path(0)},
                timeout=timeout,
                idle=meter.idle(0),
            )
            results, sha256 = [result], str(result["sha256"])
        else:
            progress(f"dumping threads with {env.label}: {len(requests)} workers")
            results, sha256 = _dump_parts(dsn, env, out_path, requests, timeout, progress, meter)
    manifest = merge_parts(
        out_path, results, sha256=sha256, shard=shard, selected=selected is not None
    )
    write_private(
        manifest_path(out_path), json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"
    )
    return manifest


def _dump_parts(
    dsn: str,
    env: envs.VersionEnv,
    out_path: Path,
    requests: list[dict[str, Any]],
    timeout: float,
    progress: Progress,
    meter: PartProgress,
) -> tuple[list[dict[str, Any]], str]:
    """Run one dump worker per request at once; concatenate their files into ``out_path``."""
    part_paths = [out_path.with_name(f".{out_path.name}.part{k}") for k in range(len(requests))]
    partial = out_path.with_name(f".{out_path.name}.partial")
    try:
        results = run_parallel(
            len(requests),
            [
                functools.partial(
                    envs.run_worker,
                    env,
                    "dump",
                    {"dsn": dsn, "path": str(path), "progress_path": meter.path(k), **request},
                    timeout=timeout,
                    idle=meter.idle(k),
                )
                for k, (path, request) in enumerate(zip(part_paths, requests, strict=True))
            ],
        )
        digest = hashlib.sha256()
        with open_private(partial, "wb") as out:
            for k, (path, result) in enumerate(zip(part_paths, results, strict=True)):
                with path.open("rb") as part:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                progress(f"part {k + 1}/{len(results)}: {result['records']} checkpoints")
        partial.replace(out_path)
    finally:
        for path in (*part_paths, partial):
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".partial").unlink(missing_ok=True)
    return results, digest.hexdigest()
