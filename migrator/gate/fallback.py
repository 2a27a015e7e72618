"""The gate's dump/restore fallback: run it on a pristine copy and say what it cures."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrator import envs
from migrator.compare import compare_resumes, compare_snapshots
from migrator.config import CheckSettings
from migrator.gate.checks import diff_checks
from migrator.gate.scratch import Run
from migrator.gate.workers import user_code_env
from migrator.policy import Policy
from migrator.report import Check


def fallback(
    run: Run,
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
                extra_env=user_code_env(settings),
            )
        fb_snap = call(new_env, "snapshot", {"dsn": dsn, **snap_request})
        fb_resumed = call(new_env, "resume", {"dsn": dsn, **resume_request})
    fb_drift = diff_checks("drift", compare_snapshots(golden, fb_snap, policy=policy), threads)
    resumed_ids = {r["thread_id"] for r in fb_resumed["threads"] if r.get("outcome") != "skipped"}
    fb_resume = diff_checks(
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
                        "before, none breaking after)" + _dropped(c.hazards)
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


def _dropped(hazards: tuple[str, ...]) -> str:
    """What "cured" means for a hazard the restore cures by leaving data out."""
    if "H-METADATA-WRITES" not in hazards:
        return ""
    return (
        "; H-METADATA-WRITES: metadata.writes is dropped, not rebuilt (the new saver's "
        "put() stores none): code that reads metadata['writes'] finds nothing"
    )
