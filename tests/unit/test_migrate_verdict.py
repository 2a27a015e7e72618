"""A printed verdict always agrees with migrate's exit code (issue 12 item 13)."""

from __future__ import annotations

from migrator.errors import LockTimeoutError, MigrationError
from migrator.execute.run import agree
from migrator.report import Check, Report


def test_an_error_after_passing_checks_makes_the_verdict_fail():
    report = Report("migrate", (Check("plan", "pass", "ok"), Check("setup", "pass", "ok")))
    assert report.verdict == "pass"
    out = agree(report, MigrationError("restoring the backup failed\nsecond line"))
    assert out.verdict == "fail"
    last = out.checks[-1]
    assert (last.check, last.status) == ("migrate", "fail")
    assert last.summary == "exit 5: restoring the backup failed"


def test_lock_timeout_is_a_failed_verdict_too():
    report = Report("migrate", (Check("lock", "pass", "held"),))
    assert agree(report, LockTimeoutError("still locked")).checks[-1].summary.startswith("exit 4")


def test_no_error_or_already_failing_is_unchanged():
    passing = Report("migrate", (Check("plan", "pass", "ok"),))
    assert agree(passing, None) is passing
    failing = Report("migrate", (Check("verify", "fail", "drift"),))
    assert agree(failing, MigrationError("x")) is failing
