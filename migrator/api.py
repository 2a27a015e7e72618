"""One typed function per command. The CLI calls these; so can tests and scripts.

Functions here raise ``MigratorError`` subclasses and never exit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migrator import envs
from migrator.config import CheckSettings, PgChoice
from migrator.gate import Progress, run_upgrade_check

if TYPE_CHECKING:
    from migrator.postgres import Server
    from migrator.report import Report


def _quiet(_: str) -> None:
    return None


def upgrade_check(settings: CheckSettings, *, progress: Progress = _quiet) -> Report:
    """Seed canaries under ``settings.from_spec``, upgrade to ``settings.to_spec``, compare.

    Args:
        settings: what to check and where.
        progress: receives a one-line message as each step starts.

    Returns:
        The report. Its ``verdict`` is ``fail`` when the upgrade is not safe.
    """
    return run_upgrade_check(settings, progress=progress)


def pg_up(pg: PgChoice) -> Server:
    """Start (or attach to) a Postgres server as chosen by ``pg``.

    Returns:
        The running server; the caller stops it (``Server.stop()``).
    """
    from migrator.postgres import provision

    return provision(pg.provider, pg.major, pg.dsn)


def env_info(spec: str, *, progress: Progress = _quiet, timeout: float = 300.0) -> dict[str, Any]:
    """Build (or reuse) the version environment for ``spec`` and report what it holds.

    Returns:
        The worker's ``info`` answer: installed versions and that version's ``MIGRATIONS``,
        plus ``env`` (label, python, cache key).
    """
    version_set = envs.parse_version_set(spec)
    env = envs.ensure_env(version_set, progress=progress)
    info = envs.run_worker(env, "info", {}, timeout=timeout)
    info["env"] = {"label": env.label, "key": version_set.key}
    return info
