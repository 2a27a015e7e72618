"""Four renderings of a ``Report``: terminal, JSON, JUnit XML, Markdown.

Values of differences are shown only with ``show_values`` (see
:mod:`migrator.report.model`). Report files are owner-only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from migrator.report.model import Check, Report, TargetsReport
from migrator.worker.privatefiles import open_private, private_parent

AnyReport = Report | TargetsReport


def _difference_line(d: Mapping[str, Any], show_values: bool) -> str:
    summary = d.get("summary_values" if show_values else "summary")
    if summary:
        return str(summary)
    return f"{d.get('severity', '?')} {d.get('kind', '?')} at {d.get('path', '?')}"


def render_text(
    report: Report, *, show_values: bool = False, console: Any = None, title: str | None = None
) -> None:
    """Print the human summary: a target × check matrix, then what failed or warned and why.

    Args:
        report: The report.
        show_values: Show differing values (they may hold user data).
        console: A ``rich`` console (default: stdout).
        title: The table's title (default: ``langgraph-migrator COMMAND``).
    """
    from rich.console import Console
    from rich.table import Table

    # CI logs are not terminals: rich would wrap at 80 columns and truncate the matrix.
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    checks: list[str] = []
    targets: list[str] = []
    cells: dict[tuple[str, str], Check] = {}
    for c in report.checks:
        target = c.canary or c.thread_id or "-"
        checks += [c.check] if c.check not in checks else []
        targets += [target] if target not in targets else []
        cells[(target, c.check)] = c
    marks = {
        "pass": "[green]ok[/]",
        "fail": "[bold red]FAIL[/]",
        "warn": "[yellow]warn[/]",
        "skip": "[dim]skip[/]",
    }
    table = Table(title=title or f"langgraph-migrator {report.command}")
    table.add_column("canary / thread")
    for name in checks:
        table.add_column(name, justify="center")
    for target in targets:
        row = [target]
        for name in checks:
            cell = cells.get((target, name))
            row.append(marks[cell.status] if cell else "")
        table.add_row(*row)
    console.print(table)
    # Findings: identical ones (same check, status, summary, no differences) on several
    # targets are printed once, naming the targets.
    groups: dict[tuple[str, str, str, tuple[str, ...]], list[Check]] = {}
    for c in report.checks:
        if c.status in ("fail", "warn"):
            key = (c.check, c.status, c.summary, c.hazards)
            if c.differences:
                key += (c.name,)  # type: ignore[assignment]
            groups.setdefault(key, []).append(c)
    for group in groups.values():
        c = group[0]
        names = ", ".join(g.canary or g.thread_id or "-" for g in group)
        hazards = f" [{', '.join(c.hazards)}]" if c.hazards else ""
        colour = "red" if c.status == "fail" else "yellow"
        console.print(f"[{colour}]{c.status.upper()}[/] ", end="")
        console.print(f"{c.check} ({names}){hazards}: {c.summary}", markup=False, highlight=False)
        shown = [d for d in c.shown_differences(show_values) if d.get("severity") == "breaking"]
        limit = 5 if not show_values else 20
        for d in shown[:limit]:
            console.print(f"    {_difference_line(d, show_values)}", markup=False, highlight=False)
        if len(shown) > limit:
            console.print(f"    ... {len(shown) - limit} more (see --json)", highlight=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    counts = report.counts()
    colour = "green" if report.verdict == "pass" else "bold red"
    console.print(
        f"[{colour}]verdict: {report.verdict.upper()}[/] — {counts['fail']} failed, "
        f"{counts['warn']} warnings, {counts['pass']} passed, {counts['skip']} skipped; "
        f"{report.breaking_text()}"
        + (f"; hazards: {', '.join(report.hazards)}" if report.hazards else "")
    )


def to_json(report: AnyReport, show_values: bool = False) -> str:
    """``report.to_dict(show_values)`` as indented JSON (what ``--json`` writes)."""
    return json.dumps(report.to_dict(show_values), indent=2, sort_keys=True, default=str)


def write_json(report: AnyReport, path: Path, *, show_values: bool = False) -> None:
    """Write :func:`to_json` to ``path`` (owner-only).

    Raises:
        OutputError: ``path`` cannot be written (nothing is left there; exit 3).
    """
    from migrator.output import writing

    text = to_json(report, show_values) + "\n"
    with writing(path):
        private_parent(path)
        with open_private(path, "w") as fh:
            fh.write(text)


def to_junit(report: Report, show_values: bool = False, *, target: str = "") -> ET.Element:
    """One ``<testcase>`` per check; ``fail`` → ``<failure>``, ``skip`` → ``<skipped>``.

    ``target`` (a ``--to`` label) names the suite of one target of a multi-target run.
    """
    suite = ET.Element(
        "testsuite",
        name=f"langgraph-migrator.{report.command}" + (f"[{target}]" if target else ""),
        tests=str(len(report.checks)),
        failures=str(sum(c.status == "fail" for c in report.checks)),
        skipped=str(sum(c.status == "skip" for c in report.checks)),
        errors="0",
        time=f"{sum(report.timings.values()):.3f}",
    )
    for c in report.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"upgrade.{c.check}",
            name=f"{c.name} [{target}]" if target else c.name,
        )
        body = "\n".join(_difference_line(d, show_values) for d in c.shown_differences(show_values))
        if c.status == "fail":
            failure = ET.SubElement(case, "failure", message=c.summary, type=",".join(c.hazards))
            failure.text = body
        elif c.status == "skip":
            ET.SubElement(case, "skipped", message=c.summary)
        elif c.status == "warn":
            out = ET.SubElement(case, "system-out")
            out.text = f"WARNING {', '.join(c.hazards)}: {c.summary}\n{body}"
    return suite


def write_junit(report: AnyReport, path: Path, *, show_values: bool = False) -> None:
    """Write the JUnit XML rendering to ``path`` (owner-only): one testsuite per target.

    Raises:
        OutputError: ``path`` cannot be written (nothing is left there; exit 3).
    """
    from migrator.output import writing

    root = ET.Element("testsuites", name="langgraph-migrator")
    if isinstance(report, TargetsReport):
        for t in report.targets:
            root.append(to_junit(t.report, show_values, target=t.label))
    else:
        root.append(to_junit(report, show_values))
    ET.indent(root)
    with writing(path):
        private_parent(path)
        with open_private(path, "wb") as fh:
            ET.ElementTree(root).write(fh, encoding="utf-8", xml_declaration=True)


def render_markdown(report: Report, *, target: str = "") -> str:
    """A GitHub-flavoured Markdown summary (for ``$GITHUB_STEP_SUMMARY``).

    Check summaries only: never a value, whatever ``--show-values`` says (the step
    summary is shown to everyone who can see the CI run).
    """
    counts = report.counts()
    icon = {"pass": "✅", "fail": "❌", "warn": "⚠️", "skip": "⏭️"}
    lines = [
        f"## langgraph-migrator {report.command}"
        + (f" → {target}" if target else "")
        + f": {icon[report.verdict]} {report.verdict}",
        "",
        f"{counts['fail']} failed, {counts['warn']} warnings, {counts['pass']} passed, "
        f"{counts['skip']} skipped; {report.breaking_text()}.",
        "",
        "| check | target | status | hazards | summary |",
        "|---|---|---|---|---|",
    ]
    for c in report.checks:
        summary = c.summary.replace("|", "\\|")
        lines.append(
            f"| {c.check} | {c.canary or c.thread_id or ''} | {icon[c.status]} {c.status} "
            f"| {', '.join(c.hazards)} | {summary} |"
        )
    return "\n".join(lines) + "\n"


def append_step_summary(report: AnyReport, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append the Markdown summary to ``$GITHUB_STEP_SUMMARY`` when it is set.

    A file this creates is owner-only; an existing one (the CI runner's) keeps its mode.
    """
    target = (environ if environ is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    from migrator.output import writing

    path = Path(target)
    with writing(path, remove=()), open_private(path, "a", keep_mode=True) as fh:
        # the runner's file: never removed
        if isinstance(report, TargetsReport):
            for t in report.targets:
                fh.write(render_markdown(t.report, target=t.label) + "\n")
        else:
            fh.write(render_markdown(report))
    return path


def target_summary_line(label: str, report: Report, exit_code: int) -> str:
    """One line per target of a multi-target run: its verdict, exit code and counts."""
    counts = report.counts()
    verdict = "PASS" if exit_code == 0 else "FAIL" if exit_code == 1 else "NOT CHECKED"
    line = (
        f"{label}: {verdict} (exit {exit_code}) — {counts['fail']} failed, "
        f"{counts['warn']} warnings, {counts['pass']} passed"
    )
    if report.hazards:
        line += f"; hazards: {', '.join(report.hazards)}"
    if exit_code not in (0, 1):
        line += f"; {report.checks[0].summary}" if report.checks else ""
    return line


def render_targets_text(
    report: TargetsReport, *, show_values: bool = False, console: Any = None
) -> None:
    """Print a multi-target run: each target's table and findings, then one line per target."""
    from rich.console import Console

    console = console or Console(width=None if sys.stdout.isatty() else 160)
    count = len(report.targets)
    for i, t in enumerate(report.targets, 1):
        console.rule(f"target {i}/{count}: {t.label}", style="dim")
        render_text(
            t.report,
            show_values=show_values,
            console=console,
            title=f"langgraph-migrator {report.command} → {t.label}",
        )
    console.rule("targets", style="dim")
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    for t in report.targets:
        colour = "green" if t.exit_code == 0 else "bold red"
        console.print(
            f"[{colour}]{'ok  ' if t.exit_code == 0 else 'FAIL'}[/] ", end="", highlight=False
        )
        # One line per target, however long: CI logs are grepped for it.
        console.print(
            target_summary_line(t.label, t.report, t.exit_code),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    colour = "green" if report.verdict == "pass" else "bold red"
    console.print(
        f"[{colour}]verdict: {report.verdict.upper()}[/] — exit {report.exit_code}, "
        f"the worst of {count} target(s)",
        highlight=False,
    )
