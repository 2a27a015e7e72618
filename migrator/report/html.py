"""A self-contained HTML rendering of a ``Report`` (``upgrade-check --html FILE``).

One file, inline CSS, no scripts, no external assets: it can be attached to a CI
run or mailed. It shows the verdict, the versions on each side, the hazards
found, a canary × check matrix, and per canary every check with its
differences side by side (old | new: type tag and short hash, and the values
themselves only with ``show_values``). Everything taken from the report is
HTML-escaped. The file is owner-only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any

from migrator.report.model import Report, TargetsReport
from migrator.worker.privatefiles import open_private, private_parent

VALUE_LIMIT = 4000
"""Characters of one old/new value shown before it is cut (the JSON report has it all)."""

HAZARD_TITLES = {
    "H-LEDGER-SHIFT": "setup() ran nothing but a column is missing: every read fails",
    "H-DUP-COLUMN": "setup() fails on every retry (DuplicateColumn)",
    "H-NO-LEDGER": "database from 1.0.0: no migrations ledger at all",
    "H-READ-BEFORE-SETUP": "new code cannot read old threads until its setup() ran",
    "H-SETUP-RACE": "two replicas running setup() at once: one fails",
    "H-TX-CONCURRENTLY": "setup() inside a transaction fails on CREATE INDEX CONCURRENTLY",
    "H-INVALID-INDEX": "an interrupted index build left an INVALID index",
    "H-TASK-ID": "task ids changed: completed nodes re-run, pending writes orphaned, "
    "subgraph state lost",
    "H-INTERRUPT-RESUME": "resuming an interrupt() thread raises TypeError",
    "H-SEND-DROPPED": "paused Send tasks are dropped; the thread is no longer paused",
    "H-STRICT-MSGPACK": "strict msgpack turns models, dataclasses and enums into plain values",
    "H-METADATA-WRITES": "metadata.writes come back as raw lc constructor envelopes",
    "H-1.0.0-JSON": "checkpoint-postgres 1.0.0 stores plain-JSON state only",
    "H-ROLLBACK-NULL": "the old version cannot read threads the new one wrote",
}
"""One line per hazard id of the catalogue (shared/HAZARDS.md); unknown ids show without."""

_SEVERITY_ORDER = {"breaking": 0, "benign": 1, "ignored": 2}
_STATUS_LABEL = {"pass": "ok", "fail": "FAIL", "warn": "warn", "skip": "skip"}

_CSS = """
:root { --fail:#b42318; --fail-bg:#fef3f2; --warn:#b54708; --warn-bg:#fffaeb;
  --pass:#067647; --pass-bg:#ecfdf3; --skip:#475467; --skip-bg:#f2f4f7;
  --line:#d0d5dd; --muted:#475467; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color:#101828; margin:0; padding:24px 32px; background:#fff; }
h1 { font-size:22px; margin:0 0 4px; }
h2 { font-size:18px; margin:28px 0 8px; padding-bottom:4px; border-bottom:2px solid var(--line); }
h3 { font-size:15px; margin:16px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border:1px solid var(--line); padding:4px 8px; text-align:left; vertical-align:top; }
th { background:#f9fafb; font-weight:600; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { margin:0; white-space:pre-wrap; word-break:break-word; max-height:320px; overflow:auto; }
.muted { color:var(--muted); }
.verdict { display:inline-block; font-weight:700; font-size:16px; padding:4px 12px;
  border-radius:6px; margin:8px 0; }
.verdict.fail { background:var(--fail); color:#fff; }
.verdict.pass { background:var(--pass); color:#fff; }
.st { display:inline-block; min-width:44px; text-align:center; font-weight:600;
  border-radius:4px; padding:0 6px; }
.st.fail { color:var(--fail); background:var(--fail-bg); }
.st.warn { color:var(--warn); background:var(--warn-bg); }
.st.pass { color:var(--pass); background:var(--pass-bg); }
.st.skip { color:var(--skip); background:var(--skip-bg); }
.hz { display:inline-block; white-space:nowrap; text-decoration:none;
  font:600 12px ui-monospace, monospace; color:#5925dc;
  background:#f4f3ff; border:1px solid #d9d6fe; border-radius:4px; padding:0 5px; margin:0 2px; }
.changed td.v { background:#fffaeb; }
.matrix td { text-align:center; }
.matrix td:first-child { text-align:left; }
.check { border:1px solid var(--line); border-left-width:5px; border-radius:6px;
  padding:8px 12px; margin:10px 0; }
.check.fail { border-left-color:var(--fail); }
.check.warn { border-left-color:var(--warn); }
.check.pass { border-left-color:var(--pass); }
.check.skip { border-left-color:var(--skip); }
.diff { width:100%; table-layout:fixed; }
.diff col.sev { width:90px; } .diff col.kind { width:150px; }
.diff tr.breaking td.sev { color:var(--fail); font-weight:600; }
.diff tr.benign td.sev, .diff tr.ignored td.sev { color:var(--muted); }
.diff td.old { background:#fef3f2; } .diff td.new { background:#ecfdf3; }
tr.where td { border-top:2px solid #98a2b3; background:#f9fafb; }
.path { font:12px ui-monospace, monospace; color:var(--muted); word-break:break-all; }
.type { font:600 12px ui-monospace, monospace; }
.absent { color:var(--muted); font-style:italic; }
details > summary { cursor:pointer; color:var(--muted); }
.row { display:flex; gap:32px; flex-wrap:wrap; align-items:flex-start; }
.row > div > h2 { margin-top:16px; }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _status(status: str) -> str:
    return f'<span class="st {_e(status)}">{_e(_STATUS_LABEL.get(status, status))}</span>'


def _hazards(ids: Iterable[str]) -> str:
    return " ".join(f'<a class="hz" href="#hz-{_e(h)}">{_e(h)}</a>' for h in ids)


def _anchor(target: str) -> str:
    return "t-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in target)


def _value(d: Mapping[str, Any], side: str) -> str:
    value, type_tag, hash_ = d.get(side), d.get(f"{side}_type"), d.get(f"{side}_hash")
    if value is None and type_tag is None:
        return '<span class="absent">absent</span>'
    if side not in d:  # withheld: the report was rendered without --show-values
        head = f'<div class="type">{_e(type_tag)}'
        head += f' <span class="muted">#{_e(hash_)}</span></div>' if hash_ else "</div>"
        return head + '<div class="muted">value not shown (--show-values)</div>'
    text = value if isinstance(value, str) else json.dumps(value, indent=1, sort_keys=True)
    if len(text) > VALUE_LIMIT:
        text = text[:VALUE_LIMIT] + f"\n… ({len(text) - VALUE_LIMIT} more characters in --json)"
    head = f'<div class="type">{_e(type_tag)}'
    head += f' <span class="muted">#{_e(hash_)}</span></div>' if hash_ else "</div>"
    return head + f"<pre>{_e(text)}</pre>"


def _differences(diffs: list[Mapping[str, Any]]) -> str:
    rows = sorted(diffs, key=lambda d: _SEVERITY_ORDER.get(str(d.get("severity")), 3))
    out = [
        '<table class="diff"><colgroup><col class="sev"><col class="kind"><col><col></colgroup>',
        "<tr><th>severity</th><th>kind · hazard</th><th>old value</th><th>new value</th></tr>",
    ]
    for d in rows:
        severity = str(d.get("severity", ""))
        hazard = _hazards([d["hazard"]]) if d.get("hazard") else ""
        rule = f'<div class="muted">rule {_e(d["rule"])}</div>' if d.get("rule") else ""
        out.append(
            f'<tr class="{_e(severity)} where"><td class="sev" rowspan="2">{_e(severity)}</td>'
            f'<td colspan="3"><div class="path">{_e(d.get("path"))}</div>'
            f"{_e(d.get('message'))}</td></tr>"
            f'<tr class="{_e(severity)}">'
            f"<td><code>{_e(d.get('kind'))}</code> {hazard}{rule}</td>"
            f'<td class="old">{_value(d, "old")}</td>'
            f'<td class="new">{_value(d, "new")}</td>'
            "</tr>"
        )
    out.append("</table>")
    return "".join(out)


def _check(c: Mapping[str, Any]) -> str:
    diffs = list(c.get("differences") or [])
    breaking = sum(1 for d in diffs if d.get("severity") == "breaking")
    head = (
        f'<div class="check {_e(c["status"])}"><h3>{_status(c["status"])} '
        f"{_e(c['check'])} {_hazards(c.get('hazards') or [])}</h3>"
        f"<div>{_e(c.get('summary'))}</div>"
    )
    body = ""
    if diffs:
        table = _differences(diffs)
        label = f"{len(diffs)} difference(s), {breaking} breaking"
        # Breaking differences are open; benign-only ones fold away.
        body = f"<details{' open' if breaking else ''}><summary>{_e(label)}</summary>{table}"
        body += "</details>"
    details = c.get("details") or {}
    if details:
        body += f"<pre>{_e(json.dumps(details, indent=1, sort_keys=True, default=str))}</pre>"
    return head + body + "</div>"


def _versions(versions: Mapping[str, Any]) -> str:
    sides = [s for s in ("from", "to") if isinstance(versions.get(s), Mapping)]
    sides += [s for s in versions if s not in sides and isinstance(versions[s], Mapping)]
    if not sides:
        return ""
    names = sorted({n for s in sides for n in versions[s]})
    out = ["<table><tr><th>package</th>", *(f"<th>{_e(s)}</th>" for s in sides), "</tr>"]
    for name in names:
        values = [versions[s].get(name) for s in sides]
        changed = ' class="changed"' if len(set(map(str, values))) > 1 else ""
        out.append(f"<tr{changed}><td>{_e(name)}</td>")
        out += [f'<td class="v">{_e(v if v is not None else "–")}</td>' for v in values]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _timings(timings: Mapping[str, Any]) -> str:
    if not timings:
        return ""
    total = sum(float(v) for v in timings.values())
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td style='text-align:right'>{float(v):.2f} s</td></tr>"
        for k, v in timings.items()
    )
    return (
        f"<table><tr><th>step</th><th>time</th></tr>{rows}"
        f"<tr><th>total</th><th style='text-align:right'>{total:.2f} s</th></tr></table>"
    )


def _targets(checks: list[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    by_target: dict[str, list[Mapping[str, Any]]] = {}
    for c in checks:
        target = c.get("canary") or c.get("thread_id") or "(global)"
        by_target.setdefault(str(target), []).append(c)
    return by_target


def _matrix(by_target: dict[str, list[Mapping[str, Any]]]) -> str:
    names: list[str] = []
    for checks in by_target.values():
        names += [c["check"] for c in checks if c["check"] not in names]
    out = ['<table class="matrix"><tr><th>canary / thread</th>']
    out += [f"<th>{_e(n)}</th>" for n in names]
    out.append("</tr>")
    for target, checks in by_target.items():
        cells = {c["check"]: c for c in checks}
        out.append(f'<tr><td><a href="#{_anchor(target)}">{_e(target)}</a></td>')
        for n in names:
            cell = cells.get(n)
            out.append(f"<td>{_status(cell['status']) if cell else ''}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _hazard_index(checks: list[Mapping[str, Any]], hazards: list[str]) -> str:
    if not hazards:
        return "<p>No hazard found.</p>"
    out = ["<table><tr><th>hazard</th><th>what it means</th><th>where</th></tr>"]
    for h in hazards:
        where = [
            f"{c['check']}[{c.get('canary') or c.get('thread_id') or '-'}]"
            for c in checks
            if h in (c.get("hazards") or []) and c["status"] != "pass"
        ]
        out.append(
            f'<tr id="hz-{_e(h)}"><td><span class="hz">{_e(h)}</span></td>'
            f"<td>{_e(HAZARD_TITLES.get(h, ''))}</td><td>{_e(', '.join(where))}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def render_html_dict(data: Mapping[str, Any]) -> str:
    """Render a report dict (``Report.to_dict()`` or a decoded ``--json`` file) as HTML.

    Args:
        data: The report in its JSON form (``docs/report-format.md``).

    Returns:
        A complete HTML document with inline CSS and no external references.
    """
    checks: list[Mapping[str, Any]] = list(data.get("checks") or [])
    counts = data.get("counts") or {}
    verdict = str(data.get("verdict", "fail"))
    command = str(data.get("command", ""))
    versions = data.get("versions") or {}
    label = " → ".join(
        f"langgraph {versions[s].get('langgraph', '?')}"
        for s in ("from", "to")
        if isinstance(versions.get(s), Mapping)
    )
    by_target = _targets(checks)
    server = data.get("server") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>langgraph-migrator {_e(command)}: {_e(verdict)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>langgraph-migrator {_e(command)}</h1>",
        f'<div class="muted">{_e(label)}</div>' if label else "",
        f'<div class="verdict {_e(verdict)}" id="verdict">verdict: {_e(verdict.upper())}</div>',
        f"<div>{_e(counts.get('fail', 0))} failed, {_e(counts.get('warn', 0))} warnings, "
        f"{_e(counts.get('pass', 0))} passed, {_e(counts.get('skip', 0))} skipped; "
        f"{_e(counts.get('breaking', 0))} breaking / {_e(counts.get('benign', 0))} benign "
        "differences</div></header>",
        "<h2>Hazards</h2>",
        _hazard_index(checks, list(data.get("hazards") or [])),
        '<div class="row"><div><h2>Checks</h2>',
        _matrix(by_target),
        "</div><div><h2>Versions</h2>",
        _versions(versions),
        "</div><div><h2>Run</h2>",
        "<p>Postgres: "
        + _e(", ".join(f"{k} {v}" for k, v in server.items()) or "unknown")
        + "</p>",
        _timings(data.get("timings") or {}),
    ]
    notes = list(data.get("notes") or [])
    if notes:
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    parts.append("</div></div>")
    # Failing canaries first, then warnings; the matrix above keeps the run order.
    rank = {"fail": 0, "warn": 1, "pass": 2, "skip": 3}
    ordered = sorted(by_target.items(), key=lambda item: rank[_worst(item[1])])
    for target, target_checks in ordered:
        worst = _worst(target_checks)
        parts.append(
            f'<section id="{_anchor(target)}"><h2>{_status(worst)} {_e(target)}</h2>'
            + "".join(_check(c) for c in target_checks)
            + "</section>"
        )
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def _worst(checks: list[Mapping[str, Any]]) -> str:
    statuses = {c["status"] for c in checks}
    for status in ("fail", "warn", "pass", "skip"):
        if status in statuses:
            return status
    return "skip"


def render_html(report: Report | TargetsReport, show_values: bool = False) -> str:
    """Render ``report`` as one self-contained HTML document; values only with ``show_values``.

    A multi-target report renders each target as it would alone, one after the other
    (their anchors prefixed ``tN-``), under a list of the targets' verdicts.
    """
    if isinstance(report, TargetsReport):
        return _render_targets(report, show_values)
    data = json.loads(json.dumps(report.to_dict(show_values), default=str))
    return render_html_dict(data)


def _render_targets(report: TargetsReport, show_values: bool) -> str:
    verdict = report.verdict
    items = []
    bodies = []
    for i, t in enumerate(report.targets, 1):
        items.append(
            f'<li><a href="#t{i}-verdict">{_e(t.label)}</a>: {_status(t.report.verdict)} '
            f"exit {_e(t.exit_code)}</li>"
        )
        doc = render_html(t.report, show_values)
        body = doc[doc.index("<body>") + len("<body>") : doc.rindex("</body>")]
        body = body.replace(' id="', f' id="t{i}-').replace(' href="#', f' href="#t{i}-')
        bodies.append(f'<section id="target-{i}"><h1>→ {_e(t.label)}</h1>{body}</section>')
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>langgraph-migrator {_e(report.command)}: {_e(verdict)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<header><h1>langgraph-migrator {_e(report.command)}</h1>",
            f'<div class="verdict {_e(verdict)}" id="verdict">verdict: {_e(verdict.upper())} '
            f"(exit {_e(report.exit_code)}, the worst of {len(report.targets)} targets)</div>",
            "<ul>" + "".join(items) + "</ul></header>",
            *bodies,
            "</body></html>",
        ]
    )


def write_html(report: Report | TargetsReport, path: Path, *, show_values: bool = False) -> None:
    """Write :func:`render_html` of ``report`` to ``path`` (UTF-8, owner-only).

    Raises:
        OutputError: ``path`` cannot be written (nothing is left there; exit 3).
    """
    from migrator.output import writing

    text = render_html(report, show_values)
    with writing(path):
        private_parent(path)
        with open_private(path, "w", encoding="utf-8") as fh:
            fh.write(text)
