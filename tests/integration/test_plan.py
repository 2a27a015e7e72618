"""``plan`` on real databases left by real old versions (committed fixtures), every major.

Each schema hazard is reproduced with the database an old ``setup()`` really left
(``canary_fixtures/<era>``) and the real target version's ``MIGRATIONS``, and must be
reported under its id. ``plan`` must never write to the live database.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrator import api, envs, fixtures
from migrator.postgres.dsn import with_dbname

pytestmark = [pytest.mark.slow, pytest.mark.pg_core, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2] / "canary_fixtures"
CLI = str(Path(sys.executable).parent / "langgraph-migrator")

# The whole catalog of non-system schemas, without statistics autovacuum may update.
_NON_SYSTEM = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
)
CATALOG_QUERIES = {
    "pg_namespace": f"SELECT n.oid, n.nspname, n.nspowner, n.nspacl::text FROM pg_namespace n "
    f"WHERE {_NON_SYSTEM} ORDER BY 1",
    "pg_class": "SELECT c.oid, c.relname, c.relkind, c.relnamespace, c.relfilenode, c.relowner, "
    "c.relacl::text, c.relnatts FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"WHERE {_NON_SYSTEM} ORDER BY 1",
    "pg_attribute": "SELECT a.attrelid, a.attnum, a.attname, a.atttypid, a.attnotnull, "
    "a.atthasdef, a.attisdropped FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_NON_SYSTEM} ORDER BY 1, 2",
    "pg_index": "SELECT x.indexrelid, x.indrelid, x.indisvalid, x.indisready, x.indisunique, "
    "x.indkey::text FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid "
    f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_NON_SYSTEM} ORDER BY 1",
}
LEDGER_EXISTS_SQL = "SELECT to_regclass('checkpoint_migrations') IS NOT NULL"
LEDGER_SQL = "SELECT v FROM checkpoint_migrations ORDER BY v"


def catalog_state(dsn: str) -> dict[str, Any]:
    """pg_namespace/pg_class/pg_attribute/pg_index rows of non-system schemas + ledger rows."""
    with psycopg.connect(dsn) as conn:
        state: dict[str, Any] = {k: conn.execute(q).fetchall() for k, q in CATALOG_QUERIES.items()}
        exists = conn.execute(LEDGER_EXISTS_SQL).fetchone()
        state["checkpoint_migrations"] = (
            conn.execute(LEDGER_SQL).fetchall() if exists and exists[0] else None
        )
    return state


def load_era(dsn: str, era: str) -> None:
    fixtures.import_tables(dsn, ROOT / era)


def make_invalid_index(dsn: str) -> None:
    """A real INVALID index named like setup()'s: a unique CONCURRENTLY build that fails."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX checkpoints_thread_id_idx")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY checkpoints_thread_id_idx"
                " ON checkpoints(thread_id)"
            )
        row = conn.execute(
            "SELECT indisvalid FROM pg_index"
            " WHERE indexrelid = 'checkpoints_thread_id_idx'::regclass"
        ).fetchone()
    assert row == (False,)


def hazard_ids(plan: Any, severity: str | None = None) -> set[str]:
    return {h.id for h in plan.hazards if severity is None or h.severity == severity}


# -------------------------------------------------------------------- tests


def test_plan_is_read_only(pg_server, pg_dsn):
    load_era(pg_dsn, "2.0.8")
    make_invalid_index(pg_dsn)
    before = catalog_state(pg_dsn)
    plan = api.plan(pg_dsn, "current", scratch_dsn=pg_server.dsn)
    assert catalog_state(pg_dsn) == before
    assert {"H-READ-BEFORE-SETUP", "H-INVALID-INDEX"} <= hazard_ids(plan)


def test_plan_without_scratch_dsn_provisions_its_own_server(pg_server, pg_dsn):
    load_era(pg_dsn, "2.0.12")
    before = catalog_state(pg_dsn)
    plan = api.plan(pg_dsn, "langgraph-checkpoint-postgres==2.0.13")
    assert catalog_state(pg_dsn) == before
    assert "H-DUP-COLUMN" in hazard_ids(plan, "error")


def test_ledger_shift_2_0_8_to_2_0_12(pg_server, pg_dsn):
    load_era(pg_dsn, "2.0.8")
    plan = api.plan(pg_dsn, "langgraph-checkpoint-postgres==2.0.12", scratch_dsn=pg_server.dsn)
    assert plan.ledger == tuple(range(9))
    assert plan.pending == []  # the ledger says everything is done ...
    missing = [d for d in plan.rehearsal_diff if d.kind == "missing_column"]
    assert [(d.table, d.name) for d in missing] == [
        ("checkpoint_writes", "task_path")
    ]  # ... it is not
    assert "H-LEDGER-SHIFT" in hazard_ids(plan, "error")
    assert plan.unsafe and not plan.blocking
    assert any("ADD COLUMN IF NOT EXISTS" in s for r in plan.repairs for s in r.sql)


@pytest.mark.parametrize("target", ["2.0.13", "3.0.0"])
def test_dup_column_predicted(pg_server, pg_dsn, target):
    load_era(pg_dsn, "2.0.12")
    plan = api.plan(pg_dsn, f"langgraph-checkpoint-postgres=={target}", scratch_dsn=pg_server.dsn)
    failing = [s for s in plan.steps if s.outcome == "fails"]
    assert [(s.v, s.error_kind) for s in failing] == [(9, "DuplicateColumn")]
    assert "H-DUP-COLUMN" in hazard_ids(plan, "error")
    assert not plan.blocking  # migrate handles it
    assert plan.rehearsal_diff == ()  # after migrate's ledger fix the schema is the reference


def test_dup_column_prediction_is_what_the_real_setup_does(pg_server, pg_dsn):
    load_era(pg_dsn, "2.0.12")
    env = envs.ensure_env(envs.parse_version_set("langgraph-checkpoint-postgres==2.0.13"))
    with pytest.raises(Exception, match="DuplicateColumn"):
        envs.run_worker(env, "setup", {"dsn": pg_dsn}, timeout=300)


def test_no_ledger_1_0_0(pg_server, pg_dsn):
    load_era(pg_dsn, "1.0.0")
    plan = api.plan(pg_dsn, "current", scratch_dsn=pg_server.dsn)
    assert plan.ledger is None
    assert "H-NO-LEDGER" in hazard_ids(plan)
    assert [s.v for s in plan.pending] == list(range(10))
    assert all(s.outcome == "ok" for s in plan.steps)
    assert "H-TX-CONCURRENTLY" in hazard_ids(plan, "advice")
    assert "H-READ-BEFORE-SETUP" in hazard_ids(plan)


def test_invalid_index(pg_server, pg_dsn):
    load_era(pg_dsn, "3.0.1")
    make_invalid_index(pg_dsn)
    plan = api.plan(pg_dsn, "current", scratch_dsn=pg_server.dsn)
    assert "H-INVALID-INDEX" in hazard_ids(plan, "error")  # unique: not enforced
    kinds = {(d.kind, d.name) for d in plan.rehearsal_diff}
    assert ("invalid_index", "checkpoints_thread_id_idx") in kinds  # reproduced on the clone
    repair = next(r for r in plan.repairs if r.kind == "invalid_index")
    assert repair.sql[0].startswith("DROP INDEX CONCURRENTLY")


def test_fresh_database_is_safe(pg_server, pg_dsn):
    plan = api.plan(pg_dsn, "current", scratch_dsn=pg_server.dsn)
    assert not plan.unsafe
    assert "H-NO-LEDGER" not in hazard_ids(plan)
    assert len(plan.pending) == 10


def _create_role(dsn: str) -> str:
    role = f"lgm_noddl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        r = sql.Identifier(role)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(r))
        conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r))
        conn.execute(
            sql.SQL(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}"
            ).format(r)
        )
    return role


def _drop_role(dsn: str, role: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def unprivileged(pg_dsn):
    load_era(pg_dsn, "2.0.8")
    role = _create_role(pg_dsn)
    try:
        yield psycopg.conninfo.make_conninfo(pg_dsn, user=role)
    finally:
        _drop_role(pg_dsn, role)


def test_missing_privilege_reported_before_anything_runs(pg_server, pg_dsn, unprivileged):
    before = catalog_state(pg_dsn)
    plan = api.plan(unprivileged, "current", scratch_dsn=pg_server.dsn)
    assert "P-PRIVILEGE" in hazard_ids(plan, "error")
    assert plan.blocking
    assert catalog_state(pg_dsn) == before
    # The prediction is real: the target's own setup() fails as this role.
    env = envs.ensure_env(envs.parse_version_set("current"))
    with pytest.raises(Exception, match="InsufficientPrivilege"):
        envs.run_worker(env, "setup", {"dsn": unprivileged}, timeout=300)


def test_cli_plan_json_and_exit_code(pg_server, pg_dsn):
    load_era(pg_dsn, "2.0.8")
    proc = subprocess.run(
        [
            CLI,
            "plan",
            "--dsn",
            pg_dsn,
            "--to",
            "langgraph-checkpoint-postgres==2.0.12",
            "--scratch-dsn",
            pg_server.dsn,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    import json

    data = json.loads(proc.stdout)
    assert data["verdict"] == "unsafe"
    assert "H-LEDGER-SHIFT" in data["hazard_ids"]


def test_cli_plan_bad_dsn_exit_3_one_line_no_password(pg_server):
    dsn = with_dbname(pg_server.dsn, "no_such_db_h1")
    secret = uuid.uuid4().hex  # generated: no password is written in this file
    dsn = psycopg.conninfo.make_conninfo(dsn, password=secret, connect_timeout=3)
    proc = subprocess.run(
        [CLI, "plan", "--dsn", dsn, "--scratch-dsn", pg_server.dsn, "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Hint:" in lines[0]
    assert secret not in proc.stderr + proc.stdout
