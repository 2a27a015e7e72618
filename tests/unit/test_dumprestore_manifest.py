"""Dump manifests with parts, shard splits and dump sets (no database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrator.dumprestore.manifest import (
    MANIFEST_FORMAT,
    DumpSet,
    file_sha256,
    load_dump_set,
    load_manifest,
    manifest_from,
    manifest_path,
    merge_parts,
    sub_shards,
    swap_refusal,
)
from migrator.errors import ConfigError


def _hash_shard(h: int, shard: tuple[int, int]) -> bool:
    return h % shard[1] == shard[0]


@given(
    st.integers(min_value=0, max_value=2**31 - 1),
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=6),
    st.data(),
)
def test_sub_shards_partition_their_shard(h: int, n: int, jobs: int, data: Any) -> None:
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    parts = sub_shards((index, n), jobs)
    hits = [p for p in parts if _hash_shard(h, p)]
    # exactly one sub-shard holds h when the shard does, none otherwise
    assert len(hits) == (1 if _hash_shard(h, (index, n)) else 0)


def test_sub_shards_of_everything() -> None:
    assert sub_shards(None, 3) == [(0, 3), (1, 3), (2, 3)]


def _result(threads: dict[str, int], size: int, shard: list[int] | None = None) -> dict[str, Any]:
    return {
        "bytes": size,
        "records": sum(threads.values()),
        "threads": {
            t: {"checkpoints": n, "writes": 0, "namespaces": 1} for t, n in threads.items()
        },
        "types": ["langchain_core.messages.ai.AIMessage"],
        "errors": [],
        "blobs": 2,
        "shard": shard,
        "versions": {"langgraph": "1.0.0"},
    }


def _write_dump(tmp: Path, name: str, results: list[dict[str, Any]], **extra: Any) -> Path:
    path = tmp / name
    path.write_bytes(b"x" * sum(r["bytes"] for r in results))
    manifest = merge_parts(path, results, sha256=file_sha256(path), **extra)
    manifest_path(path).write_text(json.dumps(manifest.to_dict()))
    return path


def test_parts_round_trip_through_the_manifest(tmp_path: Path) -> None:
    path = _write_dump(
        tmp_path, "a.lgdump", [_result({"t1": 3}, 10, [0, 2]), _result({"t2": 4}, 7, [1, 2])]
    )
    manifest = load_manifest(path)
    assert [(p.offset, p.size, p.shard, p.records) for p in manifest.parts] == [
        (0, 10, (0, 2), 3),
        (10, 7, (1, 2), 4),
    ]
    assert manifest.records == 7 and set(manifest.threads) == {"t1", "t2"}
    assert manifest.shard is None and not manifest.selected


def test_a_manifest_without_parts_is_one_part(tmp_path: Path) -> None:
    data = {"bytes": 12, "sha256": "0" * 64, "records": 2, "threads": {"t": {"checkpoints": 2}}}
    manifest = manifest_from(tmp_path / "old.lgdump", data)
    assert [(p.offset, p.size) for p in manifest.parts] == [(0, 12)]


@pytest.mark.parametrize(
    "parts",
    [
        [{"offset": 0, "bytes": 5}, {"offset": 6, "bytes": 6}],  # a gap
        [{"offset": 0, "bytes": 5}, {"offset": 5, "bytes": 5}],  # short of the file
        [{"offset": 0, "bytes": 12}, {"offset": 12, "bytes": 0}],  # an empty part
    ],
)
def test_parts_must_tile_the_file(tmp_path: Path, parts: list[dict[str, int]]) -> None:
    path = tmp_path / "d.lgdump"
    path.write_bytes(b"y" * 12)
    body = {
        "format": MANIFEST_FORMAT,
        "bytes": 12,
        "sha256": file_sha256(path),
        "records": 0,
        "threads": {},
        "parts": parts,
    }
    manifest_path(path).write_text(json.dumps(body))
    with pytest.raises(ConfigError, match="malformed"):
        load_manifest(path)


def _set(tmp: Path, specs: list[tuple[str, dict[str, int], Any]], **extra: Any) -> DumpSet:
    paths = [
        _write_dump(
            tmp, name, [_result(threads, 8, list(shard) if shard else None)], shard=shard, **extra
        )
        for name, threads, shard in specs
    ]
    return load_dump_set(paths)


def test_every_shard_together_may_swap(tmp_path: Path) -> None:
    dumps = _set(tmp_path, [("s0", {"a": 1}, (0, 2)), ("s1", {"b": 2}, (1, 2))])
    assert swap_refusal(dumps) is None
    assert dumps.records == 3 and set(dumps.threads) == {"a", "b"}
    assert len(dumps.parts) == 2


def test_a_missing_shard_refuses_the_swap(tmp_path: Path) -> None:
    dumps = _set(tmp_path, [("s0", {"a": 1}, (0, 3)), ("s2", {"c": 1}, (2, 3))])
    assert swap_refusal(dumps) == "shard(s) 1/3 are missing"


def test_shards_of_different_splits_refuse_the_swap(tmp_path: Path) -> None:
    dumps = _set(tmp_path, [("s0", {"a": 1}, (0, 2)), ("s1", {"b": 1}, (1, 3))])
    assert "different splits" in (swap_refusal(dumps) or "")


def test_selected_threads_refuse_the_swap(tmp_path: Path) -> None:
    dumps = _set(tmp_path, [("sel", {"a": 1}, None)], selected=True)
    assert "--thread" in (swap_refusal(dumps) or "")


def test_one_full_dump_may_swap(tmp_path: Path) -> None:
    assert swap_refusal(_set(tmp_path, [("all", {"a": 1, "b": 1}, None)])) is None


def test_a_thread_in_two_dumps_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="thread a is in both"):
        _set(tmp_path, [("s0", {"a": 1}, (0, 2)), ("s1", {"a": 1}, (1, 2))])


def test_the_same_dump_twice_is_refused(tmp_path: Path) -> None:
    path = _write_dump(tmp_path, "d", [_result({"a": 1}, 8)])
    with pytest.raises(ConfigError, match="given twice"):
        load_dump_set([path, path])


def test_dumps_of_different_versions_are_refused(tmp_path: Path) -> None:
    first = _write_dump(tmp_path, "s0", [_result({"a": 1}, 8, [0, 2])], shard=(0, 2))
    other = _result({"b": 1}, 8, [1, 2])
    other["versions"] = {"langgraph": "0.2.0"}
    second = _write_dump(tmp_path, "s1", [other], shard=(1, 2))
    with pytest.raises(ConfigError, match="different versions"):
        load_dump_set([first, second])
