"""The dump's msgpack element splitting and memoized loading (pure, no database)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from migrator.worker.serde_cache import CachingSerde, msgpack_array_items

SERDE = JsonPlusSerializer()

LISTS: list[list[Any]] = [
    [],
    [HumanMessage(content="hi", id="1"), AIMessage(content="x" * 300, id="2")],
    [ToolMessage(content="t", tool_call_id="c1", id="3")] * 20,  # array16
    [1, -1, 200, -200, 70000, -70000, 2**40, -(2**40), 2**63, 1.5, None, True, False],
    ["s" * 10, "s" * 40, "s" * 300, "s" * 70000, b"\x00" * 10, b"\x00" * 300],
    [{"a": [1, {"b": 2}], "c": {}}, {str(i): i for i in range(20)}, [[], [[]]]],
    [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), uuid.UUID(int=7), {1, 2}],
]


@pytest.mark.parametrize("value", LISTS)
def test_elements_load_like_the_whole_array(value: list[Any]) -> None:
    type_, data = SERDE.dumps_typed(value)
    assert type_ == "msgpack"
    spans = msgpack_array_items(data)
    assert spans is not None and len(spans) == len(value)
    assert [SERDE.loads_typed(("msgpack", data[a:b])) for a, b in spans] == SERDE.loads_typed(
        (type_, data)
    )
    assert CachingSerde(SERDE).loads_typed((type_, data)) == value


@pytest.mark.parametrize("value", [{"a": 1}, "text", 5, HumanMessage(content="m")])
def test_non_arrays_are_not_split(value: Any) -> None:
    assert msgpack_array_items(SERDE.dumps_typed(value)[1]) is None


def test_truncated_or_trailing_bytes_are_not_split() -> None:
    data = SERDE.dumps_typed([HumanMessage(content="hello"), 1])[1]
    assert msgpack_array_items(data[:-3]) is None
    assert msgpack_array_items(data + b"\x01") is None


def test_repeated_elements_load_once_as_one_object() -> None:
    first, second = HumanMessage(content="a", id="1"), AIMessage(content="b", id="2")
    cache = CachingSerde(SERDE)
    short = cache.loads_typed(SERDE.dumps_typed([first]))
    longer = cache.loads_typed(SERDE.dumps_typed([first, second]))
    assert short == [first] and longer == [first, second]
    assert longer[0] is short[0]
    cache.clear()
    assert cache.loads_typed(SERDE.dumps_typed([first]))[0] is not short[0]
