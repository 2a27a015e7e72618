"""A ledger already at the newest revision is left alone without importing alembic.

``migrate`` upgrades the tool's ledger on every run, beside the live application;
importing alembic and SQLAlchemy for it cost ~0.9 s of CPU even when there was
nothing to upgrade (measured: the largest part of the tool's own CPU in
``bench/bench_load.py`` after its workers).
"""

from __future__ import annotations

import subprocess
import sys

import psycopg

from migrator.ledger import LEDGER_SCHEMA, VERSION_TABLE, head_revision, shipped_head
from migrator.postgres import Server, scratch_database

PROBE = """
import sys
from migrator.ledger import upgrade_ledger
print(upgrade_ledger(sys.argv[1]), "alembic" in sys.modules, "sqlalchemy" in sys.modules)
"""


def _upgrade_in_a_fresh_process(dsn: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, dsn], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_shipped_head_reads_the_same_head_as_alembic() -> None:
    assert shipped_head() == head_revision()


def test_upgrade_at_head_imports_no_alembic_and_without_ledger_still_creates_it(
    pg_default: Server,
) -> None:
    head = head_revision()
    with scratch_database(pg_default) as dsn:
        # No ledger yet: alembic creates it.
        assert _upgrade_in_a_fresh_process(dsn) == [head, "True", "True"]
        # At head: nothing to do, and nothing imported for it.
        assert _upgrade_in_a_fresh_process(dsn) == [head, "False", "False"]
        # The ledger gone again: alembic runs again.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {LEDGER_SCHEMA} CASCADE")
        assert _upgrade_in_a_fresh_process(dsn) == [head, "True", "True"]
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(f"SELECT version_num FROM {LEDGER_SCHEMA}.{VERSION_TABLE}")
            assert row.fetchone() == (head,)
