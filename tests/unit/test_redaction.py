"""State values appear in no report format unless the user asked (``--show-values``).

A thread whose metadata and state hold a secret drifts (old secret -> new secret,
a key added with a secret, a set item that is a secret); every rendering of the
resulting ``verify`` and ``upgrade-check`` checks is searched for the secret:
terminal text, ``--json``, JUnit, Markdown / ``$GITHUB_STEP_SUMMARY``, HTML,
GitHub annotations, the pytest plugin's failure message, ``Diff.to_dict``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from migrator import ledger
from migrator.annotations import build_annotations
from migrator.compare import compare_snapshots
from migrator.gate import diff_checks
from migrator.pytest_plugin import format_findings
from migrator.report import (
    Report,
    append_step_summary,
    render_markdown,
    render_text,
    to_json,
    write_json,
    write_junit,
)
from migrator.report.html import render_html, write_html
from migrator.verify import _thread_check

OLD_SECRET = "sk-old-5ecret-A1b2C3"
NEW_SECRET = "sk-new-5ecret-Z9y8X7"
SECRETS = (OLD_SECRET, NEW_SECRET)
TID = "app-thread-1"
VERSIONS = {"langgraph": "1.0.1", "langgraph-checkpoint-postgres": "3.0.1"}


def _thread(token: str, extra: dict[str, Any]) -> dict[str, Any]:
    metadata = {"source": "loop", "step": 1, "api_key": token, **extra}
    return {
        "canary": None,
        "error": None,
        "checkpoints": [
            {
                "checkpoint_ns": "",
                "checkpoint_id": "1ef-1",
                "parent_checkpoint_id": None,
                "metadata": metadata,
                "channel_values": {
                    "auth": {"__type__": "set", "items": [token]},
                    "note": f"token={token}",
                },
                "pending_writes": [],
                "error": None,
            }
        ],
        "state": {"values": {"note": f"token={token}"}, "next": [], "tasks": [], "interrupts": []},
    }


def _snapshots() -> tuple[dict[str, Any], dict[str, Any]]:
    old = {"versions": VERSIONS, "threads": {TID: _thread(OLD_SECRET, {})}}
    new = {"versions": VERSIONS, "threads": {TID: _thread(NEW_SECRET, {"leak": NEW_SECRET})}}
    return old, new


def _reports() -> list[Report]:
    old, new = _snapshots()
    golden = ledger.Golden(
        thread_id=TID,
        canary=None,
        snapshot=old["threads"][TID],
        versions=VERSIONS,
        seeded_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    )
    verify = Report("verify", (_thread_check(golden, new, None),))
    diff = compare_snapshots(old, new)
    drift = diff_checks("drift", diff, [{"thread_id": TID, "canary": None}])
    gate = Report("upgrade-check", tuple(drift))
    for report in (verify, gate):
        raw = json.dumps([c.differences for c in report.checks], default=str)
        assert all(s in raw for s in SECRETS)  # the checks keep them, for --show-values
        assert report.verdict == "fail"
    return [verify, gate]


def _text(report: Report, show_values: bool) -> str:
    out = io.StringIO()
    render_text(report, show_values=show_values, console=Console(file=out, width=400))
    return out.getvalue()


def _files(report: Report, tmp_path: Path, show_values: bool) -> dict[str, str]:
    json_path, xml_path, html_path = tmp_path / "r.json", tmp_path / "r.xml", tmp_path / "r.html"
    write_json(report, json_path, show_values=show_values)
    write_junit(report, xml_path, show_values=show_values)
    write_html(report, html_path, show_values=show_values)
    summary = tmp_path / "summary.md"
    append_step_summary(report, {"GITHUB_STEP_SUMMARY": str(summary)})
    return {
        "text": _text(report, show_values),
        "json-": to_json(report, show_values),
        "json": json_path.read_text(),
        "junit": xml_path.read_text(),
        "html": html_path.read_text(),
        "html-render": render_html(report, show_values),
        "markdown": render_markdown(report),
        "step-summary": summary.read_text(),
        "to_dict": json.dumps(report.to_dict(show_values), default=str),
    }


@pytest.mark.parametrize("index", [0, 1], ids=["verify", "upgrade-check"])
def test_no_format_shows_a_value_without_show_values(index: int, tmp_path: Path) -> None:
    report = _reports()[index]
    outputs = _files(report, tmp_path, show_values=False)
    outputs["annotations"] = json.dumps([a.render() for a in build_annotations(report)])
    outputs["pytest"] = format_findings(report, "a", "b")
    for name, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} in {name}"
        assert "5ecret" not in text, name
    # What remains: the paths, the type tags and short hashes of both sides.
    data = json.loads(outputs["json"])
    diffs = [d for c in data["checks"] for d in c["differences"]]
    assert diffs and all({"old", "new", "summary_values"}.isdisjoint(d) for d in diffs)
    # (an absent side has neither: a key added or missing)
    assert all(d["path"] for d in diffs)
    assert all(d["old_type"] or d["kind"].endswith("_added") for d in diffs)
    assert all(d["new_hash"] or d["kind"].endswith("_missing") for d in diffs)
    assert any(d["path"].endswith(".metadata.api_key") for d in diffs)


@pytest.mark.parametrize("index", [0, 1], ids=["verify", "upgrade-check"])
def test_show_values_shows_them(index: int, tmp_path: Path) -> None:
    report = _reports()[index]
    outputs = _files(report, tmp_path, show_values=True)
    for name in ("text", "json-", "json", "junit", "html", "html-render", "to_dict"):
        assert NEW_SECRET in outputs[name], name
    for name in ("json", "html"):
        assert OLD_SECRET in outputs[name], name
    # The step summary is public to the CI run: check summaries only, always.
    assert not any(s in outputs["markdown"] + outputs["step-summary"] for s in SECRETS)
    assert NEW_SECRET in format_findings(report, "a", "b", show_values=True)


def test_diff_and_difference_to_dict_withhold_values_by_default() -> None:
    old, new = _snapshots()
    diff = compare_snapshots(old, new)
    hidden = json.dumps(diff.to_dict())
    assert not any(s in hidden for s in SECRETS)
    assert all(s in json.dumps(diff.to_dict(show_values=True)) for s in SECRETS)
    for d in diff.differences:
        assert not any(s in json.dumps(d.to_dict()) + d.summary() + d.path for s in SECRETS)
