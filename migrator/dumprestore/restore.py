"""Restore: verify the dump(s), write through the new saver into a shadow schema, verify, swap;
``cleanup`` drops what a restore kept.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from migrator import envs
from migrator.dumprestore.common import (
    BUILTIN_TRANSFORMS,
    CREATE_SCHEMA_SQL,
    DROP_SCHEMA_SQL,
    IDLE_TIMEOUT_S,
    LEDGER_KIND,
    LIST_TOOL_SCHEMAS_SQL,
    OLD_PREFIX,
    PRE_MIGRATE_PREFIX,
    SHADOW_PREFIX,
    SWAP_TABLES,
    THREAD_COUNTS_SQL,
    VERIFY_MODES,
    WRITE_COUNTS_SQL,
    WRITE_MODES,
    Progress,
    RestoreResult,
    _connect,
    _first_line,
    _quiet,
    run_parallel,
)
from migrator.dumprestore.manifest import (
    DumpSet,
    disallowed_types,
    load_dump_set,
    swap_refusal,
)
from migrator.errors import (
    AppCodeError,
    ConfigError,
    ConnectError,
    MigrationError,
    MigratorError,
    VerificationError,
    WorkerError,
)
from migrator.lock import advisory_lock, migrator_lock
from migrator.output.progress import PartProgress
from migrator.postgres import redact_dsn
from migrator.postgres.capacity import cap_jobs, server_capacity
from migrator.swap import schema_stamp, swap_tables

#: Connections one restore worker holds at once (``migrator.worker.op_restore``: the
#: writer and the read-back; the ``setup()`` connection is closed before they open).
CONNECTIONS_PER_WORKER = 2


def _execute(dsn: str, query: sql.Composed) -> None:
    with _connect(dsn) as conn:
        try:
            conn.execute(query)
        except psycopg.errors.InsufficientPrivilege as exc:  # was exit 70 with a traceback
            raise ConnectError(
                f"restore on {redact_dsn(dsn)}: {_first_line(exc)}; nothing was written.",
                hint="restore writes into a new shadow schema: it needs CREATE on the database",
            ) from exc


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
            (:mod:`migrator.output.progress`; a long run is not cut off).
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
            hint="review them, then allow each: --allow-type CLASS, a line in --allow-file "
            "FILE, or allow_types in [tool.langgraph-migrator.app] for your app's own classes",
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
    if jobs > 1 and not dry_run:  # no more workers than parts, nor connections than spare
        jobs = _cap_jobs(dsn, jobs, len(dumps.parts), progress)
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
    stamp = schema_stamp()
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
                old_schema = _swap(dsn, shadow, schema, f"{OLD_PREFIX}{stamp}", progress)
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
                # What `plan` reads to know the stored threads' task ids were cured.
                "task_id": task_id,
                "uncured": len(result.get("uncured", ())),
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


def _cap_jobs(dsn: str, jobs: int, parts: int, progress: Progress) -> int:
    """``jobs`` capped by the dump's parts and the server's free connections, with a note.

    ``restore --jobs 300`` started a worker per part, two connections each, however
    few connections the server had left (issue 12 #14; ``dump`` and ``backup`` cap too).
    """
    with _connect(dsn) as conn:
        capacity = server_capacity(conn)
    capped, note = cap_jobs(
        jobs,
        capacity=capacity,
        per_job=CONNECTIONS_PER_WORKER,
        work=parts,
        work_name="dump part(s)",
    )
    if note:
        progress(f"note: {note}")
    return capped


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
        if isinstance(exc, AppCodeError):  # the app's key or code: exit 2, with its own hint
            raise ConfigError(f"restore refused: {exc.message}{where}.", hint=exc.hint) from exc
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


def _swap(dsn: str, shadow: str, live: str, old: str, progress: Progress = _quiet) -> str:
    """One transaction: live checkpoint tables -> ``old``, shadow tables -> ``live``.

    Every table is locked at once with a short lock timeout and retries
    (:func:`migrator.swap.swap_tables`); the blocking window goes to ``progress``.
    """
    try:
        result = swap_tables(dsn, shadow, live, old, SWAP_TABLES, progress=progress)
    except psycopg.Error as exc:
        raise MigrationError(
            f"swap failed on {redact_dsn(dsn)}: {_first_line(exc)}; rolled back, live tables "
            "untouched.",
            hint="if a lock timed out, stop the app's writers briefly and run restore again",
        ) from exc
    progress(result.summary())
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
    other ``langgraph_migrator_old_*``/``langgraph_migrator_shadow_*`` schema, and
    the ``lgm_premigrate_*`` schema a ``migrate`` killed in its fallback left;
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
    return name.startswith((OLD_PREFIX, SHADOW_PREFIX, PRE_MIGRATE_PREFIX))
