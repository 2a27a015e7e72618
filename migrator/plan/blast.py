"""Data hazards and their blast radius: which stored threads the target version breaks.

The schema part of ``plan`` says whether ``setup()`` will work; this part says
which *threads* the target then reads or resumes differently (HAZARDS.md "Graph
semantics", "Serializer", "Rollback"). It reads the live tables with read-only
SQL, one pass over ``checkpoints`` plus primary-key lookups of each thread's
latest root checkpoint, and never decodes a value:

- the era of each thread: the ``"v"`` of its latest root checkpoint's JSON
  (1: langgraph 0.2.x and older; 2: 0.3.x; 4: langgraph 0.6 and newer);
- paused with pending writes (rows other than ``__interrupt__`` in
  ``checkpoint_writes`` for the latest root checkpoint: a completed sibling's
  writes, a failed task's error), paused inside a subgraph (a child namespace
  has a checkpoint at or after the latest root one: checkpoint ids are
  time-ordered), holding a pending interrupt (an ``__interrupt__`` write),
  holding pending sends in the checkpoint JSON (checkpoint-postgres 1.0.0),
  ``metadata.writes`` with ``lc`` envelopes, and
  ``DeltaChannel`` threads (the metadata markers checkpoint-postgres 3.2.0's
  ``PRUNE_DELTA_THREADS_SQL`` uses).

:func:`data_hazards` (pure) turns those counts into hazards for a target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from migrator.plan.model import Hazard

#: Thread ids listed per finding.
SAMPLE = 20
#: The langgraph release that changed task-id derivation (H-TASK-ID).
TASK_ID_CHANGED = (0, 3, 17)
#: Targets that fail to resume a langgraph 0.2.x ``interrupt()`` (H-INTERRUPT-RESUME).
INTERRUPT_BAND = ((0, 6, 8), (1, 2, 13))
#: checkpoint-postgres from which ``metadata.writes`` envelopes come back raw.
METADATA_RAW_FROM = (2, 0, 25)
#: langgraph from which DeltaChannel exists (H-DELTA-ROLLBACK).
DELTA_FROM = (1, 2)

#: One pass over ``checkpoints``: per thread, its latest root checkpoint id, its latest
#: child checkpoint id, ``lc`` envelopes in ``metadata.writes``, delta markers. Then
#: primary-key lookups (``LATERAL``) of the latest root checkpoint and its writes only:
#: a plain join lets the planner scan both tables again. Read only.
THREAD_SCAN_SQL = """
WITH per_thread AS (
    SELECT thread_id,
           max(checkpoint_id) FILTER (WHERE checkpoint_ns = '') AS latest,
           max(checkpoint_id) FILTER (WHERE checkpoint_ns <> '') AS child_latest,
           bool_or(metadata ? 'writes' AND jsonb_typeof(metadata -> 'writes') = 'object'
                   AND strpos((metadata -> 'writes')::text, '"lc": ') > 0) AS lc_writes,
           bool_or(metadata ?| array['counters_since_delta_snapshot',
                                     'delta_writes_versioned']) AS delta
    FROM checkpoints
    GROUP BY thread_id
), flags AS (
    SELECT p.thread_id,
           coalesce(c.fmt, '0') AS fmt,
           coalesce(p.child_latest >= p.latest, false) AS subgraph, p.lc_writes, p.delta,
           coalesce(c.sends NOT IN ('[]'::jsonb, '["json", "W10="]'::jsonb), false) AS sends,
           coalesce(w.pending, false) AS pending,
           coalesce(w.interrupt, false) AS interrupt
    FROM per_thread p
    LEFT JOIN LATERAL (
        SELECT c.checkpoint ->> 'v' AS fmt, c.checkpoint -> 'pending_sends' AS sends
        FROM checkpoints c
        WHERE c.thread_id = p.thread_id AND c.checkpoint_ns = '' AND c.checkpoint_id = p.latest
        LIMIT 1
    ) c ON true
    LEFT JOIN LATERAL (
        SELECT bool_or(w.channel <> '__interrupt__') AS pending,
               bool_or(w.channel = '__interrupt__') AS interrupt
        FROM checkpoint_writes w
        WHERE w.thread_id = p.thread_id AND w.checkpoint_ns = '' AND w.checkpoint_id = p.latest
    ) w ON true
)
SELECT fmt, pending, subgraph AS paused_subgraph, interrupt, sends, lc_writes, delta,
       count(*) AS threads,
       (array_agg(thread_id ORDER BY thread_id))[1:%(sample)s] AS sample
FROM flags
GROUP BY 1, 2, 3, 4, 5, 6, 7
"""

#: The flags a thread can carry, as the scan names them.
FLAGS = ("pending", "paused_subgraph", "interrupt", "sends", "lc_writes", "delta")

#: What each flag means, for reports.
FLAG_TEXT: Mapping[str, str] = {
    "pending": "paused with pending writes (completed siblings, errors)",
    "paused_subgraph": "paused inside a subgraph",
    "interrupt": "holding a pending interrupt",
    "sends": "holding pending sends in the checkpoint JSON",
    "lc_writes": "with lc envelopes in metadata.writes",
    "delta": "with DeltaChannel (delta-stored) channels",
}

#: Checkpoint format ("v") -> the langgraph releases that write it.
FORMAT_ERA: Mapping[str, str] = {
    "0": "unknown format",
    "1": "langgraph 0.2.x or older",
    "2": "langgraph 0.3.x",
    "3": "langgraph 0.4-0.5",
    "4": "langgraph 0.6 or newer",
}


@dataclass(frozen=True)
class ThreadGroup:
    """Threads sharing one checkpoint format and one set of flags (one scan row)."""

    fmt: str
    flags: frozenset[str]
    threads: int
    sample: tuple[str, ...]


@dataclass(frozen=True)
class Reach:
    """How many threads one data hazard reaches, and the first of them.

    Attributes:
        hazard: The hazard id.
        what: Which threads (``paused with pending writes, format v1``).
        threads: How many.
        thread_ids: The first :data:`SAMPLE` ids, sorted.
        breaking: True when the target reads or resumes them wrongly (plan is UNSAFE).
    """

    hazard: str
    what: str
    threads: int
    thread_ids: tuple[str, ...]
    breaking: bool
    groups: frozenset[int] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "hazard": self.hazard,
            "what": self.what,
            "threads": self.threads,
            "thread_ids": list(self.thread_ids),
            "breaking": self.breaking,
        }


@dataclass(frozen=True)
class DataScan:
    """What the stored threads hold, by era and flag; the hazards they meet.

    Attributes:
        groups: The scan's rows.
        seconds: How long the scan took.
        from_label: The ``--from`` version set, when given.
        reaches: Per data hazard that applies to the target, the threads it reaches.
    """

    groups: tuple[ThreadGroup, ...]
    seconds: float = 0.0
    from_label: str | None = None
    reaches: tuple[Reach, ...] = field(default=())

    @property
    def threads(self) -> int:
        """Threads with at least one checkpoint."""
        return sum(g.threads for g in self.groups)

    @property
    def at_risk(self) -> int:
        """Distinct threads a breaking data hazard reaches (each thread is in one group)."""
        reached = {i for r in self.reaches if r.breaking for i in r.groups}
        return sum(self.groups[i].threads for i in reached)

    def by_format(self) -> dict[str, int]:
        """Threads per checkpoint format of their latest root checkpoint."""
        out: dict[str, int] = {}
        for g in self.groups:
            out[g.fmt] = out.get(g.fmt, 0) + g.threads
        return dict(sorted(out.items()))

    def count(self, flag: str) -> int:
        """Threads carrying ``flag``."""
        return sum(g.threads for g in self.groups if flag in g.flags)

    def era_text(self) -> str:
        """One line: the era of the stored data."""
        parts = [
            f"{n} thread(s) v{fmt} ({FORMAT_ERA.get(fmt, 'unknown format')})"
            for fmt, n in self.by_format().items()
        ]
        text = "; ".join(parts) if parts else "no threads"
        return text + (f"; written by {self.from_label} (--from)" if self.from_label else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``plan --json`` ``data``)."""
        return {
            "threads": self.threads,
            "at_risk": self.at_risk,
            "by_format": self.by_format(),
            "era": self.era_text(),
            "from": self.from_label,
            "counts": {flag: self.count(flag) for flag in FLAGS},
            "reaches": [r.to_dict() for r in self.reaches],
            "seconds": round(self.seconds, 3),
        }


def scan_threads(conn: psycopg.Connection[Any]) -> tuple[ThreadGroup, ...]:
    """Run :data:`THREAD_SCAN_SQL` on ``conn`` (the caller makes it read only).

    Args:
        conn: A connection whose ``search_path`` finds the checkpoint tables.

    Returns:
        One group per distinct (format, flags).
    """
    rows = conn.execute(THREAD_SCAN_SQL, {"sample": SAMPLE}).fetchall()
    groups = []
    for row in rows:
        fmt, *flags, threads, sample = row
        on = frozenset(name for name, value in zip(FLAGS, flags, strict=True) if value)
        groups.append(ThreadGroup(str(fmt), on, int(threads), tuple(sample or ())))
    return tuple(groups)


def _vt(version: str | None) -> tuple[int, ...]:
    if not version:
        return ()
    out: list[int] = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
        if not part.isdigit():
            break
    return tuple(out)


def _fmt(value: str) -> int:
    return int(value) if value.isdigit() else 0


def _reach(
    scan: Sequence[ThreadGroup], hazard: str, what: str, breaking: bool, want: Any
) -> Reach | None:
    chosen = [i for i, g in enumerate(scan) if want(g)]
    n = sum(scan[i].threads for i in chosen)
    if not n:
        return None
    ids = sorted(tid for i in chosen for tid in scan[i].sample)[:SAMPLE]
    return Reach(hazard, what, n, tuple(ids), breaking, frozenset(chosen))


def data_hazards(
    groups: Sequence[ThreadGroup],
    target_versions: Mapping[str, Any],
    *,
    from_versions: Mapping[str, Any] | None = None,
    from_spec: str = "SPEC",
    to_spec: str = "SPEC",
    cured: str | None = None,
) -> tuple[list[Reach], list[Hazard]]:
    """Which data hazards apply to the target, how many threads each reaches (pure).

    Args:
        groups: From :func:`scan_threads`.
        target_versions: The target environment's installed versions.
        from_versions: The ``--from`` version set's pins, when given: refines the
            era of checkpoint format v2 (langgraph 0.3.x, before or after 0.3.17).
        from_spec: The version set that wrote the data (given or guessed), for the fixes.
        to_spec: The target as the user named it, for the proving command.
        cured: What already rewrote the stored threads' task ids (a restore with the
            task-id transform that the ledger records, every thread cured), if
            anything: H-TASK-ID is then reported, not breaking.

    Returns:
        The reaches and the hazards (with counts and the first thread ids).
    """
    lg = _vt(target_versions.get("langgraph"))
    cpp = _vt(target_versions.get("langgraph-checkpoint-postgres"))
    from_lg = _vt((from_versions or {}).get("langgraph"))
    # Format v1 is langgraph 0.2.x; v2 is 0.3.x, before or after 0.3.17 (--from decides).
    old_task_ids = {1} | ({2} if not from_lg or from_lg < TASK_ID_CHANGED else set())
    reaches: list[Reach] = []
    prove = (
        f"prove it: `langgraph-migrator upgrade-check --from '{from_spec}' --to '{to_spec}'` "
        "(with the app profile, [tool.langgraph-migrator.app])"
    )

    def old(g: ThreadGroup) -> bool:
        return 0 < _fmt(g.fmt) and _fmt(g.fmt) in old_task_ids

    task_id_breaking = cured is None
    cured_note = f"; cured by {cured}" if cured else ""
    if lg and lg >= TASK_ID_CHANGED:
        r = _reach(
            groups,
            "H-TASK-ID",
            "paused with pending writes or inside a subgraph, written by langgraph < 0.3.17"
            + cured_note,
            task_id_breaking,
            lambda g: old(g) and bool({"pending", "paused_subgraph"} & g.flags),
        )
        if r:
            reaches.append(r)
        for flag in ("pending", "paused_subgraph"):
            r = _reach(
                groups,
                "H-TASK-ID",
                f"of them {FLAG_TEXT[flag]}",
                task_id_breaking,
                lambda g, flag=flag: old(g) and flag in g.flags,
            )
            if r:
                reaches.append(r)
    in_band = bool(lg) and INTERRUPT_BAND[0] <= lg < INTERRUPT_BAND[1]
    if in_band:
        r = _reach(
            groups,
            "H-INTERRUPT-RESUME",
            f"{FLAG_TEXT['interrupt']}, written by langgraph 0.2.x",
            True,
            lambda g: _fmt(g.fmt) == 1 and "interrupt" in g.flags,
        )
        if r:
            reaches.append(r)
    if cpp and cpp > (1, 0, 0):
        r = _reach(
            groups,
            "H-SEND-DROPPED",
            FLAG_TEXT["sends"] + " (checkpoint-postgres 1.0.0)",
            True,
            lambda g: "sends" in g.flags,
        )
        if r:
            reaches.append(r)
    if cpp and cpp >= METADATA_RAW_FROM:
        r = _reach(
            groups,
            "H-METADATA-WRITES",
            FLAG_TEXT["lc_writes"],
            False,
            lambda g: "lc_writes" in g.flags,
        )
        if r:
            reaches.append(r)
    r = _reach(
        groups,
        "H-DELTA-ROLLBACK",
        FLAG_TEXT["delta"],
        bool(lg) and lg < DELTA_FROM,
        lambda g: "delta" in g.flags,
    )
    if r:
        reaches.append(r)

    hazards: list[Hazard] = []
    by_id: dict[str, list[Reach]] = {}
    for r in reaches:
        by_id.setdefault(r.hazard, []).append(r)
    for hid, rs in by_id.items():
        head = rs[0]
        counts = "; ".join(f"{r.threads} thread(s) {r.what}" for r in rs)
        sample = ", ".join(head.thread_ids)
        more = f" (first {len(head.thread_ids)}: {sample})" if sample else ""
        breaking = any(r.breaking for r in rs)
        hazards.append(
            Hazard(
                hid,
                "error" if breaking else "warning",
                f"{_MEANING[hid]}: {counts}{more}",
                f"{_FIX[hid].format(spec=from_spec)}; {prove}",
                data=True,
            )
        )
    pinned = target_versions.get("langgraph")
    if in_band and any(_fmt(g.fmt) == 1 for g in groups):
        reached = "H-INTERRUPT-RESUME" in by_id
        hazards.append(
            Hazard(
                "P-KNOWN-BAD-TARGET",
                "error" if reached else "warning",
                f"the target langgraph {pinned} is inside the band 0.6.8 ... 1.2.12 that cannot "
                "resume an interrupt() written by langgraph 0.2.x, and this database holds "
                "langgraph 0.2.x threads",
                "deploy langgraph 1.2.13 or later (0.6.7 also resumes them)",
                data=True,
            )
        )
    return reaches, hazards


_MEANING: Mapping[str, str] = {
    "H-TASK-ID": "the target derives task ids differently (langgraph >= 0.3.17): on resume it "
    "orphans pending writes, re-runs completed nodes and restarts paused subgraphs",
    "H-INTERRUPT-RESUME": "resuming an interrupt() written by langgraph 0.2.x raises "
    "TypeError: 'Interrupt' object is not subscriptable on the target",
    "H-SEND-DROPPED": "paused Send tasks stored in the checkpoint JSON are dropped by the "
    "target (the thread is no longer paused)",
    "H-METADATA-WRITES": "metadata.writes come back as raw lc envelope dicts on the target: "
    "code that reads metadata['writes'] breaks",
    "H-DELTA-ROLLBACK": "threads with DeltaChannel channels: versions before langgraph 1.2 "
    "cannot read them (rolling back below 1.2 is not supported)",
}

_FIX: Mapping[str, str] = {
    "H-TASK-ID": "deploy with `langgraph-migrator migrate --from {spec} --fallback dump-restore` "
    "(task-id transform), or let the paused threads finish before the upgrade",
    "H-INTERRUPT-RESUME": "target langgraph 1.2.13 or later",
    "H-SEND-DROPPED": "deploy with `langgraph-migrator migrate --from {spec} --fallback "
    "dump-restore` (dumps through the old saver)",
    "H-METADATA-WRITES": "read message writes from channel values, not metadata['writes']",
    "H-DELTA-ROLLBACK": "keep a backup from before the upgrade; do not roll back below "
    "langgraph 1.2 once these threads exist",
}
