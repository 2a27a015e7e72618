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
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrator import api, envs, fixtures
from migrator.errors import ConnectError
from migrator.plan.blast import DataScan, data_hazards, scan_needs
from migrator.plan.live import read_data
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
    assert task_id["threads"] == 3
    # failed_node: a completed sibling's writes; interrupt_fn: an ordinary node's
    # interrupt (it vanishes from get_state: the gate's drift fails it too); subgraph
    assert task_id["thread_ids"] == [
        "canary:failed_node",
        "canary:interrupt_fn",
        "canary:subgraph",
    ]
    assert task_id["breaking"]
    assert plan.data.at_risk == 3
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
    assert data["at_risk"] == 3
    assert data["counts"]["paused_subgraph"] == 1
    assert data["counts"]["pending"] == 2
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


NEWEST = {"langgraph": "1.2.22", "langgraph-checkpoint-postgres": "3.2.0"}


def _pins(spec: str) -> dict[str, str]:
    return dict(envs.parse_version_set(spec).pins)


@pytest.fixture
def no_metadata_role(db):
    """A role that may read every checkpoint column but ``checkpoints.metadata``."""
    role = f"lgm_nometa_{uuid.uuid4().hex[:8]}"
    fixtures.import_tables(db, ROOT / "2.0.8")
    with psycopg.connect(db, autocommit=True) as conn:
        r = sql.Identifier(role)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(r))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r))
        conn.execute(sql.SQL("GRANT SELECT ON checkpoint_writes TO {}").format(r))
        conn.execute(
            sql.SQL(
                "GRANT SELECT (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, "
                "type, checkpoint) ON checkpoints TO {}"
            ).format(r)
        )
    try:
        yield psycopg.conninfo.make_conninfo(db, user=role)
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_scan_reads_no_metadata_when_no_metadata_hazard_applies(db, no_metadata_role):
    """2.0.8 -> 2.0.12: neither H-METADATA-WRITES nor H-DELTA-ROLLBACK applies, so the scan
    never touches ``checkpoints.metadata`` (a role that may not read it still scans); a
    pair where they apply reads it and counts the same threads as before."""
    quiet = scan_needs(
        _pins("langgraph-checkpoint-postgres==2.0.12"),
        _pins("langgraph-checkpoint-postgres==2.0.8"),
    )
    assert not quiet.metadata
    groups, _ = read_data(no_metadata_role, "public", quiet)
    assert sum(g.threads for g in groups) == 9 and {g.fmt for g in groups} == {"1"}
    assert not any({"lc_writes", "delta"} & g.flags for g in groups)

    full = scan_needs(NEWEST)
    with pytest.raises(ConnectError, match="permission denied"):
        read_data(no_metadata_role, "public", full)
    groups, _ = read_data(db, "public", full)  # the owner may: the hazard still counts
    reaches, _ = data_hazards(groups, NEWEST)
    first = {r.hazard: r for r in reversed(reaches)}  # each hazard's head reach
    assert first["H-METADATA-WRITES"].thread_ids == ("canary:messages", "canary:rich_values")
    assert first["H-TASK-ID"].thread_ids == (
        "canary:failed_node",
        "canary:interrupt_fn",
        "canary:subgraph",
    )


def test_the_latest_root_checkpoint_decides_a_threads_format(db):
    """A thread whose older checkpoints are v1 but whose latest root one is v4 is of the new
    era (the scan only looks closer at rows of an older format than the newest)."""
    fixtures.import_tables(db, ROOT / "2.0.8")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE checkpoints SET checkpoint = jsonb_set(checkpoint, '{v}', '4') "
            "WHERE thread_id = 'canary:failed_node' AND checkpoint_ns = '' AND checkpoint_id = "
            "(SELECT max(checkpoint_id) FROM checkpoints "
            " WHERE thread_id = 'canary:failed_node' AND checkpoint_ns = '')"
        )
    groups, _ = read_data(db, "public", scan_needs(NEWEST))
    scan = DataScan(groups)
    assert scan.by_format() == {"1": 8, "4": 1}
    reaches, _ = data_hazards(groups, NEWEST)
    task_id = next(r for r in reaches if r.hazard == "H-TASK-ID")
    assert (task_id.threads, task_id.thread_ids) == (2, ("canary:interrupt_fn", "canary:subgraph"))
    # writes are looked up for v1/v2 threads only: the v4 thread's are not counted
    assert scan.count("pending") == 1 and scan.count("paused_subgraph") == 1


@pytest.mark.parametrize("era", ["1.0.0", "2.0.8", "2.0.12", "2.0.25", "3.0.1"])
def test_the_one_key_the_scan_tests_per_row_finds_every_row_before_format_4(db, era):
    """The scan's per-row filter is a key's presence (``pending_sends``), not the format:
    on rows real released versions wrote, every row of a format before v4 has the key,
    and no v4 row does (so the new era costs one key test per row, nothing more)."""
    fixtures.import_tables(db, ROOT / era)
    with psycopg.connect(db) as conn:
        by_format = dict(
            conn.execute(
                "SELECT checkpoint ->> 'v', count(*) FILTER (WHERE checkpoint ? 'pending_sends') "
                "FROM checkpoints GROUP BY 1"
            ).fetchall()
        )
        total = dict(
            conn.execute("SELECT checkpoint ->> 'v', count(*) FROM checkpoints GROUP BY 1")
        )
    assert by_format and set(by_format) <= {"1", "2", "3", "4"}, by_format
    for fmt, kept in by_format.items():
        assert kept == (total[fmt] if fmt != "4" else 0), (fmt, kept, total[fmt])


def test_a_thread_without_root_checkpoints_and_delta_threads_below_1_2(db):
    """A thread with only a child checkpoint has no format (v0); DeltaChannel markers are
    counted for a target below langgraph 1.2 (the reader that loses them), not for 1.2+."""
    fixtures.import_tables(db, ROOT / "3.0.1")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO checkpoints SELECT 'orphan', 'child:1', checkpoint_id, NULL, type, "
            "checkpoint, metadata FROM checkpoints ORDER BY checkpoint_id LIMIT 1"
        )
        conn.execute(
            "UPDATE checkpoints SET metadata = metadata || "
            """'{"counters_since_delta_snapshot": 1}' WHERE thread_id = 'canary:send'"""
        )
    below = {"langgraph": "1.0.2", "langgraph-checkpoint-postgres": "3.0.1"}
    groups, _ = read_data(db, "public", scan_needs(below))
    scan = DataScan(groups)
    assert scan.by_format() == {"0": 1, "4": 9}  # the 9 canary threads, and the orphan
    assert scan.count("delta") == 1
    reaches, _ = data_hazards(groups, below)
    delta = next(r for r in reaches if r.hazard == "H-DELTA-ROLLBACK")
    assert delta.breaking and delta.thread_ids == ("canary:send",)
    groups, _ = read_data(db, "public", scan_needs(NEWEST))
    assert DataScan(groups).count("delta") == 0  # not looked for: 1.2.22 reads them
    assert not [r for r in data_hazards(groups, NEWEST)[0] if r.hazard == "H-DELTA-ROLLBACK"]


def _latest_and_parent(conn: psycopg.Connection[Any], thread: str) -> tuple[str, str]:
    """(latest root checkpoint id, its parent's) of ``thread``."""
    row = conn.execute(
        "SELECT checkpoint_id, parent_checkpoint_id FROM checkpoints "
        "WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
        (thread,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_writes_of_send_tasks_are_kept_those_of_ordinary_tasks_are_not(db):
    """A Send (push) task's id is derived the same way by langgraph 0.2.x and the newest;
    an ordinary (pull) task's is not (it hashes its trigger channels' names, which
    changed). Measured with checkpoint-postgres 2.0.10 / langgraph 0.2.61 against 1.2.24:
    a fan-out whose Send worker failed or paused resumes identically, while an ordinary
    node's interrupt vanishes from get_state and a completed ordinary sibling re-runs.
    The scan counts a thread when more tasks wrote on its latest root checkpoint than
    there were Sends (``__pregel_tasks`` writes on its parent). The rows here are shaped
    like those runs' rows, on a 2.0.8 fixture thread."""
    fixtures.import_tables(db, ROOT / "2.0.8")
    thread = "canary:interrupt_fn"
    with psycopg.connect(db, autocommit=True) as conn:
        latest, parent = _latest_and_parent(conn, thread)

        def write(checkpoint: str, task: str, idx: int, channel: str) -> None:
            conn.execute(
                "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, "
                "task_id, idx, channel, type, blob) VALUES (%s, '', %s, %s, %s, %s, 'json', "
                "'null')",
                (thread, checkpoint, task, idx, channel),
            )

        def counted() -> bool:
            groups, _ = read_data(db, "public", scan_needs(NEWEST))
            reaches, _ = data_hazards(groups, NEWEST)
            return any(r.hazard == "H-TASK-ID" and thread in r.thread_ids for r in reaches)

        # as seeded: an ordinary node's interrupt, no Send -- the newest loses it
        assert counted()
        # three Sends; two workers finished, the third failed: all three are push tasks
        conn.execute(
            "DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_id = %s",
            (thread, latest),
        )
        for i in range(3):
            write(parent, "fanout", i, "__pregel_tasks")
        write(latest, "send-a", 0, "results")
        write(latest, "send-b", 0, "results")
        write(latest, "send-c", -1, "__error__")
        assert not counted()
        # an ordinary sibling finished in the same step: its writes would be orphaned
        write(latest, "sibling", 0, "log")
        assert counted()
