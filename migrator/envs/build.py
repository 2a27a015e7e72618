"""Version environments: one cached venv per version set, built with uv (or venv + pip)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from migrator.app.profile import AppProfile, active_profile
from migrator.envs.versions import (
    _INSTALL_TIMEOUT,
    _LOCK_TIMEOUT,
    _MARKER,
    _NO_CAP,
    Progress,
    VersionEnv,
    VersionSet,
)
from migrator.errors import ConfigError, EnvBuildError, WorkerError


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
        from migrator.envs.workers import run_worker  # workers needs cache_dir from here

        # Without the app profile: a build proves the environment, and an app module
        # that does not import is the profile's fault (exit 2, :func:`check_app`).
        info = run_worker(probe, "info", {}, timeout=300.0, app=AppProfile())
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


def with_app_requirements(vs: VersionSet, profile: AppProfile | None) -> VersionSet:
    """``vs`` plus the app profile's own packages, when it is built from a spec or an era.

    A requirements or lock file already names the app's packages; ``current`` is
    the tool's own interpreter (nothing is installed into it).
    """
    if profile is None or not profile.requirements or vs.current or vs.app_requirements:
        return vs
    if vs.source not in ("spec", "era"):
        return vs
    return dataclasses.replace(
        vs,
        app_requirements=tuple(profile.requirements),
        label=f"{vs.label} + app requirements",
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
        AppCodeError: The active app profile's code does not import in it (exit 2;
            checked once per environment and command, :func:`check_app`).
    """
    env = _ensure_env(vs, progress=progress, cache=cache)
    from migrator.envs.workers import check_app  # workers needs cache_dir from here

    check_app(env)
    return env


def _ensure_env(vs: VersionSet, *, progress: Progress | None, cache: Path | None) -> VersionEnv:
    vs = with_app_requirements(vs, active_profile())
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
