"""Plan building without a database: pending statements, locks, repairs, undo, hazards."""

from __future__ import annotations

import copy
from typing import Any

from migrator.plan import (
    ConnectionProbe,
    Step,
    TargetInfo,
    build_plan,
    conflicting_locks,
    pending_statements,
    render_plan,
    repairs_for,
    statement_locks,
    undo_statements,
)
from migrator.schema import SchemaModel, diff_schemas
from tests.unit.test_schema import _catalog, _without_column

MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS checkpoint_migrations (v INTEGER PRIMARY KEY);",
    "CREATE TABLE IF NOT EXISTS checkpoint_writes (thread_id TEXT NOT NULL);",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS checkpoint_writes_thread_id_idx"
    " ON checkpoint_writes(thread_id);",
    "ALTER TABLE checkpoint_writes ADD COLUMN task_path TEXT NOT NULL DEFAULT '';",
)
TARGET = TargetInfo("target", MIGRATIONS)


def _model(cat: dict[str, Any]) -> SchemaModel:
    return SchemaModel.from_catalog(cat)


def _plan(live: SchemaModel, rehearsed: SchemaModel, steps=(), probe=None, ref=None):
    return build_plan(
        live=live,
        target=TARGET,
        steps=list(steps),
        rehearsed=rehearsed,
        reference=ref or _model(_catalog(ledger=[0, 1, 2, 3])),
        probe=probe,
        database="db",
    )


def test_pending_statements_follow_the_ledger_like_setup():
    assert [(v, a) for v, _, a in pending_statements(TARGET, None)] == [
        (0, False),
        (1, False),
        (2, False),
        (3, False),
    ]
    assert [(v, a) for v, _, a in pending_statements(TARGET, [0, 1])] == [
        (0, True),
        (2, False),
        (3, False),
    ]
    assert [(v, a) for v, _, a in pending_statements(TARGET, [0, 1, 2, 3])] == [(0, True)]
    legacy = TargetInfo("1.0.0", (), has_ledger=False, setup_sql=("CREATE TABLE a (x int)",))
    assert pending_statements(legacy, None) == [(None, "CREATE TABLE a (x int)", True)]


def test_statement_locks():
    assert statement_locks(MIGRATIONS[3]) == [("checkpoint_writes", "AccessExclusiveLock")]
    assert statement_locks(MIGRATIONS[2]) == [
        ("checkpoint_writes", "ShareUpdateExclusiveLock"),
        ("checkpoint_writes", "ShareLock"),
    ]
    assert statement_locks('CREATE INDEX i ON public."Odd" USING btree (a)') == [
        ("Odd", "ShareLock")
    ]
    assert statement_locks("SELECT 1;") == []


def test_conflicting_locks_use_the_conflict_matrix():
    cat = _catalog(
        locks=[
            {
                "table_name": "checkpoint_writes",
                "mode": "AccessShareLock",
                "granted": True,
                "pid": 42,
                "xact_age_s": 300.0,
            },
        ]
    )
    live = _model(cat)
    assert conflicting_locks(live, [("checkpoint_writes", "ShareLock")]) == []
    assert conflicting_locks(live, [("checkpoint_writes", "AccessExclusiveLock")]) == [
        ("checkpoint_writes", "AccessShareLock", 42, 300.0)
    ]


def test_repairs_add_column_rebuild_invalid_index_and_fix_ledger():
    ref = _model(_catalog(ledger=[0, 1, 2, 3]))
    cat = _without_column(_catalog(ledger=[0, 1, 2]), "task_path")
    cat["indexes"][1]["valid"] = False
    actual = _model(cat)
    repairs = repairs_for(diff_schemas(actual, ref), ref, actual)
    assert [r.kind for r in repairs] == ["missing_column", "invalid_index", "ledger_rows"]
    assert repairs[0].sql == (
        'ALTER TABLE "checkpoint_writes" ADD COLUMN IF NOT EXISTS "task_path" text'
        " DEFAULT ''::text NOT NULL",
    )
    assert repairs[1].sql[0].startswith('DROP INDEX CONCURRENTLY IF EXISTS "checkpoint_writes')
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS" in repairs[1].sql[1]
    assert repairs[2].sql == (
        'INSERT INTO "checkpoint_migrations" (v) VALUES (3) ON CONFLICT DO NOTHING',
    )


def test_undo_takes_back_added_columns_and_ledger_rows():
    before = _model(_without_column(_catalog(ledger=[0, 1, 2]), "task_path"))
    after = _model(_catalog(ledger=[0, 1, 2, 3]))
    assert undo_statements(before, after) == [
        'ALTER TABLE "checkpoint_writes" DROP COLUMN IF EXISTS "task_path"',
        'DELETE FROM "checkpoint_migrations" WHERE v IN (3)',
    ]
    assert undo_statements(after, after) == []


def test_ledger_shift_is_an_error_migrate_repairs():
    live = _model(_without_column(_catalog(ledger=[0, 1, 2, 3]), "task_path"))
    plan = _plan(live, live, steps=[Step(0, MIGRATIONS[0], always=True, outcome="ok")])
    shift = [h for h in plan.hazards if h.id == "H-LEDGER-SHIFT"]
    assert shift and shift[0].severity == "error" and shift[0].migrate_repairs
    assert plan.unsafe and not plan.blocking
    assert "H-READ-BEFORE-SETUP" in plan.hazard_ids
    text = "\n".join(render_plan(plan))
    assert "H-LEDGER-SHIFT" in text and "ADD COLUMN IF NOT EXISTS" in text


def test_duplicate_column_step_is_h_dup_column():
    live = _model(_catalog(ledger=[0, 1, 2]))
    step = Step(3, MIGRATIONS[3], outcome="fails", error_kind="DuplicateColumn", error="exists")
    plan = _plan(live, _model(_catalog(ledger=[0, 1, 2, 3])), steps=[step])
    assert [h.id for h in plan.hazards if h.severity == "error"] == ["H-DUP-COLUMN"]
    other = Step(3, MIGRATIONS[3], outcome="fails", error_kind="DatatypeMismatch", error="x")
    plan = _plan(live, _model(_catalog(ledger=[0, 1, 2, 3])), steps=[other])
    assert [h.id for h in plan.blocking] == ["P-STATEMENT-FAILS"]


def test_no_ledger_and_privileges():
    cat = _catalog(ledger=None)
    cat["tables"] = [t for t in cat["tables"] if t["name"] != "checkpoint_migrations"]
    cat["privileges"]["schema_create"] = False
    cat["tables"][0]["owned"] = False
    live = _model(cat)
    steps = [
        Step(v, s, transactional="CONCURRENTLY" not in s, outcome="ok")
        for v, s, _ in pending_statements(TARGET, None)
    ]
    plan = _plan(live, _model(_catalog(ledger=[0, 1, 2, 3])), steps=steps)
    assert "H-NO-LEDGER" in plan.hazard_ids
    privilege = [h for h in plan.blocking if h.id == "P-PRIVILEGE"]
    assert len(privilege) == 2  # no CREATE on the schema; not the owner of checkpoint_writes
    assert "H-TX-CONCURRENTLY" in plan.hazard_ids


def test_pooler_detection():
    live = _model(_catalog(ledger=[0, 1, 2, 3]))
    ok = _plan(live, live, probe=ConnectionProbe(7, 7, 5432, 5432))
    assert "P-POOLER" not in ok.hazard_ids and not ok.unsafe
    pooled = _plan(live, live, probe=ConnectionProbe(7, 9, 6432, 5432))
    assert [h.id for h in pooled.blocking] == ["P-POOLER"]
    proxied = _plan(live, live, probe=ConnectionProbe(7, 7, 6432, 5432))
    assert [(h.id, h.severity) for h in proxied.hazards] == [("P-POOLER", "warning")]


def test_lock_risk_on_big_tables():
    cat = _without_column(_catalog(ledger=[0, 1, 2]), "task_path")
    cat["tables"][1]["total_bytes"] = 5 << 30
    live = _model(cat)
    rehearsed = _model(_catalog(ledger=[0, 1, 2, 3]))
    plan = _plan(live, rehearsed, steps=[Step(3, MIGRATIONS[3], outcome="ok")])
    assert "P-LOCK-RISK" in plan.hazard_ids
    assert not plan.unsafe
    assert copy.deepcopy(plan.to_dict())["format"] == "langgraph-migrator/plan@1"
