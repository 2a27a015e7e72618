"""Checks built from worker answers and diffs (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from migrator.compare import Diff
from migrator.report import Check


def seed_check(entry: Mapping[str, Any]) -> Check:
    """The ``seed`` check for one entry of the worker ``seed`` op's ``threads``."""
    status = {"seeded": "pass", "skipped": "skip"}.get(entry["status"], "fail")
    return Check(
        check="seed",
        status=status,  # type: ignore[arg-type]
        summary=entry.get("reason") or entry["status"],
        canary=entry["canary"],
    )


def threads_request(
    seeded: list[Mapping[str, Any]], watched: tuple[str, ...]
) -> list[dict[str, Any]]:
    threads = [
        {"thread_id": t["thread_id"], "canary": t["canary"]}
        for t in seeded
        if t["status"] == "seeded"
    ]
    threads += [{"thread_id": tid, "canary": None} for tid in watched]
    return threads


def thread_errors(snapshot: Mapping[str, Any]) -> dict[str, str]:
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


def diff_checks(
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


def read_check(
    check: str,
    hazard: str,
    snapshot: Mapping[str, Any],
    threads: list[dict[str, Any]],
    explain: str,
) -> list[Check]:
    """Warn per thread that the given version could not read; pass otherwise."""
    errors = thread_errors(snapshot)
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


def accept_hazards(checks: Sequence[Check], accepted: Sequence[str]) -> list[Check]:
    """A failed check whose hazards are all in ``accepted`` becomes a warning, saying so.

    ``--accept-hazard``: the operator knows the threads a hazard reaches and takes it
    (the same flag as ``migrate``'s). A failure with no hazard named, or with one
    that is not accepted, still fails.
    """
    out: list[Check] = []
    for c in checks:
        if c.status == "fail" and c.hazards and set(c.hazards) <= set(accepted):
            taken = ", ".join(c.hazards)
            c = replace(
                c, status="warn", summary=f"{c.summary} (accepted: --accept-hazard {taken})"
            )
        out.append(c)
    return out


def _value_key(path: str) -> str | None:
    """The state key a value difference is about (``checked``), or None: not a value, or
    one of langgraph's internal channels (``__pregel_tasks``: a representation change)."""
    for marker in (".channel_values.", ".values."):
        if marker in path:
            key = path.rsplit(marker, 1)[1].split(".", 1)[0].split("[", 1)[0]
            return None if key.startswith("__") else key
    return None


def rollback_checks(
    rolled_back: Mapping[str, Any],
    diff: Diff,
    threads: list[dict[str, Any]],
    explain: str,
) -> list[Check]:
    """Per thread: can the old version read what the new one wrote, and does it read the
    same values?

    ``rolled_back`` is the old version's read of the database after the new version
    resumed the threads; ``diff`` compares the new version's read of the same rows
    with it (``compare_snapshots(new_read, rolled_back, context="rollback")``). A read
    error is H-ROLLBACK-NULL as before; so are values the old version reads as missing
    or different with no error (a checkpoint-postgres 2.0.10 reader ignores values
    3.2.0 stores inline): rolling back would lose them silently. Warnings, as every
    rollback finding: the upgrade itself is not what breaks.
    """
    lost: dict[str, list[Any]] = {}
    for d in diff.differences:
        if d.severity != "ignored" and d.thread_id and _value_key(d.path):
            lost.setdefault(d.thread_id, []).append(d)
    read = read_check("rollback", "H-ROLLBACK-NULL", rolled_back, threads, explain)
    out = []
    for t, c in zip(threads, read, strict=True):
        found = lost.get(t["thread_id"], [])
        if c.status != "pass":  # the old version could not read it at all
            out.append(c)
        elif not found:
            out.append(replace(c, summary="readable, with the values the new version reads"))
        else:
            keys = sorted({k for d in found if (k := _value_key(d.path))})
            summary = (
                "the old version reads this thread, after the new one wrote to it, with no "
                f"error but with {', '.join(keys[:5])}"
                + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
                + " missing or different: rolling back the app loses them silently"
            )
            out.append(
                replace(
                    c,
                    status="warn",
                    summary=summary,
                    hazards=("H-ROLLBACK-NULL",),
                    differences=tuple(d.to_dict() for d in found),
                )
            )
    return out
