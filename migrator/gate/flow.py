"""The ``upgrade-check`` flow: seed under the old version, read under the new, compare.

Steps (DESIGN.md "Flows"): provision → old env: ``setup()``, seed canaries,
snapshot (golden) → rolling-deploy check (new env reads before its ``setup()``)
→ new env: ``migrate``'s schema path (plan, ``setup()``, repairs: schema hazards
become findings with the repair applied) and, on a copy, a plain ``setup()`` (what
a deploy without the tool gets) → snapshot, compare → resume check (both envs continue
the paused canaries, on copies of the same data) → rollback check (old env reads
what the new env wrote) → ``Report``. Every database this creates is dropped at
the end, and a provisioned server is stopped.

Several targets (``--to A --to B``, :func:`run_upgrade_checks`): the old version
seeds and records its goldens once; each target then runs every step after the
golden on its own copies of the seeded database, so targets cannot influence each
other. The old version's resume of the paused canaries is the same for every
target and runs once. A target that cannot be checked (its environment does not
build, a worker fails) is reported with its exit code and the others still run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from migrator import envs
from migrator.compare import compare_resumes, compare_snapshots
from migrator.config import CheckSettings
from migrator.errors import ConfigError, MigratorError, WorkerError
from migrator.gate.checks import (
    accept_hazards,
    diff_checks,
    read_check,
    rollback_checks,
    seed_check,
    threads_request,
)
from migrator.gate.fallback import fallback
from migrator.gate.schema import in_place, migrate_schema
from migrator.gate.scratch import Progress, Run
from migrator.gate.workers import strict_runner, user_code_env, worker_caller
from migrator.policy import Policy, load_policy
from migrator.postgres import provision
from migrator.report import Check, Report, TargetResult, TargetsReport
from migrator.serde.delta import attribute_semantics, delta_checks
from migrator.serde.strict import annotate_checks, for_env
from migrator.threads import copy_threads


def _quiet(_: str) -> None:
    return None


#: Timings of the steps every target shares (seeded once).
_SHARED_STEPS = ("provision", "env_old", "seed", "golden")


def run_upgrade_check(settings: CheckSettings, *, progress: Progress = _quiet) -> Report:
    """Run the whole gate for ``settings.to_spec`` and return its report.

    Args:
        settings: versions, Postgres choice, canaries, threads, policy.
        progress: called with a one-line message as each step starts.

    Returns:
        The report; ``report.verdict == "fail"`` means the gate failed.

    Raises:
        ConfigError: bad specs, from == to, bad policy or canary module (exit 2).
        EnvironmentProblem: Postgres, env build or worker failures (exit 3).
    """
    single = dataclasses.replace(settings, to_specs=())
    result = _run(single, progress, several=False)
    return result.targets[0].report


def run_upgrade_checks(settings: CheckSettings, *, progress: Progress = _quiet) -> TargetsReport:
    """Run the gate once for every ``--to`` target (``settings.targets``).

    The old version seeds once; each target is checked on its own copy of the seeded
    database. A target whose check stops on an error (environment, worker) is
    reported as not checked, with that error's exit code; the others still run.

    Args:
        settings: versions (``to_specs``: the targets), Postgres choice, canaries, ...
        progress: called with a one-line message as each step starts; the messages of a
            target's steps start with ``[target i/n]``.

    Returns:
        One report per target; ``exit_code`` is the worst target's.

    Raises:
        ConfigError: bad specs, a target given twice or equal to --from, bad policy (exit 2).
        EnvironmentProblem: Postgres, or the old version's environment or seeding (exit 3).
    """
    return _run(settings, progress, several=True)


def target_version_set(spec: str) -> envs.VersionSet:
    """The version set of one ``--to`` target; a file target must pin langgraph itself.

    Raises:
        ConfigError: the spec does not parse, the file cannot be read, or it pins no
            langgraph (the gate would check whatever langgraph is newest, not yours).
    """
    vs = envs.parse_version_set(spec)
    if vs.source.startswith("file:") and vs.pin("langgraph") is None:
        name = vs.source.removeprefix("file:")
        raise ConfigError(
            f"--to {spec}: {name} pins no langgraph, only {vs.label.split(' (')[0]}.",
            hint="the gate checks the exact langgraph you deploy: lock it "
            "(uv lock, poetry lock, uv pip compile write every pin)",
        )
    return vs


#: The packages whose versions decide how checkpoints are written and read.
CHECKPOINT_PACKAGES = (
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-postgres",
    "langchain-core",
)


def changed_targets(from_spec: str, to_specs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``--to`` targets into those that change the checkpoint packages and the rest.

    For ``--if-changed`` (CI on every lock-file change): a pull request that changes
    the lock but none of :data:`CHECKPOINT_PACKAGES` has nothing to upgrade. A target
    where either side leaves one of them unpinned counts as changed (it cannot be
    told). Only files and specs are read, nothing is installed.

    Returns:
        (targets to check, descriptions of those that pin what ``--from`` pins).

    Raises:
        ConfigError: A spec or file that does not parse (exit 2).
    """
    old_vs = envs.parse_version_set(from_spec)
    old = [old_vs.pin(name) for name in CHECKPOINT_PACKAGES]
    kept, same = [], []
    for spec in to_specs:
        vs = target_version_set(spec)
        new = [vs.pin(name) for name in CHECKPOINT_PACKAGES]
        unchanged = vs.key == old_vs.key or (None not in old and old == new)
        if unchanged:
            same.append(f"--to {spec} ({vs.label})")
        else:
            kept.append(spec)
    return kept, same


def _targets(
    settings: CheckSettings, old_vs: envs.VersionSet
) -> tuple[list[tuple[str, envs.VersionSet]], list[str]]:
    """Parse every target up front: (spec, version set) in order, and notes on merged ones."""
    seen: dict[str, str] = {}
    out: list[tuple[str, envs.VersionSet]] = []
    notes: list[str] = []
    given: set[str] = set()
    for spec in settings.targets:
        if spec.strip() in given:
            raise ConfigError(
                f"--to {spec} is given twice.",
                hint="name each version set you may deploy once",
            )
        given.add(spec.strip())
        vs = target_version_set(spec)
        if vs.key == old_vs.key:
            raise ConfigError(
                f"--from and --to resolve to the same version set ({old_vs.label}).",
                hint="name the version you deploy today as --from "
                "and the one you upgrade to as --to",
            )
        if vs.key in seen:
            notes.append(
                f"--to {spec} pins the same version set as --to {seen[vs.key]} "
                f"({vs.label}): checked once"
            )
            continue
        seen[vs.key] = spec
        out.append((spec, vs))
    return out, notes


def _run(settings: CheckSettings, progress: Progress, *, several: bool) -> TargetsReport:
    old_vs = envs.parse_version_set(settings.from_spec)
    targets, notes = _targets(settings, old_vs)
    policy: Policy = load_policy(settings.pyproject, settings.policy_file)
    if settings.accept_hazards:
        policy = dataclasses.replace(policy, accepted=settings.accept_hazards)
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
        return _check_all(run, settings, old_vs, targets, policy, notes, several=several)
    finally:
        run.cleanup()
        server.stop()


def _threads_source(settings: CheckSettings) -> str | None:
    """The DSN watched threads are copied from: --threads-from, else a --pg DSN."""
    return settings.threads_from or (settings.pg.dsn if settings.pg.provider == "url" else None)


@dataclass
class _Seeded:
    """What the old version left, shared by every target."""

    old_vs: envs.VersionSet
    old_env: envs.VersionEnv
    db: str
    old_resume_db: str
    checks: list[Check]
    threads: list[dict[str, Any]]
    golden: dict[str, Any]
    snap_request: dict[str, Any]
    resume_request: dict[str, Any]
    resumed_old: dict[str, Any] | None = None


def _check_all(
    run: Run,
    settings: CheckSettings,
    old_vs: envs.VersionSet,
    targets: list[tuple[str, envs.VersionSet]],
    policy: Policy,
    notes: list[str],
    *,
    several: bool,
) -> TargetsReport:
    call = worker_caller(settings)
    extra = user_code_env(settings)
    count = len(targets)
    with run.step("env_old", f"building old environment {old_vs.label}"):
        old_env = envs.ensure_env(old_vs, progress=run.progress)
        envs.prestart_worker(old_env, extra_env=extra)  # its imports overlap what follows
    new_envs: list[envs.VersionEnv | MigratorError] = []
    build_times: list[float] = []
    for i, (_spec, new_vs) in enumerate(targets, 1):
        where = f" (target {i}/{count})" if several else ""
        started = time.perf_counter()
        try:
            run.progress(f"building new environment {new_vs.label}{where}")
            new_env = envs.ensure_env(new_vs, progress=run.progress)
            envs.prestart_worker(new_env, extra_env=extra)
            new_envs.append(new_env)
        except MigratorError as exc:
            if not several:
                raise
            new_envs.append(exc)
        build_times.append(time.perf_counter() - started)

    seeded = _seed(run, settings, call, old_vs, old_env)
    shared = dict(run.timings)
    base_progress = run.progress
    results: list[TargetResult] = []
    for i, ((spec, new_vs), built) in enumerate(zip(targets, new_envs, strict=True), 1):
        if several:
            base_progress(f"target {i}/{count}: {new_vs.label} (--to {spec})")
            run.progress = _prefixed(base_progress, f"[target {i}/{count}] ")
            run.timings = {"env_new": build_times[i - 1]}
        else:
            run.timings = {**shared, "env_new": build_times[i - 1]}
        try:
            if isinstance(built, MigratorError):
                raise built
            report = _check_target(
                run, settings, call, seeded, new_vs, built, spec, policy, last=i == count
            )
            code = 1 if report.verdict == "fail" else 0
            label = built.label
            if any(r.label == label for r in results):  # two files that differ elsewhere
                label = f"{label} [--to {spec}]"
            results.append(TargetResult(spec, label, report, code))
        except MigratorError as exc:
            if not several:
                raise
            results.append(_not_checked(run, spec, new_vs, exc))
        finally:
            run.progress = base_progress
    run.timings = shared
    return TargetsReport(
        command="upgrade-check",
        targets=tuple(results),
        versions={"from": seeded.golden.get("versions", {})},
        server={"provider": run.server.provider, "major": run.server.major},
        timings=shared,
        notes=tuple(notes),
    )


def _prefixed(progress: Progress, prefix: str) -> Progress:
    """``progress`` with every message starting with ``prefix`` (which target runs)."""

    def report(message: str) -> None:
        progress(prefix + message)

    return report


def _not_checked(run: Run, spec: str, new_vs: envs.VersionSet, exc: MigratorError) -> TargetResult:
    """A target whose check stopped on an error: one failing ``target`` check saying why."""
    first = str(exc.message).strip().splitlines()[0] if str(exc.message).strip() else repr(exc)
    run.progress(f"target {new_vs.label} could not be checked: {first}")
    check = Check(
        "target",
        "fail",
        f"not checked (exit {exc.exit_code}): {first}",
        details={"error": type(exc).__name__},
    )
    report = Report(
        command="upgrade-check",
        checks=(check,),
        server={"provider": run.server.provider, "major": run.server.major},
        timings=run.timings,
    )
    return TargetResult(spec, new_vs.label, report, exc.exit_code)


def _seed(
    run: Run,
    settings: CheckSettings,
    call: Callable[..., dict[str, Any]],
    old_vs: envs.VersionSet,
    old_env: envs.VersionEnv,
) -> _Seeded:
    """The old version's part, once: ``setup()``, seed, watched threads, golden snapshot."""
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
    threads = threads_request(seeded["threads"], settings.threads)
    snap_request = {"threads": threads, "user_canaries": settings.user_canaries}
    with run.step("golden", f"snapshot (golden) under {old_vs.label}"):
        golden = call(old_env, "snapshot", {"dsn": main, **snap_request})
    return _Seeded(
        old_vs=old_vs,
        old_env=old_env,
        db=main_db,
        # Taken before any new version touches the data: the old version's resume.
        old_resume_db=run.create_database(template=main_db),
        checks=[seed_check(t) for t in seeded["threads"]],
        threads=threads,
        golden=golden,
        snap_request=snap_request,
        resume_request={
            "canaries": [t["canary"] for t in threads if t["canary"]],
            "user_canaries": settings.user_canaries,
        },
    )


def _check_target(
    run: Run,
    settings: CheckSettings,
    call: Callable[..., dict[str, Any]],
    seeded: _Seeded,
    new_vs: envs.VersionSet,
    new_env: envs.VersionEnv,
    to_spec: str,
    policy: Policy,
    *,
    last: bool,
) -> Report:
    """Every step after the golden, for one target, on its own copies of the seeded data.

    The last target works on the seeded database itself (its copies are taken first).
    """
    old_vs, old_env, golden, threads = seeded.old_vs, seeded.old_env, seeded.golden, seeded.threads
    snap_request, resume_request = seeded.snap_request, seeded.resume_request
    # The new version's ops run under --strict-msgpack / --allow-module when rehearsing.
    call = for_env(call, new_env, strict_runner(settings))
    mine: list[str] = []

    def copy() -> str:
        mine.append(run.create_database(template=seeded.db))
        return mine[-1]

    # Copies taken before the new version touches anything.
    main_db = seeded.db if last else copy()
    main = run.dsn(main_db)
    rolling_db = copy()
    fallback_db = copy() if settings.fallback != "none" else None
    in_place_db = copy()
    checks: list[Check] = list(seeded.checks)

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
        schema_checks, setup_new, schema_ids = migrate_schema(
            run, settings, call, new_env, main, to_spec=to_spec
        )
    checks += schema_checks
    with run.step("in_place", f"plain setup() of {new_vs.label} on a copy (no migrate)"):
        checks += in_place(call, new_env, run.dsn(in_place_db), snap_request, schema_ids)
    with run.step("snapshot_new", f"snapshot under {new_vs.label}"):
        after = call(new_env, "snapshot", {"dsn": main, **snap_request})
    drift = compare_snapshots(golden, after, policy=policy)
    checks += diff_checks("drift", drift, threads)

    with run.step("resume", "resume check: continuing paused canaries in both versions"):
        resumed_new = call(new_env, "resume", {"dsn": main, **resume_request})
        if seeded.resumed_old is None:  # the same for every target: once
            seeded.resumed_old = call(
                old_env, "resume", {"dsn": run.dsn(seeded.old_resume_db), **resume_request}
            )
    resumed_old = seeded.resumed_old
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
    checks += [
        Check(
            check="resume",
            status="skip",
            summary="not resumed: a real thread's nodes may have side effects (your services, "
            "tools, payments); drift compared its values, next, tasks and interrupts",
            thread_id=tid,
        )
        for tid in settings.threads
    ]

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
        new_read = call(new_env, "snapshot", {"dsn": main, **snap_request})
    checks += rollback_checks(
        rolled_back,
        compare_snapshots(new_read, rolled_back, policy=policy, context="rollback"),
        threads,
        "the old version cannot read this thread after the new one wrote to it; "
        "rolling back the app breaks it",
    )

    before_v, after_v = setup_new.get("ledger_before"), setup_new.get("ledger_after")
    notes = [f"new setup(): ledger v{before_v} -> v{after_v}"] if after_v is not None else []
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
    if policy.accepted:
        checks = accept_hazards(checks, policy.accepted)
        notes.append(
            "accepted (--accept-hazard): "
            + ", ".join(policy.accepted)
            + ": their differences are reported as ignored, and a check they alone fail "
            "as a warning"
        )
    notes.extend(f"langgraph said: {m}" for m in envs.drain_worker_log())
    if not last:
        run.drop(mine)  # a finished target's copies: the next one starts from the seed
    return Report(
        command="upgrade-check",
        checks=tuple(checks),
        versions={"from": golden.get("versions", {}), "to": after.get("versions", {})},
        server={"provider": run.server.provider, "major": run.server.major},
        timings=run.timings,
        notes=tuple(notes),
    )
