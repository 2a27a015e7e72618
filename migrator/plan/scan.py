"""The thread scan: what the stored threads hold, by era and flag, in one read-only query.

:mod:`migrator.plan.blast` decides which data hazards apply to a (from, to) pair and
what they need to see (:class:`ScanNeeds`); this module builds and runs the SQL that
sees it (:func:`scan_sql`, :func:`scan_threads`) and never decodes a value:

- the era of each thread: the ``"v"`` of its latest root checkpoint's JSON;
- paused with writes of ordinary tasks, paused inside a subgraph, holding a pending
  interrupt -- looked up only for the threads whose format a hazard of the target
  judges by them. langgraph >= 0.3.17 derives an ordinary (pull) task's id from
  different inputs, so its writes on the latest root checkpoint (a completed
  sibling's results, an error, an interrupt) no longer attach to it: completed nodes
  re-run, errors and interrupts vanish from ``get_state``. A ``Send`` (push) task's id
  did not change: its writes are kept. The rows do not say which task is which
  without re-hashing, so a thread counts when more tasks wrote on its latest root
  checkpoint than there were ``Send`` s (``__pregel_tasks`` writes on its parent): a
  Send task that wrote nothing can hide one ordinary writer (a lower bound);
- pending sends in the checkpoint JSON (checkpoint-postgres 1.0.0), ``metadata.writes``
  with ``lc`` envelopes, and ``DeltaChannel`` threads (the metadata markers
  checkpoint-postgres 3.2.0's ``PRUNE_DELTA_THREADS_SQL`` uses).

One row per distinct (format, flags): a :class:`ThreadGroup` with its count and first ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

#: Thread ids listed per finding.
SAMPLE = 20
#: langgraph's task id for writes no task made (NULL_TASK_ID): no task to lose them.
NO_TASK_ID = "00000000-0000-0000-0000-000000000000"
#: The newest checkpoint format: rows of it need no per-row look at the JSON beyond "v".
LATEST_FORMAT = "4"
#: A key every row of a format before v4 carries and no v4 writer adds: the Checkpoint
#: of langgraph-checkpoint < 2.1 has ``pending_sends`` (langgraph < 0.5 writes formats
#: v1-v3 through it, and every checkpoint-postgres stores the dict with the key), the
#: v4 Checkpoint (langgraph 0.5 and newer) has not. Testing a key's presence costs
#: less per row than reading "v" (the scan's one per-row test; the rows it keeps get
#: the exact format). A v4 row that carries the key anyway (langgraph >= 0.5 over
#: checkpoint-postgres < 2.0.22, which adds an empty one) is only read more closely.
_PRE_V4_KEY = "'pending_sends'"


@dataclass(frozen=True)
class ScanNeeds:
    """What the thread scan must look at for one (from, to) pair.

    :func:`migrator.plan.blast.scan_needs` decides it from the data hazards that apply.

    Attributes:
        task_fmts: Formats whose threads H-TASK-ID judges (empty: it does not apply).
        interrupt_fmts: Formats whose pending interrupts H-INTERRUPT-RESUME judges.
        sends: H-SEND-DROPPED applies (pending sends in the checkpoint JSON).
        lc_writes: H-METADATA-WRITES applies (``lc`` envelopes in ``metadata.writes``).
        delta: H-DELTA-ROLLBACK applies (DeltaChannel markers in ``metadata``).
    """

    task_fmts: frozenset[int] = frozenset({1, 2})
    interrupt_fmts: frozenset[int] = frozenset({1})
    sends: bool = True
    lc_writes: bool = True
    delta: bool = True

    @property
    def lookup_fmts(self) -> list[str]:
        """Formats whose threads get the per-thread lookups (writes, child namespaces)."""
        return [str(f) for f in sorted(self.task_fmts | self.interrupt_fmts)]

    @property
    def metadata(self) -> bool:
        """Whether the scan reads ``checkpoints.metadata`` at all."""
        return self.lc_writes or self.delta

    def checked(self) -> dict[str, str]:
        """Per flag, which threads the scan looked at (``all``, ``v1, v2``, ``none``)."""
        lookups = ", ".join(f"v{f}" for f in self.lookup_fmts) or "none"
        return {
            "pending": lookups,
            "paused_subgraph": lookups,
            "interrupt": lookups,
            "sends": "all" if self.sends else "none",
            "lc_writes": "all" if self.lc_writes else "none",
            "delta": "all" if self.delta else "none",
        }


#: The exact ``metadata.writes`` test, run on the odd rows only (see :data:`_SCAN_SQL`).
_LC_TEST = (
    "(metadata ? 'writes' AND jsonb_typeof(metadata -> 'writes') = 'object'"
    " AND strpos((metadata -> 'writes')::text, '\"lc\": ') > 0)"
)
#: The DeltaChannel markers: (the filter over every row, the exact test).
_DELTA_TEST = (
    "'counters_since_delta_snapshot', 'delta_writes_versioned'",
    "metadata ?| array['counters_since_delta_snapshot', 'delta_writes_versioned']",
)

#: One index-only pass (each thread's latest root checkpoint id, from the primary key)
#: and one sequential pass that keeps only the rows worth a look ({odd_filter}): those
#: that may be of an older format than :data:`LATEST_FORMAT` (:data:`_PRE_V4_KEY`), and
#: DeltaChannel markers when that hazard applies. Pending sends and ``metadata.writes``
#: need no test of their own: only writers of formats before v4 put them there
#: (langgraph < 0.5; a v4 reader ignores a v4 row's ``pending_sends``), so every row
#: that can hold them is odd, and the exact tests run on the odd rows only. Per thread
#: with odd rows, the latest root checkpoint's format is its odd row's, or the latest
#: format when no odd row is it; every other thread is of the latest format. Then
#: primary-key lookups (``LATERAL``) of the latest root checkpoint's writes and child
#: namespaces, only for the threads whose format a hazard judges by them. Threads are
#: grouped by (format, flag bits), and each group's first ids (in byte order, as Python
#: sorts them) come from a top-N scan per group: sorting every thread on all seven keys
#: cost more than the lookups. The CTEs are MATERIALIZED so the planner keeps the
#: sequential pass a plain scan (it cannot estimate the jsonb filter and otherwise walks
#: the table in index order). Read only.
_SCAN_SQL = """
WITH ids AS MATERIALIZED (
    SELECT thread_id, max(checkpoint_id) FILTER (WHERE checkpoint_ns = '') AS latest
    FROM checkpoints
    GROUP BY thread_id
), odd AS MATERIALIZED (
    SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
           checkpoint ->> 'v' AS fmt,
           coalesce((checkpoint -> 'pending_sends')
                    NOT IN ('[]'::jsonb, '["json", "W10="]'::jsonb), false) AS sends,
           {lc_test} AS lc_writes, {delta_test} AS delta
    FROM checkpoints
    WHERE {odd_filter}
), oddthreads AS MATERIALIZED (
    SELECT i.thread_id, i.latest,
           CASE WHEN i.latest IS NULL THEN '0'
                WHEN bool_or(o.checkpoint_ns = '' AND o.checkpoint_id = i.latest)
                THEN coalesce(max(o.fmt) FILTER (
                         WHERE o.checkpoint_ns = '' AND o.checkpoint_id = i.latest), '0')
                ELSE %(latest_fmt)s END AS fmt,
           coalesce(bool_or(o.sends) FILTER (
               WHERE o.checkpoint_ns = '' AND o.checkpoint_id = i.latest), false) AS sends,
           max(o.parent_checkpoint_id) FILTER (
               WHERE o.checkpoint_ns = '' AND o.checkpoint_id = i.latest) AS parent,
           bool_or(o.lc_writes) AS lc_writes, bool_or(o.delta) AS delta
    FROM odd o
    JOIN ids i ON i.thread_id = o.thread_id
    GROUP BY i.thread_id, i.latest
), looked AS (
    SELECT t.thread_id, coalesce(s.child_latest >= t.latest, false) AS subgraph,
           coalesce(w.writers, 0) > coalesce(p.sends, 0) AS pending,
           coalesce(w.interrupt, false) AS interrupt
    FROM oddthreads t
    LEFT JOIN LATERAL (
        SELECT max(c.checkpoint_id) AS child_latest
        FROM checkpoints c
        WHERE c.thread_id = t.thread_id AND c.checkpoint_ns > ''
    ) s ON true
    LEFT JOIN LATERAL (
        SELECT count(DISTINCT w.task_id) FILTER (WHERE w.task_id <> %(no_task)s) AS writers,
               bool_or(w.channel = '__interrupt__') AS interrupt
        FROM checkpoint_writes w
        WHERE w.thread_id = t.thread_id AND w.checkpoint_ns = '' AND w.checkpoint_id = t.latest
    ) w ON true
    LEFT JOIN LATERAL (
        SELECT count(*) AS sends
        FROM checkpoint_writes p
        WHERE p.thread_id = t.thread_id AND p.checkpoint_ns = '' AND p.checkpoint_id = t.parent
          AND p.channel = '__pregel_tasks'
    ) p ON true
    WHERE t.fmt = ANY(%(lookup_fmts)s::text[])
), tagged AS MATERIALIZED (
    SELECT i.thread_id,
           coalesce(t.fmt, CASE WHEN i.latest IS NULL THEN '0' ELSE %(latest_fmt)s END) AS fmt,
           (coalesce(r.pending, false)::int
            | (coalesce(r.subgraph, false)::int << 1)
            | (coalesce(r.interrupt, false)::int << 2)
            | (coalesce(t.sends, false)::int << 3)
            | (coalesce(t.lc_writes, false)::int << 4)
            | (coalesce(t.delta, false)::int << 5)) AS bits
    FROM ids i
    LEFT JOIN oddthreads t ON t.thread_id = i.thread_id
    LEFT JOIN looked r ON r.thread_id = i.thread_id
), groups AS (
    SELECT fmt, bits, count(*) AS threads FROM tagged GROUP BY fmt, bits
)
SELECT fmt, (bits & 1) > 0 AS pending, (bits & 2) > 0 AS paused_subgraph,
       (bits & 4) > 0 AS interrupt, (bits & 8) > 0 AS sends, (bits & 16) > 0 AS lc_writes,
       (bits & 32) > 0 AS delta, threads,
       ARRAY(SELECT t.thread_id FROM tagged t WHERE t.fmt = g.fmt AND t.bits = g.bits
             ORDER BY t.thread_id COLLATE "C" LIMIT %(sample)s) AS sample
FROM groups g
"""


def scan_sql(needs: ScanNeeds) -> str:
    """The thread scan for ``needs``: no per-row test a hazard of the pair does not use.

    Parameters: ``sample``, ``latest_fmt``, ``lookup_fmts``, ``no_task`` (:func:`scan_params`).
    """
    odd = [f"checkpoint ? {_PRE_V4_KEY}"]
    if needs.delta:
        odd.append(f"metadata ?| array[{_DELTA_TEST[0]}]")
    return _SCAN_SQL.format(
        odd_filter="\n       OR ".join(odd),
        lc_test=_LC_TEST if needs.lc_writes else "false",
        delta_test=_DELTA_TEST[1] if needs.delta else "false",
    )


def scan_params(needs: ScanNeeds) -> dict[str, Any]:
    """The parameters of :func:`scan_sql`."""
    return {
        "sample": SAMPLE,
        "latest_fmt": LATEST_FORMAT,
        "lookup_fmts": needs.lookup_fmts,
        "no_task": NO_TASK_ID,
    }


#: The flags a thread can carry, as the scan names them.
FLAGS = ("pending", "paused_subgraph", "interrupt", "sends", "lc_writes", "delta")


@dataclass(frozen=True)
class ThreadGroup:
    """Threads sharing one checkpoint format and one set of flags (one scan row)."""

    fmt: str
    flags: frozenset[str]
    threads: int
    sample: tuple[str, ...]


def scan_threads(
    conn: psycopg.Connection[Any], needs: ScanNeeds | None = None
) -> tuple[ThreadGroup, ...]:
    """Run :func:`scan_sql` on ``conn`` (the caller makes it read only).

    Args:
        conn: A connection whose ``search_path`` finds the checkpoint tables.
        needs: What to look at (:func:`scan_needs`); default: everything.

    Returns:
        One group per distinct (format, flags).
    """
    needs = needs or ScanNeeds()
    rows = conn.execute(scan_sql(needs), scan_params(needs)).fetchall()
    groups = []
    for row in rows:
        fmt, *flags, threads, sample = row
        on = frozenset(name for name, value in zip(FLAGS, flags, strict=True) if value)
        groups.append(ThreadGroup(str(fmt), on, int(threads), tuple(sample or ())))
    return tuple(groups)
