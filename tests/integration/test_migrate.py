"""``migrate`` repairs every schema hazard on databases left by real old versions.

After each migrate: the schema equals the reference (what the target's own
``setup()`` builds on an empty database) and the newest saver reads every canary
thread with no error (the ``snapshot`` op in the current env). Also: eight
migrators at once, a session holding a lock on ``checkpoints``, a role without
CREATE, a bad DSN.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

import psycopg
import pytest

from migrator import api, envs, fixtures
from migrator.errors import LockTimeoutError
from migrator.execute import MigrateSettings
from migrator.plan import build_reference, read_live
from migrator.plan.blast import DATA_HAZARDS
from migrator.schema import diff_schemas
from tests.integration.test_plan import (
    CLI,
    ROOT,
    catalog_state,
    load_era,
    make_invalid_index,
    unprivileged,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.slow, pytest.mark.pg_core, pytest.mark.timeout(900)]

PUBLIC_ONLY = ("pg_class", "pg_attribute", "pg_index")


def public_state(dsn: str) -> dict[str, Any]:
    """The catalog of the checkpoint tables' schema (the tool ledger lives elsewhere)."""
    with psycopg.connect(dsn) as conn:
        public = conn.execute("SELECT 'public'::regnamespace::oid").fetchone()[0]
    state = catalog_state(dsn)
    state["pg_class"] = [r for r in state["pg_class"] if r[3] == public]
    oids = {r[0] for r in state["pg_class"]}
    state["pg_attribute"] = [r for r in state["pg_attribute"] if r[0] in oids]
    state["pg_index"] = [r for r in state["pg_index"] if r[1] in oids]
    del state["pg_namespace"]
    return state


#: ``--accept-hazard`` for every data hazard: see :func:`settings`.
ACCEPT = tuple(arg for h in sorted(DATA_HAZARDS) for arg in ("--accept-hazard", h))


def settings(dsn: str, scratch: str, to: str = "current", **kw: Any) -> MigrateSettings:
    """Settings for these schema tests: the eras' canary threads are at risk and no golden
    is seeded, so the data hazards are accepted (the preflight has its own tests)."""
    kw.setdefault("accept_hazards", tuple(sorted(DATA_HAZARDS)))
    return MigrateSettings(dsn=dsn, to_spec=to, scratch_dsn=scratch, **kw)


def assert_schema_is_reference(dsn: str, scratch: str, to: str = "current") -> None:
    env = envs.ensure_env(envs.parse_version_set(to))
    reference = build_reference(env, scratch)
    live, _ = read_live(dsn)
    left = [d.summary() for d in diff_schemas(live, reference) if d.severity != "info"]
    assert left == []


def assert_newest_reads_every_thread(dsn: str, era: str) -> None:
    golden = fixtures.load_golden(ROOT / era)
    threads = [{"thread_id": t, "canary": th["canary"]} for t, th in golden["threads"].items()]
    env = envs.ensure_env(envs.parse_version_set("current"))
    snap = envs.run_worker(
        env, "snapshot", {"dsn": dsn, "threads": threads, "user_canaries": None}, timeout=600
    )
    assert set(snap["threads"]) == {t["thread_id"] for t in threads}
    errors = {
        tid: th.get("error") or (th.get("state") or {}).get("__error__")
        for tid, th in snap["threads"].items()
    }
    assert {k: v for k, v in errors.items() if v} == {}
    assert "UndefinedColumn" not in json.dumps(snap)


def check(outcome: Any, name: str) -> list[Any]:
    return [c for c in outcome.report.checks if c.check == name]


# ------------------------------------------------------------ hazards


def test_migrate_no_ledger_1_0_0(pg_server, pg_dsn):
    load_era(pg_dsn, "1.0.0")
    outcome = api.migrate(settings(pg_dsn, pg_server.dsn))
    assert outcome.error is None, outcome.error
    assert "H-NO-LEDGER" in outcome.plan.hazard_ids
    assert check(outcome, "setup")[0].details["ledger_after"] == 9
    assert_schema_is_reference(pg_dsn, pg_server.dsn)
    assert_newest_reads_every_thread(pg_dsn, "1.0.0")


def test_a_second_migrate_starts_no_setup_worker_and_changes_nothing(pg_server, pg_dsn):
    """The deploy hook runs migrate on every deploy: with nothing pending and nothing to
    repair it no longer starts a worker to run setup() (2 s of its 3), and still checks
    the schema against the reference."""
    load_era(pg_dsn, "1.0.0")
    first = api.migrate(settings(pg_dsn, pg_server.dsn))
    assert first.error is None, first.error
    assert "not run" not in check(first, "setup")[0].summary
    before = public_state(pg_dsn)
    again = api.migrate(settings(pg_dsn, pg_server.dsn))
    assert again.error is None, again.error
    summary = check(again, "setup")[0].summary
    assert summary == (
        "nothing to do (ledger v9); setup() not run: the plan has no pending statement and "
        "no repair"
    )
    assert public_state(pg_dsn) == before
    assert_schema_is_reference(pg_dsn, pg_server.dsn)


def test_migrate_ledger_shift_2_0_8_to_2_0_12(pg_server, pg_dsn):
    to = "langgraph-checkpoint-postgres==2.0.12"
    load_era(pg_dsn, "2.0.8")
    outcome = api.migrate(settings(pg_dsn, pg_server.dsn, to))
    assert outcome.error is None, outcome.error
    repairs = check(outcome, "repair")
    assert [(r.details["kind"], r.details["name"]) for r in repairs] == [
        ("missing_column", "task_path")
    ]
    assert repairs[0].hazards == ("H-LEDGER-SHIFT",)
    assert_schema_is_reference(pg_dsn, pg_server.dsn, to)
    assert_newest_reads_every_thread(pg_dsn, "2.0.8")


@pytest.mark.parametrize("target", ["2.0.13", "3.0.0"])
def test_migrate_dup_column_succeeds_anyway(pg_server, pg_dsn, target):
    to = f"langgraph-checkpoint-postgres=={target}"
    load_era(pg_dsn, "2.0.12")
    outcome = api.migrate(settings(pg_dsn, pg_server.dsn, to))
    assert outcome.error is None, outcome.error
    assert "H-DUP-COLUMN" in outcome.plan.hazard_ids
    setup = check(outcome, "setup")[0]
    assert setup.details["recorded_already_done"] == [9]
    assert setup.details["ledger_after"] == 9
    assert_schema_is_reference(pg_dsn, pg_server.dsn, to)
    # a plain setup() of the target now has nothing left to fail on
    env = envs.ensure_env(envs.parse_version_set(to))
    envs.run_worker(env, "setup", {"dsn": pg_dsn}, timeout=300)
    assert_newest_reads_every_thread(pg_dsn, "2.0.12")


def test_migrate_rebuilds_invalid_index(pg_server, pg_dsn):
    load_era(pg_dsn, "3.0.1")
    make_invalid_index(pg_dsn)
    outcome = api.migrate(settings(pg_dsn, pg_server.dsn))
    assert outcome.error is None, outcome.error
    assert [r.details["kind"] for r in check(outcome, "repair")] == ["invalid_index"]
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "SELECT x.indisvalid, x.indisunique FROM pg_index x"
            " WHERE x.indexrelid = 'checkpoints_thread_id_idx'::regclass"
        ).fetchone()
    assert row == (True, False)
    assert_schema_is_reference(pg_dsn, pg_server.dsn)
    assert_newest_reads_every_thread(pg_dsn, "3.0.1")


def test_eight_migrators_at_once(pg_server, pg_dsn, tmp_path):
    load_era(pg_dsn, "2.0.8")
    procs = [
        subprocess.Popen(
            [
                CLI,
                "migrate",
                "--dsn",
                pg_dsn,
                "--scratch-dsn",
                pg_server.dsn,
                "--wait",
                "600",
                *ACCEPT,
                "-q",
                "--json",
                str(tmp_path / f"run{i}.json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,  # migrate writes its default backup dir here
        )
        for i in range(8)
    ]
    results = [(p.wait(timeout=800), p.stderr.read() if p.stderr else "") for p in procs]
    assert [rc for rc, _ in results] == [0] * 8, results
    reports = [json.loads((tmp_path / f"run{i}.json").read_text()) for i in range(8)]

    def applied(report: dict[str, Any]) -> bool:
        setup = [c for c in report["checks"] if c["check"] == "setup"]
        repairs = [c for c in report["checks"] if c["check"] == "repair"]
        return bool(repairs) or bool(setup and setup[0]["details"]["applied"])

    assert sum(applied(r) for r in reports) == 1
    with psycopg.connect(pg_dsn) as conn:
        ledger = [r[0] for r in conn.execute("SELECT v FROM checkpoint_migrations ORDER BY v")]
    assert ledger == list(range(10))
    assert_schema_is_reference(pg_dsn, pg_server.dsn)


def _hold_lock(dsn: str, release: threading.Event, held: threading.Event) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("LOCK TABLE checkpoints IN SHARE MODE")  # a long-running transaction
        held.set()
        release.wait(120)
        conn.rollback()


def test_lock_held_on_checkpoints_exit_4_nothing_applied(pg_server, pg_dsn, tmp_path):
    load_era(pg_dsn, "1.0.0")  # pending: every migration, incl. an index on checkpoints
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(pg_dsn, release, held))
    holder.start()
    try:
        assert held.wait(30)
        before = public_state(pg_dsn)
        fast = settings(pg_dsn, pg_server.dsn, lock_timeout=0.5, retries=2, backoff=0.2)
        with pytest.raises(LockTimeoutError, match="checkpoints"):
            api.migrate(fast)
        assert public_state(pg_dsn) == before
        proc = subprocess.run(
            [
                CLI,
                "migrate",
                "--dsn",
                pg_dsn,
                "--scratch-dsn",
                pg_server.dsn,
                "--retries",
                "1",
                "--lock-timeout",
                "0.5",
                *ACCEPT,
                "-q",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # migrate writes its default backup dir here
            timeout=600,
        )
        assert proc.returncode == 4, proc.stderr
        assert "Nothing was changed" in proc.stderr
        assert public_state(pg_dsn) == before
    finally:
        release.set()
        holder.join()


def test_lock_clears_while_migrate_retries(pg_server, pg_dsn):
    load_era(pg_dsn, "1.0.0")
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(pg_dsn, release, held))
    holder.start()
    assert held.wait(30)
    timer = threading.Timer(3.0, release.set)
    timer.start()
    try:
        started = time.monotonic()
        outcome = api.migrate(settings(pg_dsn, pg_server.dsn, retries=8, backoff=0.5))
    finally:
        release.set()
        holder.join()
    assert outcome.error is None, outcome.error
    assert time.monotonic() - started >= 3.0
    assert_schema_is_reference(pg_dsn, pg_server.dsn)


def test_migrate_refuses_role_without_create(pg_server, pg_dsn, unprivileged, tmp_path):  # noqa: F811
    before = catalog_state(pg_dsn)
    proc = subprocess.run(
        [CLI, "migrate", "--dsn", unprivileged, "--scratch-dsn", pg_server.dsn, "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # migrate writes its default backup dir here
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    assert "P-PRIVILEGE" in proc.stderr and "Nothing was changed" in proc.stderr
    assert catalog_state(pg_dsn) == before


def test_migrate_bad_dsn_exit_3(pg_server, tmp_path):
    import uuid

    secret = uuid.uuid4().hex  # generated: no password is written in this file
    dsn = psycopg.conninfo.make_conninfo(
        pg_server.dsn, dbname="no_such_db_h1", password=secret, connect_timeout=3
    )
    proc = subprocess.run(
        [CLI, "migrate", "--dsn", dsn, "--scratch-dsn", pg_server.dsn, "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # migrate writes its default backup dir here
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert secret not in proc.stderr + proc.stdout


def test_dry_run_is_plan(pg_server, pg_dsn, tmp_path):
    load_era(pg_dsn, "2.0.8")
    before = catalog_state(pg_dsn)
    proc = subprocess.run(
        [
            CLI,
            "migrate",
            "--dry-run",
            "--dsn",
            pg_dsn,
            "--scratch-dsn",
            pg_server.dsn,
            "--to",
            "langgraph-checkpoint-postgres==2.0.12",
            "-q",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # migrate writes its default backup dir here
        timeout=600,
    )
    assert proc.returncode == 1
    assert "H-LEDGER-SHIFT" in proc.stdout
    assert catalog_state(pg_dsn) == before
