"""Report renderings: JSON shape, JUnit XML, Markdown, GitHub step summary."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

from migrator.report import (
    Check,
    Report,
    append_step_summary,
    render_markdown,
    to_junit,
    write_json,
    write_junit,
)


def _report() -> Report:
    diff = {
        "path": 'threads["canary:rich_values"].state.values.model',
        "kind": "type_changed",
        "severity": "breaking",
        "hazard": "H-STRICT-MSGPACK",
        "summary": "model: pydantic -> dict",
    }
    return Report(
        command="upgrade-check",
        checks=(
            Check("seed", "pass", "seeded", canary="messages"),
            Check(
                "drift",
                "fail",
                "1 breaking",
                canary="rich_values",
                hazards=("H-STRICT-MSGPACK",),
                differences=(diff, {**diff, "severity": "benign", "hazard": None}),
            ),
            Check(
                "rollback",
                "warn",
                "old code cannot read",
                canary="messages",
                hazards=("H-ROLLBACK-NULL",),
            ),
            Check("resume", "skip", "not resumable", canary="large_state"),
        ),
        timings={"seed": 1.5},
    )


def test_verdict_fails_only_on_failed_checks():
    report = _report()
    assert report.verdict == "fail"
    ok = Report("upgrade-check", tuple(c for c in report.checks if c.status != "fail"))
    assert ok.verdict == "pass"  # a warning alone does not fail the gate


def test_counts_and_hazards():
    counts = _report().counts()
    assert counts == {"pass": 1, "fail": 1, "warn": 1, "skip": 1, "breaking": 1, "benign": 1}
    assert _report().hazards == ["H-ROLLBACK-NULL", "H-STRICT-MSGPACK"]


def test_json_round_trips(tmp_path):
    path = tmp_path / "r.json"
    write_json(_report(), path)
    data = json.loads(path.read_text())
    assert data["format"] == "langgraph-migrator/report@1"
    assert data["verdict"] == "fail"
    assert [c["name"] for c in data["checks"]] == [
        "seed[messages]",
        "drift[rich_values]",
        "rollback[messages]",
        "resume[large_state]",
    ]


def test_junit_has_one_case_per_check(tmp_path):
    suite = to_junit(_report())
    cases = suite.findall("testcase")
    assert len(cases) == 4
    assert suite.get("failures") == "1" and suite.get("skipped") == "1"
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["drift[rich_values]"]
    path = tmp_path / "r.xml"
    write_junit(_report(), path)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and len(root.findall("testsuite/testcase")) == 4


def test_markdown_and_step_summary(tmp_path):
    md = render_markdown(_report())
    assert "| drift | rich_values | ❌ fail | H-STRICT-MSGPACK |" in md
    target = tmp_path / "summary.md"
    target.write_text("before\n")
    assert append_step_summary(_report(), {"GITHUB_STEP_SUMMARY": str(target)}) == target
    assert target.read_text().startswith("before\n## langgraph-migrator upgrade-check")
    assert append_step_summary(_report(), {}) is None


def test_breaking_differences_of_a_cured_check_are_said_to_be_settled():
    """'verdict: PASS … 44 breaking' read like a contradiction at 3 a.m. (new-user trial)."""
    failing = _report()
    assert failing.breaking_text() == "1 breaking / 1 benign differences"
    cured = Report(
        "migrate",
        tuple(
            Check(c.check, "warn", f"{c.summary} (in place); cured", differences=c.differences)
            if c.status == "fail"
            else c
            for c in failing.checks
        ),
    )
    assert cured.verdict == "pass"
    assert cured.breaking_text() == (
        "1 breaking / 1 benign differences "
        "(1 breaking in checks that no longer fail: cured or accepted)"
    )
    assert "cured or accepted" in render_markdown(cured)
