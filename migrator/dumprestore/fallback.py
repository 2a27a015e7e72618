"""The fallback: dump with the old version, restore with the new one (+ the task-id cure)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from migrator import envs
from migrator.dumprestore.common import (
    Progress,
    RestoreResult,
    _quiet,
)
from migrator.dumprestore.dump import dump_threads
from migrator.dumprestore.restore import restore_dump


def default_jobs() -> int:
    """Workers for the fallback's dump and restore: the cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def run_fallback(
    dsn: str,
    old_env: envs.VersionEnv,
    new_env: envs.VersionEnv,
    *,
    work_dir: Path,
    transform: str | None = "task-id",
    graph: str | None = None,
    allow_types: Iterable[str] | None = None,
    progress: Progress = _quiet,
    extra_env: dict[str, str] | None = None,
    jobs: int | None = None,
    lock_held: bool = False,
) -> RestoreResult:
    """Dump with ``old_env``, restore with ``new_env`` (+ transform), verify, swap.

    Args:
        dsn: The database (the gate's check database, or a real one).
        old_env: The environment that wrote the data.
        new_env: The environment to upgrade to.
        work_dir: Where the dump goes (an existing directory).
        transform: As for :func:`restore_dump`; default the H-TASK-ID cure.
        graph: The application graph for ``task-id`` (canaries need none).
        allow_types: Classes to allow; None allows the dump's own inventory
            (the caller vouches for the source database).
        progress: One-line progress messages.
        extra_env: Extra worker environment (user modules on ``PYTHONPATH``).
        jobs: Dump and restore workers at once (default :func:`default_jobs`).
        lock_held: The caller holds the migrator lock (``migrate``): the restore
            does not take it again.

    Returns:
        The restore result.
    """
    jobs = default_jobs() if jobs is None else jobs
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    dump = Path(work_dir) / f"fallback-{stamp}-{int(time.time() * 1e6) % 1_000_000}.lgdump"
    manifest = dump_threads(dsn, old_env, dump, jobs=jobs, progress=progress)
    allowed = list(manifest.types) if allow_types is None else list(allow_types)
    return restore_dump(
        dsn,
        new_env,
        dump,
        transform=transform,
        graph=graph,
        allow_types=allowed,
        progress=progress,
        extra_env=extra_env,
        jobs=jobs,
        lock_held=lock_held,
    )
