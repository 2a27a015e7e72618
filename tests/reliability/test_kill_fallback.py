"""``kill -9`` of ``migrate --fallback dump-restore`` at each phase of the fallback.

A 2.0.8 database with canaries seeded by real 2.0.8 drifts in place (H-TASK-ID),
so ``migrate --from 2.0.8 --fallback dump-restore`` runs the fallback: restore
the pre-migrate backup beside the live tables and swap it in, dump with 2.0.8
(``dump.start``), restore with the target into a shadow schema
(``restore.start``), swap (``swap.locked``: the tables locked and moved, not
committed; once for the pre-migrate backup's shadow, once for the restore's).
Killed there with SIGKILL, the live tables hold the rows they held before; the
rerun ends where an uninterrupted fallback ends (schema, checkpoint ledger,
tool-ledger runs, ``checkpoints`` rows; blobs and writes by count: they are
re-serialized and not byte-stable, ``docs/reliability.md``), and after
``cleanup`` no schema of the killed run is left. Every database is a template
copy of one seeded database, so thread ids agree.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrator import envs
from migrator.postgres import Server, scratch_database
from migrator.postgres.dsn import with_dbname
from tests.reliability import harness
from tests.reliability.test_kill_migrate import _dbname, _migrate_args

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SPEC = "langgraph-checkpoint-postgres==2.0.8"
FALLBACK = ["--from", SPEC, "--fallback", "dump-restore"]


@contextmanager
def _copy_of(server: Server, source: str) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(_dbname(source))
            )
        )
    try:
        yield with_dbname(server.dsn, name)
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def seeded(pg_default: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 2.0.8 database with canaries (and goldens) seeded by real 2.0.8; never migrated."""
    tmp = tmp_path_factory.mktemp("seed")
    with scratch_database(pg_default) as dsn:
        env = envs.ensure_env(envs.parse_version_set(SPEC))
        envs.run_worker(env, "setup", {"dsn": dsn}, timeout=300)
        done = harness.cli(["canary", "seed", "--dsn", dsn, "--with", SPEC, "-q"], tmp)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        yield dsn


def _end_state(dsn: str, server: Server, tmp: Path) -> dict[str, Any]:
    """What a finished fallback leaves, then ``cleanup`` (its kept schemas dropped)."""
    sums = harness.checksums(dsn)
    runs = harness.runs(dsn)
    done = harness.cli(["cleanup", "--dsn", dsn], tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    return {
        "schema": harness.schema_state(dsn),
        "runs": runs,
        "checkpoints": sums["checkpoints"],
        "counts": {t: v.split(":")[0] for t, v in sums.items()},
    }


@pytest.fixture(scope="module")
def uninterrupted(
    pg_default: Server, seeded: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("uninterrupted-fallback")
    with _copy_of(pg_default, seeded) as dsn:
        done = harness.cli([*_migrate_args(dsn, pg_default, tmp / "b"), *FALLBACK], tmp)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        state = _end_state(dsn, pg_default, tmp)
        assert state["runs"] and state["runs"][-1] == ("migrate", "pass"), state["runs"]
        return state


CASES = {
    "dump": ("dump.start", None),
    "restore": ("restore.start", None),
    "swap-premigrate": ("swap.locked", "lgm_premigrate_"),
    "swap-restored": ("swap.locked", "langgraph_migrator_shadow_"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_kill9_in_fallback_then_rerun_converges(
    pg_default: Server, seeded: str, tmp_path: Path, uninterrupted: dict[str, Any], case: str
) -> None:
    point, prefix = CASES[case]
    with _copy_of(pg_default, seeded) as dsn:
        cols, before = harness.data_columns(dsn), harness.checksums(dsn)
        args = [*_migrate_args(dsn, pg_default, tmp_path / "b-killed"), *FALLBACK]
        run = harness.start(args, tmp_path, pause_at=point)
        try:
            pid, name = run.wait_pause(where_prefix=prefix)
            assert name == point
            run.kill9()
            if pid != run.proc.pid:
                run.release()  # a worker outliving the tool goes on, as it would
            assert harness.strays(run, grace=3.0) == []
        finally:
            harness.reap(run)
        # Whatever phase it died in, the live tables hold the rows they held before.
        assert harness.checksums(dsn, cols) == before
        again = harness.cli(
            [*_migrate_args(dsn, pg_default, tmp_path / "b-rerun"), *FALLBACK], tmp_path
        )
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr
        assert _end_state(dsn, pg_default, tmp_path) == uninterrupted
