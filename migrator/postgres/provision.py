"""Pick a provider and return a running ``Server``; scratch databases on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg import sql

from migrator.errors import ConfigError
from migrator.postgres.docker import DOCKER_MAJORS, docker_available, start_container
from migrator.postgres.dsn import connect, redact_dsn, server_version, with_dbname
from migrator.postgres.local import start_cluster
from migrator.postgres.server import Server
from migrator.postgres.sources import (
    DEFAULT_MAJOR,
    Source,
    binary_sources,
    check_major,
    resolve_binaries,
)

PROVIDERS = ("auto", "url", "docker", "local")
DSN_ENV = "LANGGRAPH_MIGRATOR_DSN"

CREATE_DATABASE_SQL = sql.SQL("CREATE DATABASE {}")
DROP_DATABASE_FORCE_SQL = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
DROP_DATABASE_SQL = sql.SQL("DROP DATABASE IF EXISTS {}")
TERMINATE_BACKENDS_SQL = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = %s AND pid <> pg_backend_pid()"
)


def provision(
    provider: str = "auto",
    major: int | None = None,
    dsn: str | None = None,
    *,
    source: str | None = None,
    port: int | None = None,
) -> Server:
    """Provide a running Postgres server.

    Args:
        provider: ``auto`` (docker if a daemon answers, else local), ``url``,
            ``docker`` or ``local``.
        major: Wanted major; None means the default (18) or the DSN's major.
        dsn: Existing server for ``url`` (default ``$LANGGRAPH_MIGRATOR_DSN``).
        source: For ``local``: restrict binaries to one kind
            (``env``, ``wheel``, ``debian``, ``embedded``).
        port: For ``local``: fixed port on 127.0.0.1 instead of a free one.

    Returns:
        A running ``Server``; call ``stop()`` or use it as a context manager.

    Raises:
        ConfigError: Unknown provider or major, no DSN for ``url``, or major mismatch.
        ProvisionError: Binaries missing, initdb or start failed, Docker unavailable.
        ConnectError: The ``url`` server cannot be reached.
    """
    if provider not in PROVIDERS:
        raise ConfigError(
            f"Unknown Postgres provider '{provider}'.", hint=f"use one of: {', '.join(PROVIDERS)}."
        )
    if major is not None:
        check_major(major)
    if provider == "url":
        return connect_url(dsn or os.environ.get(DSN_ENV), major)
    if provider == "auto" and source is None and port is None and docker_available():
        provider = "docker"
    if provider == "docker":
        return start_container(major if major is not None else DEFAULT_MAJOR)
    return start_cluster(resolve_binaries(major, source), port=port)


def connect_url(dsn: str | None, major: int | None = None) -> Server:
    """The ``url`` provider: an existing server; ``stop()`` does nothing.

    Args:
        dsn: libpq DSN of the server.
        major: If given, the major the server must have.

    Returns:
        A ``Server`` with provider ``url`` and a best-effort local bin dir.

    Raises:
        ConfigError: No DSN, or the server's major differs from ``major``.
        ConnectError: The server cannot be reached.
    """
    if not dsn:
        raise ConfigError(
            "The url provider needs a DSN.",
            hint=f"pass --dsn or set {DSN_ENV}.",
        )
    found, version = server_version(dsn)
    if major is not None and found != major:
        raise ConfigError(
            f"Server at {redact_dsn(dsn)} runs Postgres {found}, not the requested {major}.",
            hint="drop --major or point --dsn at a matching server.",
        )
    return Server(
        dsn=dsn,
        major=found,
        version=version,
        bin_dir=local_bin_dir(found),
        provider="url",
        source=f"existing server {redact_dsn(dsn)}",
    )


def local_bin_dir(major: int) -> Path | None:
    """Installed client binaries matching ``major`` on this machine, if any (no install)."""
    for candidate in binary_sources():
        if candidate.major == major and candidate.installed and candidate.bin_dir is not None:
            return candidate.bin_dir
    return None


def list_sources(*, include_docker: bool = True) -> list[Source]:
    """Which majors this machine can provide, and from where.

    Args:
        include_docker: Also ping Docker (up to 2 s) and list ``postgres:<major>`` images.

    Returns:
        Sources in search order; ``installed=False`` ones install on first use.
    """
    sources = binary_sources()
    if include_docker and docker_available():
        sources += [
            Source(m, "docker", f"postgres:{m}", True, f"docker image postgres:{m}")
            for m in DOCKER_MAJORS
        ]
    return sources


@contextmanager
def scratch_database(server: Server | str) -> Iterator[str]:
    """A fresh ``test_<uuid>`` database, dropped (forcibly) on exit.

    Args:
        server: A ``Server`` or the DSN of a server we may create databases on.

    Yields:
        A DSN of the new database.

    Raises:
        ConnectError: The server cannot be reached.
    """
    dsn = server.dsn if isinstance(server, Server) else server
    name = f"test_{uuid.uuid4().hex}"
    ident = sql.Identifier(name)
    with connect(dsn) as conn:
        conn.execute(CREATE_DATABASE_SQL.format(ident))
    try:
        yield with_dbname(dsn, name)
    finally:
        with connect(dsn) as conn:
            if conn.info.server_version >= 130000:
                conn.execute(DROP_DATABASE_FORCE_SQL.format(ident))
            else:
                conn.execute(TERMINATE_BACKENDS_SQL, (name,))
                conn.execute(DROP_DATABASE_SQL.format(ident))
