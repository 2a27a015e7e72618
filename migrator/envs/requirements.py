"""Requirements files: the pins they hold, every line accounted for (issue 12 #10).

A line the tool does not understand was once skipped, and the environment then got
some other langgraph than the file meant. Now each line is a pin, something pip
knows that names no package to pin (options, URLs, paths, other packages' ranges),
or an error naming the file and line; ``-r``/``-c`` includes are followed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from migrator.envs.versions import (
    _PIN_RE,
    KEY_PACKAGES,
    PSYCOPG,
    _check_version,
    normalize_name,
)
from migrator.errors import ConfigError


def parse_requirements(text: str, *, name: str, base: Path | None) -> dict[str, str]:
    """See :func:`migrator.envs.versions.parse_requirements_text`."""
    return _parse_requirements(text, name, base, seen=frozenset())


#: pip options a requirements file may hold that do not name packages (skipped).
_PIP_OPTIONS = frozenset(
    {
        "-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links",
        "-e", "--editable", "--pre", "--prefer-binary", "--require-hashes", "--only-binary",
        "--no-binary", "--trusted-host", "--use-feature", "--config-settings", "--hash",
    }
)  # fmt: skip
#: Options that include another file, by path relative to the including one.
_INCLUDE_OPTIONS = frozenset({"-r", "--requirement", "-c", "--constraint"})
_OPTION_RE = re.compile(r"^(?P<opt>--?[A-Za-z][A-Za-z-]*)(?:[= ]\s*(?P<value>\S.*))?$")
_SHORT_GLUED_RE = re.compile(r"^(?P<opt>-[rcief])(?P<value>[^\s=-].*)$")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with ``\\`` continuations joined, each with the number it starts on."""
    out: list[tuple[int, str]] = []
    pending, start = "", 1
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        out.append((start, pending + raw))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _is_url_or_path(requirement: str) -> bool:
    text = requirement.strip()
    return "://" in text or text.startswith((".", "/", "~", "git+", "hg+", "svn+", "bzr+"))


def _parse_requirements(
    text: str, name: str, base: Path | None, *, seen: frozenset[Path]
) -> dict[str, str]:
    pins: dict[str, str] = {}

    def add(found: Mapping[str, str]) -> None:
        for package, version in found.items():
            if pins.get(package, version) != version:
                raise ConfigError(f"{name} pins {package} twice: {pins[package]} and {version}")
            pins[package] = version

    for number, raw in _logical_lines(text):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        where = f"{name} line {number}"
        if not line:
            continue
        if line.startswith("-"):
            add(_option_line(line, where, base, seen))
            continue
        line = re.sub(r"\s--hash[= ]\S+", "", line).strip()
        requirement, _, marker = line.partition(";")
        if marker.strip() and not _marker_holds(marker.strip()):
            continue
        match = _PIN_RE.match(requirement)
        if match:
            package, version = normalize_name(match["name"]), match["ver"]
            _check_version(package, version, where)
            add({package: version})
        elif not _is_url_or_path(requirement):
            _check_unpinned(requirement.strip(), where)
    return pins


def _option_line(line: str, where: str, base: Path | None, seen: frozenset[Path]) -> dict[str, str]:
    """A pip option line: skipped, or the pins of the file it includes."""
    match = _OPTION_RE.match(line) or _SHORT_GLUED_RE.match(line)
    option = match["opt"] if match else line.split()[0]
    if option not in _INCLUDE_OPTIONS:
        if option in _PIP_OPTIONS:
            return {}
        raise ConfigError(
            f"{where}: {line[:120]!r} is not a requirement or an option pip knows.",
            hint="a requirements file holds name==version lines (uv pip compile, pip freeze)",
        )
    value = (match["value"] or "").strip() if match else ""
    if not value:
        raise ConfigError(f"{where}: {option} names no file.")
    if base is None:
        raise ConfigError(f"{where}: {option} {value}: cannot follow an include here.")
    path = (base / value).expanduser()
    if path.resolve() in seen:
        raise ConfigError(f"{where}: {option} {value} includes itself.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else str(exc)
        raise ConfigError(
            f"{where}: {option} {value}: {reason}.",
            hint="fix the path (relative to the file that includes it) or remove the line",
        ) from None
    return _parse_requirements(text, path.name, path.parent, seen=seen | {path.resolve()})


def _check_unpinned(requirement: str, where: str) -> None:
    """A requirement that is not a pin: fine for other packages, an error for a key one."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        parsed = Requirement(requirement)
    except InvalidRequirement:
        raise ConfigError(
            f"{where}: {requirement[:120]!r} is not a requirement.",
            hint="a requirements file holds name==version lines (uv pip compile, pip freeze)",
        ) from None
    package = normalize_name(parsed.name)
    if package in (*KEY_PACKAGES, PSYCOPG):
        raise ConfigError(
            f"{where}: {requirement[:120]!r} does not pin {package} to one version.",
            hint=f"pin it with {package}==VERSION: the tool installs exactly what the file pins",
        )


def _marker_holds(marker: str) -> bool:
    try:
        from packaging.markers import InvalidMarker, Marker
    except ImportError:  # pragma: no cover - packaging comes with langchain-core
        return False
    try:
        return bool(Marker(marker).evaluate())
    except InvalidMarker:
        return False
