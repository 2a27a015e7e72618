"""Writes the application makes while ``migrate --fallback`` runs are named, not silent.

The fallback restores the pre-migrate backup and swaps in tables rebuilt from it, so
a checkpoint the application wrote meanwhile ends up in a kept schema, not in the
live tables (``docs/reliability.md``; bench-load counts them under load). migrate
now says so: a ``fallback-writes`` warning naming the schema and the threads. A
fallback with no such write says nothing (checkpoint ids survive the cure).
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from migrator.postgres import Server
from tests.reliability import harness
from tests.reliability.test_kill_fallback import FALLBACK, _copy_of, seeded  # noqa: F401
from tests.reliability.test_kill_migrate import _migrate_args

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: A new checkpoint of an existing thread, as the application's next step writes it.
WRITE_SQL = """
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
                         type, checkpoint, metadata)
SELECT thread_id, checkpoint_ns, 'lgm-test-new-' || checkpoint_id, checkpoint_id,
       type, checkpoint, metadata
FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = ''
ORDER BY checkpoint_id DESC LIMIT 1
"""


def _warnings(report: Path) -> list[dict]:
    data = json.loads(report.read_text())
    return [c for c in data["checks"] if c["check"] == "fallback-writes"]


def test_fallback_names_the_writes_it_left_behind(
    pg_default: Server,
    seeded: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    with _copy_of(pg_default, seeded) as dsn:  # no application write: nothing to say
        report = tmp_path / "quiet.json"
        args = [*_migrate_args(dsn, pg_default, tmp_path / "b1"), *FALLBACK, "--json", str(report)]
        done = harness.cli(args, tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        assert _warnings(report) == []

    with _copy_of(pg_default, seeded) as dsn:
        with psycopg.connect(dsn) as conn:
            thread = conn.execute(
                "SELECT thread_id FROM checkpoints WHERE checkpoint_ns = '' LIMIT 1"
            ).fetchone()[0]
        report = tmp_path / "written.json"
        args = [*_migrate_args(dsn, pg_default, tmp_path / "b2"), *FALLBACK, "--json", str(report)]
        run = harness.start(args, tmp_path, pause_at="restore.start")
        try:
            run.wait_pause()
            with psycopg.connect(dsn, autocommit=True) as conn:  # the app goes on meanwhile
                assert conn.execute(WRITE_SQL, (thread,)).rowcount == 1
            assert run.finish() == 0, run.output()[-4000:]
        finally:
            harness.reap(run)
        (warning,) = _warnings(report)
        assert warning["status"] == "warn"
        assert "1 checkpoints row(s) in schema langgraph_migrator_old_" in warning["summary"]
        assert thread in warning["summary"]
        flat = " ".join(run.output().split())
        assert "do not run `cleanup` before deciding" in flat
