"""restore-backup recognises the recorded DDL and runs its own statements (no database)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrator.backup.ddl import DdlRefused, check_restorable, parse_table_ddl
from migrator.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[2] / "canary_fixtures"
WRITES = (
    'CREATE TABLE "checkpoint_writes" (\n'
    '  "thread_id" text NOT NULL,\n'
    "  \"checkpoint_ns\" text DEFAULT ''::text NOT NULL,\n"
    '  "idx" integer NOT NULL,\n'
    '  "blob" bytea NOT NULL,\n'
    '  CONSTRAINT "checkpoint_writes_pkey" PRIMARY KEY (thread_id, checkpoint_ns, idx)\n'
    ")",
    'CREATE INDEX checkpoint_writes_thread_id_idx ON "checkpoint_writes" USING btree (thread_id)',
)


def _fixture_tables() -> list[tuple[str, list[str]]]:
    out = []
    for manifest in sorted(FIXTURES.glob("*/manifest.json")):
        for table in json.loads(manifest.read_text())["tables"]:
            out.append((table["name"], table["ddl"]))
    return out


def test_every_ddl_setup_wrote_in_every_era_is_recognised_and_reads_back() -> None:
    tables = _fixture_tables()
    assert tables
    for name, ddl in tables:
        assert parse_table_ddl(name, ddl).text() == tuple(ddl)


def test_statements_run_are_composed_by_the_tool() -> None:
    spec = parse_table_ddl("checkpoint_writes", WRITES)
    assert spec.create_table().as_string(None) == (
        'CREATE TABLE "checkpoint_writes" ("thread_id" text NOT NULL, '
        '"checkpoint_ns" text DEFAULT \'\'::text NOT NULL, "idx" integer NOT NULL, '
        '"blob" bytea NOT NULL, CONSTRAINT "checkpoint_writes_pkey" '
        'PRIMARY KEY ("thread_id", "checkpoint_ns", "idx"))'
    )
    assert [s.as_string(None) for s in spec.create_indexes()] == [
        'CREATE INDEX "checkpoint_writes_thread_id_idx" ON "checkpoint_writes"'
        ' USING btree ("thread_id")'
    ]


REFUSED = {
    "extra-table": [WRITES[0], "CREATE TABLE public.evil (x integer)"],
    "second-statement": [WRITES[0] + "; CREATE TABLE evil (x integer)"],
    "other-table": [WRITES[0].replace('"checkpoint_writes" (', '"evil" (', 1)],
    "index-on-other-table": [WRITES[0], 'CREATE INDEX i ON "checkpoints" USING btree (x)'],
    "expression-index": [WRITES[0], 'CREATE INDEX i ON "checkpoint_writes" USING btree (f(idx))'],
    "partial-index": [
        WRITES[0],
        'CREATE INDEX i ON "checkpoint_writes" USING btree (idx) WHERE (g(idx) > 0)',
    ],
    "check-constraint": [
        WRITES[0].replace("PRIMARY KEY (thread_id, checkpoint_ns, idx)", "CHECK (f())")
    ],
    "function-default": [WRITES[0].replace("''::text", "f()", 1)],
    "escaping-default": [WRITES[0].replace("''::text", "'x'::text); DROP TABLE t; --", 1)],
    "unknown-type": [WRITES[0].replace('"idx" integer', '"idx" evil', 1)],
    "unknown-column": [WRITES[0], 'CREATE INDEX i ON "checkpoint_writes" USING btree (nope)'],
    "comment": [WRITES[0] + " -- x"],
    "none": [],
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_anything_else_is_refused_naming_the_statement(case: str) -> None:
    with pytest.raises(DdlRefused, match=r"refused|no DDL") as info:
        parse_table_ddl("checkpoint_writes", REFUSED[case])
    assert "\n" not in str(info.value)


def test_backup_refuses_a_table_restore_would_not_recreate() -> None:
    check_restorable("public", "checkpoint_writes", WRITES)
    with pytest.raises(ConfigError, match="public.checkpoint_writes has DDL") as info:
        check_restorable("public", "checkpoint_writes", REFUSED["expression-index"])
    assert info.value.exit_code == 2 and "DDL statement 2" in str(info.value)
