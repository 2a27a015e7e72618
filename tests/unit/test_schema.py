"""SchemaModel.from_catalog and diff_schemas: pure, on hand-written catalog data."""

from __future__ import annotations

import copy
from typing import Any

from migrator.schema import SchemaModel, diff_schemas


def _catalog(**overrides: Any) -> dict[str, Any]:
    cat: dict[str, Any] = {
        "schema": "public",
        "server": {"version_num": 180006, "version": "18.6", "port": "5432", "role": "app"},
        "privileges": {
            "schema_exists": True,
            "schema_create": True,
            "schema_usage": True,
            "database_create": False,
            "superuser": False,
        },
        "tables": [
            {"name": "checkpoint_migrations", "owner": "app", "owned": True},
            {"name": "checkpoint_writes", "owner": "app", "owned": True, "total_bytes": 8192},
        ],
        "columns": [
            {
                "table_name": "checkpoint_migrations",
                "name": "v",
                "type": "integer",
                "not_null": True,
                "default_expr": None,
            },
            {
                "table_name": "checkpoint_writes",
                "name": "thread_id",
                "type": "text",
                "not_null": True,
                "default_expr": None,
            },
            {
                "table_name": "checkpoint_writes",
                "name": "task_path",
                "type": "text",
                "not_null": True,
                "default_expr": "''::text",
            },
        ],
        "constraints": [
            {
                "table_name": "checkpoint_writes",
                "name": "checkpoint_writes_pkey",
                "kind": "p",
                "definition": "PRIMARY KEY (thread_id)",
            },
        ],
        "indexes": [
            {
                "table_name": "checkpoint_writes",
                "name": "checkpoint_writes_pkey",
                "definition": "CREATE UNIQUE INDEX checkpoint_writes_pkey"
                " ON public.checkpoint_writes USING btree (thread_id)",
                "is_unique": True,
                "is_primary": True,
                "valid": True,
                "ready": True,
                "constraint_backed": True,
            },
            {
                "table_name": "checkpoint_writes",
                "name": "checkpoint_writes_thread_id_idx",
                "definition": "CREATE INDEX checkpoint_writes_thread_id_idx"
                " ON public.checkpoint_writes USING btree (thread_id)",
                "is_unique": False,
                "is_primary": False,
                "valid": True,
                "ready": True,
                "constraint_backed": False,
            },
        ],
        "ledger": [0, 1, 2],
        "locks": [],
    }
    cat.update(overrides)
    return cat


def _without_column(cat: dict[str, Any], name: str) -> dict[str, Any]:
    out = copy.deepcopy(cat)
    out["columns"] = [c for c in out["columns"] if c["name"] != name]
    return out


def test_from_catalog_builds_tables_indexes_and_ledger():
    model = SchemaModel.from_catalog(_catalog())
    writes = model.tables["checkpoint_writes"]
    assert [c.name for c in writes.columns] == ["thread_id", "task_path"]
    assert (
        writes.primary_key is not None
        and writes.primary_key.definition == "PRIMARY KEY (thread_id)"
    )
    assert writes.index("checkpoint_writes_thread_id_idx").shape == (
        "CREATE INDEX ON checkpoint_writes USING btree (thread_id)"
    )
    assert model.ledger == (0, 1, 2) and model.ledger_max == 2
    assert model.privileges.role == "app" and not model.privileges.superuser
    assert model.has_checkpoint_tables and model.invalid_indexes == []


def test_equal_schemas_have_no_differences():
    model = SchemaModel.from_catalog(_catalog())
    assert diff_schemas(model, model) == []


def test_missing_column_is_an_error_with_the_reference_definition():
    ref = SchemaModel.from_catalog(_catalog())
    actual = SchemaModel.from_catalog(_without_column(_catalog(), "task_path"))
    (d,) = diff_schemas(actual, ref)
    assert (d.kind, d.table, d.name, d.severity) == (
        "missing_column",
        "checkpoint_writes",
        "task_path",
        "error",
    )
    assert d.expected == "\"task_path\" text DEFAULT ''::text NOT NULL"


def test_invalid_index_and_ledger_rows():
    cat = _catalog(ledger=[0, 1])
    cat["indexes"][1]["valid"] = False
    diffs = diff_schemas(SchemaModel.from_catalog(cat), SchemaModel.from_catalog(_catalog()))
    kinds = {(d.kind, d.severity) for d in diffs}
    assert kinds == {("invalid_index", "warning"), ("ledger_rows", "warning")}
    assert (
        SchemaModel.from_catalog(cat).invalid_indexes[0].name == "checkpoint_writes_thread_id_idx"
    )


def test_nullability_direction_sets_severity():
    ref = _catalog()
    loose = copy.deepcopy(ref)
    loose["columns"][2]["not_null"] = False
    (d,) = diff_schemas(SchemaModel.from_catalog(loose), SchemaModel.from_catalog(ref))
    assert (d.kind, d.severity) == ("column_nullability", "warning")
    (d,) = diff_schemas(SchemaModel.from_catalog(ref), SchemaModel.from_catalog(loose))
    assert (d.kind, d.severity) == ("column_nullability", "error")  # target writes NULLs


def test_app_tables_are_ignored_and_missing_table_reported():
    ref = SchemaModel.from_catalog(_catalog())
    cat = _catalog()
    cat["tables"].append({"name": "app_users"})
    cat["columns"].append(
        {
            "table_name": "app_users",
            "name": "id",
            "type": "int",
            "not_null": True,
            "default_expr": None,
        }
    )
    assert diff_schemas(SchemaModel.from_catalog(cat), ref) == []
    empty = SchemaModel.from_catalog(
        _catalog(tables=[], columns=[], indexes=[], constraints=[], ledger=None)
    )
    assert {d.kind for d in diff_schemas(empty, ref)} == {"missing_table"}


def test_extra_not_null_column_without_default_blocks_inserts():
    ref = SchemaModel.from_catalog(_catalog())
    cat = _catalog()
    cat["columns"].append(
        {
            "table_name": "checkpoint_writes",
            "name": "tenant",
            "type": "text",
            "not_null": True,
            "default_expr": None,
        }
    )
    (d,) = diff_schemas(SchemaModel.from_catalog(cat), ref)
    assert (d.kind, d.severity) == ("extra_column", "error")
