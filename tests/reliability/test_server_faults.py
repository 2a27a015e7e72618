"""The server restarts, or the tool's connections are terminated, in the middle of ``migrate``.

Each runs on a server of its own (a crash restart ends every session on it):
the run is paused inside ``setup()``, the fault happens, the run goes on and
fails (exit 3 or 5, one message, no traceback); a rerun converges to what an
uninterrupted run leaves, rows untouched, and nothing of the failed run is left running.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from migrator import fixtures
from migrator.postgres import Server, provision, scratch_database
from tests.reliability import harness
from tests.reliability.test_kill_migrate import ERA, ROOT, _converges, _dbname, _migrate_args

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BACKENDS_SQL = (
    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    " AND application_name LIKE 'langgraph-migrator%%'"
)


@pytest.fixture(scope="module")
def own_server() -> Iterator[Server]:
    server = provision("auto")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def era_db(own_server: Server) -> Iterator[str]:
    with scratch_database(own_server) as dsn:
        fixtures.import_tables(dsn, ROOT / ERA)
        yield dsn


@pytest.fixture(scope="module")
def expected(own_server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """What an uninterrupted migrate of the era leaves on this server."""
    server, tmp = own_server, tmp_path_factory.mktemp("reference")
    with scratch_database(server) as dsn:
        fixtures.import_tables(dsn, ROOT / ERA)
        done = harness.cli(_migrate_args(dsn, server, tmp / "b-ref"), tmp)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        return {"schema": harness.schema_state(dsn), "runs": harness.runs(dsn)}


def _backends(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute(BACKENDS_SQL, (_dbname(dsn),))]


def _wait_up(dsn: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "the server did not come back"
            time.sleep(0.2)


@pytest.mark.parametrize("point", ["setup.v6", "setup.ledger.v9"])
def test_server_crash_restart_mid_setup(
    own_server: Server, era_db: str, tmp_path: Path, point: str, expected: dict[str, object]
) -> None:
    """A backend killed with SIGKILL makes the postmaster restart every session (crash recovery)."""
    before = (harness.data_columns(era_db), harness.checksums(era_db))
    run = harness.start(
        _migrate_args(era_db, own_server, tmp_path / "b1"), tmp_path, pause_at=point
    )
    try:
        run.wait_pause(where=_dbname(era_db))
        victims = _backends(era_db)
        assert victims
        os.kill(victims[0], signal.SIGKILL)  # the postmaster restarts the whole server
        time.sleep(0.5)
        _wait_up(era_db)
        code = run.finish()
        out = run.output()
        assert code in (3, 5), out[-3000:]
        assert "Traceback" not in out, out[-3000:]
        assert harness.strays(run, grace=5.0) == []
    finally:
        harness.reap(run)
    _converges(era_db, own_server, tmp_path, before, expected)


@pytest.mark.parametrize("point", ["lock.held", "setup.v1", "setup.ledger.v6"])
def test_connections_terminated_mid_run(
    own_server: Server, era_db: str, tmp_path: Path, point: str, expected: dict[str, object]
) -> None:
    """``pg_terminate_backend`` on every session of the run (the lock's included)."""
    before = (harness.data_columns(era_db), harness.checksums(era_db))
    run = harness.start(
        _migrate_args(era_db, own_server, tmp_path / "b1"), tmp_path, pause_at=point
    )
    try:
        run.wait_pause(where=_dbname(era_db) if point.startswith("setup.") else None)
        with psycopg.connect(era_db, autocommit=True) as conn:
            for pid in _backends(era_db):
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        code = run.finish()
        out = run.output()
        assert code in (0, 3, 5), out[-3000:]
        assert "Traceback" not in out, out[-3000:]
        assert harness.strays(run, grace=5.0) == []
    finally:
        harness.reap(run)
    _converges(era_db, own_server, tmp_path, before, expected)
