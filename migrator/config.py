"""Settings for a run: what the user asked for, with environment-variable fallbacks.

Precedence is flag > environment (``LANGGRAPH_MIGRATOR_*``) > default. The CLI
builds these; tests and scripts may build them directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "LANGGRAPH_MIGRATOR_"


def env(name: str, default: str | None = None) -> str | None:
    """``LANGGRAPH_MIGRATOR_<NAME>`` from the environment, or ``default``."""
    value = os.environ.get(ENV_PREFIX + name.upper())
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class PgChoice:
    """Where the Postgres for a check comes from.

    ``provider`` is ``auto``, ``local``, ``docker`` or ``url``; ``major`` picks a
    server version for the provisioned providers; ``dsn`` is set for ``url``.
    """

    provider: str = "auto"
    major: int | None = None
    dsn: str | None = None

    @classmethod
    def parse(cls, value: str | None) -> PgChoice:
        """Read ``--pg``: auto, local, docker, a major (16), local:16 or a DSN."""
        from migrator.errors import ConfigError

        value = (value or env("PG") or "auto").strip()
        if "://" in value or "=" in value:
            return cls(provider="url", dsn=value)
        provider, _, major = value.partition(":")
        if provider.isdigit() and not major:
            provider, major = "auto", provider
        if provider not in ("auto", "local", "docker"):
            raise ConfigError(
                f"--pg {value!r} is not a provider, a major version or a DSN.",
                hint="use auto, local, docker, a major such as 16, local:16, or postgresql://...",
            )
        if major and not major.isdigit():
            raise ConfigError(f"--pg {value!r}: {major!r} is not a Postgres major version.")
        return cls(provider=provider, major=int(major) if major else None)


@dataclass(frozen=True)
class CheckSettings:
    """Everything ``upgrade-check`` needs.

    ``to_specs`` holds every target of a multi-target run (``--to A --to B``); when
    it is empty the one target is ``to_spec``.
    """

    from_spec: str
    to_spec: str = "current"
    to_specs: tuple[str, ...] = ()
    pg: PgChoice = field(default_factory=PgChoice)
    canaries: tuple[str, ...] = ()
    user_canaries: str | None = None
    threads: tuple[str, ...] = ()
    threads_from: str | None = None
    fallback: str = "dump-restore"
    accept_fallback: bool = False
    accept_hazards: tuple[str, ...] = ()
    policy_file: Path | None = None
    pyproject: Path | None = None
    worker_timeout: float = 600.0

    @property
    def targets(self) -> tuple[str, ...]:
        """The ``--to`` targets, in the order given."""
        return self.to_specs or (self.to_spec,)
