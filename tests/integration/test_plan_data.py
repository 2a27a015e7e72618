"""``plan`` lists data hazards with their blast radius, on databases real old versions wrote.

The committed fixtures (``canary_fixtures/<era>``) were seeded by the real released
versions; their threads are the canaries, so the threads at risk are known by name:
``failed_node`` (a completed sibling's writes beside a failed task), ``subgraph``
(paused inside a child graph), ``interrupt_fn`` (a pending ``interrupt()``) and, in
1.0.0, ``send_paused`` (pending sends in the checkpoint JSON). ``upgrade-check``
proves the same threads break (tests/integration/test_gate_eras.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator import api, fixtures
from migrator.postgres import scratch_database
from tests.integration.test_plan import catalog_state

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2] / "canary_fixtures"
CLI = str(Path(sys.executable).parent / "langgraph-migrator")


@pytest.fixture
def db(pg_default):
    """A fresh database on the session's default server (one major is enough here)."""
    with scratch_database(pg_default) as dsn:
        yield dsn


def _reach(plan: Any, hazard: str) -> dict[str, Any]:
    assert plan.data is not None
    found = [r for r in plan.data.reaches if r.hazard == hazard]
    assert found, [r.to_dict() for r in plan.data.reaches]
    return found[0].to_dict()


def _errors(plan: Any) -> set[str]:
    return {h.id for h in plan.hazards if h.severity == "error"}


def test_2_0_8_to_current_names_task_id_with_the_threads_at_risk(pg_default, db):
    fixtures.import_tables(db, ROOT / "2.0.8")
    before = catalog_state(db)
    plan = api.plan(db, "current", scratch_dsn=pg_default.dsn)
    assert catalog_state(db) == before  # read only
    task_id = _reach(plan, "H-TASK-ID")
    assert task_id["threads"] == 2
    assert task_id["thread_ids"] == ["canary:failed_node", "canary:subgraph"]
    assert task_id["breaking"]
    assert plan.data.at_risk == 2
    assert plan.data.by_format() == {"1": 9}
    assert "H-TASK-ID" in _errors(plan)
    assert plan.unsafe and not plan.blocking  # migrate still runs (verify + fallback)
    # the interrupt is resumable by langgraph >= 1.2.13: no H-INTERRUPT-RESUME here
    assert "H-INTERRUPT-RESUME" not in {r.hazard for r in plan.data.reaches}
    assert _reach(plan, "H-METADATA-WRITES")["thread_ids"] == [
        "canary:messages",
        "canary:rich_values",
    ]
    fix = next(h.fix for h in plan.hazards if h.id == "H-TASK-ID")
    assert "upgrade-check --from 'langgraph-checkpoint-postgres==2.0.8'" in fix


def test_3_0_1_to_current_is_safe(pg_default, db):
    fixtures.import_tables(db, ROOT / "3.0.1")
    plan = api.plan(db, "current", scratch_dsn=pg_default.dsn)
    assert plan.data is not None and plan.data.reaches == ()
    assert plan.data.by_format() == {"4": 9}
    assert not plan.unsafe, [h.to_dict() for h in plan.hazards]


def test_1_0_0_names_send_dropped_with_its_count(pg_default, db):
    fixtures.import_tables(db, ROOT / "1.0.0")
    plan = api.plan(db, "current", scratch_dsn=pg_default.dsn)
    sends = _reach(plan, "H-SEND-DROPPED")
    assert (sends["threads"], sends["thread_ids"]) == (1, ["canary:send_paused"])
    task_id = _reach(plan, "H-TASK-ID")
    assert task_id["thread_ids"] == ["canary:failed_node", "canary:subgraph"]
    assert plan.data.at_risk == 3
    assert {"H-SEND-DROPPED", "H-TASK-ID"} <= _errors(plan)


def test_2_0_12_to_3_0_0_band_finding_and_interrupt_count(pg_default, db):
    fixtures.import_tables(db, ROOT / "2.0.12")
    plan = api.plan(db, "langgraph-checkpoint-postgres==3.0.0", scratch_dsn=pg_default.dsn)
    interrupt = _reach(plan, "H-INTERRUPT-RESUME")
    assert (interrupt["threads"], interrupt["thread_ids"]) == (1, ["canary:interrupt_fn"])
    band = next(h for h in plan.hazards if h.id == "P-KNOWN-BAD-TARGET")
    assert band.severity == "error" and "1.2.13 or later" in band.fix
    assert {"H-DUP-COLUMN", "H-TASK-ID", "H-INTERRUPT-RESUME"} <= _errors(plan)
    assert plan.data.at_risk == 3


def test_cli_plan_json_carries_counts_and_exit_1(pg_default, db):
    fixtures.import_tables(db, ROOT / "2.0.8")
    proc = subprocess.run(
        [CLI, "plan", "--dsn", db, "--scratch-dsn", pg_default.dsn, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)["data"]
    assert data["at_risk"] == 2
    assert data["counts"]["paused_subgraph"] == 1
    assert data["counts"]["pending"] == 1
    assert data["counts"]["interrupt"] == 1
    assert {r["hazard"] for r in data["reaches"]} == {"H-TASK-ID", "H-METADATA-WRITES"}


def test_ledger_ahead_is_an_error_and_migrate_says_fail(pg_default, db):
    """Issue 12 item 13: a database a newer version set up is not SAFE, and migrate's
    printed verdict agrees with its exit code."""
    fixtures.import_tables(db, ROOT / "3.0.1")
    with psycopg.connect(db, autocommit=True) as conn:  # a newer version's extra column
        conn.execute("ALTER TABLE checkpoints ADD COLUMN from_the_future TEXT")
    before = catalog_state(db)
    target = "langgraph-checkpoint-postgres==2.0.8"
    plan = api.plan(db, target, scratch_dsn=pg_default.dsn)
    assert "P-LEDGER-AHEAD" in _errors(plan)
    assert plan.unsafe and plan.blocking
    proc = subprocess.run(
        [
            CLI,
            "migrate",
            "--dsn",
            db,
            "--to",
            target,
            "--scratch-dsn",
            pg_default.dsn,
            "--no-backup",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "verdict: PASS" not in out and "verdict: FAIL" in out
    assert "P-LEDGER-AHEAD" in out
    assert catalog_state(db) == before
