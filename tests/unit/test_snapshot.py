"""Host-side snapshot helpers (``migrator.snapshot``): pure, no database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import ConfigError
from migrator.snapshot import (
    FORMAT,
    Snapshot,
    checkpoint_index,
    dumps,
    format_path,
    is_error,
    iter_checkpoints,
    iter_errors,
    load_snapshot,
    save_snapshot,
    short_hash,
    type_of,
)


def _checkpoint(ns: str, cid: str, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "checkpoint_ns": ns,
        "checkpoint_id": cid,
        "parent_checkpoint_id": None,
        "metadata": {"source": "input", "step": -1},
        "channel_values": {"n": 1},
        "pending_writes": [],
        "error": None,
    }
    record.update(extra)
    return record


def _data() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "versions": {"langgraph": "1.2.22", "python": "3.11.7"},
        "threads": {
            "t2": {
                "canary": None,
                "error": {"__error__": "NoSuchThread: no checkpoint"},
                "checkpoints": [],
                "state": None,
                "history": None,
            },
            "t1": {
                "canary": "basic",
                "error": None,
                "checkpoints": [
                    _checkpoint("", "a"),
                    _checkpoint(
                        "sub:x",
                        "b",
                        channel_values={"m": {"__error__": "ValueError: bad"}},
                    ),
                ],
                "state": None,
                "history": None,
            },
        },
    }


def test_dumps_is_canonical() -> None:
    assert dumps({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'
    with pytest.raises(ValueError):
        dumps(float("nan"))


def test_short_hash_is_stable_and_order_free() -> None:
    assert short_hash({"a": 1, "b": 2}) == short_hash({"b": 2, "a": 1})
    assert len(short_hash([1])) == 12
    assert short_hash({"a": 1}) != short_hash({"a": 1.0})


def test_round_trip() -> None:
    snapshot = Snapshot.from_json(_data())
    assert snapshot.thread_ids == ["t1", "t2"]
    assert snapshot.versions["langgraph"] == "1.2.22"
    again = Snapshot.from_json(json.loads(snapshot.dumps()))
    assert again == snapshot
    assert again.to_json() == _data()


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"format": "other@1", "versions": {}, "threads": {}},
        {"format": FORMAT, "versions": [], "threads": {}},
        {"format": FORMAT, "versions": {}, "threads": {"t": {"checkpoints": None}}},
    ],
)
def test_from_json_rejects_non_snapshots(data: Any) -> None:
    with pytest.raises(ConfigError):
        Snapshot.from_json(data)


def test_iteration_helpers() -> None:
    snapshot = Snapshot.from_json(_data())
    refs = list(iter_checkpoints(snapshot))
    assert [(r.thread_id, r.checkpoint_ns, r.checkpoint_id) for r in refs] == [
        ("t1", "", "a"),
        ("t1", "sub:x", "b"),
    ]
    assert refs[1].path == ("threads", "t1", "checkpoints", 1)
    assert set(checkpoint_index(snapshot, "t1")) == {("", "a"), ("sub:x", "b")}
    assert checkpoint_index(snapshot, "missing") == {}
    assert snapshot.thread_errors() == {"t2": "NoSuchThread: no checkpoint"}
    errors = list(iter_errors(snapshot.to_json()))
    assert errors == [
        (("threads", "t1", "checkpoints", 1, "channel_values", "m"), "ValueError: bad"),
        (("threads", "t2", "error"), "NoSuchThread: no checkpoint"),
    ]


def test_format_path_and_type_of() -> None:
    assert format_path(("threads", "t-1", "checkpoints", 0, "metadata")) == (
        '$.threads["t-1"].checkpoints[0].metadata'
    )
    assert type_of(None) == "null"
    assert type_of(True) == "bool"
    assert type_of(1) == "int"
    assert type_of(1.0) == "float"
    assert type_of({"a": 1}) == "object"
    assert type_of({"__error__": "x"}) == "error"
    assert type_of({"__type__": "pydantic", "class": "m.U", "fields": {}}) == "pydantic:m.U"
    assert type_of({"__type__": "set", "items": []}) == "set"
    assert is_error({"__error__": "x"}) and not is_error({"__error__": "x", "y": 1})


def test_save_and_load(tmp_path: Path) -> None:
    snapshot = Snapshot.from_json(_data())
    target = save_snapshot(snapshot, tmp_path / "snap.json")
    assert target.read_text(encoding="utf-8") == snapshot.dumps() + "\n"
    assert load_snapshot(target) == snapshot
    assert not list(tmp_path.glob(".*partial"))


def test_load_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_snapshot(tmp_path / "absent.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": ', encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON") as info:
        load_snapshot(corrupt)
    assert info.value.hint
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"format": "x"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="unsupported snapshot format"):
        load_snapshot(foreign)


def test_save_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot write"):
        save_snapshot(Snapshot.from_json(_data()), tmp_path / "no" / "snap.json")
