"""Typed errors. Library code raises these; only ``cli.py`` turns them into exit codes.

Messages say what failed, the last observed state, then a ``Hint:`` where one helps.
"""

from __future__ import annotations

from typing import ClassVar


class MigratorError(Exception):
    """Base of every expected failure. ``exit_code`` is what the CLI exits with."""

    exit_code: ClassVar[int] = 70

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} Hint: {self.hint}" if self.hint else self.message


class VerificationError(MigratorError):
    """The gate failed: breaking drift, failed verification, or an unsafe plan."""

    exit_code = 1


class ConfigError(MigratorError):
    """Bad usage or configuration: unknown version, bad spec, unreadable file."""

    exit_code = 2


class EnvironmentProblem(MigratorError):
    """Something outside the tool is missing or broken (base for exit code 3)."""

    exit_code = 3


class ProvisionError(EnvironmentProblem):
    """A Postgres server could not be provided (binaries, port, docker, initdb)."""


class ConnectError(EnvironmentProblem):
    """A database could not be reached or refused us."""


class EnvBuildError(EnvironmentProblem):
    """A version environment could not be built (install or import failed)."""


class WorkerError(EnvironmentProblem):
    """A worker process crashed, hung, or answered with an error."""

    def __init__(
        self, message: str, *, hint: str | None = None, stderr: str = "", kind: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.stderr = stderr
        self.kind = kind


class LockTimeoutError(MigratorError):
    """Another migrator holds the lock; safe to retry."""

    exit_code = 4


class MigrationError(MigratorError):
    """A migration step failed and was rolled back."""

    exit_code = 5
