"""``migrate --conformance`` (issue 14 part 5): langgraph's own suite on a copy.

orderbot is seeded through its encrypting serde by checkpoint-postgres 3.0.1
(with pycryptodome), migrated to the newest with ``--conformance``: the pinned
``langgraph-checkpoint-conformance`` runs with the app's ``EncryptedSerializer``
against the migrated schema on a ``CREATE DATABASE ... TEMPLATE`` copy. The live
database keeps its rows and no copy is left behind.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from migrator import envs
from migrator.postgres import Server, scratch_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

pytest.importorskip("langgraph.checkpoint.conformance")

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "orderbot"
OLD = "langgraph-checkpoint-postgres==3.0.1 pycryptodome==3.23.0"
KEY_ENV = "LANGGRAPH_AES_KEY"


def _counts(dsn: str) -> tuple[int, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM checkpoints), (SELECT count(*) FROM checkpoint_blobs),"
            " (SELECT count(*) FROM checkpoint_writes)"
        ).fetchone()
    assert row is not None
    return tuple(int(x) for x in row)


def _copies(server_dsn: str) -> list[str]:
    with psycopg.connect(make_conninfo(server_dsn, dbname="postgres")) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'lgm_conformance_%'"
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_migrate_conformance_runs_the_suite_with_the_apps_serde_on_a_copy(
    pg_default: Server, tmp_path: Path
) -> None:
    key = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env[KEY_ENV] = key
    old = envs.ensure_env(envs.parse_version_set(OLD))
    with scratch_database(pg_default) as dsn:
        seed = subprocess.run(
            [str(old.python), "-m", "orderbot.seed", "--encrypt", dsn],
            env={**env, "PYTHONPATH": str(APP_DIR / "src")},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert seed.returncode == 0, seed.stderr[-3000:]
        before = _counts(dsn)
        report = tmp_path / "migrate.json"
        proc = subprocess.run(
            [sys.executable, "-c", "from migrator.cli import main; main()"]
            + ["migrate", "--dsn", dsn, "--no-backup", "--conformance", "--json", str(report)]
            + ["--serde", "orderbot.persistence:encrypted_serde", "--key-env", KEY_ENV, "-q"],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=APP_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
        checks = json.loads(report.read_text())["checks"]
        found = [c for c in checks if c["check"] == "conformance"]
        assert len(found) == 1 and found[0]["status"] == "pass", found
        details = found[0]["details"]
        assert details["pin"] == "langgraph-checkpoint-conformance==0.0.2"
        assert details["serde"] == "EncryptedSerializer"
        assert details["results"]["put"]["passed"] is True
        assert _counts(dsn) == before  # the suite never touched the live database
        assert _copies(pg_default.dsn) == []  # its copy is gone
