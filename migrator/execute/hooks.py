"""The ``backup`` hook the CLI passes to ``migrate``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from migrator.execute.model import (
    Backup,
    Progress,
)


def default_backup_dir() -> Path:
    """``./langgraph-migrator-backups/<UTC timestamp>`` under the working directory."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S_%fZ")
    return Path.cwd() / "langgraph-migrator-backups" / stamp


def backup_hook(out_dir: Path | None = None, *, progress: Progress | None = None) -> Backup:
    """The ``backup`` hook the CLI passes: :func:`migrator.backup.create_backup`.

    Args:
        out_dir: A new or empty directory (default: :func:`default_backup_dir`, chosen
            when the hook runs).
        progress: Receives one line per backup step.

    Returns:
        A callable taking the DSN and returning the backup directory.
    """

    def take(dsn: str) -> Path:
        from migrator.backup import create_backup

        target = out_dir if out_dir is not None else default_backup_dir()
        if progress is not None:
            progress(f"backing up the checkpoint tables into {target}")
        return create_backup(dsn, target, progress=progress).path

    return take
