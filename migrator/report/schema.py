"""The JSON Schema of ``--json`` reports, shipped as package data.

``migrator/data/report.schema.json`` describes exactly what ``Report.to_dict()``
produces (``docs/report-format.md``); ``docs/report.schema.json`` is a copy for
readers of the repository, kept identical by a test. Consumers validate a report
with any JSON Schema (2020-12) validator; :func:`validate_report` uses the
``jsonschema`` package when it is installed.
"""

from __future__ import annotations

import importlib
import json
from importlib import resources
from typing import Any

from migrator.errors import ConfigError

SCHEMA_RESOURCE = "data/report.schema.json"


def report_schema() -> dict[str, Any]:
    """The report JSON Schema as a dict (loaded from the installed package).

    Returns:
        The schema; its ``$id`` equals the report ``format`` it describes.
    """
    text = resources.files("migrator").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_report(data: Any) -> list[str]:
    """Check a report dict against the schema.

    Args:
        data: A decoded ``--json`` report (``Report.to_dict()``).

    Returns:
        One message per violation (``path: problem``); empty when the report is valid.

    Raises:
        ConfigError: The ``jsonschema`` package is not installed.
    """
    try:
        jsonschema: Any = importlib.import_module("jsonschema")
    except ImportError as exc:
        raise ConfigError(
            "validating a report needs the 'jsonschema' package.",
            hint="pip install 'langgraph-migrator[test]' or pip install jsonschema",
        ) from exc
    validator = jsonschema.Draft202012Validator(report_schema())
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{where}: {error.message}")
    return problems
