"""Version sets -> cached virtual environments; runs worker ops inside them.

A :class:`VersionSet` names the packages an environment is built from. It comes
from a spec (``langgraph-checkpoint-postgres==2.0.8 langgraph==0.2.56``), a
requirements or lock file, or ``current`` (the interpreter the tool runs in).
Bare specs are completed from the known-good eras in ``versions.toml``.

:func:`ensure_env` builds a venv per version set with ``uv`` (fallback: ``venv`` +
pip) under ``<cache>/envs/<key>``, where two processes building the same env at
once are serialized by a file lock and a build only becomes visible, by an atomic
rename, after its imports were verified. :func:`run_worker` runs
``python -m migrator.worker OP`` inside an environment.

Parsing (:func:`parse_version_set`, :func:`parse_requirements_text`,
:func:`load_eras`) is pure apart from reading the named file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.app.profile import AppProfile, active_profile
from migrator.errors import AppCodeError, ConfigError, EnvBuildError, WorkerError, scrub

if TYPE_CHECKING:
    import threading

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
    """

    pins: tuple[tuple[str, str], ...]
    exclude_newer: str | None = None
    label: str = ""
    source: str = "spec"
    era: str | None = None
    current: bool = False

    @property
    def key(self) -> str:
        """Stable hash of what determines the install (pins, cap, recipe version)."""
        payload = json.dumps(
            {
                "schema": _CACHE_SCHEMA,
                "pins": sorted(self.pins),
                "exclude_newer": self.exclude_newer,
                "current": self.current,
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
        return reqs


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
    repo_copy = Path(__file__).resolve().parent.parent / "canary_fixtures" / "versions.toml"
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


def parse_requirements_text(text: str) -> dict[str, str]:
    """Pins from a requirements file (``uv pip compile`` output, ``pip freeze``) (pure).

    Only ``name==version`` lines count; options, comments, ``--hash`` continuations,
    URLs and editable installs are skipped. A line with an environment marker is
    kept only when the marker holds for this interpreter (skipped when the marker
    cannot be evaluated).

    Args:
        text: The file's text.

    Returns:
        Normalized name -> version.

    Raises:
        ConfigError: A package is pinned twice with different versions, or a
            version is not valid.
    """
    pins: dict[str, str] = {}
    logical = re.sub(r"\\\r?\n", " ", text)
    for raw in logical.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line or line.startswith("-"):
            continue
        line = re.sub(r"\s--hash[= ]\S+", "", line).strip()
        requirement, _, marker = line.partition(";")
        if marker.strip() and not _marker_holds(marker.strip()):
            continue
        match = _PIN_RE.match(requirement)
        if not match:
            continue
        name, version = normalize_name(match["name"]), match["ver"]
        _check_version(name, version, "requirements file")
        if pins.get(name, version) != version:
            raise ConfigError(f"requirements file pins {name} twice: {pins[name]} and {version}")
        pins[name] = version
    return pins


def _marker_holds(marker: str) -> bool:
    try:
        from packaging.markers import InvalidMarker, Marker
    except ImportError:  # pragma: no cover - packaging comes with langchain-core
        return False
    try:
        return bool(Marker(marker).evaluate())
    except InvalidMarker:
        return False


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
    pins = parse_lock_text(text) if is_lock else parse_requirements_text(text)
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


def cache_dir() -> Path:
    """The cache root.

    ``$LANGGRAPH_MIGRATOR_CACHE``, else ``$XDG_CACHE_HOME/langgraph-migrator``,
    else ``~/.cache/langgraph-migrator``.
    """
    explicit = os.environ.get("LANGGRAPH_MIGRATOR_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "langgraph-migrator"


def env_dir(vs: VersionSet, *, cache: Path | None = None) -> Path:
    """Where the environment for ``vs`` lives (for this interpreter's Python version)."""
    py = f"{sys.implementation.name}{platform.python_version()}-{platform.machine()}"
    name = hashlib.sha256(f"{vs.key}|{py}".encode()).hexdigest()[:16]
    return (cache or cache_dir()) / "envs" / name


def _env_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _read_marker(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not _env_python(root).exists():
        return None
    return data


@contextlib.contextmanager
def _file_lock(path: Path, progress: Progress | None, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        told = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and progress is not None:
                    progress(f"waiting for another process building {what}")
                    told = True
                if time.monotonic() > deadline:
                    raise EnvBuildError(
                        f"timed out after {_LOCK_TIMEOUT:.0f}s waiting for another build of {what}",
                        hint=f"remove the lock file {path.name} if no other migrator is running",
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------- build


def _uv() -> str | None:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def _run_step(cmd: list[str], *, cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_INSTALL_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EnvBuildError(f"{what} timed out after {_INSTALL_TIMEOUT:.0f}s") from None
    except OSError as exc:
        raise EnvBuildError(f"{what} could not start: {exc}") from None


def _install_failure(vs: VersionSet, output: str) -> Exception:
    """Classify an installer's error output as a user error or a build error."""
    flat = " ".join(output.split())  # uv wraps long lines
    missing = re.search(r"there is no version of ([A-Za-z0-9._\-\[\]]+)==([^\s,]+)", flat) or (
        re.search(r"satisfies the requirement ([A-Za-z0-9._\-\[\]]+)==([^\s,)]+)", flat)
    )
    if missing:
        name = re.sub(r"\[.*\]", "", missing[1])
        return ConfigError(
            f"no such version: {name}=={missing[2]} (the package index has no such release)",
            hint="versions.toml lists tested version sets",
        )
    unknown = re.search(r"([A-Za-z0-9._\-]+) was not found in the package registry", flat)
    if unknown:
        return ConfigError(f"no such package: {unknown[1]} (not on the package index)")
    cause = re.search(r"(?:cause|error|ERROR):\s*(.*)$", flat)
    detail = cause[1] if cause else flat or "no output"
    if len(detail) > 400:
        detail = detail[:397] + "..."
    return EnvBuildError(f"could not install {vs.label}: {detail}")


def _install_commands(vs: VersionSet, target: Path, uv: str | None) -> list[tuple[str, list[str]]]:
    python = str(_env_python(target))
    reqs = vs.requirements()
    if uv is None:
        # pip has no upload-date cap; pins still hold, unpinned dependencies float.
        return [
            ("create venv", [sys.executable, "-m", "venv", str(target)]),
            (
                "install",
                [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs],
            ),
        ]
    install = [uv, "pip", "install", "--python", python]
    if vs.exclude_newer:
        install += ["--exclude-newer", vs.exclude_newer]
        for name, _ in vs.pins:
            install += ["--exclude-newer-package", f"{name}={_NO_CAP}"]
    return [
        (
            "create venv",
            [uv, "venv", "-q", "--relocatable", "--python", sys.executable, str(target)],
        ),
        ("install", [*install, *reqs]),
    ]


def _build(vs: VersionSet, target: Path, progress: Progress | None) -> VersionEnv:
    """Build into ``target`` (a fresh temporary dir), verify, write the marker."""
    uv = _uv()
    for step, cmd in _install_commands(vs, target, uv):
        if progress is not None:
            progress(f"{step}: {vs.label}" + ("" if uv else " (pip fallback, no uv)"))
        done = _run_step(cmd, cwd=target.parent, what=f"{step} for {vs.label}")
        if done.returncode != 0:
            raise _install_failure(vs, done.stderr + "\n" + done.stdout)
    if progress is not None:
        progress(f"verify imports: {vs.label}")
    probe = VersionEnv(python=_env_python(target), version_set=vs, path=target)
    try:
        info = run_worker(probe, "info", {}, timeout=300.0)
    except WorkerError as exc:
        raise EnvBuildError(
            f"environment {vs.label} installed but does not import: {exc.message}"
        ) from None
    installed = {k: v for k, v in info.get("versions", {}).items() if isinstance(v, str)}
    wrong = [
        f"{n}=={v} (got {installed.get(n)})"
        for n, v in vs.pins
        if installed.get(n) not in (v, None)
    ]
    if wrong:
        raise EnvBuildError(f"environment {vs.label} has the wrong versions: {', '.join(wrong)}")
    marker = {
        "label": vs.label,
        "pins": [list(p) for p in vs.pins],
        "exclude_newer": vs.exclude_newer,
        "installed": installed,
        "migrations": len(info.get("migrations", [])),
        "python": platform.python_version(),
        "built_with": "uv" if uv else "pip",
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (target / _MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return probe


def _as_env(vs: VersionSet, root: Path, marker: Mapping[str, Any]) -> VersionEnv:
    installed = marker.get("installed", {})
    return VersionEnv(
        python=_env_python(root),
        version_set=vs,
        path=root,
        installed=tuple(sorted((str(k), str(v)) for k, v in dict(installed).items())),
    )


def ensure_env(
    vs: VersionSet, *, progress: Progress | None = None, cache: Path | None = None
) -> VersionEnv:
    """Return a ready environment for ``vs``, building it if the cache has none.

    Concurrent callers (threads or processes) for the same version set build it
    once: the builder holds ``<cache>/locks/<name>.lock``, installs into a temporary
    directory beside the final one, runs the ``info`` op there, writes a marker, and
    renames it into place. A failed build removes its directory.

    Args:
        vs: The version set. ``current`` returns the running interpreter.
        progress: Called with one-line status messages during a build.
        cache: Cache root (default :func:`cache_dir`).

    Returns:
        The environment.

    Raises:
        ConfigError: A pinned version or package does not exist.
        EnvBuildError: Installation or the import check failed.
    """
    if vs.current:
        return VersionEnv(python=Path(sys.executable), version_set=vs, installed=vs.pins)
    final = env_dir(vs, cache=cache)
    marker = _read_marker(final)
    if marker is not None:
        return _as_env(vs, final, marker)
    lock = final.parent.parent / "locks" / f"{final.name}.lock"
    with _file_lock(lock, progress, vs.label):
        marker = _read_marker(final)
        if marker is not None:
            return _as_env(vs, final, marker)
        # We hold the lock: anything left here is debris from a killed build.
        for stale in final.parent.glob(f".tmp-{final.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        started = time.monotonic()
        try:
            _build(vs, tmp, progress)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if progress is not None:
            progress(f"built {vs.label} in {time.monotonic() - started:.1f}s")
        marker = _read_marker(final)
        if marker is None:  # pragma: no cover - we just wrote it
            raise EnvBuildError(f"environment {vs.label} vanished after it was built")
        return _as_env(vs, final, marker)


# -------------------------------------------------------------------- worker


def _worker_files() -> list[Path]:
    package = Path(__file__).resolve().parent
    files = [package / "__init__.py"]
    for path in sorted((package / "worker").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc",):
            files.append(path)
    return files


_staged: dict[Path, Path] = {}


def worker_source_dir(*, cache: Path | None = None) -> Path:
    """A directory holding only ``migrator/__init__.py`` and ``migrator/worker/``.

    It goes on the worker's ``PYTHONPATH``. Pointing ``PYTHONPATH`` at wherever
    ``migrator`` is installed would be wrong: in a site-packages, that would put
    the tool's own langgraph in front of the environment's. The copy is keyed by
    the content hash, so edits to worker code are picked up.

    Args:
        cache: Cache root (default :func:`cache_dir`).

    Returns:
        The directory to put on ``PYTHONPATH``.
    """
    root = cache or cache_dir()
    if root in _staged and _staged[root].is_dir():
        return _staged[root]
    package = Path(__file__).resolve().parent
    files = _worker_files()
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    final = root / "worker" / digest.hexdigest()[:16]
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
        tmp.chmod(0o755)
        try:
            for path in files:
                dest = tmp / "migrator" / path.relative_to(package)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.is_dir():  # lost the race: another process staged it
                raise
    _staged[root] = final
    return final


def _tail(text: str, lines: int = _STDERR_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _one_line(text: str, limit: int = 500) -> str:
    # Masked before it is cut: a password cut in half no longer looks like one.
    line = " ".join(scrub(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


#: How often a worker with a ``cancel`` event or an ``idle`` clock checks them (seconds).
CANCEL_POLL_S = 0.2
#: Worker error kinds that mean "the app's code does not load there" (exit 2).
APP_KINDS = frozenset({"AppConfigError", "UndecodableValueError"})
APP_HINT = (
    "put the app's import roots and graphs in [tool.langgraph-migrator.app] of its "
    "pyproject.toml (or pass --app-path DIR / --graph NAME=MODULE:ATTR), and make its "
    "modules import in that version environment"
)


def _communicate(
    proc: subprocess.Popen[bytes],
    payload: bytes,
    timeout: float,
    cancel: threading.Event | None,
    idle: Callable[[], float] | None = None,
) -> tuple[bytes, bytes]:
    """``proc.communicate(payload, timeout)``, raising ``TimeoutExpired`` early on
    ``cancel``; with ``idle``, ``timeout`` counts the seconds ``idle()`` reports
    (the worker's time without progress) instead of the time since it started."""
    if cancel is None and idle is None:
        return proc.communicate(payload, timeout=timeout)
    started = time.monotonic()
    pending: bytes | None = payload
    while True:
        still = time.monotonic() - started
        if idle is not None:
            still = min(still, idle())
        left = timeout - still
        if left <= 0 or (cancel is not None and cancel.is_set()):
            raise subprocess.TimeoutExpired(proc.args, timeout)
        try:
            # A retry must not pass the input again: communicate() keeps feeding it.
            return proc.communicate(pending, timeout=min(left, CANCEL_POLL_S))
        except subprocess.TimeoutExpired:
            pending = None


def run_worker(
    env: VersionEnv,
    op: str,
    request: Mapping[str, Any] | None = None,
    *,
    timeout: float = 600.0,
    worker_path: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
    idle: Callable[[], float] | None = None,
    app: AppProfile | None = None,
) -> dict[str, Any]:
    """Run ``python -m migrator.worker OP`` in ``env`` and return the op's result.

    The worker runs in its own process group; on timeout the whole group is killed.

    Args:
        env: From :func:`ensure_env`.
        op: The op name (module ``migrator.worker.op_<op>``).
        request: The JSON request object.
        timeout: Seconds before the worker is killed.
        worker_path: Directory put on ``PYTHONPATH`` (default :func:`worker_source_dir`).
        extra_env: Extra environment variables for the worker.
        cancel: When set (by another thread), the worker's process group is killed
            within :data:`CANCEL_POLL_S`.
        app: The application profile the worker loads (default: the active one,
            :func:`migrator.app.profile.use_profile`).
        idle: Seconds since the worker last made progress (its progress file,
            :class:`migrator.partprogress.PartProgress`): ``timeout`` then limits
            the time without progress, not the whole run.

    Returns:
        The op's ``result`` object.

    Raises:
        WorkerError: The op raised (``kind`` is the exception's class name), the
            worker crashed or printed no response (``kind`` ``"crash"``), timed
            out (``kind`` ``"timeout"``) or was cancelled (``kind``
            ``"cancelled"``). ``stderr`` holds its last stderr lines.
    """
    where = f"in env {env.label}"
    payload = json.dumps(dict(request or {}), ensure_ascii=False).encode("utf-8")
    child_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    }
    child_env.update(
        PYTHONPATH=str(worker_path or worker_source_dir()),
        # `python -m` would otherwise put the cwd first on sys.path: a checkout
        # there (or a stray `langgraph/` dir) would shadow the env's packages.
        PYTHONSAFEPATH="1",
        PYTHONNOUSERSITE="1",
        PYTHONIOENCODING="utf-8",
    )
    child_env.update(extra_env or {})
    profile = app if app is not None else active_profile()
    if profile is not None:
        child_env.update(profile.worker_env())
    try:
        proc = subprocess.Popen(
            [str(env.python), "-m", "migrator.worker", op],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
            start_new_session=True,
        )
    except OSError as exc:
        raise WorkerError(f"worker op {op} could not start {where}: {exc}", kind="crash") from None
    try:
        out, err = _communicate(proc, payload, timeout, cancel, idle)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        stderr = _tail(err.decode("utf-8", "replace"))
        if cancel is not None and cancel.is_set():
            raise WorkerError(
                f"worker {op} stopped {where}: cancelled", stderr=stderr, kind="cancelled"
            ) from None
        what = f"made no progress for {timeout:g}s" if idle else f"timed out after {timeout:g}s"
        raise WorkerError(f"worker {op} {what} {where}", stderr=stderr, kind="timeout") from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    stderr = _tail(err.decode("utf-8", "replace"))
    try:
        response = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        response = None
    if not isinstance(response, dict) or "ok" not in response:
        said = "no output" if not out.strip() else "output that is not a JSON response"
        last = stderr.splitlines()[-1] if stderr else ""
        raise WorkerError(
            f"worker op {op} crashed {where}: exit code {proc.returncode}, {said}"
            + (f"; last stderr line: {_one_line(last, 200)}" if last else ""),
            stderr=stderr,
            kind="crash",
        )
    if response["ok"]:
        result = response.get("result")
        return result if isinstance(result, dict) else {}
    error = response.get("error") or {}
    kind = str(error.get("type", "Exception"))
    message = _one_line(str(error.get("message", "")))
    details = "\n".join(x for x in (stderr, str(error.get("traceback", "")).rstrip()) if x)
    if kind in APP_KINDS:
        raise AppCodeError(
            f"worker op {op} failed {where}: {kind}: {message}",
            stderr=details,
            kind=kind,
            hint=APP_HINT,
        )
    raise WorkerError(
        f"worker op {op} failed {where}: {kind}: {message}", stderr=details, kind=kind
    )
