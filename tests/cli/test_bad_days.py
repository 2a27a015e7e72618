"""Issue 12 B-D: bad inputs and bad days through ``migrator.cli.main``.

Each case asserts the exit code, a one-line message, that no password shows and
that nothing changed in the database (its catalog and every table's rows).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrator import fixtures

pytestmark = [pytest.mark.timeout(600)]

FIXTURE = Path(__file__).resolve().parents[2] / "canary_fixtures" / "3.0.1"
SECRET = "s3cret-Pw-1234"

CATALOG_SQL = """
    SELECT n.nspname, c.relname, c.relkind,
           coalesce(string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod),
                               ',' ORDER BY a.attnum), '')
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
    GROUP BY 1, 2, 3 ORDER BY 1, 2
"""
ROWS_SQL = "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"


def db_state(dsn: str) -> dict[str, Any]:
    """The catalog (schemas, relations, columns) and a checksum of every table's rows."""
    state: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema, name, kind, columns in conn.execute(CATALOG_SQL).fetchall():
            entry: Any = (kind, columns)
            if kind in ("r", "p"):
                query = sql.SQL(ROWS_SQL).format(sql.Identifier(schema, name))
                entry = (kind, columns, tuple(conn.execute(query).fetchone() or ()))
            state[f"{schema}.{name}"] = entry
    return state


def with_password(dsn: str) -> str:
    """``dsn`` with a password the server ignores (trust auth), to check it never shows."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["password"] = SECRET
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed (progress lines start with '…')."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("…")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    return lines[0]


@pytest.fixture
def loaded(pg_default: Any) -> Any:
    """A fresh database holding the 3.0.1 fixture's checkpoint tables."""
    from migrator.postgres import scratch_database

    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, FIXTURE)
        yield dsn


# ----------------------------------------------------------------- 11: --raiseerr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["backup", "--dsn", f"postgresql://u:{SECRET}@127.0.0.1:1/db", "--out", "{tmp}/b"], 3),
        (["upgrade-check", "--from", "langgraph-checkpoint-postgres==9.9.9", "--pg", "x"], 2),
    ],
    ids=["environment", "usage"],
)
def test_raiseerr_never_changes_the_exit_code(tmp_path: Path, args: list[str], code: int) -> None:
    """Issue 12 #11: --raiseerr adds a traceback, never another exit code."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    plain = run_cli(*argv)
    traced = run_cli("--raiseerr", *argv)
    assert plain.returncode == traced.returncode == code, (plain.stderr, traced.stderr)
    error_line(plain)
    assert "Traceback" in traced.stderr or code == 2
    assert traced.stderr.strip().splitlines()[-1] == plain.stderr.strip().splitlines()[-1]
    assert SECRET not in traced.stderr + traced.stdout
    assert not (tmp_path / "b").exists()
