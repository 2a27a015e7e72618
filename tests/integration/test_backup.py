"""Physical backup and restore-backup against real Postgres (every provisioned major).

A committed fixture (``canary_fixtures/3.0.1``, real 3.0.1-written rows) gives a
real database in a fraction of a second; the slow round trip also upgrades it with
the current version's ``setup()`` and proves the newest saver reads every thread
the same before the backup and after the restore.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrator import backup, envs, fixtures
from migrator.backup import manifest as backup_manifest
from migrator.compare import compare_snapshots
from migrator.errors import ConfigError, LockTimeoutError
from migrator.lock import advisory_lock
from migrator.output import progress as partprogress

pytestmark = [pytest.mark.pg_core, pytest.mark.timeout(600)]

FIXTURE = Path(__file__).resolve().parents[2] / "canary_fixtures" / "3.0.1"
TABLES = ("checkpoint_migrations", "checkpoints", "checkpoint_blobs", "checkpoint_writes")
TOOL_SCHEMAS_SQL = (
    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'langgraph\\_migrator\\_%' ORDER BY 1"
)
CHECKSUM_SQL = (
    "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {}.{} t"
)


def _checksums(dsn: str, schema: str = "public") -> dict[str, tuple[int, str]]:
    """Rows and md5 of every checkpoint table in ``schema``."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            query = sql.SQL(CHECKSUM_SQL).format(sql.Identifier(schema), sql.Identifier(table))
            out[table] = tuple(conn.execute(query).fetchone())
    return out


def _tool_schemas(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [row[0] for row in conn.execute(TOOL_SCHEMAS_SQL).fetchall()]


def _execute(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn) as conn:
        for statement in statements:
            conn.execute(statement)


def _damage_rows(dsn: str) -> None:
    """Alter data only (DDL stays): delete a thread, rewrite metadata, drop writes."""
    _execute(
        dsn,
        "DELETE FROM checkpoint_blobs WHERE thread_id = 'canary:messages'",
        "DELETE FROM checkpoints WHERE thread_id = 'canary:messages'",
        "UPDATE checkpoints SET metadata = '{\"damaged\": true}'",
        "DELETE FROM checkpoint_writes",
    )


@pytest.fixture
def loaded(pg_dsn: str) -> str:
    """``pg_dsn`` holding the 3.0.1 fixture's checkpoint tables."""
    fixtures.import_tables(pg_dsn, FIXTURE)
    return pg_dsn


# --------------------------------------------------------------- round trip


def test_round_trip_restores_identical_rows(loaded: str, tmp_path: Path) -> None:
    before = _checksums(loaded)
    manifest = backup.create_backup(loaded, tmp_path / "b")
    assert {t.name: t.rows for t in manifest.checkpoint_tables()} == {
        name: rows for name, (rows, _) in before.items()
    }
    assert manifest.versions["checkpoint_migrations_v"] == 9
    with psycopg.connect(loaded) as conn:
        shown = conn.execute("SHOW server_version").fetchone()[0]
    assert manifest.versions["server_version"] == shown
    _damage_rows(loaded)
    damaged = _checksums(loaded)
    assert damaged != before

    result = backup.restore_backup(loaded, tmp_path / "b")

    assert _checksums(loaded) == before
    assert result.swapped and result.schema == "public"
    # The tables that were live are kept, as they were, in the recorded schema.
    assert result.old_schema is not None
    assert _checksums(loaded, result.old_schema) == damaged
    assert _tool_schemas(loaded) == [result.old_schema]  # no shadow schema left


def test_restore_into_an_empty_database(loaded: str, pg_server: Any, tmp_path: Path) -> None:
    from migrator.postgres import scratch_database

    before = _checksums(loaded)
    backup.create_backup(loaded, tmp_path / "b")
    with scratch_database(pg_server) as empty:
        result = backup.restore_backup(empty, tmp_path / "b")
        assert result.swapped and result.old_schema is None
        assert _checksums(empty) == before
        assert _tool_schemas(empty) == []


@pytest.fixture(scope="module")
def current_env() -> envs.VersionEnv:
    return envs.ensure_env(envs.parse_version_set("current"))


@pytest.mark.slow
def test_round_trip_newest_saver_reads_every_thread_the_same(
    loaded: str, tmp_path: Path, current_env: envs.VersionEnv
) -> None:
    envs.run_worker(current_env, "setup", {"dsn": loaded}, timeout=300)
    golden = fixtures.load_golden(FIXTURE)
    threads = [{"thread_id": tid, "canary": th["canary"]} for tid, th in golden["threads"].items()]
    request = {"dsn": loaded, "threads": threads, "user_canaries": None}
    before = envs.run_worker(current_env, "snapshot", request, timeout=300)
    rows_before = _checksums(loaded)
    backup.create_backup(loaded, tmp_path / "b", jobs=2)
    _damage_rows(loaded)
    backup.restore_backup(loaded, tmp_path / "b")
    after = envs.run_worker(current_env, "snapshot", request, timeout=300)
    assert _checksums(loaded) == rows_before
    diff = compare_snapshots(before, after)
    assert not diff.differences, "\n".join(d.summary() for d in diff.differences)
    assert all(th["error"] is None for th in after["threads"].values())
    assert len(after["threads"]) == len(threads)


def test_rows_larger_than_a_block_round_trip(loaded: str, tmp_path: Path) -> None:
    # Rows of 3 MiB, bigger than the 1 MiB copy blocks, between ordinary rows.
    _execute(
        loaded,
        "INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)"
        " SELECT 'big:' || i, '', 'messages', '1', 'bytes',"
        " decode(repeat(md5(i::text), 196608), 'hex') FROM generate_series(1, 3) i",
    )
    before = _checksums(loaded)
    manifest = backup.create_backup(loaded, tmp_path / "b")
    blobs = next(t for t in manifest.tables if t.name == "checkpoint_blobs")
    assert blobs.rows == before["checkpoint_blobs"][0]
    assert blobs.files[0].bytes > 9 * 2**20
    _damage_rows(loaded)
    _execute(loaded, "DELETE FROM checkpoint_blobs WHERE thread_id LIKE 'big:%'")
    backup.restore_backup(loaded, tmp_path / "b")
    assert _checksums(loaded) == before


def test_jobs_2_holds_the_same_rows_as_jobs_1(loaded: str, tmp_path: Path) -> None:
    before = _checksums(loaded)
    one = backup.create_backup(loaded, tmp_path / "j1", jobs=1)
    two = backup.create_backup(loaded, tmp_path / "j2", jobs=2)
    assert one.rows == two.rows
    by_name = {t.name: t for t in two.tables}
    # Tables with thread_id are split into two hash partitions; both non-empty here.
    assert [f.part for f in by_name["checkpoints"].files] == [0, 1]
    assert all(f.rows > 0 for f in by_name["checkpoints"].files)
    assert len(by_name["checkpoint_migrations"].files) == 1
    backup.restore_backup(loaded, tmp_path / "j1", into_new_schema="from_jobs_1")
    backup.restore_backup(loaded, tmp_path / "j2", into_new_schema="from_jobs_2")
    assert _checksums(loaded, "from_jobs_1") == before
    assert _checksums(loaded, "from_jobs_2") == before
    assert _checksums(loaded) == before


def test_compressed_backup_round_trips(loaded: str, tmp_path: Path) -> None:
    before = _checksums(loaded)
    manifest = backup.create_backup(loaded, tmp_path / "gz", compress=True)
    assert manifest.compression == "gzip"
    assert all(f.file.endswith(".pgcopy.gz") for t in manifest.tables for f in t.files)
    _damage_rows(loaded)
    backup.restore_backup(loaded, tmp_path / "gz")
    assert _checksums(loaded) == before


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_restore_reports_each_tables_load_to_the_last_byte(
    loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress: bool
) -> None:
    monkeypatch.setattr(partprogress, "REPORT_EVERY_S", 0.0)  # a line per chunk
    manifest = backup.create_backup(loaded, tmp_path / "b", compress=compress)
    lines: list[str] = []
    backup.restore_backup(loaded, tmp_path / "b", progress=lines.append)
    for table in manifest.checkpoint_tables():
        mine = [x for x in lines if x.startswith(f"loading {table.name}: ")]
        percents = [float(re.search(r"\(([\d.]+)%\)", x).group(1)) for x in mine]  # type: ignore[union-attr]
        assert percents and percents == sorted(percents), lines
        assert percents[-1] == 100.0, (table.name, mine)
        assert f"indexing {table.name}" in lines or len(table.ddl) == 1


def test_ledger_tables_are_backed_up_but_never_restored_over(loaded: str, tmp_path: Path) -> None:
    _execute(
        loaded,
        "CREATE SCHEMA langgraph_migrator",
        "CREATE TABLE langgraph_migrator.runs (id bigint PRIMARY KEY, verdict text)",
        "INSERT INTO langgraph_migrator.runs VALUES (1, 'pass'), (2, 'fail')",
    )
    manifest = backup.create_backup(loaded, tmp_path / "b", jobs=2)
    assert manifest.rows["langgraph_migrator.runs"] == 2
    runs = next(t for t in manifest.tables if t.name == "runs")
    assert runs.role == "ledger" and runs.ddl[0].startswith('CREATE TABLE "runs"')
    _execute(loaded, "INSERT INTO langgraph_migrator.runs VALUES (3, 'restore')")
    backup.restore_backup(loaded, tmp_path / "b")
    with psycopg.connect(loaded) as conn:
        assert conn.execute("SELECT count(*) FROM langgraph_migrator.runs").fetchone()[0] == 3


def test_real_ledger_is_backed_up_and_records_the_backup(loaded: str, tmp_path: Path) -> None:
    ledger = pytest.importorskip("migrator.ledger")
    if not hasattr(ledger, "upgrade_ledger") or not hasattr(ledger, "list_backups"):
        pytest.skip("migrator.ledger has no upgrade_ledger/list_backups yet")
    revision = ledger.upgrade_ledger(loaded)
    manifest = backup.create_backup(loaded, tmp_path / "b")
    ledger_tables = {t.name for t in manifest.tables if t.role == "ledger"}
    assert {"canaries", "goldens", "runs", "backups"} <= ledger_tables
    assert manifest.versions["ledger_revision"] == revision
    records = ledger.list_backups(loaded)
    assert [(r.kind, r.location) for r in records] == [("backup", str(tmp_path / "b"))]
    assert records[0].manifest["tables"] == manifest.to_dict()["tables"]


# ------------------------------------------------------- rejected backups


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def _edit_count(path: Path, *, reseal: bool) -> None:
    manifest = path.parent / backup.MANIFEST
    body = json.loads(manifest.read_text())
    for table in body["tables"]:
        if table["name"] == "checkpoints":
            table["rows"] += 1
            table["files"][0]["rows"] += 1
    if reseal:  # a consistent-looking manifest: only the database count can catch it
        body.pop("manifest_sha256")
        body["manifest_sha256"] = backup_manifest.manifest_digest(body)
    manifest.write_text(json.dumps(body))


CORRUPTIONS = {
    "flipped-byte": (lambda p: _flip(p), "checkpoints.0.pgcopy", "corrupt"),
    "truncated": (lambda p: _cut(p), "checkpoints.0.pgcopy", "truncated"),
    "missing-file": (lambda p: p.unlink(), "checkpoints.0.pgcopy", "missing"),
    "count-edited": (lambda p: _edit_count(p, reseal=False), "manifest.json", "checksum"),
    "count-edited-resealed": (
        lambda p: _edit_count(p, reseal=True),
        "checkpoints.0.pgcopy",
        "loaded 44 rows, the manifest says 45",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_damaged_backup_is_rejected_and_live_tables_untouched(
    loaded: str, tmp_path: Path, case: str
) -> None:
    damage, file, reason = CORRUPTIONS[case]
    backup.create_backup(loaded, tmp_path / "b")
    _damage_rows(loaded)  # live differs from the backup: a restore would show
    live = _checksums(loaded)
    damage(tmp_path / "b" / "checkpoints.0.pgcopy")
    with pytest.raises(ConfigError) as info:
        backup.restore_backup(loaded, tmp_path / "b")
    message = str(info.value)
    assert file in message and reason in message, message
    assert _checksums(loaded) == live
    assert _tool_schemas(loaded) == []


def _reseal(backup_dir: Path, edit: Any) -> None:
    """Edit the manifest and recompute its checksum, as anyone who can write it can."""
    path = backup_dir / backup.MANIFEST
    body = json.loads(path.read_text())
    edit(body)
    body.pop("manifest_sha256")
    body["manifest_sha256"] = backup_manifest.manifest_digest(body)
    path.write_text(json.dumps(body))


def _ddl_of(body: dict[str, Any], table: str) -> list[str]:
    ddl: list[str] = next(t["ddl"] for t in body["tables"] if t["name"] == table)
    return ddl


EVIL = "CREATE TABLE public.evil (x integer)"
DDL_EDITS = {
    # An extra statement after the table's own.
    "appended": (lambda b: _ddl_of(b, "checkpoints").append(EVIL), f"`{EVIL}` refused"),
    # A second statement smuggled into the CREATE TABLE text.
    "smuggled": (
        lambda b: _ddl_of(b, "checkpoints").__setitem__(
            0, _ddl_of(b, "checkpoints")[0] + "; " + EVIL
        ),
        'DDL statement 1 `CREATE TABLE "checkpoints" (',
    ),
}
OBJECTS_SQL = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1
"""


def _objects(dsn: str) -> tuple[list[str], list[str]]:
    """Every relation and every non-system schema of the database."""
    with psycopg.connect(dsn) as conn:
        relations = [row[0] for row in conn.execute(OBJECTS_SQL).fetchall()]
        schemas = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'"
            " AND nspname <> 'information_schema' ORDER BY 1"
        ).fetchall()
    return relations, [row[0] for row in schemas]


@pytest.mark.parametrize("case", list(DDL_EDITS))
def test_cli_edited_ddl_is_refused_before_anything_is_written(
    loaded: str, pg_server: Any, tmp_path: Path, case: str
) -> None:
    """The manifest's DDL is never executed: an edited, resealed statement exits 2."""
    from migrator.postgres import scratch_database

    edit, statement = DDL_EDITS[case]
    backup.create_backup(loaded, tmp_path / "b")
    _reseal(tmp_path / "b", edit)
    with scratch_database(pg_server) as empty:
        before = _objects(empty)
        proc = _cli("restore-backup", "--dsn", empty, str(tmp_path / "b"), "-q")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert "manifest.json: checkpoints: DDL statement " in lines[0], lines[0]
        assert statement in lines[0] and "nothing was restored" in lines[0], lines[0]
        # Nothing was written: no evil table, no checkpoint table, no tool schema.
        assert _objects(empty) == before
        assert not any(r.endswith((".evil", ".checkpoints")) for r in before[0])
    # verify alone (no database) refuses it too, and so does the api against live tables.
    with pytest.raises(ConfigError, match=re.escape(statement)):
        backup.verify_backup(tmp_path / "b")
    live = _checksums(loaded)
    with pytest.raises(ConfigError, match="refused") as info:
        backup.restore_backup(loaded, tmp_path / "b")
    assert info.value.exit_code == 2
    assert _checksums(loaded) == live and _tool_schemas(loaded) == []
    assert "public.evil" not in _objects(loaded)[0]


def test_backup_refuses_checkpoint_ddl_restore_would_not_recreate(
    loaded: str, tmp_path: Path
) -> None:
    _execute(loaded, "CREATE INDEX checkpoints_meta_idx ON checkpoints ((metadata->>'source'))")
    with pytest.raises(ConfigError, match=r"public\.checkpoints has DDL .* refused") as info:
        backup.create_backup(loaded, tmp_path / "b")
    assert "checkpoints_meta_idx" in str(info.value)
    assert not (tmp_path / "b").exists()


def test_verify_backup_needs_no_database(tmp_path: Path, loaded: str) -> None:
    manifest = backup.create_backup(loaded, tmp_path / "b", jobs=2)
    assert backup.verify_backup(tmp_path / "b").rows == manifest.rows
    _cut(tmp_path / "b" / "checkpoint_writes.1.pgcopy")
    with pytest.raises(ConfigError, match=r"checkpoint_writes\.1\.pgcopy: truncated"):
        backup.verify_backup(tmp_path / "b")
    with pytest.raises(ConfigError, match=r"manifest\.json: missing"):
        backup.verify_backup(tmp_path)


def test_ddl_mismatch_is_refused_unless_into_new_schema(loaded: str, tmp_path: Path) -> None:
    before = _checksums(loaded)
    backup.create_backup(loaded, tmp_path / "b")
    _execute(
        loaded, "ALTER TABLE checkpoints ADD COLUMN note text", "DELETE FROM checkpoint_writes"
    )
    live = _checksums(loaded)
    with pytest.raises(ConfigError, match="does not fit the live tables") as info:
        backup.restore_backup(loaded, tmp_path / "b")
    assert "--into-new-schema" in str(info.value)
    assert _checksums(loaded) == live and _tool_schemas(loaded) == []

    result = backup.restore_backup(loaded, tmp_path / "b", into_new_schema="restored")
    assert not result.swapped and result.schema == "restored"
    assert _checksums(loaded, "restored") == before
    assert _checksums(loaded) == live  # live tables left alone
    with pytest.raises(ConfigError, match="already exists"):
        backup.restore_backup(loaded, tmp_path / "b", into_new_schema="restored")


def test_restore_waits_for_the_migrator_lock(loaded: str, tmp_path: Path) -> None:
    backup.create_backup(loaded, tmp_path / "b")
    _damage_rows(loaded)
    live = _checksums(loaded)
    with advisory_lock(loaded), pytest.raises(LockTimeoutError):
        backup.restore_backup(loaded, tmp_path / "b", lock_wait=0)
    assert _checksums(loaded) == live


def test_backup_refuses_a_database_without_checkpoint_tables(pg_dsn: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoint tables"):
        backup.create_backup(pg_dsn, tmp_path / "b")
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_backup_and_restore(loaded: str, tmp_path: Path) -> None:
    before = _checksums(loaded)
    proc = _cli("backup", "--dsn", loaded, "--out", str(tmp_path / "b"), "--jobs", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "public.checkpoints: 44 rows in 2 file(s)" in proc.stdout
    _damage_rows(loaded)
    proc = _cli("restore-backup", "--dsn", loaded, str(tmp_path / "b"), "-q")
    assert proc.returncode == 0, proc.stderr
    assert "previous tables kept in schema langgraph_migrator_old_" in proc.stdout
    assert _checksums(loaded) == before


@pytest.mark.parametrize("command", ["backup", "restore-backup"])
def test_cli_bad_dsn_exits_3_on_one_line_without_password(
    command: str, loaded: str, tmp_path: Path
) -> None:
    backup.create_backup(loaded, tmp_path / "good")
    bad = "postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere"
    target = ["--out", str(tmp_path / "new")] if command == "backup" else [str(tmp_path / "good")]
    proc = _cli(command, "--dsn", bad, *target, "-q")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "s3cret-pw" not in proc.stderr + proc.stdout
    assert "Hint:" in lines[0]
    assert not (tmp_path / "new").exists()


def test_cli_backup_refuses_a_non_empty_directory(loaded: str, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = _cli("backup", "--dsn", loaded, "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "not empty" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"


def test_cli_corrupt_backup_exits_2_naming_the_file(loaded: str, tmp_path: Path) -> None:
    backup.create_backup(loaded, tmp_path / "b")
    _flip(tmp_path / "b" / "checkpoint_blobs.0.pgcopy")
    live = _checksums(loaded)
    proc = _cli("restore-backup", "--dsn", loaded, str(tmp_path / "b"))
    assert proc.returncode == 2
    assert "checkpoint_blobs.0.pgcopy: corrupt" in proc.stderr
    assert _checksums(loaded) == live
