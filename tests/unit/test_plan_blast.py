"""Which data hazards apply to a target, and how many threads each reaches (pure)."""

from __future__ import annotations

from migrator.plan.blast import DataScan, ThreadGroup, data_hazards

NEWEST = {"langgraph": "1.2.24", "langgraph-checkpoint-postgres": "3.2.0"}
BAND = {"langgraph": "1.0.1", "langgraph-checkpoint-postgres": "3.0.0"}


def _g(fmt: str, flags: set[str], n: int, *ids: str) -> ThreadGroup:
    return ThreadGroup(fmt, frozenset(flags), n, tuple(ids))


GROUPS = (
    _g("1", {"pending"}, 3, "a", "b", "c"),
    _g("1", {"paused_subgraph"}, 2, "d", "e"),
    _g("1", {"interrupt"}, 4, "f"),
    _g("1", set(), 10, "g"),
    _g("4", {"pending", "paused_subgraph", "interrupt"}, 7, "h"),  # written by new code
)


def test_task_id_counts_old_paused_threads_only():
    reaches, hazards = data_hazards(GROUPS, NEWEST)
    head = next(r for r in reaches if r.hazard == "H-TASK-ID")
    assert (head.threads, head.thread_ids) == (5, ("a", "b", "c", "d", "e"))
    assert not any(r.hazard == "H-INTERRUPT-RESUME" for r in reaches)  # 1.2.24 resumes them
    assert DataScan(GROUPS, reaches=tuple(reaches)).at_risk == 5
    assert [h.id for h in hazards if h.severity == "error"] == ["H-TASK-ID"]
    assert all(h.data for h in hazards)


def test_band_target_gets_interrupt_resume_and_its_own_finding():
    reaches, hazards = data_hazards(GROUPS, BAND, from_spec="X", to_spec="Y")
    interrupt = next(r for r in reaches if r.hazard == "H-INTERRUPT-RESUME")
    assert interrupt.threads == 4
    band = next(h for h in hazards if h.id == "P-KNOWN-BAD-TARGET")
    assert band.severity == "error" and "1.2.13 or later" in band.fix
    assert DataScan(GROUPS, reaches=tuple(reaches)).at_risk == 9
    assert "--from 'X' --to 'Y'" in next(h.fix for h in hazards if h.id == "H-TASK-ID")


def test_before_0_3_17_no_task_id_and_from_refines_format_2():
    old_target = {"langgraph": "0.3.16", "langgraph-checkpoint-postgres": "2.0.13"}
    assert not [r for r in data_hazards(GROUPS, old_target)[0] if r.hazard == "H-TASK-ID"]
    v2 = (_g("2", {"pending"}, 1, "x"),)
    assert data_hazards(v2, NEWEST)[0]  # unknown writer: counted
    assert not data_hazards(v2, NEWEST, from_versions={"langgraph": "0.3.20"})[0]


def test_sends_metadata_and_delta():
    groups = (
        _g("1", {"sends"}, 1, "s"),
        _g("1", {"lc_writes"}, 2, "m"),
        _g("4", {"delta"}, 3, "d"),
    )
    reaches, hazards = data_hazards(groups, NEWEST)
    by = {r.hazard: r for r in reaches}
    assert by["H-SEND-DROPPED"].breaking and by["H-SEND-DROPPED"].threads == 1
    assert not by["H-METADATA-WRITES"].breaking
    assert not by["H-DELTA-ROLLBACK"].breaking  # the target reads them
    old = {"langgraph": "1.0.2", "langgraph-checkpoint-postgres": "3.0.1"}
    assert next(r for r in data_hazards(groups, old)[0] if r.hazard == "H-DELTA-ROLLBACK").breaking
    one = {"langgraph": "0.2.0", "langgraph-checkpoint-postgres": "1.0.0"}
    assert not [r for r in data_hazards(groups, one)[0] if r.hazard == "H-SEND-DROPPED"]
