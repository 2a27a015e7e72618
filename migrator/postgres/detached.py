"""Servers that outlive the command that started them (``pg up`` / ``pg down``).

``start_detached`` writes a JSON state file (pid, data dir, DSN, ...) into the runtime
dir; ``stop_detached`` in any other process reads it and stops the server.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from migrator.errors import ConfigError, ProvisionError
from migrator.postgres.docker import _Container, remove_container
from migrator.postgres.local import LocalCluster, process_alive
from migrator.postgres.provision import provision
from migrator.postgres.server import Server
from migrator.postgres.sources import cache_root, server_ids

RUNTIME_ENV = "LANGGRAPH_MIGRATOR_RUNTIME_DIR"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class DetachedState:
    """What ``pg down`` needs to find and stop a server ``pg up`` started.

    Attributes:
        name: State name (several servers may run side by side).
        provider: ``local`` or ``docker``.
        major: Postgres major.
        version: ``server_version``.
        dsn: DSN (local clusters have no password; docker ones do: redact to print).
        pid: Postmaster pid (local), else None.
        base_dir: Cluster dir holding ``data/`` (local), else None.
        bin_dir: Bin dir of the binaries (local), else None.
        container_id: Docker container id, else None.
        source: Where it came from, for people.
        started_at: Unix time.
    """

    name: str
    provider: str
    major: int
    version: str
    dsn: str
    pid: int | None
    base_dir: str | None
    bin_dir: str | None
    container_id: str | None
    source: str
    started_at: float

    def is_running(self) -> bool:
        """Whether the server still runs (docker servers are assumed to)."""
        return self.pid is None or process_alive(self.pid)


def runtime_dir() -> Path:
    """Where state files live: ``$LANGGRAPH_MIGRATOR_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/langgraph-migrator``, else ``<cache>/run``."""
    env = os.environ.get(RUNTIME_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "langgraph-migrator"
    return cache_root() / "run"


def _state_path(name: str) -> Path:
    if not _NAME.match(name):
        raise ConfigError(
            f"Invalid server name '{name}'.", hint="use letters, digits, '.', '_' or '-'."
        )
    return runtime_dir() / f"{name}.json"


def read_state(name: str = "default") -> DetachedState | None:
    """The state of a detached server, or None if there is none.

    Args:
        name: State name.

    Returns:
        The parsed state, or None.
    """
    path = _state_path(name)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return DetachedState(**data)


def list_detached() -> list[DetachedState]:
    """Every detached server with a state file."""
    folder = runtime_dir()
    if not folder.is_dir():
        return []
    states = (read_state(p.stem) for p in sorted(folder.glob("*.json")) if _NAME.match(p.stem))
    return [s for s in states if s is not None]


def start_detached(
    provider: str = "auto",
    major: int | None = None,
    *,
    name: str = "default",
    source: str | None = None,
    port: int | None = None,
) -> Server:
    """Provision a server that outlives this process and record it in a state file.

    The returned ``Server`` has no GC/atexit safety net; ``server.stop()`` or
    ``stop_detached(name)`` (from any process) stops it and removes the state file.

    Args:
        provider: ``auto``, ``docker`` or ``local``.
        major: Wanted major (None: default).
        name: State name.
        source: Binary source kind for ``local``.
        port: Fixed port for ``local``.

    Returns:
        The running server.

    Raises:
        ProvisionError: A server with this name already runs, or provisioning failed.
        ConfigError: Bad provider, major or name.
    """
    path = _state_path(name)
    existing = read_state(name)
    if existing is not None and existing.is_running():
        raise ProvisionError(
            f"A Postgres server named '{name}' already runs (pid {existing.pid}).",
            hint=f"run `langgraph-migrator pg down --name {name}` first, or pick another name.",
        )
    if provider == "url":
        raise ConfigError("The url provider cannot be started.", hint="use local or docker.")
    server = provision(provider, major, source=source, port=port)
    server.keep_after_exit()
    handle = server._handle
    state = DetachedState(
        name=name,
        provider=server.provider,
        major=server.major,
        version=server.version,
        dsn=server.dsn,
        pid=server.pid,
        base_dir=str(handle.base_dir) if isinstance(handle, LocalCluster) else None,
        bin_dir=str(server.bin_dir) if server.bin_dir else None,
        container_id=handle.container_id if isinstance(handle, _Container) else None,
        source=server.source,
        started_at=time.time(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)
    except BaseException:
        server.stop()
        raise
    return server


def stop_detached(name: str = "default") -> DetachedState | None:
    """Stop a server started by ``start_detached`` (in this or another process).

    Args:
        name: State name.

    Returns:
        The state of the server that was stopped, or None if none was recorded.
    """
    state = read_state(name)
    if state is None:
        return None
    if state.container_id:
        remove_container(state.container_id)
    elif state.pid is not None and state.base_dir and state.bin_dir:
        LocalCluster(
            bin_dir=Path(state.bin_dir),
            base_dir=Path(state.base_dir),
            pid=state.pid,
            ids=server_ids(),
        ).stop()
    _state_path(name).unlink(missing_ok=True)
    return state


def wait_until_stopped(server: Server, *, poll_s: float = 0.5) -> None:
    """Block while ``server`` runs (``pg up`` in the foreground until ``pg down``).

    Args:
        server: A local or docker server.
        poll_s: Seconds between checks.
    """
    while server.is_running():
        time.sleep(poll_s)
