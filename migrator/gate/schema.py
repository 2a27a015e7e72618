"""The gate's schema steps: ``migrate``'s schema path, and a plain ``setup()`` on a copy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from migrator import envs
from migrator.config import CheckSettings
from migrator.errors import MigratorError, WorkerError
from migrator.gate.checks import thread_errors
from migrator.gate.scratch import Run
from migrator.report import Check


def _db_error(exc: WorkerError) -> bool:
    """A worker op failed on the database (a psycopg error), not on the environment."""
    import psycopg.errors

    return isinstance(getattr(psycopg.errors, exc.kind, None), type)


def migrate_schema(
    run: Run,
    settings: CheckSettings,
    call: Callable[..., dict[str, Any]],
    new_env: envs.VersionEnv,
    dsn: str,
    *,
    to_spec: str,
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
        to_spec,
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


def in_place(
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
    errors = thread_errors(call(new_env, "snapshot", {"dsn": dsn, **snap_request}))
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
