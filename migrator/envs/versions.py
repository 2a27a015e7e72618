"""Version sets: specs, requirements and lock files, known-good eras (pure parsing)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING

from migrator.errors import ConfigError

if TYPE_CHECKING:
    pass


#: The four packages every version set pins (plus psycopg, which the worker needs).
KEY_PACKAGES = (
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-postgres",
    "langchain-core",
)
CHECKPOINT_POSTGRES = "langgraph-checkpoint-postgres"
PSYCOPG = "psycopg"
#: Short names accepted in specs.
ALIASES = {"checkpoint-postgres": CHECKPOINT_POSTGRES, "checkpoint": "langgraph-checkpoint"}
#: Extras always installed with a package (the worker needs a libpq).
_EXTRAS = {PSYCOPG: "binary"}
#: Packages whose era pins only fit the era's own langgraph.
_LANGGRAPH_COMPANIONS = ("langgraph-checkpoint", "langchain-core")

#: Bump when the env layout or build recipe changes: old cache entries are then unused.
_CACHE_SCHEMA = 1
_MARKER = ".migrator-env.json"
#: Pinned packages are exempt from ``exclude_newer`` (it caps unpinned dependencies).
_NO_CAP = "2999-12-31T00:00:00Z"
_INSTALL_TIMEOUT = 1800.0
_LOCK_TIMEOUT = 3600.0
_STDERR_TAIL_LINES = 20

_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_VERSION_RE = re.compile(
    r"^(\d+!)?\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[A-Za-z0-9.]+)?$"
)
_PIN_RE = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*==\s*(?P<ver>\S+?)\s*$"
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?$")

Progress = Callable[[str], None]


# ---------------------------------------------------------------- value types


@dataclass(frozen=True)
class Era:
    """A known-good version set from ``versions.toml``.

    Attributes:
        name: The era's langgraph-checkpoint-postgres version, e.g. ``"2.0.8"``.
        pins: Sorted ``(package, version)`` pairs.
        exclude_newer: RFC 3339 cap for unpinned dependencies.
        migrations: ``len(MIGRATIONS)`` of that release (0: no ledger).
        note: Free text.
    """

    name: str
    pins: tuple[tuple[str, str], ...]
    exclude_newer: str | None
    migrations: int | None = None
    note: str = ""


@dataclass(frozen=True)
class VersionSet:
    """The packages one environment is built from.

    Attributes:
        pins: Sorted ``(normalized name, version)`` pairs.
        exclude_newer: Upload-date cap for dependencies that are not pinned.
        label: Human name, e.g. ``"checkpoint-postgres==2.0.8 / langgraph==0.2.56"``.
        source: Where it came from: ``"spec"``, ``"era"``, ``"file:<name>"`` or ``"current"``.
        era: The era it was completed from, if any.
        current: True for the interpreter the tool runs in (no env is built).
        app_requirements: The app profile's own packages, installed beside the pins
            (only into environments built from a spec or an era).
    """

    pins: tuple[tuple[str, str], ...]
    exclude_newer: str | None = None
    label: str = ""
    source: str = "spec"
    era: str | None = None
    current: bool = False
    app_requirements: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Stable hash of what determines the install (pins, cap, recipe version)."""
        payload = json.dumps(
            {
                "schema": _CACHE_SCHEMA,
                "pins": sorted(self.pins),
                "exclude_newer": self.exclude_newer,
                "current": self.current,
                **({"app": sorted(self.app_requirements)} if self.app_requirements else {}),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def pin(self, name: str) -> str | None:
        """The pinned version of ``name`` (any spelling), or None."""
        wanted = normalize_name(name)
        return next((v for n, v in self.pins if n == wanted), None)

    def requirements(self) -> list[str]:
        """Requirement strings to install: every pin, plus langgraph and psycopg if unpinned."""
        reqs = [f"{n}[{_EXTRAS[n]}]=={v}" if n in _EXTRAS else f"{n}=={v}" for n, v in self.pins]
        if self.pin("langgraph") is None:
            reqs.append("langgraph")
        if self.pin(PSYCOPG) is None:
            reqs.append(f"{PSYCOPG}[{_EXTRAS[PSYCOPG]}]")
        return reqs + list(self.app_requirements)


@dataclass(frozen=True)
class VersionEnv:
    """A ready environment: an interpreter with a version set installed.

    Attributes:
        python: The interpreter to run workers with.
        version_set: What it was built from.
        path: The env directory (None for ``current``).
        installed: ``(distribution, version)`` pairs measured in the env.
    """

    python: Path
    version_set: VersionSet
    path: Path | None = None
    installed: tuple[tuple[str, str], ...] = field(default=())

    @property
    def current(self) -> bool:
        """True when this is the interpreter the tool runs in."""
        return self.version_set.current

    @property
    def label(self) -> str:
        """The version set's label, completed with measured versions where unpinned."""
        versions = dict(self.installed)
        if self.version_set.pin("langgraph") is None and "langgraph" in versions:
            return f"{self.version_set.label} / langgraph=={versions['langgraph']}"
        return self.version_set.label


# ------------------------------------------------------------------- parsing


def normalize_name(name: str) -> str:
    """PEP 503 name normalization, plus the short aliases specs accept."""
    norm = re.sub(r"[-_.]+", "-", name).lower()
    return ALIASES.get(norm, norm)


def _check_version(name: str, version: str, where: str) -> str:
    if not _VERSION_RE.match(version):
        raise ConfigError(f"not a valid version in {where}: {name}=={version}")
    return version


def _make_label(pins: Mapping[str, str], suffix: str = "") -> str:
    parts = []
    for name in (CHECKPOINT_POSTGRES, "langgraph"):
        if name in pins:
            parts.append(f"{name.removeprefix('langgraph-')}=={pins[name]}")
    return " / ".join(parts) + suffix


def load_eras(text: str) -> dict[str, Era]:
    """Parse the text of ``versions.toml``.

    Args:
        text: TOML with ``[eras."<checkpoint-postgres version>"]`` tables holding
            ``pins``, ``exclude_newer`` and optionally ``migrations`` and ``note``.

    Returns:
        Eras by name, in file order.

    Raises:
        ConfigError: The file is not valid TOML or an era is malformed.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"versions.toml is not valid TOML: {exc}") from None
    eras: dict[str, Era] = {}
    for name, table in dict(doc.get("eras", {})).items():
        where = f'versions.toml era "{name}"'
        raw_pins = table.get("pins")
        if not isinstance(raw_pins, dict) or not raw_pins:
            raise ConfigError(f"{where} has no pins")
        pins = {normalize_name(k): _check_version(k, str(v), where) for k, v in raw_pins.items()}
        if pins.get(CHECKPOINT_POSTGRES) != name:
            raise ConfigError(f"{where} must pin {CHECKPOINT_POSTGRES}=={name}")
        missing = [p for p in (*KEY_PACKAGES, PSYCOPG) if p not in pins]
        if missing:
            raise ConfigError(f"{where} does not pin {', '.join(missing)}")
        cap = table.get("exclude_newer")
        if cap is not None and not _DATE_RE.match(str(cap)):
            raise ConfigError(f"{where} has a bad exclude_newer: {cap!r}")
        migrations = table.get("migrations")
        eras[name] = Era(
            name=name,
            pins=tuple(sorted(pins.items())),
            exclude_newer=None if cap is None else str(cap),
            migrations=None if migrations is None else int(migrations),
            note=str(table.get("note", "")),
        )
    return eras


def versions_toml_text() -> str:
    """The text of ``versions.toml``: the repository's copy when present, else the packaged one."""
    repo_copy = Path(__file__).resolve().parents[2] / "canary_fixtures" / "versions.toml"
    if repo_copy.is_file():
        return repo_copy.read_text(encoding="utf-8")
    return resources.files("migrator").joinpath("data/versions.toml").read_text(encoding="utf-8")


def known_eras() -> list[Era]:
    """The known-good eras, oldest first."""
    return sorted(load_eras(versions_toml_text()).values(), key=lambda e: _release(e.name))


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r"^(?:\d+!)?(\d+(?:\.\d+)*)", version)
    return tuple(int(p) for p in match.group(1).split(".")) if match else ()


def _cap_for(cp_version: str, eras: Mapping[str, Era]) -> str | None:
    """The dependency cap for a checkpoint-postgres version: its era's, else the next era's."""
    if cp_version in eras:
        return eras[cp_version].exclude_newer
    later = [e for e in eras.values() if _release(e.name) > _release(cp_version)]
    if not later:
        return None
    return min(later, key=lambda e: _release(e.name)).exclude_newer


def _tokens(spec: str) -> list[str]:
    # "psycopg[binary] == 3.2" is one pin: glue spaces around "==" first.
    return [t for t in re.split(r"[,\s]+", re.sub(r"\s*==\s*", "==", spec)) if t]


def resolve_pins(
    pins: Mapping[str, str], eras: Mapping[str, Era], *, source: str = "spec", fill: bool = True
) -> VersionSet:
    """Complete explicit pins into a version set (pure).

    A checkpoint-postgres version with an era takes the era's pins (when ``fill``)
    and cap; explicit pins win, and an explicit langgraph that differs from the
    era's drops the era's langgraph-checkpoint and langchain-core pins (they were
    resolved for the era's langgraph). Any other version is capped at the next
    known era's date, or not at all when it is newer than every era.

    Args:
        pins: Normalized name -> version.
        eras: From :func:`load_eras`.
        source: Recorded on the result.
        fill: Take the era's pins for packages ``pins`` does not name.

    Returns:
        The version set.

    Raises:
        ConfigError: ``pins`` does not name langgraph-checkpoint-postgres.
    """
    cp = pins.get(CHECKPOINT_POSTGRES)
    if cp is None:
        raise ConfigError(
            f"version set does not name {CHECKPOINT_POSTGRES}",
            hint=f"write e.g. '{CHECKPOINT_POSTGRES}==2.0.8'; known: " + ", ".join(eras),
        )
    era = eras.get(cp)
    merged = dict(pins)
    if era is not None and fill:
        era_pins = dict(era.pins)
        overridden = "langgraph" in pins and pins["langgraph"] != era_pins["langgraph"]
        for name, version in era_pins.items():
            if overridden and name in _LANGGRAPH_COMPANIONS:
                continue
            merged.setdefault(name, version)
    label = _make_label(merged)
    return VersionSet(
        pins=tuple(sorted(merged.items())),
        exclude_newer=_cap_for(cp, eras),
        label=label if source == "spec" or source == "era" else f"{label} ({source})",
        source="era" if era is not None and fill and merged == dict(era.pins) else source,
        era=era.name if era is not None else None,
    )


def parse_spec(spec: str, eras: Mapping[str, Era]) -> VersionSet:
    """Parse an inline spec such as ``"checkpoint-postgres==2.0.8, langgraph==0.2.56"`` (pure).

    Tokens are separated by commas or whitespace. A bare version (``2.0.8``) means
    langgraph-checkpoint-postgres.

    Args:
        spec: The spec.
        eras: From :func:`load_eras`.

    Returns:
        The version set.

    Raises:
        ConfigError: A token is not ``name==version``, a name is repeated with two
            versions, or checkpoint-postgres is missing.
    """
    pins: dict[str, str] = {}
    for token in _tokens(spec):
        if _VERSION_RE.match(token):
            name, version = CHECKPOINT_POSTGRES, token
        else:
            match = _PIN_RE.match(token)
            if not match:
                raise ConfigError(
                    f"cannot parse version spec {spec!r}: {token!r} is not name==version",
                    hint="write e.g. 'langgraph-checkpoint-postgres==2.0.8 langgraph==0.2.56', "
                    "a requirements file, or 'current'",
                )
            name, version = normalize_name(match["name"]), match["ver"]
        _check_version(name, version, "spec")
        if pins.get(name, version) != version:
            raise ConfigError(f"version spec pins {name} twice: {pins[name]} and {version}")
        pins[name] = version
    if not pins:
        raise ConfigError("empty version spec")
    return resolve_pins(pins, eras)


def parse_requirements_text(
    text: str, *, name: str = "requirements file", base: Path | None = None
) -> dict[str, str]:
    """Pins from a requirements file (``uv pip compile`` output, ``pip freeze``).

    ``name==version`` lines are the pins. Comments, ``--hash`` continuations, pip's
    options, URLs, paths and editable installs are skipped, as are other packages'
    version ranges; a line with an environment marker counts only when the marker
    holds for this interpreter (skipped when it cannot be evaluated). ``-r FILE``
    and ``-c FILE`` are followed, relative to ``base``. Anything else is an error
    naming the line: a file the tool cannot read exactly must not install some
    other langgraph.

    Args:
        text: The file's text.
        name: The file's name, for messages.
        base: The directory ``-r``/``-c`` paths are relative to (None: they are refused,
            the parse stays pure).

    Returns:
        Normalized name -> version.

    Raises:
        ConfigError: A line is not a requirement or a known pip option; an included
            file is missing; a key package is not pinned with ``==``; a package is
            pinned twice with different versions, or a version is not valid.
    """
    from migrator.envs.requirements import parse_requirements

    return parse_requirements(text, name=name, base=base)


def parse_lock_text(text: str) -> dict[str, str]:
    """Pins of the key packages (and psycopg) from ``uv.lock``, ``poetry.lock`` or ``pylock.toml``.

    Only these are taken: a lock holds packages for every platform and group, so
    installing all of it is not safe.

    Args:
        text: The lock file's text.

    Returns:
        Normalized name -> version.

    Raises:
        ConfigError: Not TOML, or a key package is locked at two versions.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"lock file is not valid TOML: {exc}") from None
    wanted = {*KEY_PACKAGES, PSYCOPG}
    pins: dict[str, str] = {}
    for entry in [*doc.get("package", []), *doc.get("packages", [])]:
        name = normalize_name(str(entry.get("name", "")))
        version = entry.get("version")
        if name not in wanted or version is None:
            continue
        _check_version(name, str(version), "lock file")
        if pins.get(name, str(version)) != str(version):
            raise ConfigError(f"lock file holds {name} at {pins[name]} and {version}")
        pins[name] = str(version)
    return pins


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.endswith((".txt", ".in", ".lock", ".toml"))


def _parse_file(path: Path, eras: Mapping[str, Era]) -> VersionSet:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read version file {path.name}: {exc}") from None
    is_lock = path.name in ("uv.lock", "poetry.lock") or (
        path.suffix == ".toml" and path.name.startswith("pylock")
    )
    pins = (
        parse_lock_text(text)
        if is_lock
        else parse_requirements_text(text, name=path.name, base=path.parent)
    )
    if CHECKPOINT_POSTGRES not in pins:
        raise ConfigError(f"{path.name} does not pin {CHECKPOINT_POSTGRES}")
    return resolve_pins(pins, eras, source=f"file:{path.name}", fill=False)


def current_version_set() -> VersionSet:
    """The version set of the interpreter the tool runs in."""
    pins: dict[str, str] = {}
    for name in (*KEY_PACKAGES, PSYCOPG):
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins[name] = metadata.version(name)
    label = _make_label(pins)
    return VersionSet(
        pins=tuple(sorted(pins.items())),
        label=f"current ({label})" if label else "current",
        source="current",
        current=True,
    )


def parse_version_set(spec: str, *, eras: Mapping[str, Era] | None = None) -> VersionSet:
    """Turn what a user wrote into a version set.

    Args:
        spec: ``current``; a path to a requirements file, ``uv.lock``,
            ``poetry.lock`` or ``pylock.toml``; or an inline spec such as
            ``"langgraph-checkpoint-postgres==2.0.8, langgraph==0.2.56"``.
        eras: Known eras (default: :func:`known_eras`).

    Returns:
        The version set.

    Raises:
        ConfigError: The spec cannot be parsed, the file is missing or pins no
            checkpoint-postgres.
    """
    spec = spec.strip()
    table = {e.name: e for e in known_eras()} if eras is None else eras
    if spec == "current":
        return current_version_set()
    path = Path(spec).expanduser()
    if path.is_file():
        return _parse_file(path, table)
    if _looks_like_path(spec) and "==" not in spec:
        raise ConfigError(f"version file not found: {spec}")
    return parse_spec(spec, table)


# --------------------------------------------------------------------- cache
