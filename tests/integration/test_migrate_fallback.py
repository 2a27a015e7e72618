"""``migrate`` backs up first by default, and runs the dump/restore fallback on drift.

Backups: a real old-era database (committed fixture) migrated by the CLI leaves a
backup that ``verify_backup`` accepts and whose row counts are the tables' before
the migration; ``--no-backup`` leaves none. Fallback: canaries seeded under a real
2.0.8 env, then ``migrate`` to the current version, with and without
``--fallback dump-restore``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrator import api, envs, fixtures
from migrator.backup import verify_backup
from migrator.errors import MigrationError
from migrator.execute import MigrateSettings, backup_hook
from migrator.fixtures import CHECKPOINT_TABLES
from migrator.lock import MIGRATOR_LOCK_KEY, TRY_LOCK_SQL, UNLOCK_SQL
from migrator.postgres import Server, scratch_database

ROOT = Path(__file__).resolve().parents[2] / "canary_fixtures"
SPEC_208 = "langgraph-checkpoint-postgres==2.0.8"

pytestmark = [pytest.mark.timeout(1200)]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in CHECKPOINT_TABLES
        }


def _ledger_max(dsn: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT max(v) FROM checkpoint_migrations").fetchone()
    return None if row is None else row[0]


def _columns(dsn: str, table: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s ORDER BY 1",
            (table,),
        ).fetchall()
    return [r[0] for r in rows]


def _migrate(dsn: str, scratch: str, *extra: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _cli("migrate", "--dsn", dsn, "--scratch-dsn", scratch, "-q", *extra, cwd=cwd)


SHADOWS_SQL = (
    "SELECT 1 FROM pg_namespace WHERE nspname LIKE 'lgm\\_premigrate\\_%'"
    " OR nspname LIKE 'langgraph\\_migrator\\_shadow\\_%'"
)


class _LockWatch:
    """Polls the migrator lock, and the fallback's shadow schemas, from another session.

    ``states`` is the sequence of observations (True: somebody else holds the
    lock), consecutive repeats folded; a free lock is let go of at once.
    ``shadows`` holds the lock state of every poll that saw a shadow schema
    (a restore of the fallback in progress).
    """

    def __init__(self, dsn: str, every: float = 0.01) -> None:
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._every = every
        self._stop = threading.Event()
        self.states: list[bool] = []
        self.shadows: list[bool] = []
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            row = self._conn.execute(TRY_LOCK_SQL, (MIGRATOR_LOCK_KEY,)).fetchone()
            held = not (row and row[0])
            if not held:
                self._conn.execute(UNLOCK_SQL, (MIGRATOR_LOCK_KEY,))
            if not self.states or self.states[-1] != held:
                self.states.append(held)
            if self._conn.execute(SHADOWS_SQL).fetchone():
                self.shadows.append(held)
            time.sleep(self._every)

    def __enter__(self) -> _LockWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()


# ------------------------------------------------------------------ backups


#: The 2.0.8 fixture's threads that H-TASK-ID reaches (paused with pending writes or
#: inside a subgraph): with no canary to prove them, migrate treats them as drift.
AT_RISK_208 = ("canary:failed_node", "canary:interrupt_fn", "canary:subgraph")


def _import_208_without_threads_at_risk(dsn: str) -> None:
    """The 2.0.8 fixture minus its threads at risk: an in-place migrate that must pass."""
    fixtures.import_tables(dsn, ROOT / "2.0.8")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("checkpoint_writes", "checkpoint_blobs", "checkpoints"):
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE thread_id = ANY(%s)").format(sql.Identifier(table)),
                (list(AT_RISK_208),),
            )


@pytest.mark.slow
def test_migrate_backs_up_by_default(pg_default: Server, tmp_path: Path) -> None:
    with scratch_database(pg_default) as dsn:
        _import_208_without_threads_at_risk(dsn)
        before = _counts(dsn)
        assert sum(before.values()) > 0
        report_path = tmp_path / "report.json"
        proc = _migrate(dsn, pg_default.dsn, "--json", str(report_path), cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        made = list((tmp_path / "langgraph-migrator-backups").iterdir())
        assert len(made) == 1
        manifest = verify_backup(made[0])
        assert {t.name: t.rows for t in manifest.checkpoint_tables()} == before
        notes = json.loads(report_path.read_text())["notes"]
        assert any(str(made[0]) in n and "backup written" in n for n in notes), notes
        after = _counts(dsn)
        assert after["checkpoint_migrations"] > before["checkpoint_migrations"]
        data = [t for t in CHECKPOINT_TABLES if t != "checkpoint_migrations"]
        assert {t: after[t] for t in data} == {t: before[t] for t in data}
        assert "task_path" in _columns(dsn, "checkpoint_writes")


@pytest.mark.slow
def test_migrate_backup_dir_and_no_backup(pg_default: Server, tmp_path: Path) -> None:
    with scratch_database(pg_default) as dsn:
        _import_208_without_threads_at_risk(dsn)
        before = _counts(dsn)
        chosen = tmp_path / "chosen"
        proc = _migrate(dsn, pg_default.dsn, "--backup-dir", str(chosen), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert {t.name: t.rows for t in verify_backup(chosen).checkpoint_tables()} == before
    with scratch_database(pg_default) as dsn:
        _import_208_without_threads_at_risk(dsn)
        bare = tmp_path / "bare"
        bare.mkdir()
        proc = _migrate(dsn, pg_default.dsn, "--no-backup", cwd=bare)
        assert proc.returncode == 0, proc.stderr
        assert list(bare.iterdir()) == []
        assert "task_path" in _columns(dsn, "checkpoint_writes")


def test_fallback_usage_errors_exit_2_before_anything(tmp_path: Path) -> None:
    dsn = "postgresql://nobody:secret-pw@127.0.0.1:1/nowhere"
    cases = [
        (("--from", SPEC_208, "--fallback", "dump-restore", "--no-backup"), "--no-backup"),
        (("--fallback", "dump-restore"), "--from SPEC"),
    ]
    for extra, hint in cases:
        proc = _migrate(dsn, dsn, *extra, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert hint in proc.stderr
        assert "secret-pw" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ fallback


def _seeded_208(server: Server, dsn: str) -> None:
    env = envs.ensure_env(envs.parse_version_set(SPEC_208))
    envs.run_worker(env, "setup", {"dsn": dsn}, timeout=300)
    proc = _cli("canary", "seed", "--dsn", dsn, "--with", SPEC_208, "-q")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


@pytest.mark.slow
def test_migrate_drift_without_fallback_exit_1_undone(pg_default: Server, tmp_path: Path) -> None:
    with scratch_database(pg_default) as dsn:
        _seeded_208(pg_default, dsn)
        before = (_counts(dsn), _ledger_max(dsn), _columns(dsn, "checkpoint_writes"))
        out = tmp_path / "report.json"
        proc = _migrate(dsn, pg_default.dsn, "--json", str(out), cwd=tmp_path)
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
        assert "--fallback dump-restore" in proc.stderr
        report = json.loads(out.read_text())
        assert report["verdict"] == "fail"
        assert [c for c in report["checks"] if c["check"] == "verify" and c["status"] == "fail"]
        assert not [c for c in report["checks"] if c["check"] == "fallback"]
        assert any("--fallback dump-restore" in n for n in report["notes"]), report["notes"]
        assert (_counts(dsn), _ledger_max(dsn), _columns(dsn, "checkpoint_writes")) == before


@pytest.mark.slow
def test_migrate_fallback_cures_drift(pg_default: Server, tmp_path: Path) -> None:
    with scratch_database(pg_default) as dsn:
        _seeded_208(pg_default, dsn)
        out = tmp_path / "report.json"
        with _LockWatch(dsn) as watch:
            proc = _migrate(
                dsn,
                pg_default.dsn,
                "--from",
                SPEC_208,
                "--fallback",
                "dump-restore",
                "--json",
                str(out),
                cwd=tmp_path,
            )
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr
        # Held from the plan to the fallback's last swap, once: no other migrator
        # could get in between the in-place run, its undo and the fallback.
        assert watch.states == [False, True, False], watch.states
        assert watch.shadows and all(watch.shadows), "a fallback restore ran without the lock"
        report = json.loads(out.read_text())
        assert report["verdict"] == "pass"
        in_place = [c for c in report["checks"] if c["check"] == "verify" and c["status"] == "warn"]
        assert in_place and all("cured by the dump/restore" in c["summary"] for c in in_place)
        fallback = {
            c["canary"] or c["thread_id"]: c for c in report["checks"] if c["check"] == "fallback"
        }
        for c in in_place:
            verdict = fallback[c["canary"] or c["thread_id"]]
            assert verdict["status"] == "pass" and verdict["details"]["cured"] is True
            assert verdict["summary"].startswith("cured by dump/restore")
        assert [c for c in report["checks"] if c["check"] == "record"]
        assert "task_path" in _columns(dsn, "checkpoint_writes")
        proc = _cli("verify", "--dsn", dsn, "-q", cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


@pytest.mark.slow
def test_fallback_that_cannot_restore_undoes_exit_5(pg_default: Server, tmp_path: Path) -> None:
    """A backup damaged after it was written: the fallback stops, the in-place run is undone."""
    with scratch_database(pg_default) as dsn:
        _seeded_208(pg_default, dsn)
        before = (_counts(dsn), _ledger_max(dsn), _columns(dsn, "checkpoint_writes"))
        take = backup_hook(tmp_path / "b")

        def damaged(target: str) -> Path:
            path = take(target)
            biggest = max(path.iterdir(), key=lambda f: f.stat().st_size)
            biggest.write_bytes(biggest.read_bytes()[:-7])
            return path

        settings = MigrateSettings(
            dsn=dsn, scratch_dsn=pg_default.dsn, from_spec=SPEC_208, fallback="dump-restore"
        )
        outcome = api.migrate(settings, backup=damaged)
        assert isinstance(outcome.error, MigrationError), outcome.error
        assert outcome.error.exit_code == 5
        assert "FAILED" in outcome.state and "in-place migration was undone" in outcome.state
        assert not [c for c in outcome.report.checks if c.check == "fallback"]
        assert (_counts(dsn), _ledger_max(dsn), _columns(dsn, "checkpoint_writes")) == before
