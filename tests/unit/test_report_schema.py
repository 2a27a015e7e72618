"""Report formats vs their schemas: --json vs the shipped JSON Schema, --junit vs a JUnit XSD.

``tests/data/junit.xsd`` is the Jenkins "junit-10" element tree (written for these
tests from the published format; no PyPI package ships a JUnit XSD).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import xmlschema

from migrator import api
from migrator.config import CheckSettings, PgChoice
from migrator.report import (
    REPORT_FORMAT,
    Check,
    Report,
    TargetResult,
    TargetsReport,
    write_json,
    write_junit,
)
from migrator.report.schema import report_schema, validate_report

ROOT = Path(__file__).resolve().parents[2]
JUNIT_XSD = ROOT / "tests" / "data" / "junit.xsd"


def _difference(**over):
    base = {
        "path": 'threads["canary:rich_values"].checkpoints[ns="",id="1"].values.model',
        "kind": "type_changed",
        "severity": "breaking",
        "rule": None,
        "hazard": "H-STRICT-MSGPACK",
        "thread_id": "canary:rich_values",
        "message": "type changed: pydantic(app.Model) -> dict",
        "old": {"__type__": "pydantic", "class": "app.Model", "fields": {"x": 1}},
        "new": {"x": 1},
        "old_type": "pydantic(app.Model)",
        "new_type": "dict",
        "old_hash": "0123456789",
        "new_hash": "9876543210",
        "summary": "breaking ...: type_changed",
        "summary_values": "breaking ...: type_changed {...} -> {...}",
    }
    return base | over


def _synthetic() -> list[Report]:
    full = Report(
        command="upgrade-check",
        checks=(
            Check("seed", "pass", "seeded", canary="messages"),
            Check(
                "drift",
                "fail",
                "1 breaking, 1 benign difference(s)",
                canary="rich_values",
                hazards=("H-STRICT-MSGPACK",),
                differences=(
                    _difference(),
                    _difference(severity="benign", hazard=None, rule="format:v2"),
                    _difference(severity="ignored", old=None, old_type=None, old_hash=None),
                ),
            ),
            Check(
                "rollback",
                "warn",
                "old code cannot read",
                canary="messages",
                hazards=("H-ROLLBACK-NULL",),
            ),
            Check("resume", "skip", "not resumable", canary="large_state"),
            Check(
                "drift",
                "pass",
                "unchanged",
                thread_id="real-thread-7",
                details={"rows": 3, "note": "<watched>"},
            ),
        ),
        versions={"from": {"langgraph": "0.2.56", "pydantic": None}, "to": {"langgraph": "1.2.22"}},
        server={"provider": "local", "major": 18},
        timings={"seed": 1.23456, "provision": 0.0},
        notes=("new setup(): ledger v8 -> v9",),
    )
    empty = Report(command="verify", checks=())
    # A plan finding in a gate report (the schema step names P- ids; found by a real run).
    plan_ids = Report(
        command="upgrade-check",
        checks=(Check("schema", "fail", "migrate would refuse", hazards=("P-LEDGER-AHEAD",)),),
    )
    # Only the required difference keys: other commands may report leaner differences.
    lean = Report(
        command="plan",
        checks=(
            Check(
                "schema",
                "fail",
                "column missing",
                hazards=("H-LEDGER-SHIFT",),
                differences=(
                    {
                        "path": "checkpoint_writes.task_path",
                        "kind": "column_missing",
                        "severity": "breaking",
                    },
                ),
            ),
        ),
    )
    return [full, empty, lean, plan_ids]


def test_docs_copy_is_identical_to_the_packaged_schema():
    packaged = ROOT / "migrator" / "data" / "report.schema.json"
    assert (ROOT / "docs" / "report.schema.json").read_bytes() == packaged.read_bytes()


def test_schema_is_a_valid_2020_12_schema_for_this_format():
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == REPORT_FORMAT
    assert schema["properties"]["format"] == {"const": REPORT_FORMAT}


def test_schema_names_exactly_the_keys_to_dict_writes():
    schema = report_schema()
    report = _synthetic()[0]
    top = report.to_dict()
    # Only a multi-target upgrade-check adds exit_code, targets and each check's target.
    multi = {"exit_code", "targets"}
    assert set(schema["required"]) == set(top) == set(schema["properties"]) - multi
    check_def = schema["$defs"]["check"]
    assert set(check_def["required"]) == set(top["checks"][0])
    assert set(check_def["properties"]) == set(top["checks"][0]) | {"target"}
    assert set(schema["properties"]["counts"]["required"]) == set(top["counts"])
    # Every key upgrade-check puts in a difference is described.
    assert set(_difference()) == set(schema["$defs"]["difference"]["properties"])


@pytest.mark.parametrize("index", [0, 1, 2, 3], ids=["full", "empty", "lean", "plan-ids"])
def test_synthetic_reports_validate(index, tmp_path):
    report = _synthetic()[index]
    path = tmp_path / "report.json"
    write_json(report, path)  # through the real writer, so JSON encoding is covered
    assert validate_report(json.loads(path.read_text())) == []


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.pop("verdict"), "(root)"),
        (lambda d: d.update(extra=1), "(root)"),
        (lambda d: d["checks"][1].update(status="failed"), "checks/1/status"),
        (
            lambda d: d["checks"][1]["differences"][0].update(severity="fatal"),
            "checks/1/differences/0/severity",
        ),
        (lambda d: d["checks"][1]["differences"][0].pop("path"), "checks/1/differences/0"),
        (lambda d: d["counts"].update(fail=-1), "counts/fail"),
        (lambda d: d["hazards"].append("not-a-hazard"), "hazards/4"),
        (lambda d: d.update(format="langgraph-migrator/report@2"), "format"),
        (lambda d: d["timings"].update(seed="slow"), "timings/seed"),
    ],
)
def test_schema_rejects_what_the_format_forbids(mutate, where):
    data = json.loads(json.dumps(_synthetic()[0].to_dict(), default=str))
    data["hazards"] = ["H-A", "H-B", "H-C", "H-D"]
    mutate(data)
    problems = validate_report(data)
    assert problems and any(p.startswith(f"{where}:") for p in problems), problems


def _junit_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(JUNIT_XSD))


@pytest.mark.parametrize("index", [0, 1, 2, 3], ids=["full", "empty", "lean", "plan-ids"])
def test_junit_output_validates_against_the_junit_xsd(index, tmp_path):
    path = tmp_path / "report.xml"
    write_junit(_synthetic()[index], path)
    _junit_schema().validate(str(path))


def test_junit_xsd_rejects_invalid_documents(tmp_path):
    bad = tmp_path / "bad.xml"
    # testsuite without its required counts; testcase without a name.
    bad.write_text(
        '<testsuites><testsuite name="s"><testcase classname="c"/></testsuite></testsuites>'
    )
    assert not _junit_schema().is_valid(str(bad))
    bad.write_text(
        '<testsuites><testsuite name="s" tests="1" failures="0" errors="0">'
        '<testcase classname="c"/></testsuite></testsuites>'
    )
    assert not _junit_schema().is_valid(str(bad))
    bad.write_text(
        '<testsuites><testsuite name="s" tests="1" failures="0" errors="0" '
        'time="soon"><testcase name="n"/></testsuite></testsuites>'
    )
    assert not _junit_schema().is_valid(str(bad))


@pytest.mark.slow
def test_real_upgrade_check_report_validates(pg_default, tmp_path):
    settings = CheckSettings(
        from_spec="langgraph-checkpoint-postgres==2.0.25",
        to_spec="current",
        pg=PgChoice(provider="url", dsn=pg_default.dsn),
    )
    report = api.upgrade_check(settings)
    assert len(report.checks) > 20  # every built-in canary x every check
    json_path, xml_path = tmp_path / "r.json", tmp_path / "r.xml"
    write_json(report, json_path)
    write_junit(report, xml_path)
    data = json.loads(json_path.read_text())
    assert validate_report(data) == []
    assert {c["check"] for c in data["checks"]} >= {"seed", "drift", "resume", "rollback"}
    _junit_schema().validate(str(xml_path))


def _targets_report() -> TargetsReport:
    full, empty, *_ = _synthetic()
    broken = Report("upgrade-check", (Check("target", "fail", "not checked (exit 3): no env"),))
    return TargetsReport(
        "upgrade-check",
        (
            TargetResult("current", "current (checkpoint-postgres==3.2.0)", empty, 0),
            TargetResult("uv.lock", "checkpoint-postgres==3.0.0 (file:uv.lock)", full, 1),
            TargetResult("bad.txt", "checkpoint-postgres==9.9.9 (file:bad.txt)", broken, 3),
        ),
        versions={"from": {"langgraph": "1.0.2"}},
    )


def test_multi_target_report_validates_and_names_every_key(tmp_path):
    report = _targets_report()
    path = tmp_path / "report.json"
    write_json(report, path)
    data = json.loads(path.read_text())
    assert validate_report(data) == []
    schema = report_schema()
    assert set(data) == set(schema["properties"])
    target_def = schema["$defs"]["target"]
    assert set(data["targets"][0]) == set(target_def["required"]) == set(target_def["properties"])
    # The worst target decides: 3 (not checked) outweighs 1 (failed) and 0.
    assert (data["verdict"], data["exit_code"]) == ("fail", 3)
    assert [t["exit_code"] for t in data["targets"]] == [0, 1, 3]
    labels = {t["target"] for t in data["targets"]}
    assert {c["target"] for c in data["checks"]} <= labels
    assert len(data["checks"]) == sum(len(t.report.checks) for t in report.targets)


def test_multi_target_junit_has_a_testsuite_per_target(tmp_path):
    from xml.etree import ElementTree as ET

    path = tmp_path / "report.xml"
    write_junit(_targets_report(), path)
    suites = ET.parse(path).getroot().findall("testsuite")
    assert [s.get("name").partition("[")[2] for s in suites] == [
        "current (checkpoint-postgres==3.2.0)]",
        "checkpoint-postgres==3.0.0 (file:uv.lock)]",
        "checkpoint-postgres==9.9.9 (file:bad.txt)]",
    ]
    assert suites[2].get("failures") == "1"
