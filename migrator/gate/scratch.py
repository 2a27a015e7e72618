"""The gate's scratch databases and step timings on the provisioned server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from migrator.errors import ConnectError
from migrator.postgres import Server, redact_dsn

Progress = Callable[[str], None]


@dataclass
class Run:
    """Mutable state of one check run: timings, databases to drop."""

    server: Server
    progress: Progress
    timings: dict[str, float] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)

    @contextmanager
    def step(self, name: str, message: str) -> Iterator[None]:
        self.progress(message)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    def dsn(self, dbname: str) -> str:
        return make_conninfo(self.server.dsn, dbname=dbname)

    def create_database(self, template: str | None = None) -> str:
        """A new database (optionally a copy of ``template``); dropped by ``cleanup``."""
        name = f"lgm_check_{uuid.uuid4().hex[:12]}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        try:
            with psycopg.connect(self.server.dsn, autocommit=True) as conn:
                conn.execute(query)
        except psycopg.Error as exc:
            raise ConnectError(
                f"could not create a scratch database on {redact_dsn(self.server.dsn)}: "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}",
                hint="the role needs CREATEDB, or let the tool provision a server (--pg auto)",
            ) from exc
        self.databases.append(name)
        return name

    def drop(self, names: list[str]) -> None:
        """Drop these scratch databases now (a finished target's), not at the end."""
        self._drop([n for n in self.databases if n in names])
        self.databases = [n for n in self.databases if n not in names]

    def cleanup(self) -> None:
        self._drop(self.databases)

    def _drop(self, names: list[str]) -> None:
        try:
            with psycopg.connect(self.server.dsn, autocommit=True) as conn:
                for name in reversed(names):
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
        except psycopg.Error:
            pass  # the server is going away, or the user's server keeps a stray scratch db
