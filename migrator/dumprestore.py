"""Logical dump/restore: the fallback when an in-place ``setup()`` upgrade is not safe.

Dump (worker op ``dump`` in the OLD env) reads every thread through the old
saver's public API into a gzip JSON-lines file plus a manifest
(``<dump>.manifest.json``: counts per thread, type inventory, sha256). Restore
(worker op ``restore`` in the NEW env) rebuilds the tables with the new
``setup()`` in a shadow schema, writes through the new saver (ids, parents,
channel versions and metadata preserved), optionally transforms, verifies, and
swaps the shadow in atomically; the live tables move to
``langgraph_migrator_old_<ts>`` until :func:`cleanup`. See ``docs/dump-restore.md``.

The dump is verified (sha256, size, format) and its types checked against the
allowlist before anything is written; every failure after that leaves the live
tables untouched (the shadow schema is dropped).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from migrator import envs
from migrator.dump_manifest import (
    DumpManifest,
    DumpSet,
    disallowed_types,
    load_dump_set,
    manifest_path,
    merge_parts,
    sub_shards,
    swap_refusal,
)
from migrator.errors import (
    ConfigError,
    ConnectError,
    MigrationError,
    MigratorError,
    VerificationError,
    WorkerError,
)
from migrator.lock import advisory_lock, migrator_lock
from migrator.partprogress import PartProgress
from migrator.postgres import redact_dsn
from migrator.worker.privatefiles import open_private, write_private

Progress = Callable[[str], None]

T = TypeVar("T")
#: Default seconds a dump or restore worker may make no progress (no fixed limit).
IDLE_TIMEOUT_S = 900.0
SHADOW_PREFIX = "langgraph_migrator_shadow_"
OLD_PREFIX = "langgraph_migrator_old_"
#: Tables a swap moves, when present.
SWAP_TABLES = ("checkpoint_migrations", "checkpoints", "checkpoint_blobs", "checkpoint_writes")
BUILTIN_TRANSFORMS = ("task-id",)
WRITE_MODES = ("bulk", "put")
VERIFY_MODES = ("full", "sample")
#: The ledger's ``backups.kind`` for a kept old-tables or shadow schema.
LEDGER_KIND = "shadow-tables"

CREATE_SCHEMA_SQL = "CREATE SCHEMA {}"
DROP_SCHEMA_SQL = "DROP SCHEMA IF EXISTS {} CASCADE"
LIST_TOOL_SCHEMAS_SQL = (
    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'langgraph\\_migrator\\_old\\_%'"
    " OR nspname LIKE 'langgraph\\_migrator\\_shadow\\_%' ORDER BY nspname"
)
TABLES_IN_SCHEMA_SQL = (
    "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename = ANY(%s)"
)
MOVE_TABLE_SQL = "ALTER TABLE {}.{} SET SCHEMA {}"
LOCK_TIMEOUT_SQL = "SET LOCAL lock_timeout = '10s'"
THREAD_COUNTS_SQL = (
    "SELECT thread_id, count(*) AS n FROM {}.checkpoints GROUP BY thread_id ORDER BY thread_id"
)
WRITE_COUNTS_SQL = "SELECT thread_id, count(*) AS n FROM {}.checkpoint_writes GROUP BY thread_id"


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class RestoreResult:
    """Outcome of a restore.

    Attributes:
        threads: Per thread: ``checkpoints``, ``writes`` written (or that would be).
        changes: What the transforms changed (``old -> new`` lines).
        uncured: Threads the task-id transform could not be applied to, and why
            (no graph of the app profile matches them): listed, never skipped silently.
        dry_run: Nothing was written.
        swapped: The shadow tables are live now.
        shadow_schema: The schema the restore wrote to (gone after a swap).
        old_schema: Where the previous live tables went (until :func:`cleanup`).
        versions: The versions that restored.
        seconds: Wall time.
        write_mode: ``bulk`` or ``put`` (how the rows were written).
        timings: Seconds per phase (``worker`` and its ``worker_*`` parts,
            ``counts_and_swap``, ``ledger``).
        verified: ``{"mode", "threads", "of"}``: threads read back and compared.
    """

    threads: dict[str, dict[str, int]]
    changes: tuple[str, ...] = ()
    uncured: tuple[str, ...] = ()
    dry_run: bool = False
    swapped: bool = False
    shadow_schema: str | None = None
    old_schema: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    write_mode: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    verified: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "write_mode": self.write_mode,
            "timings": self.timings,
            "verified": self.verified,
            "threads": self.threads,
            "changes": list(self.changes),
            "uncured": list(self.uncured),
            "dry_run": self.dry_run,
            "swapped": self.swapped,
            "shadow_schema": self.shadow_schema,
            "old_schema": self.old_schema,
            "versions": self.versions,
            "seconds": round(self.seconds, 3),
        }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connect(dsn: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise ConnectError(f"cannot connect to {redact_dsn(dsn)}: {_first_line(exc)}") from exc


# --------------------------------------------------------------------------- dump


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
            (:mod:`migrator.partprogress`; a long run is not cut off).

    Returns:
        The manifest, also written to ``<out_path>.manifest.json``.

    Raises:
        ConfigError: ``out_path`` exists or its directory does not; ``jobs`` < 1.
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


def run_parallel(jobs: int, calls: Sequence[Callable[..., T]]) -> list[T]:
    """``call(cancel=event)`` for each call, ``jobs`` at a time; the results in order.

    The first call that fails (or an interrupt of the caller) stops the rest:
    calls not started are dropped, running ones see ``event`` set (a worker's
    process group is killed, :func:`migrator.envs.run_worker`), and that first
    failure is raised once they have all stopped.
    """
    stop = threading.Event()
    results: dict[int, T] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(call, cancel=stop): i for i, call in enumerate(calls)}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [results[i] for i in range(len(calls))]


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


# --------------------------------------------------------------------------- restore


def _execute(dsn: str, query: sql.Composed) -> None:
    with _connect(dsn) as conn:
        conn.execute(query)


def restore_dump(
    dsn: str,
    env: envs.VersionEnv,
    dump_path: Path | Sequence[Path],
    *,
    transform: str | None = None,
    graph: str | None = None,
    allow_types: Iterable[str] = (),
    dry_run: bool = False,
    swap: bool = True,
    schema: str = "public",
    progress: Progress = _quiet,
    timeout: float = IDLE_TIMEOUT_S,
    lock_wait: float = 60.0,
    lock_held: bool = False,
    extra_env: dict[str, str] | None = None,
    write_mode: str = "bulk",
    jobs: int = 1,
    verify: str = "full",
) -> RestoreResult:
    """Restore a dump through ``env``'s saver into a shadow schema, verify, swap.

    Args:
        dsn: The database to restore into.
        env: The version environment to write with (the NEW one).
        dump_path: A dump made by :func:`dump_threads` (its manifest beside it),
            or the dumps of every shard (``dump --shard i/N``), restored together.
        transform: ``"task-id"`` (built-in, H-TASK-ID), ``"module:function"``
            (applied per checkpoint), ``"task-id,module:function"`` or None.
        graph: ``module:attr`` of the application graph, for ``task-id``
            (canary threads use the canaries' graphs).
        allow_types: Classes (``module.Qualname``) the dump may contain beyond the
            built-in ones (messages, Send, Interrupt).
        dry_run: Decode and transform only; report what would change; write nothing.
        swap: Swap the shadow in (False: leave it for inspection).
        schema: The live schema holding the checkpoint tables.
        progress: One-line progress messages.
        timeout: Seconds a worker may go without progress before it is killed
            (:mod:`migrator.partprogress`; a long run is not cut off).
        lock_wait: Seconds to wait for another migrator.
        lock_held: The caller holds the migrator lock (``migrate``'s fallback).
        extra_env: Extra environment for the worker (e.g. ``PYTHONPATH`` for the
            transform's module).
        write_mode: ``"bulk"``: the new saver's ``put``/``put_writes`` produce the
            rows, which are loaded with COPY (falls back to ``"put"`` where the
            saver has no ``_cursor``); ``"put"``: every call goes to the database.
            Both write the same rows.
        jobs: Restore workers at once, each on its own parts of the dump(s)
            (a dump has as many parts as ``dump --jobs``; shard dumps one each).
        verify: ``"full"``: every restored checkpoint is read back through the
            new saver and compared with the dump; ``"sample"``: only threads
            holding a type or tag not read back yet, threads a transform
            changed, and about 1 in 20 of the others (counts are always checked).

    Returns:
        What was restored, changed, and where the old tables went.

    Raises:
        ConfigError: corrupt/tampered dump, types outside the allowlist, bad
            transform spec, dumps that do not fit together, a swap of only some
            threads (missing shards, ``--thread`` dumps) (exit 2); nothing written.
        MigrationError: the restore failed after the shadow schema was created;
            it was dropped and the live tables are untouched (exit 5).
        VerificationError: the restored data reads back differently (exit 1);
            nothing swapped.
        LockTimeoutError: another migrator holds the lock (exit 4).
    """
    started = time.perf_counter()
    if write_mode not in WRITE_MODES:
        raise ConfigError(
            f"write mode {write_mode!r} is not one of {', '.join(WRITE_MODES)}.",
            hint="use bulk (default) or put",
        )
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs} is not a positive number.", hint="e.g. --jobs 2")
    if verify not in VERIFY_MODES:
        raise ConfigError(
            f"verify mode {verify!r} is not one of {', '.join(VERIFY_MODES)}.",
            hint="use full (default) or sample",
        )
    paths = [dump_path] if isinstance(dump_path, (str, Path)) else list(dump_path)
    dumps = load_dump_set([Path(p) for p in paths])
    task_id, user = _split_transform(transform)
    if dumps.errors:
        shown = "; ".join(dumps.errors[:5])
        raise ConfigError(
            f"the dump holds {len(dumps.errors)} value(s) the old version could not read: {shown}.",
            hint="fix or delete those threads in the source database and dump again",
        )
    refused = disallowed_types(dumps.types, allow_types)
    if refused:
        raise ConfigError(
            f"the dump contains types outside the allowlist: {', '.join(refused)}.",
            hint="review them, then pass --allow-type CLASS for each (or --allow-file FILE)",
        )
    refusal = swap_refusal(dumps) if swap and not dry_run else None
    if refusal:
        raise ConfigError(
            f"refusing to swap: {refusal}, and the swap would hide every other thread; "
            "nothing was written.",
            hint="restore every shard's dump together, or pass --no-swap",
        )
    request: dict[str, Any] = {
        "dsn": dsn,
        "allow_types": sorted(set(allow_types)),
        "transform": user,
        "task_id": task_id,
        "graph": graph,
        "dry_run": dry_run,
        "write_mode": write_mode,
        "verify": verify,
    }
    runner = _PartRunner(env, request, dumps, jobs, timeout, extra_env, dsn, progress)
    if dry_run:
        progress(f"dry run: decoding and transforming with {env.label}")
        result = runner.run(shadow=None)
        return RestoreResult(
            threads=result["threads"],
            changes=tuple(result["changes"]),
            uncured=tuple(result.get("uncured", ())),
            dry_run=True,
            versions=result.get("versions", {}),
            seconds=time.perf_counter() - started,
        )
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + f"{int(time.time() * 1000) % 1000:03d}"
    shadow = f"{SHADOW_PREFIX}{stamp}"
    with migrator_lock(dsn, wait=lock_wait, held=lock_held):
        _execute(dsn, sql.SQL(CREATE_SCHEMA_SQL).format(sql.Identifier(shadow)))
        try:
            progress(f"restoring into shadow schema {shadow} with {env.label}")
            phase = time.perf_counter()
            result = runner.run(shadow=shadow)
            timings = {f"worker_{k}": float(v) for k, v in (result.get("timings") or {}).items()}
            timings["worker"] = time.perf_counter() - phase
            phase = time.perf_counter()
            _check_counts(dsn, shadow, dumps.threads)
            old_schema = None
            if swap:
                progress(f"swapping {shadow} in; live tables move to {OLD_PREFIX}{stamp}")
                old_schema = _swap(dsn, shadow, schema, f"{OLD_PREFIX}{stamp}")
            timings["counts_and_swap"] = time.perf_counter() - phase
        except BaseException:
            _execute(dsn, sql.SQL(DROP_SCHEMA_SQL).format(sql.Identifier(shadow)))
            raise
        phase = time.perf_counter()
        _record_backup(
            dsn,
            old_schema or shadow,
            dumps,
            status="kept" if old_schema else "unswapped",
            details={
                "role": "old-tables" if old_schema else "shadow",
                "shadow_schema": shadow,
                "old_schema": old_schema,
                "live_schema": schema,
                "dump": ", ".join(m.path.name for m in dumps.manifests),
                "threads": len(dumps.threads),
                "checkpoints": dumps.records,
                "write_mode": result.get("write_mode"),
                "jobs": runner.jobs,
                "versions": result.get("versions", {}),
            },
            progress=progress,
        )
        timings["ledger"] = time.perf_counter() - phase
    return RestoreResult(
        threads=result["threads"],
        changes=tuple(result["changes"]),
        uncured=tuple(result.get("uncured", ())),
        swapped=swap,
        shadow_schema=shadow,
        old_schema=old_schema,
        versions=result.get("versions", {}),
        seconds=time.perf_counter() - started,
        write_mode=str(result.get("write_mode") or write_mode),
        timings={k: round(v, 3) for k, v in timings.items()},
        verified=dict(result.get("verified") or {}),
    )


class _PartRunner:
    """Runs the restore worker on every part of a dump set, ``jobs`` at a time.

    The workers share one shadow schema; each runs the new version's ``setup()``
    there under a schema-keyed advisory lock, so the first builds the tables and
    the others find nothing to do (concurrent ``setup()`` calls race: H-SETUP-RACE).
    The first part that fails (or an interrupt) stops the others: parts not
    started are cancelled, running workers are killed, and that failure is raised.
    """

    def __init__(
        self,
        env: envs.VersionEnv,
        request: dict[str, Any],
        dumps: DumpSet,
        jobs: int,
        timeout: float,
        extra_env: dict[str, str] | None,
        dsn: str,
        progress: Progress,
    ) -> None:
        self.env, self.request, self.dumps = env, request, dumps
        self.parts = dumps.parts
        self.jobs = max(1, min(jobs, len(self.parts)))
        self.timeout, self.extra_env, self.dsn, self.progress = timeout, extra_env, dsn, progress

    def run(self, *, shadow: str | None) -> dict[str, Any]:
        """Every part's worker result, merged (the first failure is raised)."""
        requests = [
            {
                **self.request,
                "path": str(manifest.path),
                "offset": part.offset,
                "length": part.size,
                **({"schema": shadow} if shadow is not None else {}),
            }
            for manifest, part in self.parts
        ]
        if len(requests) > 1:
            self.progress(f"{len(requests)} parts, {self.jobs} worker(s) at once")
        what = "restore" if shadow is not None else "dry run"
        threads = len(self.dumps.threads)
        with PartProgress(what, len(requests), self.progress, threads=threads) as meter:
            calls = [
                functools.partial(
                    self._one, {**r, "progress_path": meter.path(k)}, shadow, meter, k
                )
                for k, r in enumerate(requests)
            ]
            return _merged(run_parallel(self.jobs, calls))

    def _one(
        self,
        request: dict[str, Any],
        shadow: str | None,
        meter: PartProgress,
        part: int,
        *,
        cancel: threading.Event,
    ) -> dict[str, Any]:
        return _run_restore(
            self.env,
            request,
            self.timeout,
            self.extra_env,
            shadow=shadow,
            dsn=self.dsn,
            cancel=cancel,
            idle=meter.idle(part),
        )


def _merged(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One restore result from the parts' (threads are disjoint; timings summed)."""
    timings: dict[str, float] = {}
    for result in results:
        for key, value in (result.get("timings") or {}).items():
            timings[key] = round(timings.get(key, 0.0) + float(value), 3)
    first = results[0]
    return {
        "threads": {t: c for r in results for t, c in r["threads"].items()},
        "changes": [c for r in results for c in r["changes"]],
        "uncured": [c for r in results for c in r.get("uncured", ())],
        "problems": [p for r in results for p in r.get("problems", [])],
        "write_mode": first.get("write_mode"),
        "versions": first.get("versions", {}),
        "timings": timings,
        "verified": {
            "mode": (first.get("verified") or {}).get("mode"),
            "threads": sum(int((r.get("verified") or {}).get("threads", 0)) for r in results),
            "of": sum(int((r.get("verified") or {}).get("of", 0)) for r in results),
        },
    }


def _split_transform(spec: str | None) -> tuple[bool, str | None]:
    task_id = False
    user: str | None = None
    for part in (p.strip() for p in (spec or "").split(",") if p.strip()):
        if part in BUILTIN_TRANSFORMS:
            task_id = True
        elif ":" in part and user is None:
            user = part
        else:
            raise ConfigError(
                f"transform {part!r} is neither a built-in ({', '.join(BUILTIN_TRANSFORMS)}) "
                "nor module:function (at most one).",
                hint="e.g. --transform task-id or --transform myapp.migrations:fix",
            )
    return task_id, user


_CONFIG_KINDS = ("DisallowedTypeError", "DumpFormatError", "ModuleNotFoundError", "ImportError")


def _run_restore(
    env: envs.VersionEnv,
    request: dict[str, Any],
    timeout: float,
    extra_env: dict[str, str] | None,
    *,
    shadow: str | None,
    dsn: str,
    cancel: threading.Event | None = None,
    idle: Callable[[], float] | None = None,
) -> dict[str, Any]:
    try:
        result = envs.run_worker(
            env,
            "restore",
            request,
            timeout=timeout,
            extra_env=extra_env,
            cancel=cancel,
            idle=idle,
        )
    except WorkerError as exc:
        where = "" if shadow is None else "; the shadow schema was dropped, live tables untouched"
        if exc.kind in _CONFIG_KINDS or (
            exc.kind == "TransformError" and "cannot import" in exc.message
        ):
            raise ConfigError(f"restore refused: {exc.message}{where}.") from exc
        raise MigrationError(
            f"restore failed in {env.label}: {exc.message}{where}.",
            hint="fix the transform or the data and run restore again (safe)",
        ) from exc
    if result.get("problems"):
        shown = "; ".join(result["problems"][:5])
        raise VerificationError(
            f"{len(result['problems'])} checkpoint(s) read back differently after restore to "
            f"{redact_dsn(dsn)}: {shown}; nothing was swapped.",
            hint="report this with the dump's manifest",
        )
    return result


def _check_counts(dsn: str, shadow: str, threads: dict[str, dict[str, int]]) -> None:
    """Checkpoints and writes per thread in the shadow equal the dumps' manifests."""
    with _connect(dsn) as conn:
        cps = dict(
            conn.execute(sql.SQL(THREAD_COUNTS_SQL).format(sql.Identifier(shadow))).fetchall()
        )
        wrs = dict(
            conn.execute(sql.SQL(WRITE_COUNTS_SQL).format(sql.Identifier(shadow))).fetchall()
        )
    problems = []
    for tid, counts in threads.items():
        if cps.get(tid, 0) != counts["checkpoints"]:
            problems.append(
                f"{tid}: {cps.get(tid, 0)} checkpoints, dump has {counts['checkpoints']}"
            )
        if wrs.get(tid, 0) != counts["writes"]:
            problems.append(f"{tid}: {wrs.get(tid, 0)} writes, dump has {counts['writes']}")
    extra = sorted(set(cps) - set(threads))
    if extra:
        problems.append(f"threads not in the dump: {', '.join(extra[:5])}")
    if problems:
        raise VerificationError(
            f"restored counts differ from the dump's manifest: {'; '.join(problems[:5])}; "
            "nothing was swapped.",
            hint="the dump and its manifest disagree: dump again",
        )


def _swap(dsn: str, shadow: str, live: str, old: str) -> str:
    """One transaction: live checkpoint tables -> ``old``, shadow tables -> ``live``."""
    try:
        with psycopg.connect(dsn) as conn, conn.transaction():
            conn.execute(LOCK_TIMEOUT_SQL)
            conn.execute(sql.SQL(CREATE_SCHEMA_SQL).format(sql.Identifier(old)))
            present = [
                r[0]
                for r in conn.execute(TABLES_IN_SCHEMA_SQL, (live, list(SWAP_TABLES))).fetchall()
            ]
            for table in present:
                conn.execute(
                    sql.SQL(MOVE_TABLE_SQL).format(
                        sql.Identifier(live), sql.Identifier(table), sql.Identifier(old)
                    )
                )
            shadow_tables = [
                r[0]
                for r in conn.execute(TABLES_IN_SCHEMA_SQL, (shadow, list(SWAP_TABLES))).fetchall()
            ]
            for table in shadow_tables:
                conn.execute(
                    sql.SQL(MOVE_TABLE_SQL).format(
                        sql.Identifier(shadow), sql.Identifier(table), sql.Identifier(live)
                    )
                )
            conn.execute(sql.SQL(DROP_SCHEMA_SQL).format(sql.Identifier(shadow)))
    except psycopg.Error as exc:
        raise MigrationError(
            f"swap failed on {redact_dsn(dsn)}: {_first_line(exc)}; rolled back, live tables "
            "untouched.",
            hint="if a lock timed out, stop the app's writers briefly and run restore again",
        ) from exc
    return old


def _record_backup(
    dsn: str,
    location: str,
    dumps: DumpSet,
    *,
    status: str,
    details: dict[str, Any],
    progress: Progress,
) -> None:
    """Record the kept schema in the tool's ledger (caller holds the migrator lock).

    The swap is done and verified by now: a ledger failure is reported, not raised.
    """
    from migrator import ledger

    try:
        ledger.upgrade_ledger(dsn)
        ledger.record_backup(
            dsn,
            LEDGER_KIND,
            location,
            dumps.manifests[0].to_dict()
            if len(dumps.manifests) == 1
            else {"dumps": [m.to_dict() for m in dumps.manifests]},
            status=status,
            details=details,
        )
    except (MigratorError, psycopg.Error, ValueError) as exc:
        progress(f"schema {location} not recorded in the ledger: {_first_line(exc)}")


def cleanup(dsn: str, *, lock_wait: float = 60.0) -> list[str]:
    """Drop the old tables a restore kept (and leftover shadow schemas).

    The schemas are those the ledger records (kind ``shadow-tables``) and any
    other ``langgraph_migrator_old_*``/``langgraph_migrator_shadow_*`` schema;
    recorded ones are marked ``deleted``.

    Returns:
        The schemas dropped.
    """
    from migrator import ledger

    recorded = [
        b
        for b in ledger.list_backups(dsn)
        if b.kind == LEDGER_KIND and b.status != "deleted" and _is_tool_schema(b.location)
    ]
    with advisory_lock(dsn, wait=lock_wait), _connect(dsn) as conn:
        present = {r[0] for r in conn.execute(LIST_TOOL_SCHEMAS_SQL).fetchall()}
        names = sorted(present | {b.location for b in recorded})
        for name in names:
            conn.execute(sql.SQL(DROP_SCHEMA_SQL).format(sql.Identifier(name)))
        for b in recorded:
            ledger.set_backup_status(dsn, b.id, "deleted")
    return [n for n in names if n in present]


def _is_tool_schema(name: str) -> bool:
    return name.startswith((OLD_PREFIX, SHADOW_PREFIX))


# --------------------------------------------------------------------------- fallback


def default_jobs() -> int:
    """Workers for the fallback's dump and restore: the cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def run_fallback(
    dsn: str,
    old_env: envs.VersionEnv,
    new_env: envs.VersionEnv,
    *,
    work_dir: Path,
    transform: str | None = "task-id",
    graph: str | None = None,
    allow_types: Iterable[str] | None = None,
    progress: Progress = _quiet,
    extra_env: dict[str, str] | None = None,
    jobs: int | None = None,
    lock_held: bool = False,
) -> RestoreResult:
    """Dump with ``old_env``, restore with ``new_env`` (+ transform), verify, swap.

    Args:
        dsn: The database (the gate's check database, or a real one).
        old_env: The environment that wrote the data.
        new_env: The environment to upgrade to.
        work_dir: Where the dump goes (an existing directory).
        transform: As for :func:`restore_dump`; default the H-TASK-ID cure.
        graph: The application graph for ``task-id`` (canaries need none).
        allow_types: Classes to allow; None allows the dump's own inventory
            (the caller vouches for the source database).
        progress: One-line progress messages.
        extra_env: Extra worker environment (user modules on ``PYTHONPATH``).
        jobs: Dump and restore workers at once (default :func:`default_jobs`).
        lock_held: The caller holds the migrator lock (``migrate``): the restore
            does not take it again.

    Returns:
        The restore result.
    """
    jobs = default_jobs() if jobs is None else jobs
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    dump = Path(work_dir) / f"fallback-{stamp}-{int(time.time() * 1e6) % 1_000_000}.lgdump"
    manifest = dump_threads(dsn, old_env, dump, jobs=jobs, progress=progress)
    allowed = list(manifest.types) if allow_types is None else list(allow_types)
    return restore_dump(
        dsn,
        new_env,
        dump,
        transform=transform,
        graph=graph,
        allow_types=allowed,
        progress=progress,
        extra_env=extra_env,
        jobs=jobs,
        lock_held=lock_held,
    )
