"""``verify``: what a version reads now, compared with the goldens stored at seed time.

This is what a production deploy runs after ``migrate``: it needs the ledger's
goldens and one version env (usually ``current``), never the old one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from migrator import envs, ledger
from migrator.compare import compare_snapshots
from migrator.errors import WorkerError
from migrator.policy import Policy
from migrator.report import Check, Report
from migrator.seeding import canary_config_error, worker_env
from migrator.serde import strict

Progress = Callable[[str], None]

SNAPSHOT_FORMAT = "langgraph-migrator/snapshot@1"
_GONE_ERROR = "NoSuchThread"


def _quiet(_: str) -> None:
    return None


def _is_gone(entry: Mapping[str, Any] | None) -> bool:
    if entry is None:
        return True
    error = entry.get("error")
    return isinstance(error, Mapping) and str(error.get("__error__", "")).startswith(_GONE_ERROR)


def _thread_check(golden: ledger.Golden, now: Mapping[str, Any], policy: Policy | None) -> Check:
    """One ``verify`` check: the golden of one thread against what ``now`` read."""
    entry = now.get("threads", {}).get(golden.thread_id)
    canary = golden.canary
    thread_id = None if canary else golden.thread_id
    details = {
        "golden_seeded_at": golden.seeded_at.isoformat(),
        "golden_versions": golden.versions,
    }
    if _is_gone(entry):
        return Check(
            check="verify",
            status="fail",
            summary=f"thread {golden.thread_id!r} is gone: its golden exists, "
            "but the database holds no checkpoint for it",
            canary=canary,
            thread_id=thread_id,
            details=details,
        )
    old = {
        "format": SNAPSHOT_FORMAT,
        "versions": golden.versions,
        "threads": {golden.thread_id: golden.snapshot},
    }
    new = {
        "format": now.get("format", SNAPSHOT_FORMAT),
        "versions": now.get("versions", {}),
        "threads": {golden.thread_id: entry},
    }
    diff = compare_snapshots(old, new, policy=policy)
    breaking, benign = diff.breaking, diff.benign
    if breaking:
        summary = f"{len(breaking)} breaking, {len(benign)} benign difference(s)"
    else:
        summary = f"unchanged ({len(benign)} benign difference(s))" if benign else "unchanged"
    return Check(
        check="verify",
        status="fail" if breaking else "pass",
        summary=summary,
        hazards=tuple(sorted({d.hazard for d in breaking if d.hazard})),
        differences=tuple(d.report_entry() for d in (*breaking, *benign)),
        canary=canary,
        thread_id=thread_id,
        details=details,
    )


def verify_goldens(
    dsn: str,
    env: envs.VersionEnv,
    *,
    policy: Policy | None = None,
    timeout: float = 600.0,
    user_canaries: str | None = None,
    progress: Progress = _quiet,
) -> Report:
    """Snapshot every golden thread with ``env`` and compare it with its golden.

    Read only: nothing is written to the database.

    Args:
        dsn: The app's database, holding the ledger's goldens.
        env: The version to read with (usually ``current``).
        policy: The user's drift policy.
        timeout: Seconds the snapshot op may take.
        user_canaries: ``module:attr`` of user canaries (default: what seeding recorded).
        progress: Receives a one-line message as each step starts.

    Returns:
        One ``verify`` check per golden thread (fail on breaking drift or a thread
        that is gone); a single ``skip`` check when the database has no goldens.

    Raises:
        ConfigError: The user canaries do not load (exit 2): a snapshot without them
            would call every canary thread drift.
        EnvironmentProblem: Database or worker failures (exit 3).
    """
    goldens = ledger.load_goldens(dsn)
    if not goldens:
        return Report(
            command="verify",
            checks=(Check("verify", "skip", "no goldens: no canary was seeded in this database"),),
        )
    if user_canaries is None:
        recorded = [c.user_canaries for c in ledger.list_canaries(dsn) if c.user_canaries]
        user_canaries = recorded[0] if recorded else None
    if user_canaries:
        _check_user_canaries(env, user_canaries, timeout)
    progress(f"snapshot of {len(goldens)} golden thread(s) under {env.label}")
    now = envs.run_worker(
        env,
        "snapshot",
        {
            "dsn": dsn,
            "threads": [{"thread_id": g.thread_id, "canary": g.canary} for g in goldens],
            "user_canaries": user_canaries,
        },
        timeout=timeout,
        extra_env={**(worker_env(user_canaries) or {}), **strict.worker_env()},
    )
    checks = tuple(
        strict.annotate_checks([_thread_check(g, now, policy) for g in goldens], now, env.label)
    )
    golden_versions = {g.thread_id: g.versions for g in goldens}
    first = next(iter(golden_versions.values()))
    return Report(
        command="verify",
        checks=checks,
        versions={
            "golden": first
            if all(v == first for v in golden_versions.values())
            else golden_versions,
            "now": now.get("versions", {}),
        },
    )


def _check_user_canaries(env: envs.VersionEnv, user_canaries: str, timeout: float) -> None:
    """Load the user canaries in ``env`` (worker op ``info``): exit 2 when they do not."""
    try:
        envs.run_worker(
            env,
            "info",
            {"user_canaries": user_canaries},
            timeout=timeout,
            extra_env=worker_env(user_canaries),
        )
    except WorkerError as exc:
        config = canary_config_error(exc)
        if config is not None:
            raise config from exc
        raise
