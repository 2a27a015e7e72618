"""The dump's fast paths agree with the plain ones they replace (pure, no database).

* the type inventory collected while encoding = :func:`inventory` of the output;
* a list that reuses its elements' blob encodings = ``dump_encode`` of the list;
* a message list loaded through the growing-list path = the serializer's list;
* :class:`GzipLines` writes what ``gzip.open(path, "wt")`` writes.
"""

from __future__ import annotations

import dataclasses
import enum
import gzip
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Interrupt, Send
from pydantic import BaseModel

from migrator.worker.dumpencode import DumpEncoder, dump_encode, inventory
from migrator.worker.dumpfile import GzipLines
from migrator.worker.encode import MAX_DEPTH
from migrator.worker.op_dump import BlobTable, _dump_thread, _Tally
from migrator.worker.serde_cache import CachingSerde

SERDE = JsonPlusSerializer()


class Color(enum.Enum):
    RED = "red"


class Model(BaseModel):
    a: int = 1
    items: list[Any] = []


@dataclasses.dataclass
class Box:
    value: Any
    __type__: Any = "not a tag"  # a field inventory() would read as a tag


class Boom(HumanMessage):
    """Fails half-way through its encoding (after a field holding a model)."""

    def __getattribute__(self, name: str) -> Any:
        if name == "name" and object.__getattribute__(self, "__dict__")["content"] == "boom":
            raise RuntimeError("boom")
        return super().__getattribute__(name)


def _walked(value: Any) -> set[str]:
    found: set[str] = set()
    inventory(value, found)
    return found


MESSAGES = [
    HumanMessage(content="hi", id="1"),
    AIMessage(content="", id="2", tool_calls=[{"name": "f", "args": {"q": [1]}, "id": "c"}]),
    ToolMessage(content="r", tool_call_id="c", status="error"),
]
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.sampled_from(
        [
            *MESSAGES,
            Color.RED,
            Model(),
            Interrupt(value="ask", id="i"),
            Send("n", 1),
            Boom(content="boom", additional_kwargs={"m": Model()}),
        ]
    ),
)
_KEYS = st.one_of(
    st.text(max_size=4), st.integers(), st.sampled_from(["class", "__type__", "__x", "fields"])
)
VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(_KEYS, inner, max_size=4),
        st.builds(lambda v: Model(items=[v]), inner),
        st.builds(Box, inner),
        st.builds(lambda v: Interrupt(value=v, id="z"), inner),
    ),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=list(HealthCheck))
@given(VALUES)
def test_types_collected_while_encoding_are_what_inventory_finds(value: Any) -> None:
    encoded, found = DumpEncoder().encode_found(value)
    assert json.dumps(encoded) == json.dumps(dump_encode(value))
    assert set(found) == _walked(encoded)


@pytest.mark.parametrize(
    "value",
    [
        {"class": MESSAGES[0]},  # inventory() does not look inside a "class" key
        {"x": {"class": [Model()]}, "y": MESSAGES[1]},
        Box({"class": MESSAGES[2]}),
        [Boom(content="boom", additional_kwargs={"m": Model()}), MESSAGES[0]],  # a marker
    ],
)
def test_odd_keys_and_markers(value: Any) -> None:
    encoded, found = DumpEncoder().encode_found(value)
    assert set(found) == _walked(encoded)


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def _cyclic() -> tuple[list[Any], dict[str, Any]]:
    outer: list[Any] = []
    item = {"outer": outer}
    outer.append(item)
    return outer, item


@pytest.mark.parametrize("levels", [MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
def test_list_reusing_blob_elements_equals_its_plain_encoding(levels: int) -> None:
    deep = _nested(levels)
    table = BlobTable()
    table._encode([deep, *MESSAGES])  # encoded alone, for a blob
    value = [MESSAGES[1], "s", deep, 3, MESSAGES[0]]
    encoded, found = table.encode(value)
    assert encoded == dump_encode(value)
    assert set(found) == _walked(encoded)


def test_list_holding_an_element_that_refers_to_it_is_encoded_anew() -> None:
    outer, item = _cyclic()
    table = BlobTable()
    table._encode([item])
    assert table.encode(outer)[0] == dump_encode(outer)


def _tuple(i: int, values: dict[str, Any], writes: list[Any]) -> Any:
    versions = {name: f"v{i:03d}" for name in values}
    return SimpleNamespace(
        config={"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": f"c{i}"}},
        checkpoint={"v": 4, "id": f"c{i}", "channel_values": values, "channel_versions": versions},
        metadata={"step": i},
        parent_config=None,
        pending_writes=writes,
    )


def test_a_threads_types_are_a_walk_of_its_lines() -> None:
    messages: list[Any] = []
    tuples = []
    for i, message in enumerate(MESSAGES * 2):
        messages = [*messages, message]
        values = {"messages": messages, "class": Model(), "__type__": "x", "n": i}
        tuples.append(_tuple(i, values, [("task", "messages", [message, 1.5])]))
    out, tally = SimpleNamespace(lines=[]), _Tally()
    out.write = out.lines.append
    _dump_thread("t", [("", {}, tuples[::-1])], out, tally)  # type: ignore[arg-type]
    walked: set[str] = set()
    for line in out.lines:
        inventory(json.loads(line), walked)
    assert tally.types == walked
    assert tally.records == len(tuples) and not tally.errors


def test_growing_lists_load_as_the_serializer_loads_them() -> None:
    messages = [HumanMessage(content=f"m{i}", id=str(i)) for i in range(20)]  # array16 from 16
    versions = [SERDE.dumps_typed(messages[:n]) for n in range(1, 21)]
    for order in (versions, versions[::-1]):  # oldest first, newest first
        cache = CachingSerde(SERDE)
        loaded = [cache.loads_typed(v) for v in order]
        assert loaded == [SERDE.loads_typed(v) for v in order]
        longest = max(loaded, key=len)
        assert all(a is b for lst in loaded for a, b in zip(lst, longest, strict=False))
        assert cache.loads_typed(order[3]) is loaded[3]


def test_gzip_lines_writes_what_gzip_text_mode_writes(tmp_path: Path) -> None:
    lines = [
        json.dumps({"n": i, "s": "é" * (i % 7)}, ensure_ascii=False) + "\n" for i in range(500)
    ]
    with gzip.open(tmp_path / "plain.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(lines)
    with GzipLines(str(tmp_path / "fast.gz"), compresslevel=4, chunk=1000) as out:
        for line in lines:
            out.write(line)
    assert gzip.decompress((tmp_path / "fast.gz").read_bytes()) == gzip.decompress(
        (tmp_path / "plain.gz").read_bytes()
    )


def test_gzip_lines_raises_what_the_text_mode_raises(tmp_path: Path) -> None:
    with pytest.raises(UnicodeEncodeError), GzipLines(str(tmp_path / "x.gz"), 4) as out:
        out.write("\ud800\n")


def test_versions_of_a_growing_list_are_not_split_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from migrator.worker import serde_cache

    messages = [HumanMessage(content=f"m{i}", id=str(i)) for i in range(20)]
    versions = [SERDE.dumps_typed(messages[:n]) for n in range(1, 21)]
    cache = CachingSerde(SERDE)
    for v in versions[:10]:  # oldest first: each version extends the one before
        cache.loads_typed(v)
    splits: list[int] = []
    spans = serde_cache._spans
    monkeypatch.setattr(serde_cache, "_spans", lambda *a: splits.append(a[2]) or spans(*a))
    cache.loads_typed(versions[-1])
    assert splits == [10]  # only the 10 new elements
    for v in versions[10:-1]:  # shorter ones: a prefix of the longest, nothing to split
        assert cache.loads_typed(v) == SERDE.loads_typed(v)
    assert splits == [10]
