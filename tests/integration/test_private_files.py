"""Backups and dumps on a real database are owner-only (0600 files, 0700 directories).

Run under umask 0o022 (what makes them 0644/0755 by default): the backup
directory, every table file and the manifest; the dump file, its manifest, and
(with several workers) the parts concatenated through a ``.partial`` file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator import api, fixtures
from migrator.postgres import Server, scratch_database

pytestmark = [pytest.mark.timeout(900)]

FIXTURE = Path(__file__).resolve().parents[2] / "canary_fixtures" / "3.0.1"


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def loaded(pg_default: Server) -> Iterator[str]:
    """A fresh database holding the 3.0.1 fixture's checkpoint tables."""
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, FIXTURE)
        yield dsn


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root.parent)): stat.S_IMODE(p.stat().st_mode)
        for p in (root, *sorted(root.rglob("*")))
    }


def _owner_only(root: Path) -> dict[str, int]:
    """Paths under ``root`` (itself included) whose mode is not 0700 (dirs) / 0600 (files)."""
    return {
        name: mode
        for name, mode in _modes(root).items()
        if mode != (0o700 if (root.parent / name).is_dir() else 0o600)
    }


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_backup_directory_files_and_manifest_are_owner_only(
    loaded: str, tmp_path: Path, umask_022: None, compress: bool
) -> None:
    out = tmp_path / "backups" / "first"
    manifest = api.backup(loaded, out, jobs=2, compress=compress)
    names = {p.name for p in out.iterdir()}
    assert "manifest.json" in names and len(names) >= 1 + len(manifest.tables)
    assert _owner_only(tmp_path / "backups") == {}


def test_backup_into_an_existing_empty_directory_makes_it_owner_only(
    loaded: str, tmp_path: Path, umask_022: None
) -> None:
    out = tmp_path / "given"
    out.mkdir(mode=0o755)
    api.backup(loaded, out)
    assert _owner_only(out) == {}


@pytest.mark.parametrize("jobs", [1, 2])
def test_dump_file_and_manifest_are_owner_only(
    loaded: str, tmp_path: Path, umask_022: None, jobs: int
) -> None:
    out_dir = tmp_path / "dumps"
    out_dir.mkdir(mode=0o700)
    manifest = api.dump(loaded, "current", out_dir / "all.lgdump", jobs=jobs)
    assert manifest.records > 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["all.lgdump", "all.lgdump.manifest.json"]
    assert _owner_only(out_dir) == {}
