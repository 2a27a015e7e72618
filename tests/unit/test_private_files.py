"""Files the tool writes are owner-only (0600, directories 0700) whatever the umask.

The helper (``migrator.worker.privatefiles``) and every writer that does not need
a database: reports (JSON, JUnit, HTML, the step summary it creates), snapshot
files, the worker's dump file writer.
"""

from __future__ import annotations

import gzip
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.report import Check, Report, append_step_summary, write_json, write_junit
from migrator.report.html import write_html
from migrator.snapshot import Snapshot, save_snapshot
from migrator.worker.dumpfile import GzipLines
from migrator.worker.privatefiles import open_private, private_dir, write_private


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _permissive(path: Path, text: str = "old\n") -> Path:
    path.write_text(text)
    path.chmod(0o644)
    return path


def test_open_private_creates_0600_and_tightens_an_existing_file(tmp_path: Path) -> None:
    new = tmp_path / "new.txt"
    with open_private(new, "w") as fh:
        fh.write("x")
    assert _mode(new) == 0o600 and new.read_text() == "x"
    old = _permissive(tmp_path / "old.txt")
    with open_private(old, "w") as fh:
        fh.write("y")
    assert _mode(old) == 0o600 and old.read_text() == "y"
    with open_private(old, "a") as fh:
        fh.write("z")
    assert old.read_text() == "yz"
    with pytest.raises(FileExistsError):
        open_private(old, "xb")
    with pytest.raises(ValueError):
        open_private(old, "r")


def test_open_private_under_a_umask_that_takes_owner_bits(tmp_path: Path) -> None:
    os.umask(0o277)
    write_private(tmp_path / "a.bin", b"\x00")
    private_dir(tmp_path / "d")
    assert _mode(tmp_path / "a.bin") == 0o600 and _mode(tmp_path / "d") == 0o700


def test_keep_mode_leaves_a_file_it_did_not_create(tmp_path: Path) -> None:
    runners = _permissive(tmp_path / "summary.md")
    with open_private(runners, "a", keep_mode=True) as fh:
        fh.write("more\n")
    assert _mode(runners) == 0o644 and runners.read_text() == "old\nmore\n"
    mine = tmp_path / "created.md"
    with open_private(mine, "a", keep_mode=True) as fh:
        fh.write("x")
    assert _mode(mine) == 0o600


def test_private_dir_makes_what_it_creates_0700_and_leaves_the_rest(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    target = private_dir(tmp_path / "a" / "b" / "c")
    assert target.is_dir()
    assert [_mode(p) for p in (tmp_path / "a", tmp_path / "a/b", target)] == [0o700] * 3
    assert _mode(tmp_path) == 0o755  # existed already: not ours
    existing = tmp_path / "empty"
    existing.mkdir(mode=0o755)
    private_dir(existing)
    assert _mode(existing) == 0o755
    private_dir(existing, own_existing=True)
    assert _mode(existing) == 0o700 and _mode(tmp_path) == 0o755


def _report() -> Report:
    return Report("verify", (Check("verify", "pass", "unchanged", canary="messages"),))


def test_report_files_are_owner_only(tmp_path: Path) -> None:
    json_path = _permissive(tmp_path / "report.json")
    write_json(_report(), json_path)
    write_junit(_report(), tmp_path / "out" / "junit" / "report.xml")
    write_html(_report(), tmp_path / "html" / "report.html")
    summary = tmp_path / "step-summary.md"
    append_step_summary(_report(), {"GITHUB_STEP_SUMMARY": str(summary)})
    assert json_path.read_text().startswith("{")
    assert (tmp_path / "out/junit/report.xml").read_text().startswith("<?xml")
    for path in (
        json_path,
        tmp_path / "out/junit/report.xml",
        tmp_path / "html/report.html",
        summary,
    ):
        assert _mode(path) == 0o600, path
    for directory in (tmp_path / "out", tmp_path / "out/junit", tmp_path / "html"):
        assert _mode(directory) == 0o700, directory


def test_snapshot_file_is_owner_only(tmp_path: Path) -> None:
    snapshot = Snapshot.from_json(
        {"format": "langgraph-migrator/snapshot@1", "versions": {}, "threads": {}}
    )
    target = _permissive(tmp_path / "snap.json")
    save_snapshot(snapshot, target)
    assert _mode(target) == 0o600 and target.read_text().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.json"]


def test_worker_dump_writer_is_owner_only_and_writes_what_gzip_open_would(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.lgdump.partial"
    with GzipLines(str(path), compresslevel=1, chunk=8) as out:
        for i in range(100):
            out.write(f'{{"i": {i}}}\n')
    assert _mode(path) == 0o600
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        assert fh.read().splitlines()[-1] == '{"i": 99}'
    reference = tmp_path / "ref.partial"
    with gzip.open(reference, "wb", compresslevel=1) as fh:
        fh.write(b"x")
    # Same gzip header flags and file name field (bytes 3.. skip magic/method).
    assert path.read_bytes()[3] == reference.read_bytes()[3]
    assert b"d.lgdump.partial\x00" in path.read_bytes()[:64]
