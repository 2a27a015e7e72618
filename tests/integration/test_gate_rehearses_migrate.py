"""The gate rehearses ``migrate`` (plan, ``setup()``, repairs) instead of a plain ``setup()``.

Before, ``upgrade-check --from 2.0.12 --to 3.0.0`` exited 3 with no report: its plain
``setup()`` hit H-DUP-COLUMN (which ``migrate`` handles), and the user never saw the
H-INTERRUPT-RESUME resume failure behind it. Now the schema hazard is a finding with
the repair applied, the plain ``setup()`` result is reported beside it, and every
later check runs.
"""

from __future__ import annotations

import pytest

from migrator.api import upgrade_check
from migrator.config import CheckSettings, PgChoice
from migrator.report import Report

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

OLD = "langgraph-checkpoint-postgres==2.0.12"
NEW = "langgraph-checkpoint-postgres==3.0.0"


@pytest.fixture(scope="module")
def report(pg_default) -> Report:
    pg = PgChoice(provider="url", dsn=pg_default.dsn)
    return upgrade_check(CheckSettings(from_spec=OLD, to_spec=NEW, pg=pg, fallback="none"))


def _one(report: Report, check: str):
    found = [c for c in report.checks if c.check == check]
    assert len(found) == 1, [c.to_dict() for c in report.checks if c.check == check]
    return found[0]


def test_dup_column_is_a_finding_with_the_repair_applied(report: Report):
    schema = _one(report, "schema")
    assert (schema.status, schema.hazards) == ("warn", ("H-DUP-COLUMN",))
    setup = _one(report, "setup")  # migrate's own setup check: v9 recorded as done
    assert setup.status == "pass"
    assert setup.details["recorded_already_done"] == [9]
    in_place = _one(report, "in-place")  # what a team without the tool gets
    assert in_place.status == "warn" and "DuplicateColumn" in in_place.summary


def test_goes_on_to_resume_and_names_interrupt_resume(report: Report):
    assert report.verdict == "fail"
    resume = {c.canary: c for c in report.checks if c.check == "resume"}
    assert resume["interrupt_fn"].status == "fail"
    assert "H-INTERRUPT-RESUME" in resume["interrupt_fn"].hazards
    assert {"H-DUP-COLUMN", "H-INTERRUPT-RESUME", "H-TASK-ID"} <= set(report.hazards)
    checks = {c.check for c in report.checks}
    assert {"rolling-deploy", "drift", "resume", "rollback"} <= checks
