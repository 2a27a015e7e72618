"""Which data hazards apply to a target, and how many threads each reaches (pure)."""

from __future__ import annotations

from migrator.plan.blast import UNDECIDED_TASK_ID, DataScan, data_hazards, scan_needs
from migrator.plan.scan import ThreadGroup, scan_sql

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
    # the target reads them, and so does the version that wrote them: nothing to count
    assert "H-DELTA-ROLLBACK" not in by
    old = {"langgraph": "1.0.2", "langgraph-checkpoint-postgres": "3.0.1"}
    assert next(r for r in data_hazards(groups, old)[0] if r.hazard == "H-DELTA-ROLLBACK").breaking
    one = {"langgraph": "0.2.0", "langgraph-checkpoint-postgres": "1.0.0"}
    assert not [r for r in data_hazards(groups, one)[0] if r.hazard == "H-SEND-DROPPED"]


def test_v2_from_0_3_17_or_0_3_18_still_at_risk_newer_readers_hash_v2_ids_with_xxhash():
    v2 = (_g("2", {"pending"}, 1, "x"),)
    for old in ("0.3.16", "0.3.17", "0.3.18"):
        assert data_hazards(v2, NEWEST, from_versions={"langgraph": old})[0], old
    assert not data_hazards(v2, NEWEST, from_versions={"langgraph": "0.3.19"})[0]


def test_without_from_task_id_says_the_rows_cannot_tell_and_from_is_needed():
    _, hazards = data_hazards(GROUPS, NEWEST)
    message = next(h.message for h in hazards if h.id == "H-TASK-ID")
    assert UNDECIDED_TASK_ID in message and "--from" in message
    _, hazards = data_hazards(GROUPS, NEWEST, from_versions={"langgraph": "0.2.56"})
    assert UNDECIDED_TASK_ID not in next(h.message for h in hazards if h.id == "H-TASK-ID")


def test_scan_needs_per_pair_and_no_metadata_in_the_sql_when_no_metadata_hazard_applies():
    v2_0_8 = {"langgraph": "0.2.56", "langgraph-checkpoint-postgres": "2.0.8"}
    v2_0_12 = {"langgraph": "0.2.62", "langgraph-checkpoint-postgres": "2.0.12"}
    v3_2_0 = {"langgraph": "1.2.22", "langgraph-checkpoint-postgres": "3.2.0"}
    # 2.0.8 -> 2.0.12: no task-id change, no raw envelopes, no DeltaChannel writer
    quiet = scan_needs(v2_0_12, v2_0_8)
    assert not quiet.metadata and not quiet.task_fmts and quiet.lookup_fmts == []
    assert "metadata" not in scan_sql(quiet)
    # unknown writer -> newest: everything the target's hazards use
    full = scan_needs(v3_2_0)
    assert full.lc_writes and full.task_fmts == {1, 2} and full.sends
    assert not full.interrupt_fmts  # 1.2.22 resumes 0.2.x interrupts
    assert not full.delta  # 1.2.22 reads DeltaChannel threads
    sql_text = scan_sql(full)
    # one test per row, a key that only rows before format v4 carry (metadata.writes
    # and pending sends come with those formats alone; their rows get the exact tests)
    where = sql_text.split("WHERE checkpoint ? 'pending_sends'")[1].split("\n), ")[0]
    assert "metadata" not in where and "->>" not in where, where
    assert "metadata ? 'writes'" in sql_text  # the exact test, on the odd rows
    # a target below 1.2 (a rollback): the DeltaChannel markers on every row
    v3_0_1 = {"langgraph": "1.0.2", "langgraph-checkpoint-postgres": "3.0.1"}
    below = scan_needs(v3_0_1)
    assert below.delta and "delta_writes_versioned']" in scan_sql(below).split("WHERE")[1]
    assert scan_needs(v3_0_1, v3_2_0).delta  # written by 1.2.22: there can be some
    assert not scan_needs(v3_0_1, v2_0_8).delta  # written before 1.2: there are none
    # a writer that already returns raw envelopes: no metadata test at all
    quiet_meta = scan_needs(v3_2_0, v3_2_0)
    assert (quiet_meta.lc_writes, quiet_meta.delta) == (False, False)
    assert "metadata" not in scan_sql(quiet_meta)
    assert scan_needs(BAND, v2_0_8).interrupt_fmts == {1}
    # the hazards follow the same needs: nothing metadata-based for 2.0.8 -> 2.0.12
    groups = (_g("1", {"lc_writes", "delta"}, 2, "m"),)
    assert data_hazards(groups, v2_0_12, from_versions=v2_0_8)[0] == []
    reaches = data_hazards(groups, v3_2_0)[0]
    assert {r.hazard for r in reaches} == {"H-METADATA-WRITES"}
    reaches = data_hazards(groups, v3_0_1)[0]
    assert {r.hazard for r in reaches} == {"H-METADATA-WRITES", "H-DELTA-ROLLBACK"}


def test_the_proving_command_names_the_threads_and_a_guessed_from_says_so():
    """Found by a new-user trial: 'prove it' had no --thread (it would not check the
    user's threads) and a guessed --from looked like a fact."""
    _, guessed = data_hazards(GROUPS, NEWEST, from_spec="langgraph-checkpoint-postgres==2.0.11")
    fix = next(h.fix for h in guessed if h.id == "H-TASK-ID")
    assert "--threads-from DSN --thread a --thread b --thread c" in fix
    assert "is a guess from the ledger's shape" in fix
    _, given = data_hazards(
        GROUPS, NEWEST, from_versions={"langgraph": "0.2.61"}, from_spec="X", to_spec="Y"
    )
    fix = next(h.fix for h in given if h.id == "H-TASK-ID")
    assert "guess" not in fix and "--thread a" in fix


def test_the_proving_command_names_up_to_ten_threads_and_says_when_there_are_more():
    ids = tuple(f"t{i:02d}" for i in range(20))
    four = (_g("1", {"lc_writes"}, 4, *ids[:4]),)
    fix = next(h.fix for h in data_hazards(four, NEWEST)[1] if h.id == "H-METADATA-WRITES")
    assert " ".join(f"--thread {t}" for t in ids[:4]) in fix and "the first" not in fix
    many = (_g("1", {"lc_writes"}, 25, *ids),)
    fix = next(h.fix for h in data_hazards(many, NEWEST)[1] if h.id == "H-METADATA-WRITES")
    assert "--thread t09" in fix and "--thread t10" not in fix
    assert "(the first 10 of 25 threads: add --thread for more)" in fix
