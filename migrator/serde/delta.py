"""Threads that use a ``DeltaChannel`` (H-DELTA-ROLLBACK), found with SQL.

A delta channel (langgraph >= 1.2, beta) stores a snapshot blob every N updates
and nothing in between; a step's value is rebuilt from the parent chain's writes.
Versions before 1.2 cannot read such threads: their channel comes back empty,
without an error. The queries follow checkpoint-postgres 3.2.0's
``PRUNE_DELTA_THREADS_SQL``: a checkpoint whose metadata carries the delta
counters, or whose ``channel_values`` mark a channel ``true`` with a stored blob.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import psycopg

from migrator.errors import ConnectError
from migrator.postgres import redact_dsn
from migrator.report import Check

HAZARD = "H-DELTA-ROLLBACK"
SEMANTICS = "H-DELTA-SEMANTICS"
#: The first langgraph release with ``DeltaChannel``.
DELTA_SINCE = (1, 2)
#: The first release whose messages delta reducer honours REMOVE_ALL_MESSAGES.
REMOVE_ALL_SINCE = (1, 2, 24)
SHOWN = 20

DELTA_THREADS_SQL = """
SELECT thread_id FROM checkpoints
WHERE metadata ? 'counters_since_delta_snapshot' OR metadata ? 'delta_writes_versioned'
UNION
SELECT c.thread_id
FROM checkpoints c
CROSS JOIN LATERAL jsonb_each(c.checkpoint -> 'channel_values') AS v
CROSS JOIN LATERAL (
    SELECT 1 FROM checkpoint_blobs b
    WHERE b.thread_id = c.thread_id
    AND b.checkpoint_ns = c.checkpoint_ns
    AND b.channel = v.key
    AND b.version = c.checkpoint -> 'channel_versions' ->> v.key
    LIMIT 1
) AS snapshot
WHERE jsonb_typeof(c.checkpoint -> 'channel_values') = 'object' AND v.value = 'true'::jsonb
ORDER BY 1
"""


def delta_threads(dsn: str) -> list[str]:
    """Thread ids that use a ``DeltaChannel`` (empty when the tables do not exist).

    Raises:
        ConnectError: the database cannot be read.
    """
    try:
        with psycopg.connect(dsn) as conn:
            conn.read_only = True
            if conn.execute("SELECT to_regclass('checkpoints')").fetchone() == (None,):
                return []
            return [str(r[0]) for r in conn.execute(DELTA_THREADS_SQL).fetchall()]
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConnectError(
            f"could not look for delta-channel threads in {redact_dsn(dsn)}: {first}"
        ) from exc


def _release(version: Any, parts_wanted: int = 2) -> tuple[int, ...] | None:
    if not isinstance(version, str):
        return None
    parts = []
    for piece in version.split(".")[:parts_wanted]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            return None
        parts.append(int(digits))
    return tuple(parts)


def reads_delta(langgraph_version: Any) -> bool | None:
    """Whether a langgraph version reads delta channels (None: unknown version)."""
    release = _release(langgraph_version)
    return None if release is None else release >= DELTA_SINCE


def delta_checks(dsn: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Check]:
    """The gate's delta-channel checks for ``dsn`` after the new version ran.

    Args:
        dsn: The gate's database (the old version's threads, then the new one's writes).
        old: The old version's package versions (a snapshot's ``versions``).
        new: The new version's package versions.

    Returns:
        A ``delta-read`` check failing when the target cannot read the delta
        threads, a ``rollback`` check warning when rolling back to the old
        version would break them, or nothing when no thread uses a delta channel.
    """
    old_reads = reads_delta(old.get("langgraph"))
    new_reads = reads_delta(new.get("langgraph"))
    if old_reads is not False and new_reads is not False:
        return []
    threads = delta_threads(dsn)
    if not threads:
        return []
    shown = ", ".join(threads[:SHOWN]) + (" ..." if len(threads) > SHOWN else "")
    details = {"threads": len(threads), "thread_ids": threads[:SHOWN]}
    out = []
    if new_reads is False:
        out.append(
            Check(
                "delta-read",
                "fail",
                f"langgraph {new.get('langgraph')} cannot read {len(threads)} thread(s) that "
                f"use a DeltaChannel (they read back empty, without an error): {shown}",
                hazards=(HAZARD,),
                details=details,
            )
        )
    if old_reads is False and new_reads:
        out.append(
            Check(
                "rollback",
                "warn",
                f"rolling back to langgraph {old.get('langgraph')} breaks {len(threads)} "
                f"thread(s) that use a DeltaChannel: {shown}",
                hazards=(HAZARD,),
                details=details,
            )
        )
    return out


def attribute_semantics(
    checks: list[Check], dsn: str, old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[Check]:
    """Name H-DELTA-SEMANTICS on breaking drift of delta-channel threads across 1.2.24.

    Identical rows read back differently when the old version's delta reducer
    ignored ``REMOVE_ALL_MESSAGES`` and the new one honours it (or back): a
    breaking difference without a hazard of its own, in a thread that uses a
    delta channel, is attributed to it.
    """
    before = _release(old.get("langgraph"), 3)
    after = _release(new.get("langgraph"), 3)
    if before is None or after is None or before < DELTA_SINCE or after < DELTA_SINCE:
        return checks
    if (before >= REMOVE_ALL_SINCE) == (after >= REMOVE_ALL_SINCE):
        return checks
    if not any(c.check in ("drift", "resume") and c.status == "fail" for c in checks):
        return checks
    delta = set(delta_threads(dsn))
    out = []
    for check in checks:
        thread = check.thread_id or (f"canary:{check.canary}" if check.canary else None)
        if check.check not in ("drift", "resume") or check.status != "fail" or thread not in delta:
            out.append(check)
            continue
        diffs = tuple(
            {**d, "hazard": SEMANTICS}
            if d.get("severity") == "breaking" and not d.get("hazard")
            else d
            for d in check.differences
        )
        hazards = tuple(sorted({*check.hazards, SEMANTICS}))
        out.append(dataclasses.replace(check, differences=diffs, hazards=hazards))
    return out
