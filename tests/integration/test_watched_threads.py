"""--thread: a real thread is copied (never modified) into the check database and watched."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from migrator import api, envs
from migrator.config import CheckSettings, PgChoice
from migrator.errors import ConfigError
from migrator.postgres import scratch_database

OLD = "langgraph-checkpoint-postgres==2.0.25"


def _table_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
            ).fetchone()[0]
            for t in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
        }


@pytest.fixture(scope="module")
def app_database(pg_default):
    """A database an app on the old version wrote one thread to (id ``app-thread-1``)."""
    env = envs.ensure_env(envs.parse_version_set(OLD))
    with scratch_database(pg_default) as dsn:
        envs.run_worker(env, "setup", {"dsn": dsn}, timeout=300)
        envs.run_worker(
            env,
            "seed",
            {"dsn": dsn, "canaries": ["interrupt_before"], "user_canaries": None},
            timeout=300,
        )
        with psycopg.connect(dsn) as conn:
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
                conn.execute(
                    sql.SQL("UPDATE {} SET thread_id = 'app-thread-1'").format(
                        sql.Identifier(table)
                    )
                )
        yield dsn


@pytest.mark.slow
def test_watched_thread_is_checked_and_source_untouched(pg_default, app_database):
    before = _table_counts(app_database)
    report = api.upgrade_check(
        CheckSettings(
            from_spec=OLD,
            pg=PgChoice(provider="url", dsn=pg_default.dsn),
            canaries=("messages",),
            threads=("app-thread-1",),
            threads_from=app_database,
        )
    )
    watched = [c for c in report.checks if c.thread_id == "app-thread-1"]
    assert {c.check for c in watched} == {"drift", "rolling-deploy", "rollback", "resume"}
    (resume,) = [c for c in watched if c.check == "resume"]  # says why, not a blank cell
    assert resume.status == "skip" and resume.summary.startswith("not resumed: ")
    checked = [c for c in watched if c.check != "resume"]
    assert all(c.status == "pass" for c in checked), [c.to_dict() for c in checked]
    assert _table_counts(app_database) == before


def test_missing_thread_is_a_usage_error(app_database):
    from migrator.threads import copy_threads

    with scratch_database(app_database) as target:
        with pytest.raises(ConfigError, match="no-such-thread"):
            copy_threads(app_database, target, ["app-thread-1", "no-such-thread"])
