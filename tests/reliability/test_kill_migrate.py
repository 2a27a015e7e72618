"""``kill -9`` of ``migrate`` at each of its phases, then a rerun converges.

The database is a real old era (``canary_fixtures/1.0.0``: tables without a
ledger, so the target's ``setup()`` runs every statement, the three
``CREATE INDEX CONCURRENTLY`` builds included). For each phase the tool is
stopped there (a pause point of :mod:`migrator.worker.faults`, or a lock held
by the test so the phase's statement waits), killed with SIGKILL, and run
again: the schema, the checkpoint ledger and the tool ledger's last run equal
an uninterrupted run's, every checkpoint table's rows hash as before, and no
process of the killed run is left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator import fixtures
from migrator.postgres import Server, scratch_database
from tests.reliability import harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2] / "canary_fixtures"
ERA = "1.0.0"


def _dbname(dsn: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]  # type: ignore[return-value]


def _migrate_args(dsn: str, server: Server, backups: Path, *extra: str) -> list[str]:
    return [
        "migrate",
        "--dsn",
        dsn,
        "--scratch-dsn",
        server.dsn,
        "--backup-dir",
        str(backups),
        "--lock-timeout",
        "60",
        *ACCEPT_ERA_HAZARDS,
        "-q",
        *extra,
    ]


#: The era's canary threads are at risk (H-TASK-ID, H-SEND-DROPPED) and no golden is
#: seeded: migrate would refuse at its preflight. These tests are about the schema.
ACCEPT_ERA_HAZARDS = ("--accept-hazard", "H-TASK-ID", "--accept-hazard", "H-SEND-DROPPED")


@pytest.fixture(scope="module")
def uninterrupted(pg_default: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What an uninterrupted migrate of the era leaves: schema state and runs."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, ROOT / ERA)
        done = harness.cli(_migrate_args(dsn, pg_default, tmp / "b"), tmp)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        return {"schema": harness.schema_state(dsn), "runs": harness.runs(dsn)}


@pytest.fixture
def era_db(pg_default: Server) -> Iterator[str]:
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, ROOT / ERA)
        yield dsn


def _converges(
    dsn: str,
    server: Server,
    tmp: Path,
    before: tuple[dict[str, list[str]], dict[str, str]],
    expected: dict[str, Any],
) -> None:
    """Rerun migrate; it must end where an uninterrupted run ends, rows untouched."""
    cols, sums = before
    again = harness.cli(_migrate_args(dsn, server, tmp / "b-rerun"), tmp)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert harness.schema_state(dsn) == expected["schema"]
    assert harness.runs(dsn)[-1] == expected["runs"][-1]
    assert harness.checksums(dsn, cols) == sums


def _kill_at(
    dsn: str, server: Server, tmp: Path, point: str, *, release_orphans: bool = True
) -> harness.Run:
    run = harness.start(_migrate_args(dsn, server, tmp / "b-killed"), tmp, pause_at=point)
    try:
        pid, name = run.wait_pause(where=_dbname(dsn) if point.startswith("setup.") else None)
        assert name == point
        run.kill9()
        if pid != run.proc.pid and release_orphans:
            run.release()  # a worker outliving the tool goes on, as it would
        left = harness.strays(run, grace=2.0)
        assert left == [], f"processes outlived the killed migrate: {left}"
    finally:
        harness.reap(run)
    return run


POINTS = [
    "lock.held",
    "setup.v0",
    "setup.v1",
    "setup.ledger.v1",
    "setup.v6",  # CREATE INDEX CONCURRENTLY
    "setup.ledger.v6",
    "setup.v9",
    "setup.ledger.v9",
    "setup.done",
]


@pytest.mark.parametrize("point", POINTS)
def test_kill9_at_phase_then_rerun_converges(
    pg_default: Server, era_db: str, tmp_path: Path, uninterrupted: dict[str, Any], point: str
) -> None:
    before = (harness.data_columns(era_db), harness.checksums(era_db))
    _kill_at(era_db, pg_default, tmp_path, point)
    _converges(era_db, pg_default, tmp_path, before, uninterrupted)


BUILDING_SQL = (
    "SELECT pid FROM pg_stat_progress_create_index"
    " WHERE command = 'CREATE INDEX CONCURRENTLY' AND datname = current_database()"
)


def test_kill9_during_a_concurrent_index_build(
    pg_default: Server, era_db: str, tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    """The build waits for an old snapshot when the tool dies: its worker must not live on
    (it would go on migrating without the migrator lock, racing the rerun)."""
    before = (harness.data_columns(era_db), harness.checksums(era_db))
    run = harness.start(
        _migrate_args(era_db, pg_default, tmp_path / "b-killed"), tmp_path, pause_at="setup.v6"
    )
    blocker = psycopg.connect(era_db)
    blocker.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        run.wait_pause(where=_dbname(era_db))
        blocker.execute("SELECT count(*) FROM checkpoints")  # an old snapshot, held open
        run.release()
        with psycopg.connect(era_db, autocommit=True) as watch:
            deadline = time.monotonic() + 60
            while not watch.execute(BUILDING_SQL).fetchone():
                assert time.monotonic() < deadline, run.output()[-3000:]
                time.sleep(0.05)
        run.kill9()
        left = harness.strays(run, grace=2.0)
        assert left == [], f"processes outlived the killed migrate: {left}"
    finally:
        blocker.close()
        harness.reap(run)
    _converges(era_db, pg_default, tmp_path, before, uninterrupted)
