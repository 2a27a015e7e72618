"""``kill -9`` of ``migrate`` during its repairs and its ledger write, then a rerun converges.

The database is the 1.0.0 era brought to the target's ledger by the target's
own ``setup()`` and then stripped of its three ``thread_id`` indexes: ``setup()``
has nothing left to do, and ``migrate`` rebuilds them as repairs (idempotent
``CREATE INDEX CONCURRENTLY IF NOT EXISTS``; an INVALID one is dropped first).
The run is stopped before a repair (``repair.<N>``), inside a repair's index
build (it waits for an old snapshot the test holds), before its run record
(``ledger.record``) and with the record inserted but not committed
(``ledger.written``); killed with SIGKILL and run again. The rerun must leave the
schema, checkpoint ledger and last tool-ledger run of an uninterrupted run, rows
untouched, and nothing of the killed run may be left: no process, and no server
session still building an index without the migrator lock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator import envs, fixtures
from migrator.postgres import Server, scratch_database
from tests.reliability import harness
from tests.reliability.test_kill_migrate import BUILDING_SQL, ERA, ROOT, _dbname, _migrate_args

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

INDEXES = (
    "checkpoints_thread_id_idx",
    "checkpoint_blobs_thread_id_idx",
    "checkpoint_writes_thread_id_idx",
)
SESSIONS_SQL = (
    "SELECT pid, state, left(query, 80) FROM pg_stat_activity WHERE datname = current_database()"
    " AND application_name LIKE 'langgraph-migrator%%' AND pid <> pg_backend_pid()"
)


def _prepare(dsn: str) -> None:
    """The era at the target's ledger (its own ``setup()``), its thread_id indexes gone."""
    fixtures.import_tables(dsn, ROOT / ERA)
    env = envs.ensure_env(envs.parse_version_set("current"))
    envs.run_worker(env, "setup", {"dsn": dsn}, timeout=300)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in INDEXES:
            conn.execute(f"DROP INDEX {name}")


@pytest.fixture(scope="module")
def uninterrupted(pg_default: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("uninterrupted-repair")
    with scratch_database(pg_default) as dsn:
        _prepare(dsn)
        done = harness.cli(_migrate_args(dsn, pg_default, tmp / "b"), tmp)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        state = harness.schema_state(dsn)
        assert all(f"true CREATE INDEX {i}" in str(state["public"]) for i in INDEXES), state
        return {"schema": state, "runs": harness.runs(dsn)}


@pytest.fixture
def stripped_db(pg_default: Server) -> Iterator[str]:
    with scratch_database(pg_default) as dsn:
        _prepare(dsn)
        yield dsn


def _converges(dsn: str, server: Server, tmp: Path, before: Any, expected: dict[str, Any]) -> None:
    again = harness.cli(_migrate_args(dsn, server, tmp / "b-rerun"), tmp)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert harness.schema_state(dsn) == expected["schema"]
    assert harness.runs(dsn) == expected["runs"]
    assert harness.checksums(dsn) == before


def _no_sessions_left(dsn: str, timeout: float = 10.0) -> None:
    """No server session of the killed run goes on (its backends end with their client)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            left = conn.execute(SESSIONS_SQL).fetchall()
            if not left:
                return
            assert time.monotonic() < deadline, f"sessions outlived the killed migrate: {left}"
            time.sleep(0.1)


@pytest.mark.parametrize("point", ["repair.0", "repair.2", "ledger.record", "ledger.written"])
def test_kill9_in_repair_or_ledger_write_then_rerun_converges(
    pg_default: Server, stripped_db: str, tmp_path: Path, uninterrupted: dict[str, Any], point: str
) -> None:
    before = harness.checksums(stripped_db)
    run = harness.start(
        _migrate_args(stripped_db, pg_default, tmp_path / "b-killed"), tmp_path, pause_at=point
    )
    try:
        pid, name = run.wait_pause(where=_dbname(stripped_db))
        assert (pid, name) == (run.proc.pid, point)
        run.kill9()
        assert harness.strays(run, grace=2.0) == []
        _no_sessions_left(stripped_db)
    finally:
        harness.reap(run)
    assert harness.checksums(stripped_db) == before
    assert harness.runs(stripped_db) == []  # no run recorded, not even half of one
    _converges(stripped_db, pg_default, tmp_path, before, uninterrupted)


def test_kill9_inside_a_repair_index_build(
    pg_default: Server, stripped_db: str, tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    """The repair's ``CREATE INDEX CONCURRENTLY`` waits for an old snapshot when the tool
    dies: its session must end with the tool (not finish the build later, without the
    migrator lock, racing the rerun), and the rerun rebuilds the INVALID index it left."""
    before = harness.checksums(stripped_db)
    run = harness.start(
        _migrate_args(stripped_db, pg_default, tmp_path / "b-killed"), tmp_path, pause_at="repair.1"
    )
    blocker = psycopg.connect(stripped_db)
    blocker.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        run.wait_pause(where=_dbname(stripped_db))
        blocker.execute("SELECT count(*) FROM checkpoints")  # an old snapshot, held open
        run.release()
        with psycopg.connect(stripped_db, autocommit=True) as watch:
            deadline = time.monotonic() + 60
            while not watch.execute(BUILDING_SQL).fetchone():
                assert time.monotonic() < deadline, run.output()[-3000:]
                time.sleep(0.05)
        run.kill9()
        assert harness.strays(run, grace=2.0) == []
        _no_sessions_left(stripped_db)  # while the old snapshot is still held
    finally:
        blocker.close()
        harness.reap(run)
    assert harness.checksums(stripped_db) == before
    _converges(stripped_db, pg_default, tmp_path, before, uninterrupted)
