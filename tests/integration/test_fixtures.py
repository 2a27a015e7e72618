"""Committed canary fixtures (canary_fixtures/<era>/): load, round-trip, compare, regenerate.

The fast tests need no old environment: they load what ``make fixtures`` wrote
into a fresh database on every provisioned Postgres major and read it with the
tool's own (current) langgraph. The slow tier regenerates fixtures live with the
real old versions and checks their structure still matches the committed files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator import envs, fixtures
from migrator.compare import compare_snapshots
from migrator.errors import ConfigError

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2] / "canary_fixtures"
ERAS = ("1.0.0", "2.0.8", "2.0.12", "2.0.25", "3.0.1")
#: Eras whose threads the current version reads unchanged (no breaking drift).
CLEAN_ERAS = ("2.0.25", "3.0.1")

TABLES_SQL = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"


def _fixture(era: str) -> Path:
    return ROOT / era


def _threads(golden: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"thread_id": tid, "canary": th["canary"]} for tid, th in golden["threads"].items()]


def _tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [row[0] for row in conn.execute(TABLES_SQL).fetchall()]


@pytest.fixture(scope="module")
def current_env() -> envs.VersionEnv:
    return envs.ensure_env(envs.parse_version_set("current"))


def _current_snapshot(env: envs.VersionEnv, dsn: str, golden: dict[str, Any]) -> dict[str, Any]:
    envs.run_worker(env, "setup", {"dsn": dsn}, timeout=300)
    request = {"dsn": dsn, "threads": _threads(golden), "user_canaries": None}
    return envs.run_worker(env, "snapshot", request, timeout=300)


# ------------------------------------------------------------ committed files


def test_every_default_era_has_a_committed_fixture() -> None:
    assert [p.name for p in fixtures.fixture_dirs(ROOT)] == sorted(ERAS)
    for era in ERAS:
        manifest = fixtures.load_manifest(_fixture(era))
        assert manifest["era"] == era
        assert manifest["versions"]["langgraph-checkpoint-postgres"] == era
        assert manifest["generated_by"] == "make fixtures"
        # Every seeded canary is in the golden; large_state is left out on purpose.
        golden = fixtures.load_golden(_fixture(era))
        assert sorted(th["canary"] for th in golden["threads"].values()) == manifest["canaries"]
        assert "large_state" not in manifest["canaries"]
        seed = fixtures.load_seed(_fixture(era))
        assert {t["status"] for t in seed["threads"]} <= {"seeded", "skipped"}


def test_fixtures_stay_small() -> None:
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    assert total < 3 * 1024 * 1024, f"canary_fixtures holds {total} bytes"


def test_signature_ignores_nothing_but_ids(tmp_path: Path) -> None:
    """A changed value in the golden changes the signature; the committed one is stable."""
    src = _fixture("3.0.1")
    assert fixtures.fixture_signature(src) == fixtures.fixture_signature(src)
    copy = tmp_path / "3.0.1"
    shutil.copytree(src, copy)
    golden = json.loads((copy / fixtures.GOLDEN).read_text())
    thread = golden["threads"]["canary:interrupt_before"]
    thread["state"]["next"] = ["somewhere_else"]
    # Rewrite the files table too: this test is about the signature, not integrity.
    data = (json.dumps(golden, sort_keys=True, separators=(",", ":")) + "\n").encode()
    (copy / fixtures.GOLDEN).write_bytes(data)
    manifest = json.loads((copy / fixtures.MANIFEST).read_text())
    manifest["files"][fixtures.GOLDEN] = hashlib.sha256(data).hexdigest()
    (copy / fixtures.MANIFEST).write_text(json.dumps(manifest))
    diffs = fixtures.signature_differences(
        fixtures.fixture_signature(src), fixtures.fixture_signature(copy)
    )
    assert diffs and all("canary:interrupt_before" in d for d in diffs), diffs


# --------------------------------------------------------------- fast, per PG


@pytest.mark.parametrize("era", ERAS)
def test_import_round_trip(pg_dsn: str, era: str, tmp_path: Path) -> None:
    """Loaded on any major, the tables export again to the manifest's rows and DDL."""
    manifest = fixtures.load_manifest(_fixture(era))
    loaded = fixtures.import_tables(pg_dsn, _fixture(era))
    assert loaded == {t["name"]: t["rows"] for t in manifest["tables"]}
    first = fixtures.export_tables(pg_dsn, tmp_path / "a")
    again = fixtures.export_tables(pg_dsn, tmp_path / "b")
    assert [t.sha256 for t in again] == [t.sha256 for t in first]
    assert [(t.name, t.rows, t.sha256, list(t.ddl)) for t in first] == [
        (t["name"], t["rows"], t["sha256"], t["ddl"]) for t in manifest["tables"]
    ]
    for t in first:  # gzip mtime 0: the same rows give the same bytes
        assert (tmp_path / "a" / t.file).read_bytes() == (tmp_path / "b" / t.file).read_bytes()
    if era == "1.0.0":  # H-NO-LEDGER: no checkpoint_migrations table at all
        assert "checkpoint_migrations" not in loaded


@pytest.mark.parametrize("era", CLEAN_ERAS)
def test_clean_upgrade_has_no_breaking_drift(
    pg_dsn: str, era: str, current_env: envs.VersionEnv
) -> None:
    golden = fixtures.load_golden(_fixture(era))
    fixtures.import_tables(pg_dsn, _fixture(era))
    diff = compare_snapshots(golden, _current_snapshot(current_env, pg_dsn, golden))
    assert not diff.breaking, "\n".join(d.summary() for d in diff.breaking)


def test_2_0_8_shows_the_known_breaking_drift(pg_dsn: str, current_env: envs.VersionEnv) -> None:
    fixture = _fixture("2.0.8")
    golden = fixtures.load_golden(fixture)
    fixtures.import_tables(pg_dsn, fixture)
    new = _current_snapshot(current_env, pg_dsn, golden)
    diff = compare_snapshots(golden, new)
    hazards = {d.hazard for d in diff.breaking}
    assert {"H-TASK-ID", "H-METADATA-WRITES"} <= hazards
    unexplained = [d.summary() for d in diff.breaking if d.hazard is None]
    assert not unexplained, "\n".join(unexplained)
    # setup() upgraded the old tables: every thread and checkpoint still loads.
    assert all(th["error"] is None for th in new["threads"].values())
    assert not [cp for th in new["threads"].values() for cp in th["checkpoints"] if cp["error"]]
    kinds = {d.kind for d in diff.breaking}
    assert "next_changed" in kinds  # orphaned writes: next grows (H-TASK-ID)
    assert "checkpoint_missing" not in kinds and "thread_missing" not in kinds


def _flip_byte(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "name",
    ["checkpoints.copy.gz", "checkpoint_writes.copy.gz", fixtures.MANIFEST],
)
def test_corrupt_fixture_is_rejected_before_anything_is_written(
    pg_dsn: str, tmp_path: Path, name: str
) -> None:
    copy = tmp_path / "2.0.8"
    shutil.copytree(_fixture("2.0.8"), copy)
    if name == fixtures.MANIFEST:
        # Still valid JSON, but the DDL it would run was changed.
        manifest = json.loads((copy / name).read_text())
        manifest["tables"][1]["ddl"][0] += " -- edited"
        (copy / name).write_text(json.dumps(manifest))
    else:
        _flip_byte(copy / name)
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        fixtures.import_tables(pg_dsn, copy)
    assert _tables(pg_dsn) == []


def test_resealed_manifest_ddl_is_never_executed(pg_dsn: str, tmp_path: Path) -> None:
    """An extra statement with its checksum redone is refused: DDL text is never run."""
    copy = tmp_path / "2.0.8"
    shutil.copytree(_fixture("2.0.8"), copy)
    manifest = json.loads((copy / fixtures.MANIFEST).read_text())
    manifest["tables"][0]["ddl"].append("CREATE TABLE public.evil (x integer)")
    manifest["tables_sha256"] = fixtures._tables_digest(manifest["tables"])
    (copy / fixtures.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="evil"):
        fixtures.import_tables(pg_dsn, copy)
    assert _tables(pg_dsn) == []


def test_corrupt_gzip_stream_with_valid_checksum_layout(pg_dsn: str, tmp_path: Path) -> None:
    """A file that decompresses fine but holds other rows fails the checksum."""
    copy = tmp_path / "3.0.1"
    shutil.copytree(_fixture("3.0.1"), copy)
    path = copy / "checkpoint_blobs.copy.gz"
    rows = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    path.write_bytes(gzip.compress(b"".join(rows[:-1]), mtime=0))
    with pytest.raises(ConfigError, match=r"checkpoint_blobs\.copy\.gz"):
        fixtures.import_tables(pg_dsn, copy)
    assert _tables(pg_dsn) == []


def test_tampered_golden_is_rejected(tmp_path: Path) -> None:
    copy = tmp_path / "3.0.1"
    shutil.copytree(_fixture("3.0.1"), copy)
    _flip_byte(copy / fixtures.GOLDEN, 0.3)
    with pytest.raises(ConfigError, match=r"golden\.json"):
        fixtures.load_golden(copy)


def test_import_refuses_a_database_with_checkpoint_tables(pg_dsn: str) -> None:
    fixtures.import_tables(pg_dsn, _fixture("3.0.1"))
    with pytest.raises(ConfigError, match="already has"):
        fixtures.import_tables(pg_dsn, _fixture("3.0.1"))


# ---------------------------------------------------------------- slow tier


@pytest.mark.slow
@pytest.mark.parametrize("era", ["2.0.8", "3.0.1"])
def test_live_regeneration_matches_the_committed_fixture(
    pg_default: Any, era: str, tmp_path: Path
) -> None:
    fresh = fixtures.generate_fixture(era, tmp_path, pg_default)
    assert fresh == tmp_path / era
    assert not list(tmp_path.glob(".tmp-*"))
    diffs = fixtures.signature_differences(
        fixtures.fixture_signature(_fixture(era)), fixtures.fixture_signature(fresh)
    )
    assert not diffs, "\n".join(diffs[:40])
