"""The one interface every provider returns: a running server."""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from migrator.postgres.dsn import redact_dsn


class Handle(Protocol):
    """What a provider keeps to stop its server (a cluster, a container, nothing)."""

    def stop(self) -> None:
        """Stop the server and remove what it left behind. Idempotent."""

    def is_running(self) -> bool:
        """Whether the server still runs."""


@dataclass(frozen=True)
class Server:
    """A running Postgres server.

    Attributes:
        dsn: libpq URL to the ``postgres`` database (may hold a password: print it
            through ``redact_dsn``).
        major: Major version, read from ``server_version_num``.
        version: ``server_version`` as the server reports it.
        bin_dir: Directory holding matching ``pg_dump``/``psql``, or None if unknown.
        provider: ``"url"``, ``"docker"`` or ``"local"``.
        source: Where the server or its binaries come from, for people.
        pid: Postmaster pid for local clusters, else None.
        data_dir: Cluster directory for local clusters, else None.
    """

    dsn: str
    major: int
    version: str
    bin_dir: Path | None
    provider: str
    source: str
    pid: int | None = None
    data_dir: Path | None = None
    _handle: Handle | None = field(default=None, repr=False, compare=False)
    _finalizer: weakref.finalize[[], None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self._handle is not None:
            # Safety net on garbage collection and at exit, in the creating process
            # only: a forked child must not stop its parent's server.
            fin = weakref.finalize(self, _stop_in_owner, self._handle, os.getpid())
            object.__setattr__(self, "_finalizer", fin)

    def stop(self) -> None:
        """Stop the server (no-op for ``url``). Safe to call twice."""
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._handle is not None:
            self._handle.stop()

    def is_running(self) -> bool:
        """Whether the server still runs (``url`` servers are assumed to)."""
        return True if self._handle is None else self._handle.is_running()

    def keep_after_exit(self) -> None:
        """Drop the GC/atexit safety net: the server outlives this process."""
        if self._finalizer is not None:
            self._finalizer.detach()

    def describe(self) -> str:
        """One line for people: provider, version, source and redacted DSN."""
        return f"Postgres {self.version} ({self.provider}: {self.source}) at {redact_dsn(self.dsn)}"

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return (
            f"Server(dsn={redact_dsn(self.dsn)!r}, major={self.major}, version={self.version!r}, "
            f"bin_dir={self.bin_dir!r}, provider={self.provider!r}, source={self.source!r}, "
            f"pid={self.pid!r})"
        )

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _stop_in_owner(handle: Handle, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        try:
            handle.stop()
        except Exception:  # noqa: BLE001 - last-resort cleanup must not raise at exit
            pass
