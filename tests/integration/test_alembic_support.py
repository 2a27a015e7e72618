"""An app's own Alembic chain runs the checkpoint migrations safely (docs/alembic-example).

The example app (a ``users`` revision, then one calling ``run_checkpoint_migrations(op)``)
is upgraded with the real ``alembic upgrade head`` against databases set up by old
versions, in both transaction modes; the naive revision (``setup()`` on the
migration's connection) is shown to fail with H-TX-CONCURRENTLY on the same data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine
from sqlalchemy.pool import NullPool

from migrator import fixtures, ledger
from migrator.alembic_support import include_name, include_object, run_checkpoint_migrations
from migrator.errors import LockTimeoutError
from migrator.lock import advisory_lock
from migrator.postgres import Server, scratch_database

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "alembic-example"
FIXTURES = ROOT / "canary_fixtures"
CHECKPOINT_TABLES = {
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "checkpoint_migrations",
}
CURRENT_LAST_MIGRATION = 9  # checkpoint-postgres 3.x MIGRATIONS has v0..v9

NAIVE_REVISION = '''"""Naive: setup() on the migration's own connection, inside its transaction."""

from alembic import op
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    conn = op.get_bind().connection.driver_connection
    conn.row_factory = dict_row
    PostgresSaver(conn).setup()


def downgrade():
    pass
'''


def _url(dsn: str) -> str:
    return str(ledger.sqlalchemy_url(dsn).render_as_string(hide_password=False))


def _app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("__pycache__"))
    return app


def _alembic(app: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": _url(dsn)}
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(app / "alembic.ini"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=app,
    )


def _one(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    return None if row is None else row[0]


def _mode(per_migration: bool) -> list[str]:
    return ["-x", f"transaction_per_migration={'true' if per_migration else 'false'}"]


def _upgrade_and_check(pg_dsn: str, tmp_path: Path, era: str, per_migration: bool) -> None:
    """Upgrade the example app on a database set up by ``era``; check the outcome."""
    fixtures.import_tables(pg_dsn, FIXTURES / era)
    threads = _one(pg_dsn, "SELECT count(DISTINCT thread_id) FROM checkpoints")
    app = _app(tmp_path)

    proc = _alembic(app, pg_dsn, *_mode(per_migration), "upgrade", "head")

    assert proc.returncode == 0, proc.stderr
    assert _one(pg_dsn, "SELECT version_num FROM alembic_version") == "0002"
    assert _one(pg_dsn, "SELECT to_regclass('users') IS NOT NULL")
    assert _one(pg_dsn, "SELECT max(v) FROM checkpoint_migrations") == CURRENT_LAST_MIGRATION
    assert _one(
        pg_dsn,
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'checkpoint_writes' AND column_name = 'task_path'",
    )
    indexes = _one(
        pg_dsn,
        "SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE '%thread_id_idx'"
        " AND i.indisvalid",
    )
    assert indexes == [
        "checkpoint_blobs_thread_id_idx",
        "checkpoint_writes_thread_id_idx",
        "checkpoints_thread_id_idx",
    ]
    assert _one(pg_dsn, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
    assert _one(pg_dsn, "SELECT count(DISTINCT thread_id) FROM checkpoints") == threads
    # The migrator lock was released: another migrator can take it at once.
    with advisory_lock(pg_dsn, wait=0):
        pass
    # Autogenerate on the upgraded database proposes nothing (hooks in the example's env.py).
    check = _alembic(app, pg_dsn, "check")
    assert check.returncode == 0, check.stderr


@pytest.mark.slow
@pytest.mark.parametrize("per_migration", [True, False], ids=["per-migration", "one-txn"])
@pytest.mark.parametrize("era", ["1.0.0", "2.0.8"])
def test_alembic_upgrade_head_runs_checkpoint_migrations(
    pg_default: Server, tmp_path: Path, era: str, per_migration: bool
) -> None:
    with scratch_database(pg_default) as dsn:
        _upgrade_and_check(dsn, tmp_path, era, per_migration)


@pytest.mark.slow
def test_alembic_upgrade_head_on_every_major(pg_dsn: str, tmp_path: Path) -> None:
    _upgrade_and_check(pg_dsn, tmp_path, "1.0.0", per_migration=False)


@pytest.mark.slow
@pytest.mark.parametrize("per_migration", [True, False], ids=["per-migration", "one-txn"])
def test_setup_inside_the_migration_transaction_fails(
    pg_default: Server, tmp_path: Path, per_migration: bool
) -> None:
    """Without the autocommit block the same revision hits H-TX-CONCURRENTLY."""
    app = _app(tmp_path)
    (app / "versions" / "0002_checkpoints.py").write_text(NAIVE_REVISION)
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, FIXTURES / "1.0.0")  # no ledger: setup() runs v0..v9

        proc = _alembic(app, dsn, *_mode(per_migration), "upgrade", "head")

        assert proc.returncode != 0
        assert "ActiveSqlTransaction" in proc.stderr, proc.stderr
        assert "CREATE INDEX CONCURRENTLY cannot run inside a transaction block" in proc.stderr
        # The failed revision's transaction rolled back: no checkpoint ledger was created.
        assert _one(dsn, "SELECT to_regclass('checkpoint_migrations')") is None
        if per_migration:
            assert _one(dsn, "SELECT version_num FROM alembic_version") == "0001"
        else:
            assert _one(dsn, "SELECT to_regclass('users')") is None


def _migration_context(conn: Any, **opts: Any) -> MigrationContext:
    return MigrationContext.configure(conn, opts=opts)


def test_run_checkpoint_migrations_in_process(pg_default: Server) -> None:
    with scratch_database(pg_default) as dsn:
        engine = create_engine(_url(dsn), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                ctx = _migration_context(conn, transaction_per_migration=False)
                with ctx.begin_transaction():
                    Operations(ctx).execute("CREATE TABLE before_setup (id int)")
                    result = run_checkpoint_migrations(Operations(ctx))
                    Operations(ctx).execute("CREATE TABLE after_setup (id int)")
        finally:
            engine.dispose()
        assert result == {"ledger_before": None, "ledger_after": CURRENT_LAST_MIGRATION}
        assert _one(dsn, "SELECT to_regclass('before_setup') IS NOT NULL")
        assert _one(dsn, "SELECT to_regclass('after_setup') IS NOT NULL")


def test_run_checkpoint_migrations_waits_for_the_migrator_lock(pg_default: Server) -> None:
    with scratch_database(pg_default) as dsn:
        engine = create_engine(_url(dsn), poolclass=NullPool)
        try:
            with advisory_lock(dsn), engine.connect() as conn:
                ctx = _migration_context(conn)
                with ctx.begin_transaction(), pytest.raises(LockTimeoutError) as info:
                    run_checkpoint_migrations(Operations(ctx), lock_wait=0.5)
        finally:
            engine.dispose()
        assert info.value.exit_code == 4
        assert _one(dsn, "SELECT to_regclass('checkpoint_migrations')") is None  # nothing ran


def _example_metadata() -> MetaData:
    import importlib.util

    spec = importlib.util.spec_from_file_location("example_models", EXAMPLE / "models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metadata: MetaData = module.metadata
    return metadata


@pytest.mark.slow
def test_autogenerate_ignores_checkpoint_tables_and_ledger(
    pg_default: Server, tmp_path: Path
) -> None:
    metadata = _example_metadata()
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, FIXTURES / "2.0.8")
        assert _alembic(_app(tmp_path), dsn, "upgrade", "head").returncode == 0
        ledger.upgrade_ledger(dsn)
        engine = create_engine(_url(dsn), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                for include_schemas in (False, True):
                    ctx = _migration_context(
                        conn,
                        include_name=include_name,
                        include_object=include_object,
                        include_schemas=include_schemas,
                        target_metadata=metadata,
                    )
                    assert compare_metadata(ctx, metadata) == [], include_schemas
                # Control: without the hooks autogenerate would drop all of them.
                bare = _migration_context(conn, include_schemas=True)
                removed = {
                    d[1].name for d in compare_metadata(bare, metadata) if d[0] == "remove_table"
                }
        finally:
            engine.dispose()
    assert CHECKPOINT_TABLES <= removed
    assert {"canaries", "goldens", "runs", "backups"} <= removed
