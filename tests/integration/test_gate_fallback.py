"""upgrade-check runs the dump/restore fallback on breaking drift and says what it cured.

2.0.8 -> newest is the behaviour case: in place, H-TASK-ID makes completed nodes
run again and a paused subgraph restart; through dump/restore with the task-id
transform the same canaries resume exactly as 2.0.8 would.

2.0.8 -> 2.0.12 is the schema case: 2.0.12's ``setup()`` finds the ledger at v8
and runs nothing, so ``checkpoint_writes.task_path`` stays missing
(H-LEDGER-SHIFT) and every read fails; the fallback builds the tables with
2.0.12's own ``setup()`` and every canary reads and resumes as 2.0.8 left it.
"""

from __future__ import annotations

import pytest

from migrator.api import upgrade_check
from migrator.config import CheckSettings, PgChoice

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

OLD = "langgraph-checkpoint-postgres==2.0.8"
SHIFTED = "langgraph-checkpoint-postgres==2.0.12"


@pytest.fixture(scope="module")
def report(pg_default):
    pg = PgChoice(provider="url", dsn=pg_default.dsn)
    return upgrade_check(CheckSettings(from_spec=OLD, pg=pg, accept_fallback=True))


def _by(report, check):
    return {c.canary: c for c in report.checks if c.check == check}


def test_fallback_cures_every_in_place_failure(report):
    # With --accept-fallback, an in-place failure the fallback cures becomes a warning
    # that says so; without it (the default) the same check would fail the gate.
    cured_in_place = {
        (c.check, c.canary) for c in report.checks if "cured by the dump/restore" in c.summary
    }
    assert ("resume", "subgraph") in cured_in_place
    assert ("resume", "failed_node") in cured_in_place
    assert ("drift", "failed_node") in cured_in_place
    assert all(c.status == "warn" for c in report.checks if (c.check, c.canary) in cured_in_place)
    fixed = {
        (c.check.removeprefix("fallback-"), c.canary)
        for c in report.checks
        if c.check.startswith("fallback-") and c.status == "pass"
    }
    assert fixed == cured_in_place
    assert report.verdict == "pass"
    assert any("fallback cures every breaking difference" in n for n in report.notes)


def test_in_place_resume_reexecuted_but_fallback_did_not(report):
    kinds = {d["kind"] for d in _by(report, "resume")["subgraph"].differences}
    assert "node_reexecuted" in kinds  # in place: step_1 ran again
    after = _by(report, "fallback-resume")
    assert after["subgraph"].status == "pass" and after["failed_node"].status == "pass"
    assert after["subgraph"].differences == ()


@pytest.fixture(scope="module")
def shifted(pg_default):
    pg = PgChoice(provider="url", dsn=pg_default.dsn)
    return upgrade_check(CheckSettings(from_spec=OLD, to_spec=SHIFTED, pg=pg))


def test_a_schema_left_inconsistent_is_a_finding_migrate_repairs(shifted):
    """2.0.8 -> 2.0.12 (H-LEDGER-SHIFT): a plain setup() leaves task_path missing and every
    read failing; the gate rehearses migrate, whose repair adds it, and reports both."""
    schema = _by(shifted, "schema")[None]
    assert schema.status == "warn" and "H-LEDGER-SHIFT" in schema.hazards
    assert "task_path is missing" in schema.summary and "repaired by migrate" in schema.summary
    assert [c.status for c in shifted.checks if c.check == "repair"] == ["pass"]
    in_place = _by(shifted, "in-place")[None]
    assert in_place.status == "warn" and "H-LEDGER-SHIFT" in in_place.hazards
    assert "task_path does not exist" in in_place.summary
    seeded = {c.canary for c in shifted.checks if c.check == "seed" and c.status == "pass"}
    drift = _by(shifted, "drift")
    assert set(drift) == seeded and all(c.status == "pass" for c in drift.values())
    assert shifted.verdict == "pass"
