"""Data hazards and their blast radius: which stored threads the target version breaks.

The schema part of ``plan`` says whether ``setup()`` will work; this part says
which *threads* the target then reads or resumes differently (HAZARDS.md "Graph
semantics", "Serializer", "Rollback"). It reads the live tables with read-only
SQL and never decodes a value (:mod:`migrator.plan.scan`):

- the era of each thread: the ``"v"`` of its latest root checkpoint's JSON
  (1: langgraph 0.2.x, and 0.3.x before 0.3.25 with langgraph-checkpoint < 2.0.22;
  2: 0.3.x before 0.3.25 with langgraph-checkpoint >= 2.0.22; 3: 0.3.25-0.4.x;
  4: langgraph 0.5 and newer);
- paused with writes of ordinary (non-``Send``) tasks on the latest root checkpoint (a
  completed sibling's results, a failed task's error, an interrupt: langgraph >=
  0.3.17 no longer attaches them to their task), paused inside a subgraph (a child
  namespace has a checkpoint at or after the latest root one: checkpoint ids are
  time-ordered), holding a pending interrupt (an ``__interrupt__`` write) -- looked
  up only for the threads whose format a hazard of the target judges by them
  (:mod:`migrator.plan.scan` says how);
- holding pending sends in the checkpoint JSON (checkpoint-postgres 1.0.0),
  ``metadata.writes`` with ``lc`` envelopes, and ``DeltaChannel`` threads (the
  metadata markers checkpoint-postgres 3.2.0's ``PRUNE_DELTA_THREADS_SQL`` uses) --
  the ``metadata`` tests only when a metadata hazard applies (:func:`scan_needs`).

What the rows cannot tell: the langgraph *release* that wrote a format v1 or v2
checkpoint. H-TASK-ID starts at 0.3.17, inside both formats' ranges (task ids are
bare hash digests either way), so those threads are counted at risk; ``--from``
decides for v2, only ``upgrade-check`` proves v1.

:func:`data_hazards` (pure) turns the scan's groups into hazards for a target.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from migrator.plan.model import Hazard
from migrator.plan.scan import FLAGS, SAMPLE, ScanNeeds, ThreadGroup

#: The langgraph release that changed task-id derivation (H-TASK-ID).
TASK_ID_CHANGED = (0, 3, 17)
#: The first langgraph that derives the task ids of a format-2+ checkpoint with xxhash
#: (every newer reader does): format v2 written by an older langgraph is at risk too.
TASK_ID_XXHASH = (0, 3, 19)
#: Targets that fail to resume a langgraph 0.2.x ``interrupt()`` (H-INTERRUPT-RESUME).
INTERRUPT_BAND = ((0, 6, 8), (1, 2, 13))
#: checkpoint-postgres from which ``metadata.writes`` envelopes come back raw.
METADATA_RAW_FROM = (2, 0, 25)
#: langgraph from which DeltaChannel exists (H-DELTA-ROLLBACK).
DELTA_FROM = (1, 2)

#: What each flag means, for reports.
FLAG_TEXT: Mapping[str, str] = {
    "pending": "paused with writes of ordinary (non-Send) tasks (completed siblings, "
    "errors, interrupts)",
    "paused_subgraph": "paused inside a subgraph",
    "interrupt": "holding a pending interrupt",
    "sends": "holding pending sends in the checkpoint JSON",
    "lc_writes": "with lc envelopes in metadata.writes",
    "delta": "with DeltaChannel (delta-stored) channels",
}

#: Checkpoint format ("v") -> the langgraph releases that write it.
FORMAT_ERA: Mapping[str, str] = {
    "0": "unknown format",
    "1": "langgraph 0.2.x or older, or 0.3.x before 0.3.25",
    "2": "langgraph 0.3.x before 0.3.25",
    "3": "langgraph 0.3.25-0.4.x",
    "4": "langgraph 0.5 or newer",
}


@dataclass(frozen=True)
class Reach:
    """How many threads one data hazard reaches, and the first of them.

    Attributes:
        hazard: The hazard id.
        what: Which threads (``paused inside a subgraph, format v1``).
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
        needs: What the scan looked at (a flag it did not look at counts 0).
    """

    groups: tuple[ThreadGroup, ...]
    seconds: float = 0.0
    from_label: str | None = None
    reaches: tuple[Reach, ...] = field(default=())
    needs: ScanNeeds = field(default_factory=ScanNeeds)

    @property
    def threads(self) -> int:
        """Threads with at least one checkpoint."""
        return sum(g.threads for g in self.groups)

    @property
    def at_risk(self) -> int:
        """Distinct threads a breaking data hazard reaches (each thread is in one group)."""
        return self.threads_in(r for r in self.reaches if r.breaking)

    def threads_in(self, reaches: Iterable[Reach]) -> int:
        """Distinct threads ``reaches`` cover (hazards overlap; a thread is in one group)."""
        return sum(self.groups[i].threads for i in {i for r in reaches for i in r.groups})

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
            "checked": self.needs.checked(),
            "reaches": [r.to_dict() for r in self.reaches],
            "seconds": round(self.seconds, 3),
        }


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


def scan_needs(
    target_versions: Mapping[str, Any], from_versions: Mapping[str, Any] | None = None
) -> ScanNeeds:
    """What the scan must look at for the data hazards that can apply to (from, to) (pure).

    The one place that says which hazard applies to a pair; :func:`data_hazards` uses it.
    ``--from`` (the version set that wrote the data) rules hazards out: no DeltaChannel
    threads before langgraph 1.2, no ``metadata.writes`` change when the data's
    checkpoint-postgres already returns envelopes raw. Without it, every hazard of the
    target applies. DeltaChannel threads are looked for only when the target is below
    langgraph 1.2 (the one reader that loses them).
    """
    lg = _vt(target_versions.get("langgraph"))
    cpp = _vt(target_versions.get("langgraph-checkpoint-postgres"))
    from_lg = _vt((from_versions or {}).get("langgraph"))
    from_cpp = _vt((from_versions or {}).get("langgraph-checkpoint-postgres"))
    task_fmts: frozenset[int] = frozenset()
    if lg and lg >= TASK_ID_CHANGED:
        # v1: langgraph <= 0.3.24, before or after 0.3.17 -- nothing tells: always judged.
        # v2: langgraph 0.3.x < 0.3.25; newer readers hash its task ids with xxhash, which
        # langgraph derives from 0.3.19 on: --from decides.
        task_fmts = frozenset({1} | ({2} if not from_lg or from_lg < TASK_ID_XXHASH else set()))
    in_band = bool(lg) and INTERRUPT_BAND[0] <= lg < INTERRUPT_BAND[1]
    return ScanNeeds(
        task_fmts=task_fmts,
        interrupt_fmts=frozenset({1}) if in_band else frozenset(),
        sends=bool(cpp) and cpp > (1, 0, 0),
        lc_writes=bool(cpp)
        and cpp >= METADATA_RAW_FROM
        and not (from_cpp and from_cpp >= METADATA_RAW_FROM),
        # Only a target below 1.2 misreads DeltaChannel threads; rolling back to the
        # version that wrote them (1.2 or later, or there would be none) reads them.
        delta=bool(lg) and lg < DELTA_FROM and not (from_lg and from_lg < DELTA_FROM),
    )


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
    needs = scan_needs(target_versions, from_versions)
    reaches: list[Reach] = []
    prove = (
        f"prove it with the app profile ([tool.langgraph-migrator.app]): "
        f"langgraph-migrator upgrade-check --from '{from_spec}' --to '{to_spec}'"
    )

    def old(g: ThreadGroup) -> bool:
        return _fmt(g.fmt) in needs.task_fmts

    task_id_breaking = cured is None
    cured_note = f"; cured by {cured}" if cured else ""
    if needs.task_fmts:
        formats = ", ".join(f"v{f}" for f in sorted(needs.task_fmts))
        r = _reach(
            groups,
            "H-TASK-ID",
            "paused with writes of ordinary tasks or inside a subgraph, in a checkpoint format "
            f"langgraph < 0.3.17 writes ({formats})" + cured_note,
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
    in_band = bool(needs.interrupt_fmts)
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
    if needs.sends:
        r = _reach(
            groups,
            "H-SEND-DROPPED",
            FLAG_TEXT["sends"] + " (checkpoint-postgres 1.0.0)",
            True,
            lambda g: "sends" in g.flags,
        )
        if r:
            reaches.append(r)
    if needs.lc_writes:
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
    if r and needs.delta:
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
        undecided = ""
        if hid == "H-TASK-ID" and not from_versions:
            undecided = f"; {UNDECIDED_TASK_ID}"
        hazards.append(
            Hazard(
                hid,
                "error" if breaking else "warning",
                f"{_MEANING[hid]}: {counts}{more}{undecided}",
                f"{_FIX[hid].format(spec=from_spec)}; {prove}"
                + _thread_args(head)
                + ("" if from_versions else f" ({GUESSED_FROM})"),
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


#: Threads the proving command names (a command line, not a report).
PROVE_THREADS = 10


def _thread_args(reach: Reach) -> str:
    """``--threads-from DSN --thread …`` for the first threads ``reach`` lists, saying so
    when it lists fewer than it counts (a trial found 3 of 4 kept without a word)."""
    if not reach.thread_ids:
        return ""
    named = reach.thread_ids[:PROVE_THREADS]
    text = " --threads-from DSN " + " ".join(f"--thread {shlex.quote(t)}" for t in named)
    if reach.threads > len(named):
        text += f" (the first {len(named)} of {reach.threads} threads: add --thread for more)"
    return text


#: Why format v1/v2 threads are counted at risk without ``--from`` (said with H-TASK-ID).
UNDECIDED_TASK_ID = (
    "the rows cannot tell which langgraph release wrote them (v1 is written by "
    "langgraph 0.2.x-0.3.24, v2 by 0.3.x before 0.3.25, and task ids are bare hashes "
    "either way), so they are counted at risk: give --from to judge v2 threads, "
    "and prove v1 threads with upgrade-check"
)

_MEANING: Mapping[str, str] = {
    "H-TASK-ID": "the target derives task ids differently (langgraph >= 0.3.17): on resume it "
    "orphans pending writes, re-runs completed nodes and restarts paused subgraphs; "
    "get_state loses their errors and interrupts",
    "H-INTERRUPT-RESUME": "resuming an interrupt() written by langgraph 0.2.x raises "
    "TypeError: 'Interrupt' object is not subscriptable on the target",
    "H-SEND-DROPPED": "paused Send tasks stored in the checkpoint JSON are dropped by the "
    "target (the thread is no longer paused)",
    "H-METADATA-WRITES": "metadata.writes come back as raw lc envelope dicts on the target: "
    "code that reads metadata['writes'] breaks",
    "H-DELTA-ROLLBACK": "threads with DeltaChannel channels: versions before langgraph 1.2 "
    "cannot read them (rolling back below 1.2 is not supported)",
}

#: The data hazards plan counts (``--accept-hazard`` takes these ids).
DATA_HAZARDS = frozenset(_MEANING)

#: Said where a fix names a ``--from`` that plan guessed from the ledger's shape.
GUESSED_FROM = (
    "--from above is a guess from the ledger's shape: pass the version that wrote the data"
)

_FIX: Mapping[str, str] = {
    "H-TASK-ID": "deploy with `langgraph-migrator migrate --from {spec} --fallback dump-restore` "
    "(task-id transform), or let the paused threads finish before the upgrade",
    "H-INTERRUPT-RESUME": "target langgraph 1.2.13 or later",
    "H-SEND-DROPPED": "deploy with `langgraph-migrator migrate --from {spec} --fallback "
    "dump-restore` (dumps through the old saver)",
    "H-METADATA-WRITES": "read message writes from channel values, not metadata['writes']; "
    "upgrade-check reports the changed metadata as breaking drift unless you pass "
    "--accept-hazard H-METADATA-WRITES or your policy says hazards_ignore = "
    '["H-METADATA-WRITES"] (docs/configuration.md)',
    "H-DELTA-ROLLBACK": "keep a backup from before the upgrade; do not roll back below "
    "langgraph 1.2 once these threads exist",
}
