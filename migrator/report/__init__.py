"""Reports: one value type, several renderings (terminal, JSON, JUnit XML, Markdown, HTML).

* :mod:`migrator.report.model` — ``Check``, ``Report`` (and the multi-target
  ``TargetsReport`` of ``upgrade-check --to A --to B``);
* :mod:`migrator.report.render` — terminal, JSON, JUnit XML, Markdown;
* :mod:`migrator.report.html` — the self-contained HTML file (``--html``);
* :mod:`migrator.report.schema` — the JSON Schema of ``--json`` reports.

The JSON shape is documented in ``docs/report-format.md``.
"""

from __future__ import annotations

from migrator.report.model import (
    EXIT_SEVERITY,
    REPORT_FORMAT,
    Check,
    Report,
    Status,
    TargetResult,
    TargetsReport,
    worst_exit_code,
)
from migrator.report.render import (
    append_step_summary,
    render_markdown,
    render_targets_text,
    render_text,
    to_json,
    to_junit,
    write_json,
    write_junit,
)

__all__ = [
    "EXIT_SEVERITY",
    "TargetResult",
    "TargetsReport",
    "render_targets_text",
    "worst_exit_code",
    "REPORT_FORMAT",
    "Check",
    "Report",
    "Status",
    "append_step_summary",
    "render_markdown",
    "render_text",
    "to_json",
    "to_junit",
    "write_json",
    "write_junit",
]
