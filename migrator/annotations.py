"""GitHub Actions annotations for a report: ``::error file=...::`` / ``::warning ...::`` lines.

Printed on stdout only when ``GITHUB_ACTIONS=true``. Each failed or warned finding
becomes one annotation (identical findings on several canaries are merged, as in
the terminal summary). The annotation points at the user's canary module when the
finding is about one of the user's canaries (at the line naming it, if found), else
at ``pyproject.toml`` when there is one, else it carries only a title.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from migrator.report import Check, Report

MAX_DIFFERENCE_LINES = 3


@dataclass(frozen=True)
class Annotation:
    """One workflow command line."""

    level: str  # "error" | "warning"
    title: str
    message: str
    file: str | None = None
    line: int | None = None

    def render(self) -> str:
        """``::level file=F,line=N,title=T::message`` with GitHub's escaping."""
        props = []
        if self.file:
            props.append(f"file={_escape_property(self.file)}")
            if self.line:
                props.append(f"line={self.line}")
        props.append(f"title={_escape_property(self.title)}")
        return f"::{self.level} {','.join(props)}::{_escape_data(self.message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def canary_module_file(spec: str | None, root: Path | None = None) -> Path | None:
    """The source file of the user canary module ``module:attr``, without importing it.

    Args:
        spec: ``--canaries`` value, or None.
        root: Directory the module is importable from (default: the working directory).

    Returns:
        The module's file, or None when it cannot be located.
    """
    if not spec or ":" not in spec:
        return None
    module = spec.partition(":")[0]
    root = root or Path.cwd()
    candidate = root.joinpath(*module.split("."))
    for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
        if path.is_file():
            return path
    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    finally:
        if added:
            sys.path.remove(str(root))
    origin = getattr(found, "origin", None)
    return Path(origin) if origin and Path(origin).is_file() else None


def _line_naming(path: Path, name: str) -> int | None:
    """First line of ``path`` that holds ``name`` as a string literal."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for number, line in enumerate(lines, start=1):
        if f'"{name}"' in line or f"'{name}'" in line:
            return number
    return None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def build_annotations(
    report: Report,
    *,
    pyproject: Path | None = None,
    canary_file: Path | None = None,
    root: Path | None = None,
) -> list[Annotation]:
    """One annotation per failed or warned finding of ``report``.

    Args:
        report: The report.
        pyproject: The project's pyproject.toml, if any (the fallback location).
        canary_file: The user canary module's file, if any.
        root: Paths are made relative to this (the checkout; default: working directory).

    Returns:
        Errors first, then warnings, in report order.
    """
    root = root or Path.cwd()
    groups: dict[tuple[str, str, str, tuple[str, ...], str], list[Check]] = {}
    for c in report.checks:
        if c.status in ("fail", "warn"):
            key = (c.check, c.status, c.summary, c.hazards, c.name if c.differences else "")
            groups.setdefault(key, []).append(c)
    out: list[Annotation] = []
    for group in groups.values():
        c = group[0]
        targets = ", ".join(g.canary or g.thread_id or "-" for g in group)
        hazards = f" [{', '.join(c.hazards)}]" if c.hazards else ""
        title = f"langgraph-migrator {report.command}: {c.check} ({targets}){hazards}"
        lines = [c.summary]
        # Annotations are public to the whole CI run: never a value, --show-values or not.
        breaking = [d for d in c.shown_differences() if d.get("severity") == "breaking"]
        lines += [str(d.get("summary") or d.get("path")) for d in breaking[:MAX_DIFFERENCE_LINES]]
        if len(breaking) > MAX_DIFFERENCE_LINES:
            lines.append(f"... {len(breaking) - MAX_DIFFERENCE_LINES} more (see the report)")
        file: str | None = None
        line: int | None = None
        user_line = _line_naming(canary_file, c.canary) if canary_file and c.canary else None
        if canary_file and user_line:
            file, line = _relative(canary_file, root), user_line
        elif pyproject and pyproject.is_file():
            file = _relative(pyproject, root)
        out.append(
            Annotation(
                level="error" if c.status == "fail" else "warning",
                title=title,
                message="\n".join(lines),
                file=file,
                line=line,
            )
        )
    return sorted(out, key=lambda a: a.level != "error")


def emit_annotations(
    report: Report,
    *,
    pyproject: Path | None = None,
    canaries: str | None = None,
    environ: Mapping[str, str] | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Print the annotations when running under GitHub Actions.

    Args:
        report: The report.
        pyproject: The project's pyproject.toml, if any.
        canaries: The ``--canaries module:attr`` value, if any.
        environ: Environment to read ``GITHUB_ACTIONS`` from (default: ``os.environ``).
        echo: Where lines go (default: stdout, where the runner reads them).

    Returns:
        How many annotations were printed (0 outside Actions).
    """
    env = environ if environ is not None else os.environ
    if env.get("GITHUB_ACTIONS") != "true":
        return 0
    root = Path(env.get("GITHUB_WORKSPACE") or Path.cwd())
    annotations = build_annotations(
        report, pyproject=pyproject, canary_file=canary_module_file(canaries), root=root
    )
    for a in annotations:
        echo(a.render())
    return len(annotations)
