"""The in-place phases: wait for locks, ``setup()`` with retries, repair, verify, record, undo."""

from __future__ import annotations

import dataclasses
import shlex
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from migrator import envs
from migrator.errors import (
    LockTimeoutError,
    MigrationError,
    MigratorError,
    VerificationError,
    WorkerError,
)
from migrator.execute.model import (
    INSERT_LEDGER_SQL,
    RETRYABLE,
    DriftError,
    MigrateOutcome,
    MigrateSettings,
    _execute,
    _optional,
    _Run,
    _timeout_dsn,
    _v,
)
from migrator.plan import (
    ALREADY_EXISTS,
    Plan,
    conflicting_locks,
    read_live,
    repairs_for,
    statement_locks,
    undo_statements,
)
from migrator.plan.blast import Reach
from migrator.report import Check, Report, Status
from migrator.schema import SchemaModel, diff_schemas
from migrator.worker.faults import pause_point


def _dbname(dsn: str) -> str:
    """The database's name, for the reliability suite's pause points."""
    return str(conninfo_to_dict(dsn).get("dbname") or "")


def _wait_for_locks(run: _Run, plan: Plan) -> None:
    """Wait (reading ``pg_locks`` only) until no session holds a lock the work needs."""
    wanted = [lk for s in plan.pending for lk in statement_locks(s.sql)]
    wanted += [lk for r in plan.repairs for lk in r.locks]
    if not wanted:
        return
    for attempt in range(run.settings.retries + 1):
        live, _ = read_live(run.settings.dsn, run.settings.schema)
        holders = conflicting_locks(live, wanted)
        if not holders:
            return
        who = "; ".join(
            f"pid {pid} holds {mode} on {table}"
            + (f" ({age:.0f}s into its transaction)" if age is not None else "")
            for table, mode, pid, age in holders
        )
        if attempt == run.settings.retries:
            raise LockTimeoutError(
                f"tables the migration needs stay locked by other sessions: {who}. "
                "Nothing was changed.",
                hint="end those transactions (pg_stat_activity) and run migrate again (safe)",
            )
        run.progress(f"waiting for other sessions' locks ({who})")
        run.sleep(attempt)


def _run_setup(run: _Run, env: envs.VersionEnv, plan: Plan) -> dict[str, Any]:
    """The target's ``setup()`` with timeouts; retries on locks; records predicted duplicates."""
    settings = run.settings
    predicted = {s.v for s in plan.steps if s.outcome == "fails" and s.error_kind in ALREADY_EXISTS}
    recorded: list[int] = []
    lock_retries = 0
    first: dict[str, Any] | None = None
    while True:
        try:
            result = envs.run_worker(
                env, "setup", _setup_request(settings), timeout=settings.worker_timeout
            )
            before = first["ledger_before"] if first else result.get("ledger_before")
            return {
                "ledger_before": before,
                "ledger_after": result.get("ledger_after"),
                "recorded_already_done": recorded,
                "lock_retries": lock_retries,
            }
        except WorkerError as exc:
            if exc.kind in RETRYABLE and lock_retries < settings.retries:
                run.progress(f"setup() hit {exc.kind}; retrying")
                run.sleep(lock_retries)
                lock_retries += 1
                continue
            if exc.kind in RETRYABLE:
                raise LockTimeoutError(
                    f"setup() kept failing with {exc.kind} after {lock_retries} retries "
                    f"(lock_timeout {settings.lock_timeout:g}s).",
                    hint="end the sessions holding locks on the checkpoint tables, then retry",
                ) from exc
            live, _ = read_live(settings.dsn, settings.schema)
            failed_v = (live.ledger_max if live.ledger_max is not None else -1) + 1
            if exc.kind in ALREADY_EXISTS and failed_v in predicted and failed_v not in recorded:
                # The object is there (the rehearsal proved it); the ledger is behind.
                run.progress(f"v{failed_v} already applied ({exc.kind}); recording it")
                if first is None:
                    first = {"ledger_before": live.ledger_max}
                with psycopg.connect(_timeout_dsn(settings), autocommit=True) as conn:
                    conn.execute(INSERT_LEDGER_SQL, (failed_v,))
                recorded.append(failed_v)
                continue
            raise


def _setup_request(settings: MigrateSettings) -> dict[str, Any]:
    """The ``setup`` op's request: statements that queue the app wait for locks only briefly."""
    blocking = min(settings.lock_timeout, settings.blocking_lock_timeout)
    return {"dsn": _timeout_dsn(settings), "blocking_lock_timeout_ms": int(blocking * 1000)}


def _undo(settings: MigrateSettings, before: SchemaModel) -> tuple[list[str], list[str]]:
    """Take back what this run added; returns (statements done, statements that failed)."""
    after, _ = read_live(settings.dsn, settings.schema)
    done: list[str] = []
    failed: list[str] = []
    for statement in undo_statements(before, after):
        try:
            _execute(settings, [statement])
            done.append(statement)
        except psycopg.Error as exc:
            failed.append(f"{statement} ({type(exc).__name__})")
    return done, failed


def _state(settings: MigrateSettings, before: SchemaModel, reference: SchemaModel | None) -> str:
    """One sentence: where the database stands now, compared with before and the target."""
    now, _ = read_live(settings.dsn, settings.schema)
    back = [d for d in diff_schemas(now, before) if d.severity != "info"]
    ledger = "no ledger table" if now.ledger is None else f"ledger max v{now.ledger_max}"
    if not back:
        return f"the database is as it was before migrate ({ledger})"
    parts = ", ".join(d.where + f" ({d.kind})" for d in back[:6])
    if reference is not None and not [d for d in diff_schemas(now, reference)]:
        return f"the database is fully migrated to the target ({ledger})"
    return f"the database differs from its state before migrate in: {parts} ({ledger})"


def _undo_after_failure(
    run: _Run,
    outcome: MigrateOutcome,
    env: envs.VersionEnv,
    plan: Plan,
    before: SchemaModel,
    exc: BaseException,
) -> None:
    """Take back what this run added and set ``outcome.error`` (exit 1, 4 or 5)."""
    settings = run.settings
    try:
        reference: SchemaModel | None = _reference(plan, env, settings)
    except MigratorError:
        reference = None
    run.progress("migrate failed; undoing what this run added")
    done, failed = _undo(settings, before)
    state = _state(settings, before, reference)
    outcome.state = state
    undo_text = f"undone: {len(done)} statement(s)" + (
        f"; could not undo: {', '.join(failed)}" if failed else ""
    )
    run.notes.append(undo_text)
    run.notes.append(f"state: {state}")
    message = f"{type(exc).__name__}: {exc}".strip()
    if isinstance(exc, LockTimeoutError):
        outcome.error = LockTimeoutError(f"{exc.message} {undo_text}; {state}.", hint=exc.hint)
    elif isinstance(exc, VerificationError):
        outcome.error = VerificationError(f"{exc.message} {undo_text}; {state}.", hint=exc.hint)
    else:
        outcome.error = MigrationError(
            f"migrate failed: {message}. {undo_text}; {state}.",
            hint="fix the cause shown above and run migrate again; "
            "`langgraph-migrator plan` shows what it would do",
        )


def _plan_check(plan: Plan) -> Check:
    errors = [h for h in plan.hazards if h.severity == "error"]
    status: Status = "fail" if plan.blocking else ("warn" if errors else "pass")
    summary = f"{len(plan.pending)} pending statement(s), {len(plan.repairs)} repair(s); " + (
        f"hazards: {', '.join(plan.hazard_ids)}" if plan.hazards else "no hazards"
    )
    return Check(
        "plan",
        status,
        summary,
        hazards=tuple(plan.hazard_ids),
        details={"hazards": [h.to_dict() for h in plan.hazards]},
    )


def _apply(
    run: _Run, env: envs.VersionEnv, plan: Plan, before: SchemaModel, outcome: MigrateOutcome
) -> None:
    apply_schema(run, env, plan, outcome, skip_idle_setup=True)
    _verify(run, env, run.settings)
    _unproven_data_hazards(run, plan)
    _record(run, plan, outcome)


def apply_schema(
    run: _Run,
    env: envs.VersionEnv,
    plan: Plan,
    outcome: MigrateOutcome,
    *,
    skip_idle_setup: bool = False,
) -> None:
    """``setup()`` with retries and the H-DUP-COLUMN ledger fix, then repairs to the reference.

    The one code path for the schema: ``migrate`` runs it on the live database, the
    gate (:func:`migrator.execute.rehearsal.rehearse_schema`) on its copy. With
    ``skip_idle_setup`` (``migrate``), a plan with no pending statement and no repair
    does not start a worker for ``setup()``: it would only re-run ``MIGRATIONS[0]``'s
    ``CREATE TABLE IF NOT EXISTS`` (the deploy hook runs migrate on every deploy, and
    the worker was 2 s of its 3). The schema is still compared with the reference.

    Raises:
        MigrationError: The schema still differs from the reference afterwards.
        LockTimeoutError: Locks stayed in the way.
        WorkerError: ``setup()`` failed for another reason.
    """
    settings = run.settings
    t0 = time.monotonic()
    if skip_idle_setup and plan.ledger and not plan.pending and not plan.repairs:
        at = max(plan.ledger)
        result = {"ledger_before": at, "ledger_after": at, "recorded_already_done": []}
        result["not_run"] = "the plan has no pending statement and no repair"
    else:
        run.progress(f"running setup() of {plan.target}")
        result = _run_setup(run, env, plan)
    run.timings["setup"] = time.monotonic() - t0
    applied = result["ledger_before"] != result["ledger_after"]
    outcome.applied = applied
    run.checks.append(
        Check(
            "setup",
            "pass",
            (
                f"ledger {_v(result['ledger_before'])} -> {_v(result['ledger_after'])}"
                if applied
                else f"nothing to do (ledger {_v(result['ledger_after'])})"
            )
            + (f"; setup() not run: {result['not_run']}" if result.get("not_run") else "")
            + (
                f"; recorded already-applied step(s) v{result['recorded_already_done']}"
                if result["recorded_already_done"]
                else ""
            ),
            hazards=("H-DUP-COLUMN",) if result["recorded_already_done"] else (),
            details=result | {"applied": applied},
        )
    )
    reference = _reference(plan, env, settings)
    now, _ = read_live(settings.dsn, settings.schema)
    diffs = diff_schemas(now, reference)
    repairs = repairs_for(diffs, reference, now)
    for number, repair in enumerate(repairs):
        run.progress(f"repair: {repair.label}")
        pause_point(f"repair.{number}", _dbname(settings.dsn))
        _execute(settings, list(repair.sql))
        outcome.applied = True
        hazard = {
            "missing_column": "H-LEDGER-SHIFT",
            "missing_index": "H-LEDGER-SHIFT",
            "missing_table": "H-LEDGER-SHIFT",
            "invalid_index": "H-INVALID-INDEX",
        }.get(repair.kind)
        run.checks.append(
            Check(
                "repair",
                "pass",
                f"{repair.label}: " + "; ".join(repair.sql),
                thread_id=repair.label,
                hazards=(hazard,) if hazard else (),
                details=repair.to_dict(),
            )
        )
    final, _ = read_live(settings.dsn, settings.schema)
    left = [d for d in diff_schemas(final, reference) if d.severity != "info"]
    if left:
        raise MigrationError(
            "after setup() and repairs the schema still differs from the reference: "
            + "; ".join(d.summary() for d in left)
        )


def _reference(plan: Plan, env: envs.VersionEnv, settings: MigrateSettings) -> SchemaModel:
    from migrator import plan as plan_module

    cached = [m for (key, _), m in plan_module._REFERENCES.items() if key == env.version_set.key]
    if cached:
        return cached[-1]
    notes: list[str] = []
    live, _ = read_live(settings.dsn, settings.schema)
    major = int(live.server.get("version_num", 0)) // 10000
    with plan_module.scratch_server(major, settings.scratch_dsn, notes) as server:
        return plan_module.build_reference(env, server, timeout=settings.worker_timeout)


def _verify(run: _Run, env: envs.VersionEnv, settings: MigrateSettings) -> None:
    verify_goldens = _optional("migrator.verify", "verify_goldens")
    if verify_goldens is None:
        run.checks.append(
            Check("verify", "skip", "migrator.verify not available: canaries not verified")
        )
        return
    report: Report = verify_goldens(settings.dsn, env, policy=None)
    failed = [c for c in report.checks if c.status == "fail"]
    run.checks.extend(report.checks)
    if failed:
        raise DriftError(
            f"{len(failed)} canary check(s) failed against their goldens: "
            + "; ".join(f"{c.name}: {c.summary}" for c in failed[:3])
            + ".",
            failed,
        )


def _unproven_reaches(run: _Run, plan: Plan) -> list[Reach]:
    """The breaking data hazards reaching stored threads that the operator did not accept."""
    data = plan.data
    if data is None or data.at_risk == 0:
        return []
    accepted = set(run.settings.accept_hazards)
    return [r for r in data.reaches if r.breaking and r.threads and r.hazard not in accepted]


def _distinct(plan: Plan, reaches: list[Reach]) -> int:
    """Threads the reaches cover (:meth:`DataScan.threads_in`)."""
    assert plan.data is not None
    return plan.data.threads_in(reaches)


def _reach_text(plan: Plan, reaches: list[Reach]) -> str:
    """``H-TASK-ID: 2 thread(s) (order-1, return-1); ...``, one entry per hazard."""
    parts = []
    for hazard in dict.fromkeys(r.hazard for r in reaches):
        mine = [r for r in reaches if r.hazard == hazard]
        ids = sorted({t for r in mine for t in r.thread_ids})
        count = _distinct(plan, mine)
        shown = ", ".join(ids[:3]) + (", ..." if count > 3 else "")
        parts.append(f"{hazard}: {count} thread(s) ({shown})")
    return "; ".join(parts)


def _seeded_canaries(dsn: str) -> int:
    list_canaries = _optional("migrator.ledger", "list_canaries")
    if list_canaries is None:
        return 0
    try:
        return len(list_canaries(dsn))
    except MigratorError:
        return 0  # no ledger yet: nothing seeded


def _decided_before(dsn: str, plan: Plan) -> int | None:
    """The id of a recorded migrate run to the same versions, if any.

    Such a run already went through this preflight (the operator accepted the
    hazards, or the fallback ran), so a rerun of ``migrate`` (a deploy hook on
    every deploy) does not stop on the same threads again.
    """
    list_runs = _optional("migrator.ledger", "list_runs")
    if list_runs is None:
        return None
    try:
        runs = list_runs(dsn)
    except MigratorError:
        return None
    target = dict(plan.versions)
    for record in reversed(runs):
        if record.command == "migrate" and record.verdict == "pass":
            if record.to_versions == target:
                return int(record.id)
    return None


def refuse_unproven(
    run: _Run, plan: Plan, *, confirm: Callable[[str], bool] | None = None
) -> VerificationError | None:
    """Refuse before anything changes when the in-place upgrade would leave threads broken.

    The plan counts the stored threads a breaking data hazard reaches. Canaries seeded
    by the old version make verification judge them after ``setup()`` (and send the
    run to the fallback on drift); without any, nothing would: the in-place result
    would PASS and leave those threads to be resumed wrongly. So unless the fallback
    will cure them (``--fallback dump-restore``, or asked on a terminal with
    ``--from``) or the operator accepts the hazard, migrate stops here (exit 1,
    nothing changed) and says how to go on.

    Returns:
        The error to exit with, or None to go on.
    """
    settings = run.settings
    accepted = [
        r
        for r in (plan.data.reaches if plan.data else ())
        if r.breaking and r.threads and r.hazard in settings.accept_hazards
    ]
    if accepted:
        run.notes.append(
            "accepted with --accept-hazard (the threads stay as the in-place upgrade leaves "
            "them): " + _reach_text(plan, accepted)
        )
    reaches = _unproven_reaches(run, plan)
    if not reaches:
        return None
    if settings.fallback == "dump-restore":
        return None
    seeded = _seeded_canaries(settings.dsn)
    if seeded:
        return None  # verification judges them; drift goes to the fallback or is undone
    decided = _decided_before(settings.dsn, plan)
    if decided is not None:
        run.notes.append(
            f"threads at risk ({_reach_text(plan, reaches)}) were decided by migrate run "
            f"#{decided} to these versions already: not stopping again"
        )
        return None
    if settings.fallback == "ask" and confirm is not None and settings.from_spec:
        # Asked before anything changes (it used to ask after the in-place setup()).
        question = (
            f"{_distinct(plan, reaches)} stored thread(s) are at risk "
            f"({_reach_text(plan, reaches)}) and no canary proves the in-place upgrade "
            "safe for them. Migrate with the "
            f"dump/restore fallback (dump with {settings.from_spec}, restore with "
            f"{settings.to_spec}, task-id transform)?"
        )
        if confirm(question):
            run.settings = dataclasses.replace(settings, fallback="dump-restore")
            run.notes.append("the dump/restore fallback was chosen at the preflight prompt")
            return None
    spec = shlex.quote(settings.from_spec) if settings.from_spec else "<the version deployed now>"
    ids = " ".join(f"--accept-hazard {h}" for h in dict.fromkeys(r.hazard for r in reaches))
    threads = " ".join(
        f"--thread {shlex.quote(t)}" for t in sorted({t for r in reaches for t in r.thread_ids})[:5]
    )
    summary = (
        f"{_distinct(plan, reaches)} stored thread(s) are at risk "
        f"({_reach_text(plan, reaches)}) and nothing would prove the in-place upgrade "
        "safe for them (no canary is seeded)"
    )
    hazards = tuple(dict.fromkeys(r.hazard for r in reaches))
    run.checks.append(Check("preflight", "fail", summary, hazards=hazards))
    return VerificationError(
        f"{summary}. Nothing was changed.",
        hint=f'cure them: `langgraph-migrator migrate --dsn "$DSN" --from {spec} '
        f"--fallback dump-restore`; prove them: `langgraph-migrator upgrade-check --from {spec} "
        f'--threads-from "$DSN" {threads}`; or accept the risk: {ids} ($DSN: the DSN this '
        "run was given; the tool never prints one with its password)",
    )


def _unproven_data_hazards(run: _Run, plan: Plan) -> None:
    """Stored threads a breaking data hazard reaches, with no canary verified to judge them.

    :func:`refuse_unproven` already stopped a run that nothing would cure. Here the
    cure was asked for (``--fallback dump-restore``, or a yes at the preflight prompt):
    the threads at risk count as drift, so the fallback runs instead of a PASS that
    leaves them broken.

    Raises:
        DriftError: threads at risk, no canary verified, and the fallback possible.
    """
    verified = [c for c in run.checks if c.check == "verify" and c.status != "skip"]
    reaches = _unproven_reaches(run, plan)
    if verified or not reaches or run.settings.fallback != "dump-restore":
        return  # nothing at risk, judged by canaries, or decided by an earlier run
    at_risk = _distinct(plan, reaches)
    named = _reach_text(plan, reaches)
    summary = (
        f"no canary was verified, and the plan found {at_risk} stored thread(s) "
        f"a breaking data hazard reaches: {named}"
    )
    check = Check("verify", "fail", summary)
    run.checks.append(check)
    raise DriftError(
        f"{at_risk} stored thread(s) are at risk ({named}) and no canary "
        "proves the in-place upgrade safe for them.",
        [check],
        unproven=True,
        at_risk=named,
    )


def _record(run: _Run, plan: Plan, outcome: MigrateOutcome) -> None:
    record_run = _optional("migrator.ledger", "record_run")
    if record_run is None:
        run.checks.append(
            Check("record", "skip", "migrator.ledger not available: run not recorded")
        )
        return
    repairs = [c.details for c in run.checks if c.check == "repair"]
    pause_point("ledger.record", _dbname(run.settings.dsn))
    run_id = record_run(
        run.settings.dsn,
        {
            "command": "migrate",
            "to_versions": dict(plan.versions),
            "plan": plan.to_dict(),
            "applied_statements": [s.sql for s in plan.pending] if outcome.applied else [],
            "repairs": repairs,
            "verdict": "pass",
            "details": {"applied": outcome.applied, "checks": [c.to_dict() for c in run.checks]},
            "timings": dict(run.timings),
        },
    )
    run.checks.append(Check("record", "pass", f"run recorded in the tool ledger (id {run_id})"))


def _report(run: _Run, plan: Plan, started: float) -> Report:
    run.timings["total"] = time.monotonic() - started
    return Report(
        "migrate",
        tuple(run.checks),
        versions=dict(plan.versions),
        server={"database": plan.database, "version": plan.server_version},
        timings=dict(run.timings),
        notes=tuple(run.notes)
        + tuple(plan.notes)
        + tuple(f"langgraph said: {m}" for m in envs.drain_worker_log()),
    )
