"""Postgres provisioning: ``url`` | ``docker`` (testcontainers) | ``local`` binaries.

Every provider returns a ``Server`` (DSN, major, bin dir, ``stop()``)::

    with provision("local", 16) as server, scratch_database(server) as dsn:
        ...
"""

from __future__ import annotations

from migrator.postgres.detached import (
    DetachedState,
    list_detached,
    read_state,
    runtime_dir,
    start_detached,
    stop_detached,
    wait_until_stopped,
)
from migrator.postgres.docker import NO_DAEMON_REASON, docker_available
from migrator.postgres.dsn import redact_dsn, server_version
from migrator.postgres.provision import (
    DSN_ENV,
    PROVIDERS,
    connect_url,
    list_sources,
    provision,
    scratch_database,
)
from migrator.postgres.server import Server
from migrator.postgres.sources import (
    DEFAULT_MAJOR,
    MAX_MAJOR,
    MIN_MAJOR,
    Source,
    cache_root,
    resolve_binaries,
)

__all__ = [
    "DEFAULT_MAJOR",
    "DSN_ENV",
    "MAX_MAJOR",
    "MIN_MAJOR",
    "NO_DAEMON_REASON",
    "PROVIDERS",
    "DetachedState",
    "Server",
    "Source",
    "cache_root",
    "connect_url",
    "docker_available",
    "list_detached",
    "list_sources",
    "provision",
    "read_state",
    "redact_dsn",
    "resolve_binaries",
    "runtime_dir",
    "scratch_database",
    "server_version",
    "start_detached",
    "stop_detached",
    "wait_until_stopped",
]
