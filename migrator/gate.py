"""The ``upgrade-check`` flow: seed under the old version, read under the new, compare.

Steps (DESIGN.md "Flows"): provision → old env: ``setup()``, seed canaries,
snapshot (golden) → rolling-deploy check (new env reads before its ``setup()``)
→ new env: ``migrate``'s schema path (plan, ``setup()``, repairs: schema hazards
become findings with the repair applied) and, on a copy, a plain ``setup()`` (what
a deploy without the tool gets) → snapshot, compare → resume check (both envs continue
the paused canaries, on copies of the same data) → rollback check (old env reads
what the new env wrote) → ``Report``. Every database this creates is dropped at
the end, and a provisioned server is stopped.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from migrator import envs
from migrator.compare import Diff, compare_resumes, compare_snapshots
from migrator.config import CheckSettings
from migrator.errors import ConfigError, ConnectError, MigratorError, WorkerError
from migrator.policy import Policy, load_policy
from migrator.postgres import Server, provision, redact_dsn
from migrator.report import Check, Report
from migrator.serde.delta import attribute_semantics, delta_checks
from migrator.serde.strict import annotate_checks, for_env
from migrator.threads import copy_threads

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class _Run:
    """Mutable state of one check run: timings, databases to drop."""

    server: Server
    progress: Progress
    timings: dict[str, float] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)

    @contextmanager
    def step(self, name: str, message: str) -> Iterator[None]:
        self.progress(message)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    def dsn(self, dbname: str) -> str:
        return make_conninfo(self.server.dsn, dbname=dbname)

    def create_database(self, template: str | None = None) -> str:
        """A new database (optionally a copy of ``template``); dropped by ``cleanup``."""
        name = f"lgm_check_{uuid.uuid4().hex[:12]}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        try:
            with psycopg.connect(self.server.dsn, autocommit=True) as conn:
                conn.execute(query)
        except psycopg.Error as exc:
            raise ConnectError(
                f"could not create a scratch database on {redact_dsn(self.server.dsn)}: "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}",
                hint="the role needs CREATEDB, or let the tool provision a server (--pg auto)",
            ) from exc
        self.databases.append(name)
        return name

    def cleanup(self) -> None:
        try:
            with psycopg.connect(self.server.dsn, autocommit=True) as conn:
                for name in reversed(self.databases):
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
        except psycopg.Error:
            pass  # the server is going away, or the user's server keeps a stray scratch db


def seed_check(entry: Mapping[str, Any]) -> Check:
    """The ``seed`` check for one entry of the worker ``seed`` op's ``threads``."""
    status = {"seeded": "pass", "skipped": "skip"}.get(entry["status"], "fail")
    return Check(
        check="seed",
        status=status,  # type: ignore[arg-type]
        summary=entry.get("reason") or entry["status"],
        canary=entry["canary"],
    )


def _threads_request(
    seeded: list[Mapping[str, Any]], watched: tuple[str, ...]
) -> list[dict[str, Any]]:
    threads = [
        {"thread_id": t["thread_id"], "canary": t["canary"]}
        for t in seeded
        if t["status"] == "seeded"
    ]
    threads += [{"thread_id": tid, "canary": None} for tid in watched]
    return threads


def _thread_errors(snapshot: Mapping[str, Any]) -> dict[str, str]:
    """Thread id → first error message found when reading that thread, if any."""
    found: dict[str, str] = {}
    for tid, thread in snapshot.get("threads", {}).items():
        err = thread.get("error")
        if err:
            found[tid] = str(err.get("__error__", err))
            continue
        for cp in thread.get("checkpoints", []):
            if cp.get("error"):
                found[tid] = str(cp["error"].get("__error__", cp["error"]))
                break
    return found


def _diff_checks(
    check: str, diff: Diff, threads: list[dict[str, Any]], *, fail_status: str = "fail"
) -> list[Check]:
    """One check per thread from a ``Diff``: fail on breaking differences."""
    out: list[Check] = []
    for t in threads:
        tid = t["thread_id"]
        mine = [d for d in diff.differences if d.thread_id == tid]
        breaking = [d for d in mine if d.severity == "breaking"]
        benign = [d for d in mine if d.severity == "benign"]
        hazards = tuple(sorted({d.hazard for d in breaking if d.hazard}))
        if breaking:
            summary = f"{len(breaking)} breaking, {len(benign)} benign difference(s)"
            status = fail_status
        else:
            summary = f"unchanged ({len(benign)} benign difference(s))" if benign else "unchanged"
            status = "pass"
        out.append(
            Check(
                check=check,
                status=status,  # type: ignore[arg-type]
                summary=summary,
                canary=t["canary"],
                thread_id=None if t["canary"] else tid,
                hazards=hazards,
                differences=tuple(d.report_entry() for d in mine),
            )
        )
    return out


def _read_check(
    check: str,
    hazard: str,
    snapshot: Mapping[str, Any],
    threads: list[dict[str, Any]],
    explain: str,
) -> list[Check]:
    """Warn per thread that the given version could not read; pass otherwise."""
    errors = _thread_errors(snapshot)
    out = []
    for t in threads:
        err = errors.get(t["thread_id"])
        out.append(
            Check(
                check=check,
                status="warn" if err else "pass",
                summary=f"{explain}: {err}" if err else "readable",
                canary=t["canary"],
                thread_id=None if t["canary"] else t["thread_id"],
                hazards=(hazard,) if err else (),
            )
        )
    return out


def run_upgrade_check(settings: CheckSettings, *, progress: Progress = _quiet) -> Report:
    """Run the whole gate and return its report (the caller renders it and exits).

    Args:
        settings: versions, Postgres choice, canaries, threads, policy.
        progress: called with a one-line message as each step starts.

    Returns:
        The report; ``report.verdict == "fail"`` means the gate failed.

    Raises:
        ConfigError: bad specs, from == to, bad policy or canary module (exit 2).
        EnvironmentProblem: Postgres, env build or worker failures (exit 3).
    """
    old_vs = envs.parse_version_set(settings.from_spec)
    new_vs = envs.parse_version_set(settings.to_spec)
    if old_vs.key == new_vs.key:
        raise ConfigError(
            f"--from and --to resolve to the same version set ({old_vs.label}).",
            hint="name the version you deploy today as --from and the one you upgrade to as --to",
        )
    policy: Policy = load_policy(settings.pyproject, settings.policy_file)
    if settings.threads and not _threads_source(settings):
        raise ConfigError(
            "--thread needs the database that holds the thread.",
            hint="pass --threads-from DSN (or --pg DSN); threads are copied, never modified",
        )

    started = time.perf_counter()
    progress(f"provisioning Postgres ({settings.pg.provider})")
    server = provision(settings.pg.provider, settings.pg.major, settings.pg.dsn)
    run = _Run(server=server, progress=progress)
    run.timings["provision"] = time.perf_counter() - started
    try:
        return _check(run, settings, old_vs, new_vs, policy)
    finally:
        run.cleanup()
        server.stop()


def _threads_source(settings: CheckSettings) -> str | None:
    """The DSN watched threads are copied from: --threads-from, else a --pg DSN."""
    return settings.threads_from or (settings.pg.dsn if settings.pg.provider == "url" else None)


def _user_code_env(settings: CheckSettings) -> dict[str, str] | None:
    """Worker environment that puts the user's code (canaries) on the path, after ours.

    User canary modules are imported inside each version environment, from the
    directory the tool was started in (the app's checkout), after the worker code.
    """
    if not settings.user_canaries:
        return None
    search = [str(envs.worker_source_dir()), str(Path.cwd())]
    if os.environ.get("PYTHONPATH"):
        search.append(os.environ["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(search)}


def _worker_caller(settings: CheckSettings) -> Callable[..., dict[str, Any]]:
    """``run_worker`` with the timeout and, for user canaries, the user's code on the path."""
    extra = _user_code_env(settings)

    def call(env: envs.VersionEnv, op: str, request: dict[str, Any]) -> dict[str, Any]:
        return envs.run_worker(env, op, request, timeout=settings.worker_timeout, extra_env=extra)

    return call


def _strict_runner(settings: CheckSettings) -> Callable[..., dict[str, Any]]:
    """``run_worker`` for the new version's ops under a strict-msgpack rehearsal."""
    extra = _user_code_env(settings) or {}

    def run(
        env: envs.VersionEnv, op: str, request: dict[str, Any], env_vars: dict[str, str]
    ) -> Any:
        return envs.run_worker(
            env, op, request, timeout=settings.worker_timeout, extra_env={**extra, **env_vars}
        )

    return run


def _check(
    run: _Run,
    settings: CheckSettings,
    old_vs: envs.VersionSet,
    new_vs: envs.VersionSet,
    policy: Policy,
) -> Report:
    call = _worker_caller(settings)
    extra = _user_code_env(settings)
    with run.step("env_old", f"building old environment {old_vs.label}"):
        old_env = envs.ensure_env(old_vs, progress=run.progress)
        envs.prestart_worker(old_env, extra_env=extra)  # its imports overlap what follows
    with run.step("env_new", f"building new environment {new_vs.label}"):
        new_env = envs.ensure_env(new_vs, progress=run.progress)
        envs.prestart_worker(new_env, extra_env=extra)

    # The new version's ops run under --strict-msgpack / --allow-module when rehearsing.
    call = for_env(call, new_env, _strict_runner(settings))
    main_db = run.create_database()
    main = run.dsn(main_db)
    canary_request = {
        "canaries": list(settings.canaries) or None,
        "user_canaries": settings.user_canaries,
    }
    with run.step("seed", f"seeding canaries under {old_vs.label}"):
        call(old_env, "setup", {"dsn": main})
        if settings.threads:
            source = _threads_source(settings)
            assert source is not None  # checked before provisioning
            copy_threads(source, main, settings.threads)
        try:
            seeded = call(old_env, "seed", {"dsn": main, **canary_request})
        except WorkerError as exc:
            if exc.kind in ("CanaryConfigError", "ModuleNotFoundError", "ImportError"):
                raise ConfigError(
                    f"canary module {settings.user_canaries!r} could not be loaded: {exc.message}"
                ) from exc
            raise
    checks: list[Check] = [seed_check(t) for t in seeded["threads"]]
    threads = _threads_request(seeded["threads"], settings.threads)
    snap_request = {"threads": threads, "user_canaries": settings.user_canaries}

    with run.step("golden", f"snapshot (golden) under {old_vs.label}"):
        golden = call(old_env, "snapshot", {"dsn": main, **snap_request})
    # Copies taken before the new version touches anything.
    rolling_db = run.create_database(template=main_db)
    old_resume_db = run.create_database(template=main_db)
    fallback_db = run.create_database(template=main_db) if settings.fallback != "none" else None
    in_place_db = run.create_database(template=main_db)

    with run.step("rolling", f"rolling-deploy check: {new_vs.label} before its setup()"):
        rolling = call(new_env, "snapshot", {"dsn": run.dsn(rolling_db), **snap_request})
    checks += _read_check(
        "rolling-deploy",
        "H-READ-BEFORE-SETUP",
        rolling,
        threads,
        "new code cannot read this thread until its setup() has run; "
        "finish the migration before new pods serve",
    )

    with run.step("migrate", f"migrate's schema path under {new_vs.label}: plan, setup(), repair"):
        schema_checks, setup_new, schema_ids = _migrate_schema(run, settings, call, new_env, main)
    checks += schema_checks
    with run.step("in_place", f"plain setup() of {new_vs.label} on a copy (no migrate)"):
        checks += _in_place(call, new_env, run.dsn(in_place_db), snap_request, schema_ids)
    with run.step("snapshot_new", f"snapshot under {new_vs.label}"):
        after = call(new_env, "snapshot", {"dsn": main, **snap_request})
    drift = compare_snapshots(golden, after, policy=policy)
    checks += _diff_checks("drift", drift, threads)

    with run.step("resume", "resume check: continuing paused canaries in both versions"):
        resume_request = {
            "canaries": [t["canary"] for t in threads if t["canary"]],
            "user_canaries": settings.user_canaries,
        }
        resumed_new = call(new_env, "resume", {"dsn": main, **resume_request})
        resumed_old = call(old_env, "resume", {"dsn": run.dsn(old_resume_db), **resume_request})
    resume_diff = compare_resumes(resumed_old, resumed_new, policy=policy)
    # A canary with nothing to resume on either side is a skip, not a pass.
    old_outcome = {r["thread_id"]: r for r in resumed_old["threads"]}
    compared: list[dict[str, Any]] = []
    for r in resumed_new["threads"]:
        old = old_outcome.get(r["thread_id"], {})
        if r.get("outcome") == "skipped" and old.get("outcome") == "skipped":
            checks.append(
                Check(
                    check="resume",
                    status="skip",
                    summary=r.get("reason") or old.get("reason") or "nothing to resume",
                    canary=r.get("canary"),
                )
            )
        else:
            compared += [t for t in threads if t["thread_id"] == r["thread_id"]]
    checks += _diff_checks("resume", resume_diff, compared)

    broken = [c for c in checks if c.check in ("drift", "resume") and c.status == "fail"]
    if broken and fallback_db is not None:
        checks = _fallback(
            run,
            settings,
            call,
            old_env,
            new_env,
            fallback_db,
            checks,
            golden,
            resumed_old,
            policy,
            snap_request,
            resume_request,
            threads,
        )

    with run.step("rollback", f"rollback check: {old_vs.label} reads what the new version wrote"):
        rolled_back = call(old_env, "snapshot", {"dsn": main, **snap_request})
    checks += _read_check(
        "rollback",
        "H-ROLLBACK-NULL",
        rolled_back,
        threads,
        "the old version cannot read this thread after the new one wrote to it; "
        "rolling back the app breaks it",
    )

    notes = [
        f"new setup(): ledger v{setup_new.get('ledger_before')} -> v{setup_new.get('ledger_after')}"
    ]
    if any(c.check.startswith("fallback-") for c in checks):
        cured = all(c.status == "pass" for c in checks if c.check.startswith("fallback-"))
        notes.append(
            "the dump/restore fallback cures every breaking difference the in-place upgrade "
            "leaves: deploy with `migrate --fallback dump-restore`"
            + ("" if settings.accept_fallback else " (pass --accept-fallback to gate on that)")
            if cured
            else "the dump/restore fallback does not cure every breaking difference (see fallback)"
        )
    checks += delta_checks(main, golden.get("versions", {}), after.get("versions", {}))
    checks = attribute_semantics(
        checks, main, golden.get("versions", {}), after.get("versions", {})
    )
    checks = annotate_checks(checks, after, new_vs.label)
    return Report(
        command="upgrade-check",
        checks=tuple(checks),
        versions={"from": golden.get("versions", {}), "to": after.get("versions", {})},
        server={"provider": run.server.provider, "major": run.server.major},
        timings=run.timings,
        notes=tuple(notes),
    )


def _db_error(exc: WorkerError) -> bool:
    """A worker op failed on the database (a psycopg error), not on the environment."""
    import psycopg.errors

    return isinstance(getattr(psycopg.errors, exc.kind, None), type)


def _migrate_schema(
    run: _Run,
    settings: CheckSettings,
    call: Callable[..., dict[str, Any]],
    new_env: envs.VersionEnv,
    dsn: str,
) -> tuple[list[Check], dict[str, Any], tuple[str, ...]]:
    """What ``migrate`` does to the schema, through its own code path, on the gate's data.

    Schema hazards the plan finds (H-DUP-COLUMN, H-LEDGER-SHIFT, ...) become one
    ``schema`` finding (warn: ``migrate`` repairs them; fail: it would refuse), then
    ``migrate``'s ``setup`` and ``repair`` checks follow. A ``setup()`` that fails on
    the database is a failed check, never exit 3: the drift, resume, rolling-deploy
    and rollback checks still run.

    Returns:
        The checks, the ``setup`` details (ledger before/after) and the schema hazard ids.
    """
    from migrator.execute.rehearsal import rehearse_schema
    from migrator.plan import TargetInfo, make_plan

    target = TargetInfo.from_info(new_env.label, call(new_env, "info", {}))
    plan = make_plan(
        dsn,
        settings.to_spec,
        scratch_dsn=run.server.dsn,
        progress=run.progress,
        timeout=settings.worker_timeout,
        env_and_target=(new_env, target),
        from_spec=settings.from_spec,
    )
    found = [h for h in plan.hazards if not h.data and h.severity == "error"]
    ids = tuple(sorted({h.id for h in found}))
    checks: list[Check] = []
    text = "; ".join(f"{h.id}: {h.message}" for h in found)
    if plan.blocking:
        checks.append(
            Check(
                "schema",
                "fail",
                f"migrate would refuse to start: {text}",
                hazards=ids,
                details={"hazards": [h.to_dict() for h in found]},
            )
        )
        try:
            return checks, call(new_env, "setup", {"dsn": dsn}), ids
        except WorkerError as exc:
            if not _db_error(exc):
                raise
            checks.append(Check("setup", "fail", f"setup() failed: {exc.kind}: {exc.message}"))
            return checks, {}, ids
    if found:
        checks.append(
            Check(
                "schema",
                "warn",
                f"{len(found)} schema hazard(s), repaired by migrate: {text}",
                hazards=ids,
                details={"hazards": [h.to_dict() for h in found]},
            )
        )
    try:
        done = rehearse_schema(
            dsn, new_env, plan, progress=run.progress, worker_timeout=settings.worker_timeout
        )
    except MigratorError as exc:
        if isinstance(exc, WorkerError) and not _db_error(exc):
            raise
        checks.append(
            Check("setup", "fail", f"migrate's schema path failed: {exc.message}", hazards=ids)
        )
        return checks, {}, ids
    checks += done
    setup = next((dict(c.details or {}) for c in done if c.check == "setup"), {})
    return checks, setup, ids


def _in_place(
    call: Callable[..., dict[str, Any]],
    new_env: envs.VersionEnv,
    dsn: str,
    snap_request: dict[str, Any],
    schema_ids: tuple[str, ...],
) -> list[Check]:
    """What a team without this tool gets: the target's plain ``setup()``, then a read."""
    try:
        call(new_env, "setup", {"dsn": dsn})
    except WorkerError as exc:
        if not _db_error(exc):
            raise
        return [
            Check(
                "in-place",
                "warn",
                f"plain setup() fails: {exc.kind}: {exc.message.splitlines()[0]}; a deploy "
                "without `langgraph-migrator migrate` never completes (migrate handles it)",
                hazards=schema_ids,
            )
        ]
    errors = _thread_errors(call(new_env, "snapshot", {"dsn": dsn, **snap_request}))
    if errors:
        first = next(iter(errors.values()))
        return [
            Check(
                "in-place",
                "warn",
                f"plain setup() returns, but {len(errors)} thread(s) cannot be read ({first}); "
                "migrate repairs the schema",
                hazards=schema_ids or ("H-LEDGER-SHIFT",),
            )
        ]
    return [Check("in-place", "pass", "plain setup() works and every thread reads")]


def _fallback(
    run: _Run,
    settings: CheckSettings,
    call: Callable[..., dict[str, Any]],
    old_env: envs.VersionEnv,
    new_env: envs.VersionEnv,
    fallback_db: str,
    checks: list[Check],
    golden: dict[str, Any],
    resumed_old: dict[str, Any],
    policy: Policy,
    snap_request: dict[str, Any],
    resume_request: dict[str, Any],
    threads: list[dict[str, Any]],
) -> list[Check]:
    """Run dump/restore on a pristine copy, check it again, and say per canary if it cured.

    With ``--accept-fallback``, in-place failures the fallback cures become warnings.
    """
    from migrator.dumprestore import run_fallback

    dsn = run.dsn(fallback_db)
    with run.step("fallback", "fallback: dump with the old version, restore with the new"):
        with tempfile.TemporaryDirectory(prefix="lgm-fallback-") as work:
            run_fallback(
                dsn,
                old_env,
                new_env,
                work_dir=Path(work),
                transform="task-id",
                progress=run.progress,
                extra_env=_user_code_env(settings),
            )
        fb_snap = call(new_env, "snapshot", {"dsn": dsn, **snap_request})
        fb_resumed = call(new_env, "resume", {"dsn": dsn, **resume_request})
    fb_drift = _diff_checks("drift", compare_snapshots(golden, fb_snap, policy=policy), threads)
    resumed_ids = {r["thread_id"] for r in fb_resumed["threads"] if r.get("outcome") != "skipped"}
    fb_resume = _diff_checks(
        "resume",
        compare_resumes(resumed_old, fb_resumed, policy=policy),
        [t for t in threads if t["thread_id"] in resumed_ids],
    )
    after = {(c.check, c.canary or c.thread_id): c for c in fb_drift + fb_resume}
    out: list[Check] = []
    verdicts: list[Check] = []
    for c in checks:
        key = (c.check, c.canary or c.thread_id)
        if c.check in ("drift", "resume") and c.status == "fail":
            again = after.get(key)
            cured = again is not None and again.status == "pass"
            verdicts.append(
                Check(
                    check=f"fallback-{c.check}",
                    status="pass" if cured else "fail",
                    summary=(
                        f"cured by dump/restore ({len(c.differences)} difference(s) "
                        "before, none breaking after)"
                        if cured
                        else f"still {again.summary if again else 'not checked'} after dump/restore"
                    ),
                    canary=c.canary,
                    thread_id=c.thread_id,
                    hazards=c.hazards,
                    differences=() if cured or again is None else again.differences,
                )
            )
            if cured and settings.accept_fallback:
                c = Check(
                    check=c.check,
                    status="warn",
                    summary=f"{c.summary}; cured by the dump/restore fallback",
                    canary=c.canary,
                    thread_id=c.thread_id,
                    hazards=c.hazards,
                    differences=c.differences,
                    details=c.details,
                )
        out.append(c)
    return out + verdicts
