"""The HTML report: structure and escaping (html.parser), and a real render in Chromium."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from migrator.report import Check, Report
from migrator.report.html import render_html, write_html

HOSTILE = '<script>alert("x")</script> & </pre>'


def _report() -> Report:
    diff = {
        "path": 'threads["canary:rich_values"].values.model',
        "kind": "type_changed",
        "severity": "breaking",
        "rule": None,
        "hazard": "H-STRICT-MSGPACK",
        "thread_id": "canary:rich_values",
        "message": "type changed: pydantic(app.Model) -> dict",
        "old": {"__type__": "pydantic", "class": "app.Model", "fields": {"note": HOSTILE}},
        "new": {"note": HOSTILE},
        "old_type": "pydantic(app.Model)",
        "new_type": "dict",
        "old_hash": "aaaa111111",
        "new_hash": "bbbb222222",
    }
    benign = diff | {
        "severity": "benign",
        "hazard": None,
        "rule": "builtin:task-ids",
        "kind": "value_changed",
        "old": "old-task-id",
        "new": "new-task-id",
        "path": 'threads["canary:rich_values"].tasks[0].id',
    }
    return Report(
        command="upgrade-check",
        checks=(
            Check("seed", "pass", "seeded", canary="rich_values"),
            Check(
                "drift",
                "fail",
                "1 breaking, 1 benign difference(s)",
                canary="rich_values",
                hazards=("H-STRICT-MSGPACK",),
                differences=(benign, diff),
            ),
            Check(
                "rollback",
                "warn",
                f"cannot read {HOSTILE}",
                canary="messages",
                hazards=("H-ROLLBACK-NULL",),
            ),
            Check("resume", "skip", "not resumable", canary="send"),
            Check("drift", "pass", "unchanged", thread_id="user-thread-1"),
        ),
        versions={
            "from": {"langgraph": "0.2.56", "langgraph-checkpoint-postgres": "2.0.8"},
            "to": {"langgraph": "1.2.22", "langgraph-checkpoint-postgres": "3.2.0"},
        },
        server={"provider": "local", "major": 18},
        timings={"seed": 1.25, "resume": 2.5},
        notes=("new setup(): ledger v8 -> v9",),
    )


class _Tree(HTMLParser):
    """Collects tags, attributes, text per element id/class, and checks nesting."""

    VOID = {"meta", "link", "br", "img", "col", "hr", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_in: dict[str, list[str]] = {}
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag not in self.VOID:
            self.stack.append((tag, attributes))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1][0] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        for _tag, attrs in self.stack:
            for cls in (attrs.get("class") or "").split():
                self.text_in.setdefault(cls, []).append(data)
            if attrs.get("id"):
                self.text_in.setdefault("#" + attrs["id"], []).append(data)
        self.text_in.setdefault(self.stack[-1][0] if self.stack else "", []).append(data)


def _parse(html: str) -> _Tree:
    tree = _Tree()
    tree.feed(html)
    tree.close()
    return tree


def test_structure_is_well_formed_and_self_contained():
    html = render_html(_report())
    tree = _parse(html)
    assert tree.errors == [] and tree.stack == []
    assert html.startswith("<!DOCTYPE html>")
    tags = [t for t, _ in tree.tags]
    assert tags.count("style") == 1 and "script" not in tags and "link" not in tags
    # No external assets: the only links are in-page anchors.
    for tag, attrs in tree.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            assert value is None or value.startswith("#"), (tag, attrs)
    assert "http://" not in html and "https://" not in html and "url(" not in html


def test_hostile_values_are_escaped():
    html = render_html(_report(), show_values=True)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    tree = _parse(html)
    assert tree.errors == []  # an unescaped </pre> would close the wrong element
    # The parser reads them back as text: in the values (JSON-encoded) and in a summary.
    assert '<script>alert(\\"x\\")</script> & </pre>' in "".join(tree.text_in["old"])
    assert '<script>alert(\\"x\\")</script> & </pre>' in "".join(tree.text_in["new"])
    assert f"cannot read {HOSTILE}" in "".join(tree.text_in["check"])


def test_shows_verdict_versions_hazards_timings_and_side_by_side_values():
    tree = _parse(render_html(_report(), show_values=True))
    assert "verdict: FAIL" in "".join(tree.text_in["#verdict"])
    text = "".join(tree.text_in["changed"])  # rows whose version differs
    assert "0.2.56" in text and "1.2.22" in text and "2.0.8" in text
    hazard_rows = [
        a["id"] for t, a in tree.tags if t == "tr" and (a.get("id") or "").startswith("hz-")
    ]
    assert hazard_rows == ["hz-H-ROLLBACK-NULL", "hz-H-STRICT-MSGPACK"]
    assert "2.50 s" in "".join(tree.text_in["td"]) and "3.75 s" in "".join(tree.text_in["th"])
    # Old and new of one difference side by side, breaking before benign.
    olds = "".join(tree.text_in["old"])
    news = "".join(tree.text_in["new"])
    assert "pydantic(app.Model)" in olds and "dict" in news
    assert olds.index("pydantic(app.Model)") < olds.index("old-task-id")
    assert "new-task-id" in news
    # Grouped per canary, then per check; the watched thread is a target too.
    sections = [a["id"] for t, a in tree.tags if t == "section"]
    # Failing canaries first, then warnings, passes, skips.
    assert sections == ["t-rich_values", "t-messages", "t-user-thread-1", "t-send"]
    checks = [a["class"] for t, a in tree.tags if t == "div" and "check" in (a.get("class") or "")]
    assert checks == ["check pass", "check fail", "check warn", "check pass", "check skip"]


def test_values_are_withheld_without_show_values(tmp_path):
    """Only types and hashes: no value of either side, in the page or in the file."""
    for html in (render_html(_report()), _written(tmp_path)):
        tree = _parse(html)
        assert tree.errors == []
        olds, news = "".join(tree.text_in["old"]), "".join(tree.text_in["new"])
        assert "pydantic(app.Model)" in olds and "#aaaa111111" in olds
        assert "dict" in news and "#bbbb222222" in news
        assert "value not shown (--show-values)" in olds + news
        for value in ("old-task-id", "new-task-id", "alert("):
            assert value not in olds + news
        assert "alert(" not in html.replace(f"cannot read {_escaped(HOSTILE)}", "")


def _written(tmp_path):
    path = tmp_path / "withheld.html"
    write_html(_report(), path)
    return path.read_text(encoding="utf-8")


def _escaped(text):
    from html import escape

    return escape(text, quote=True)


def test_passing_report_says_pass(tmp_path):
    report = Report("upgrade-check", (Check("seed", "pass", "seeded", canary="messages"),))
    path = tmp_path / "sub" / "r.html"
    write_html(report, path)
    tree = _parse(path.read_text(encoding="utf-8"))
    assert "verdict: PASS" in "".join(tree.text_in["#verdict"])
    assert "No hazard found." in "".join(tree.text_in["p"])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_renders_in_a_real_browser(tmp_path):
    """Chromium lays the page out and prints the DOM: the escaped text is text, not markup."""
    page = tmp_path / "report.html"
    write_html(_report(), page)
    profile = tmp_path / "profile"
    common = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}",
    ]  # fmt: skip
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert "verdict: FAIL" in dom
    assert "<script>alert" not in dom and "&lt;script&gt;" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1400,1800", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    data = Path(shot).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
