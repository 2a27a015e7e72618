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


def test_a_cure_without_goldens_is_judged_by_the_reads_of_the_threads_at_risk():
    """migrate's fallback with no golden compares what the old version read of the threads
    at risk with what the new one reads after the cure: a difference is not a cure."""
    import copy

    from migrator.execute.fallback import _fallback_checks
    from migrator.execute.model import DriftError, MigrateSettings, _Run
    from tests.unit.test_compare import TID, base_thread, snap

    def judged(after_thread):
        run = _Run(MigrateSettings(dsn="postgresql:///x"), lambda _m: None)
        drift = DriftError("at risk", [], unproven=True, at_risk="H-TASK-ID: 1 thread(s)")
        before = snap(base_thread())
        after = snap(after_thread)
        ok = _fallback_checks(run, drift, Report("verify", ()), 1, (before, after))
        return ok, [c for c in run.checks if c.check == "fallback"]

    ok, checks = judged(base_thread())
    assert ok and [(c.thread_id, c.status) for c in checks] == [(TID, "pass")]
    broken = copy.deepcopy(base_thread())
    broken["state"]["next"] = ["tools"]  # the cure left it resuming somewhere else
    ok, checks = judged(broken)
    assert not ok
    assert [(c.thread_id, c.status) for c in checks] == [(TID, "fail")]
    assert checks[0].differences
