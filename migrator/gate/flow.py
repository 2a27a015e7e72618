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

import time
from typing import Any

from migrator import envs
from migrator.compare import compare_resumes, compare_snapshots
from migrator.config import CheckSettings
from migrator.errors import ConfigError, WorkerError
from migrator.gate.checks import diff_checks, read_check, seed_check, threads_request
from migrator.gate.fallback import fallback
from migrator.gate.schema import in_place, migrate_schema
from migrator.gate.scratch import Progress, Run
from migrator.gate.workers import strict_runner, user_code_env, worker_caller
from migrator.policy import Policy, load_policy
from migrator.postgres import provision
from migrator.report import Check, Report
from migrator.serde.delta import attribute_semantics, delta_checks
from migrator.serde.strict import annotate_checks, for_env
from migrator.threads import copy_threads


def _quiet(_: str) -> None:
    return None


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
    run = Run(server=server, progress=progress)
    run.timings["provision"] = time.perf_counter() - started
    try:
        return _check(run, settings, old_vs, new_vs, policy)
    finally:
        run.cleanup()
        server.stop()


def _threads_source(settings: CheckSettings) -> str | None:
    """The DSN watched threads are copied from: --threads-from, else a --pg DSN."""
    return settings.threads_from or (settings.pg.dsn if settings.pg.provider == "url" else None)


def _check(
    run: Run,
    settings: CheckSettings,
    old_vs: envs.VersionSet,
    new_vs: envs.VersionSet,
    policy: Policy,
) -> Report:
    call = worker_caller(settings)
    extra = user_code_env(settings)
    with run.step("env_old", f"building old environment {old_vs.label}"):
        old_env = envs.ensure_env(old_vs, progress=run.progress)
        envs.prestart_worker(old_env, extra_env=extra)  # its imports overlap what follows
    with run.step("env_new", f"building new environment {new_vs.label}"):
        new_env = envs.ensure_env(new_vs, progress=run.progress)
        envs.prestart_worker(new_env, extra_env=extra)

    # The new version's ops run under --strict-msgpack / --allow-module when rehearsing.
    call = for_env(call, new_env, strict_runner(settings))
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
    threads = threads_request(seeded["threads"], settings.threads)
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
    checks += read_check(
        "rolling-deploy",
        "H-READ-BEFORE-SETUP",
        rolling,
        threads,
        "new code cannot read this thread until its setup() has run; "
        "finish the migration before new pods serve",
    )

    with run.step("migrate", f"migrate's schema path under {new_vs.label}: plan, setup(), repair"):
        schema_checks, setup_new, schema_ids = migrate_schema(run, settings, call, new_env, main)
    checks += schema_checks
    with run.step("in_place", f"plain setup() of {new_vs.label} on a copy (no migrate)"):
        checks += in_place(call, new_env, run.dsn(in_place_db), snap_request, schema_ids)
    with run.step("snapshot_new", f"snapshot under {new_vs.label}"):
        after = call(new_env, "snapshot", {"dsn": main, **snap_request})
    drift = compare_snapshots(golden, after, policy=policy)
    checks += diff_checks("drift", drift, threads)

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
    checks += diff_checks("resume", resume_diff, compared)

    broken = [c for c in checks if c.check in ("drift", "resume") and c.status == "fail"]
    if broken and fallback_db is not None:
        checks = fallback(
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
    checks += read_check(
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
