"""The tool's own ledger on every Postgres major: Alembic-managed, beside the app's own Alembic."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator import fixtures, ledger
from migrator.errors import ConfigError

FIXTURE_208 = Path(__file__).resolve().parents[2] / "canary_fixtures" / "2.0.8"
PUBLIC_RELATIONS_SQL = (
    "SELECT c.relname, c.relkind, c.relfilenode FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') ORDER BY c.relname"
)
LEDGER_TABLES = {"backups", "canaries", "goldens", "migrator_ledger_version", "runs"}


def _rows(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def _tables(dsn: str, schema: str) -> set[str]:
    return {
        r[0] for r in _rows(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    }


def test_upgrade_from_empty_creates_schema_and_own_version_table(pg_dsn: str) -> None:
    assert ledger.ledger_revision(pg_dsn) is None
    head = ledger.upgrade_ledger(pg_dsn)
    assert head == ledger.head_revision() == "0001"
    assert _tables(pg_dsn, "langgraph_migrator") == LEDGER_TABLES
    assert _rows(pg_dsn, "SELECT version_num FROM langgraph_migrator.migrator_ledger_version") == [
        (head,)
    ]
    # Nothing outside the ledger schema: no alembic_version, no checkpoint table.
    assert _tables(pg_dsn, "public") == set()
    assert ledger.ledger_revision(pg_dsn) == head


def test_second_upgrade_is_a_no_op(pg_dsn: str) -> None:
    head = ledger.upgrade_ledger(pg_dsn)
    ledger.record_run(pg_dsn, {"verdict": "pass"})
    assert ledger.upgrade_ledger(pg_dsn) == head
    assert _rows(pg_dsn, "SELECT count(*) FROM langgraph_migrator.migrator_ledger_version") == [
        (1,)
    ]
    assert len(ledger.list_runs(pg_dsn)) == 1  # data survives


def test_app_alembic_version_and_checkpoint_tables_are_untouched(pg_dsn: str) -> None:
    fixtures.import_tables(pg_dsn, FIXTURE_208)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY)"
        )
        conn.execute("INSERT INTO public.alembic_version VALUES ('app_rev_42')")
    before = _rows(pg_dsn, PUBLIC_RELATIONS_SQL)
    counts = {
        t: _rows(pg_dsn, f"SELECT count(*) FROM {t}")[0][0]
        for t in ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations")
    }

    ledger.upgrade_ledger(pg_dsn)
    ledger.upgrade_ledger(pg_dsn)

    assert _rows(pg_dsn, "SELECT version_num FROM public.alembic_version") == [("app_rev_42",)]
    assert _tables(pg_dsn, "public") == {
        "alembic_version",
        "checkpoints",
        "checkpoint_blobs",
        "checkpoint_writes",
        "checkpoint_migrations",
    }
    assert _rows(pg_dsn, PUBLIC_RELATIONS_SQL) == before  # same tables and indexes, not rewritten
    for table, n in counts.items():
        assert _rows(pg_dsn, f"SELECT count(*) FROM {table}")[0][0] == n


def test_canary_and_golden_round_trip(pg_dsn: str) -> None:
    ledger.upgrade_ledger(pg_dsn)
    versions = {"langgraph": "0.6.9", "langgraph-checkpoint-postgres": "2.0.25"}
    entry = {
        "canary": "messages",
        "error": None,
        "checkpoints": [{"checkpoint_id": "1ef", "metadata": {"step": 2**62, "s": "a\u0000é"}}],
        "state": {"values": {"x": [1.5, None, True]}},
    }
    snapshot = {"format": "langgraph-migrator/snapshot@1", "versions": versions}
    snapshot["threads"] = {"canary:messages": entry, "canary:other": {}}

    ledger.record_canary(pg_dsn, "canary:messages", "messages", versions, trace=[{"node": "a"}])
    ledger.save_golden(pg_dsn, "canary:messages", "messages", snapshot, versions)
    ledger.save_golden(pg_dsn, "real-thread-1", None, entry, versions)

    goldens = ledger.load_goldens(pg_dsn)
    assert [g.thread_id for g in goldens] == ["canary:messages", "real-thread-1"]
    assert goldens[0].snapshot == entry  # a whole snapshot is reduced to the thread's entry
    assert goldens[0].versions == versions and goldens[0].canary == "messages"
    assert goldens[1].canary is None and goldens[1].snapshot == entry
    assert isinstance(goldens[0].seeded_at, dt.datetime) and goldens[0].seeded_at.tzinfo

    (canary,) = ledger.list_canaries(pg_dsn)
    assert (canary.thread_id, canary.canary, canary.status) == (
        "canary:messages",
        "messages",
        "seeded",
    )
    assert canary.versions == versions
    assert canary.seeded_by == _rows(pg_dsn, "SELECT current_user")[0][0]

    # Replacing keeps one row per thread; forgetting removes both kinds of row.
    ledger.save_golden(pg_dsn, "canary:messages", "messages", {"changed": True}, versions)
    assert [g.snapshot for g in ledger.load_goldens(pg_dsn)][0] == {"changed": True}
    assert ledger.forget_threads(pg_dsn, ["canary:messages"]) == 1
    assert [g.thread_id for g in ledger.load_goldens(pg_dsn)] == ["real-thread-1"]
    with pytest.raises(ConfigError, match="no thread"):
        ledger.save_golden(pg_dsn, "missing", None, snapshot, versions)


def test_run_round_trip(pg_dsn: str) -> None:
    ledger.upgrade_ledger(pg_dsn)
    started = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    run = {
        "command": "migrate",
        "from_versions": {"langgraph-checkpoint-postgres": "2.0.8"},
        "to_versions": {"langgraph-checkpoint-postgres": "3.2.0"},
        "plan": {"steps": [{"sql": "ALTER TABLE checkpoint_writes ADD COLUMN task_path text"}]},
        "applied_statements": ["ALTER TABLE checkpoint_writes ADD COLUMN task_path text"],
        "repairs": [],
        "verdict": "pass",
        "timings": {"setup": 0.25},
        "started_at": started,
        "finished_at": started.timestamp() + 3,
    }
    first = ledger.record_run(pg_dsn, run)
    second = ledger.record_run(pg_dsn, {"command": "verify", "verdict": "fail"})
    assert second == first + 1
    got = ledger.list_runs(pg_dsn)[0]
    assert got.id == first
    for key in ("command", "from_versions", "to_versions", "plan", "applied_statements"):
        assert getattr(got, key) == run[key], key
    assert (got.repairs, got.verdict, got.timings) == ([], "pass", {"setup": 0.25})
    assert got.started_at == started
    assert got.finished_at == started + dt.timedelta(seconds=3)
    assert got.client_host == socket.gethostname()
    assert got.db_user == _rows(pg_dsn, "SELECT current_user")[0][0]
    assert got.tool_version
    with pytest.raises(ValueError, match="unknown field"):
        ledger.record_run(pg_dsn, {"verdcit": "pass"})
    assert len(ledger.list_runs(pg_dsn)) == 2


def test_backup_round_trip(pg_dsn: str) -> None:
    ledger.upgrade_ledger(pg_dsn)
    manifest = {"tables": {"checkpoints": {"rows": 44, "sha256": "ab" * 32}}}
    bid = ledger.record_backup(pg_dsn, "backup", "backups/2026-01-02", manifest)
    sid = ledger.record_backup(pg_dsn, "shadow-tables", "lgm_shadow.checkpoints", None)
    ledger.set_backup_status(pg_dsn, bid, "verified")
    backups = ledger.list_backups(pg_dsn)
    assert [(b.id, b.kind, b.status) for b in backups] == [
        (bid, "backup", "verified"),
        (sid, "shadow-tables", "created"),
    ]
    assert backups[0].manifest == manifest and backups[0].location == "backups/2026-01-02"
    with pytest.raises(ValueError, match="backup kind"):
        ledger.record_backup(pg_dsn, "tarball", "x")
    with pytest.raises(ConfigError, match="no backup"):
        ledger.set_backup_status(pg_dsn, 999, "deleted")
    with pytest.raises(psycopg.errors.CheckViolation):  # the database enforces it too
        _rows(
            pg_dsn,
            "INSERT INTO langgraph_migrator.backups (kind, location) VALUES ('x', 'y')",
        )


def test_readers_see_no_ledger_and_writers_refuse(pg_dsn: str) -> None:
    assert ledger.load_goldens(pg_dsn) == []
    assert ledger.list_canaries(pg_dsn) == []
    assert ledger.list_runs(pg_dsn) == []
    assert ledger.list_backups(pg_dsn) == []
    with pytest.raises(ConfigError, match="no 'langgraph_migrator' ledger") as info:
        ledger.record_run(pg_dsn, {"verdict": "pass"})
    assert info.value.exit_code == 2 and info.value.hint
    assert _rows(pg_dsn, "SELECT to_regnamespace('langgraph_migrator')") == [(None,)]


def test_sqlalchemy_url_from_dsn_forms() -> None:
    url = ledger.sqlalchemy_url("postgresql://app:s%40cret@db.example:6543/appdb?sslmode=disable")
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "app",
        "s@cret",
        "db.example",
        6543,
        "appdb",
    )
    assert url.query == {"sslmode": "disable"}
    socket_url = ledger.sqlalchemy_url(
        "host=/pg-socket-dir port=5433 dbname=x user=u password='a b'"
    )
    assert socket_url.host is None and socket_url.password == "a b"
    assert socket_url.query == {"host": "/pg-socket-dir", "port": "5433"}
    assert "a b" not in str(socket_url)  # SQLAlchemy masks the password when printed
    with pytest.raises(ConfigError):
        ledger.sqlalchemy_url("host=x port")
