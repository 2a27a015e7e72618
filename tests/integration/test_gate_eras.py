"""The whole gate across released eras: verdicts, hazard ids and where they show.

One ``upgrade-check`` per old -> new pair (run once per module, two at a time, on
the session server), then exact expectations per pair from HAZARDS.md:

- 0.2.x eras (checkpoint-postgres <= 2.0.13) -> newest: H-TASK-ID (subgraph resume
  re-runs ``step_1``, failed_node resume re-runs ``sibling``), H-METADATA-WRITES,
  H-READ-BEFORE-SETUP before 2.0.12, H-ROLLBACK-NULL;
- 1.0.0 -> newest: H-SEND-DROPPED, H-1.0.0-JSON skips;
- 2.0.8 -> 3.0.0 (langgraph 1.0.1): H-INTERRUPT-RESUME as well;
- 2.0.25 and 3.0.0 -> newest: clean.

Nothing here depends on checkpoint ids, task ids or timings.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest

from migrator.api import upgrade_check
from migrator.config import CheckSettings, PgChoice
from migrator.postgres import Server
from migrator.report import Check, Report

pytestmark = pytest.mark.slow

CP = "langgraph-checkpoint-postgres=="
PAIRS: dict[str, tuple[str, str]] = {
    "1.0.0->current": (CP + "1.0.0", "current"),
    "2.0.8->current": (CP + "2.0.8", "current"),
    "2.0.12->current": (CP + "2.0.12", "current"),
    "2.0.25->current": (CP + "2.0.25", "current"),
    "3.0.0->current": (CP + "3.0.0", "current"),
    "2.0.8->3.0.0": (CP + "2.0.8", CP + "3.0.0"),
}
ALL = (
    "messages",
    "interrupt_before",
    "interrupt_fn",
    "send",
    "send_paused",
    "subgraph",
    "rich_values",
    "time_travel",
    "failed_node",
    "large_state",
)
ERA_0_2_DRIFT = {
    "messages": "fail",
    "interrupt_fn": "fail",
    "subgraph": "fail",
    "rich_values": "fail",
    "failed_node": "fail",
}
ERA_0_2_ROLLBACK = dict.fromkeys(
    ("messages", "interrupt_before", "interrupt_fn", "send_paused", "subgraph"), "warn"
) | {
    # read with no error, but without the values the new version stored inline in the
    # checkpoint JSON (rich_values' `checked`, large_state's `verified`): a silent loss
    "rich_values": "warn",
    "large_state": "warn",
}
SEEDED_1_0_0 = tuple(c for c in ALL if c not in ("messages", "interrupt_fn", "rich_values"))

# pair -> verdict, {check: hazard ids}, {check: {canary: status}} for every non-pass check
EXPECTED: dict[str, tuple[str, dict[str, set[str]], dict[str, dict[str, str]]]] = {
    "1.0.0->current": (
        "fail",
        {
            "rolling-deploy": {"H-READ-BEFORE-SETUP"},
            "drift": {"H-SEND-DROPPED"},
            "resume": {"H-SEND-DROPPED", "H-TASK-ID"},
            "rollback": {"H-ROLLBACK-NULL"},
        },
        {
            "seed": dict.fromkeys(("messages", "interrupt_fn", "rich_values"), "skip"),
            "rolling-deploy": dict.fromkeys(SEEDED_1_0_0, "warn"),
            "drift": {"send": "fail", "send_paused": "fail"},
            "resume": {"send_paused": "fail", "subgraph": "fail", "failed_node": "fail"},
            "rollback": dict.fromkeys(
                ("interrupt_before", "subgraph", "failed_node", "large_state"), "warn"
            ),
        },
    ),
    "2.0.8->current": (
        "fail",
        {
            "rolling-deploy": {"H-READ-BEFORE-SETUP"},
            "drift": {"H-METADATA-WRITES", "H-TASK-ID"},
            "resume": {"H-TASK-ID"},
            "rollback": {"H-ROLLBACK-NULL"},
        },
        {
            "rolling-deploy": dict.fromkeys(ALL, "warn"),
            "drift": ERA_0_2_DRIFT,
            "resume": {"subgraph": "fail", "failed_node": "fail"},
            "rollback": ERA_0_2_ROLLBACK,
        },
    ),
    "2.0.12->current": (
        "fail",
        {
            "drift": {"H-METADATA-WRITES", "H-TASK-ID"},
            "resume": {"H-TASK-ID"},
            "rollback": {"H-ROLLBACK-NULL"},
        },
        {
            "drift": ERA_0_2_DRIFT,
            "resume": {"subgraph": "fail", "failed_node": "fail"},
            "rollback": ERA_0_2_ROLLBACK,
        },
    ),
    "2.0.25->current": ("pass", {}, {}),
    "3.0.0->current": ("pass", {}, {}),
    "2.0.8->3.0.0": (
        "fail",
        {
            "rolling-deploy": {"H-READ-BEFORE-SETUP"},
            "drift": {"H-METADATA-WRITES", "H-TASK-ID"},
            "resume": {"H-INTERRUPT-RESUME", "H-TASK-ID"},
            "rollback": {"H-ROLLBACK-NULL"},
        },
        {
            "rolling-deploy": dict.fromkeys(ALL, "warn"),
            "drift": ERA_0_2_DRIFT,
            "resume": {"interrupt_fn": "fail", "subgraph": "fail", "failed_node": "fail"},
            # the failed resume wrote nothing to interrupt_fn, so rollback still reads it
            "rollback": {k: v for k, v in ERA_0_2_ROLLBACK.items() if k != "interrupt_fn"},
        },
    ),
}


@pytest.fixture(scope="module")
def reports(pg_default: Server) -> dict[str, Report]:
    """Every pair's report, two checks at a time on the session server."""
    pg = PgChoice(provider="url", dsn=pg_default.dsn)

    def run(pair: str) -> Report:
        old, new = PAIRS[pair]
        return upgrade_check(CheckSettings(from_spec=old, to_spec=new, pg=pg, fallback="none"))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(PAIRS, pool.map(run, PAIRS), strict=True))


def _hazards(report: Report) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for c in report.checks:
        if c.hazards:
            found.setdefault(c.check, set()).update(c.hazards)
    return found


#: Canaries with nothing to resume: their resume check is always a skip.
NOT_RESUMABLE = {"send", "time_travel"}


def _not_passing(report: Report) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for c in report.checks:
        if c.check == "resume" and c.canary in NOT_RESUMABLE:
            assert c.status == "skip", c.to_dict()
            continue
        if c.status != "pass":
            found.setdefault(c.check, {})[str(c.canary or c.thread_id)] = c.status
    return found


def _check(report: Report, check: str, canary: str) -> Check:
    (found,) = [c for c in report.checks if c.check == check and c.canary == canary]
    return found


_IDS = re.compile(r'((?:^|[\[,])(?:id|task_id)=)"[^"]*"')


def _where(path: str) -> str:
    """A difference path after its thread, with checkpoint and task ids masked."""
    return _IDS.sub(r'\1"*"', re.sub(r'^(?:resume\.)?threads\["[^"]*"\]', "", path))


def _breaking(c: Check) -> set[tuple[str, str, str | None]]:
    return {
        (_where(d["path"]), d["kind"], d["hazard"])
        for d in c.differences
        if d["severity"] == "breaking"
    }


def _counts(report: Report) -> tuple[int, int]:
    severities = [d["severity"] for c in report.checks for d in c.differences]
    return severities.count("breaking"), severities.count("benign")


@pytest.mark.parametrize("pair", list(PAIRS))
def test_verdict_hazards_and_failing_canaries(reports: Mapping[str, Report], pair: str) -> None:
    report = reports[pair]
    verdict, hazards, not_passing = EXPECTED[pair]
    assert report.verdict == verdict
    assert _hazards(report) == hazards
    assert _not_passing(report) == not_passing
    assert report.hazards == sorted(set().union(*hazards.values()))


@pytest.mark.parametrize("pair", ["2.0.25->current", "3.0.0->current"])
def test_modern_eras_are_clean(reports: Mapping[str, Report], pair: str) -> None:
    report = reports[pair]
    assert _counts(report) == (0, 0)
    assert {c.check for c in report.checks} == {
        "seed",
        "setup",  # migrate's schema path, rehearsed
        "in-place",  # a plain setup() on a copy: what a deploy without the tool gets
        "rolling-deploy",
        "drift",
        "resume",
        "rollback",
    }
    assert all(c.status == "pass" for c in report.checks if c.check in ("setup", "in-place"))
    assert {c.canary for c in report.checks if c.check == "seed"} == set(ALL)


@pytest.mark.parametrize("pair", ["1.0.0->current", "2.0.8->current", "2.0.12->current"])
def test_subgraph_resume_reruns_step_1_and_loses_the_child(
    reports: Mapping[str, Report], pair: str
) -> None:
    c = _check(reports[pair], "resume", "subgraph")
    assert _breaking(c) == {
        (".outcome", "outcome_changed", "H-TASK-ID"),
        ('.trace[node="step_1"]', "node_reexecuted", "H-TASK-ID"),
        ('.trace[node="step_2"]', "node_not_executed", "H-TASK-ID"),
        ('.trace[node="done"]', "node_not_executed", "H-TASK-ID"),
        (".next", "next_changed", "H-TASK-ID"),
        (".values_digest", "value_changed", "H-TASK-ID"),
    }
    reexecuted = [d for d in c.differences if d["kind"] == "node_reexecuted"]
    assert [(d["old"], d["new"]) for d in reexecuted] == [(0, 1)]
    assert reexecuted[0]["message"].startswith("node step_1 ran 1 time(s) after the upgrade")


@pytest.mark.parametrize("pair", list(PAIRS)[:3] + ["2.0.8->3.0.0"])
def test_failed_node_resume_reruns_the_completed_sibling(
    reports: Mapping[str, Report], pair: str
) -> None:
    found = _breaking(_check(reports[pair], "resume", "failed_node"))
    assert ('.trace[node="sibling"]', "node_reexecuted", "H-TASK-ID") in found
    assert {h for _, _, h in found} == {"H-TASK-ID"}
    assert {k for _, k, _ in found} <= {"node_reexecuted", "value_changed"}


@pytest.mark.parametrize("pair", ["2.0.8->current", "2.0.12->current", "2.0.8->3.0.0"])
def test_0_2_era_drift_details(reports: Mapping[str, Report], pair: str) -> None:
    report = reports[pair]
    assert _breaking(_check(report, "drift", "failed_node")) == {
        (".state.values.log", "length_changed", "H-TASK-ID"),
        (".state.next", "next_changed", "H-TASK-ID"),
        ('.state.tasks[name="flaky"].error', "value_changed", "H-TASK-ID"),
        ('.history[id="*"].tasks[name="flaky"].error', "value_changed", "H-TASK-ID"),
    }
    assert _breaking(_check(report, "drift", "subgraph")) == {
        ('.state.tasks[name="child"].state.values.log', "key_missing", "H-TASK-ID"),
        ('.state.tasks[name="child"].state.next', "next_changed", "H-TASK-ID"),
        ('.state.tasks[name="child"].state.tasks[name="step_2"]', "tasks_changed", "H-TASK-ID"),
    }
    messages = _breaking(_check(report, "drift", "messages"))
    assert {h for _, _, h in messages} == {"H-METADATA-WRITES"}
    assert all(".metadata.writes." in where for where, _, _ in messages)
    # the pending Send packets move into the __pregel_tasks channel: benign
    for canary in ("send", "send_paused"):
        c = _check(report, "drift", canary)
        assert c.status == "pass"
        rules = {d["rule"] for d in c.differences}
        assert "pending-sends-migrated-2.0.25" in rules


def test_1_0_0_skips_and_drops_paused_sends(reports: Mapping[str, Report]) -> None:
    report = reports["1.0.0->current"]
    for canary in ("messages", "rich_values"):
        c = _check(report, "seed", canary)
        assert c.status == "skip"
        assert "H-1.0.0-JSON" in c.summary and "JSON" in c.summary
    drift = _breaking(_check(report, "drift", "send_paused"))
    assert (".state.next", "next_changed", "H-SEND-DROPPED") in drift
    assert {h for _, _, h in drift} == {"H-SEND-DROPPED"}
    resume = _breaking(_check(report, "resume", "send_paused"))
    assert {(w, k) for w, k, _ in resume} == {
        ('.trace[node="work:alpha"]', "node_not_executed"),
        ('.trace[node="work:beta"]', "node_not_executed"),
        ('.trace[node="work:gamma"]', "node_not_executed"),
        ('.trace[node="reduce"]', "node_not_executed"),
        (".values_digest", "value_changed"),
    }
    assert {h for _, _, h in resume} == {"H-SEND-DROPPED"}
    rollback = _check(report, "rollback", "subgraph")
    assert "KeyError: 'pending_sends'" in rollback.summary


def test_interrupt_resume_fails_on_langgraph_1_0(reports: Mapping[str, Report]) -> None:
    c = _check(reports["2.0.8->3.0.0"], "resume", "interrupt_fn")
    assert _breaking(c) == {
        (".error", "value_error", "H-INTERRUPT-RESUME"),
        ('.trace[node="ask"]', "node_not_executed", "H-INTERRUPT-RESUME"),
        ('.trace[node="finish"]', "node_not_executed", "H-INTERRUPT-RESUME"),
        (".next", "next_changed", "H-INTERRUPT-RESUME"),
        (".values_digest", "value_changed", "H-INTERRUPT-RESUME"),
    }
    (error,) = [d for d in c.differences if d["kind"] == "value_error"]
    assert "'Interrupt' object is not subscriptable" in error["new"]
    # the newest langgraph resumes the same thread fine
    assert _check(reports["2.0.8->current"], "resume", "interrupt_fn").status == "pass"


def test_an_accepted_hazard_no_longer_fails_the_gate(pg_default: Server) -> None:
    """plan rates H-METADATA-WRITES a warning; the gate's drift calls it breaking.
    ``--accept-hazard`` (migrate's flag) lets the operator take it in the gate too: its
    differences are ignored, naming the flag, and the verdict follows; others still fail."""
    pg = PgChoice(provider="url", dsn=pg_default.dsn)
    base = CheckSettings(
        from_spec=CP + "2.0.8", pg=pg, canaries=("messages", "failed_node"), fallback="none"
    )
    plain = upgrade_check(base)
    assert _check(plain, "drift", "messages").status == "fail"
    accepted = upgrade_check(dataclasses.replace(base, accept_hazards=("H-METADATA-WRITES",)))
    drift = _check(accepted, "drift", "messages")
    assert drift.status == "pass", drift.summary
    ignored = [d for d in drift.differences if d.get("severity") == "ignored"]
    assert ignored and all("--accept-hazard" in str(d.get("rule")) for d in ignored)
    assert any("accepted (--accept-hazard): H-METADATA-WRITES" in n for n in accepted.notes)
    # H-TASK-ID was not accepted: the failed node's resume still fails the gate
    assert _check(accepted, "resume", "failed_node").status == "fail"
    assert accepted.verdict == "fail"


def test_rollback_names_values_the_old_version_reads_as_missing(
    reports: Mapping[str, Report],
) -> None:
    """A new-user trial found 2.0.10 reading, with no error, threads 3.2.0 had written,
    with their last values gone: the rollback check said "readable". It now compares the
    old version's read with the new one's."""
    check = _check(reports["2.0.8->current"], "rollback", "rich_values")
    assert check.status == "warn" and check.hazards == ("H-ROLLBACK-NULL",)
    assert "with no error but with checked missing or different" in check.summary
    assert check.differences and all(".checked" in d["path"] for d in check.differences)
    clean = _check(reports["2.0.25->current"], "rollback", "rich_values")
    assert clean.status == "pass" and not clean.differences
