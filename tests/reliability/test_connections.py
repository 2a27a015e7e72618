"""``restore --jobs`` on a server with few free connections: capped, said, done.

``restore`` started one worker per dump part (two connections each) whatever
``--jobs`` said and whatever the server had left: with the connections nearly
used up by the application, it failed with ``too many clients`` (issue 12 #14;
``dump`` and ``backup`` were capped already, :mod:`migrator.postgres.capacity`).
The server is the test's own (its connections are filled on purpose).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from migrator import fixtures
from migrator.postgres import Server, provision, scratch_database
from migrator.postgres.capacity import FREE_CONNECTIONS_SQL
from tests.reliability import harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FIXTURE = Path(__file__).resolve().parents[2] / "canary_fixtures" / "3.0.1"
ALLOW = [
    f"--allow-type=migrator.worker.canaries.rich.{name}"
    for name in ("CanaryColor", "CanaryModel", "CanaryRecord")
]
#: Connections left free for the restore (the application holds the rest).
LEFT_FREE = 5


@pytest.fixture(scope="module")
def own_server() -> Iterator[Server]:
    server = provision("auto")
    try:
        yield server
    finally:
        server.stop()


def _free(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        total, reserved, used = conn.execute(FREE_CONNECTIONS_SQL).fetchone()  # type: ignore[misc]
    return int(total) - int(reserved) - int(used)


def test_restore_jobs_capped_by_free_connections(own_server: Server, tmp_path: Path) -> None:
    with scratch_database(own_server) as dsn:
        fixtures.import_tables(dsn, FIXTURE)
        before = harness.checksums(dsn)
        dump = tmp_path / "d.lgdump"
        done = harness.cli(
            ["dump", "--dsn", dsn, "--from", "current", "--out", str(dump), "--jobs", "8", "-q"],
            tmp_path,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        parts = len(json.loads((tmp_path / "d.lgdump.manifest.json").read_text())["parts"])
        assert parts >= 4  # uncapped, the restore would open 2 connections per part
        held: list[psycopg.Connection] = []  # what the application holds
        try:
            while _free(dsn) > LEFT_FREE:
                held.append(psycopg.connect(dsn, autocommit=True))
            proc = harness.cli(
                ["restore", "--dsn", dsn, str(dump), "--jobs", "300", *ALLOW], tmp_path
            )
        finally:
            for conn in held:
                conn.close()
        out = proc.stdout + proc.stderr
        assert "too many clients" not in out, out[-3000:]
        assert proc.returncode == 0, out[-3000:]
        notes = [ln for ln in proc.stderr.splitlines() if "note: --jobs 300 lowered to 1:" in ln]
        assert len(notes) == 1, proc.stderr
        assert f"only {parts} dump part(s)" in notes[0] and "free connection(s)" in notes[0]
        counts = {t: v.split(":")[0] for t, v in harness.checksums(dsn).items()}
        assert counts == {t: v.split(":")[0] for t, v in before.items()}
