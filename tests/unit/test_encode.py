"""Type-tagged canonical encoding (``migrator.worker.encode``): pure, no database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from collections import namedtuple
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from migrator.snapshot import dumps
from migrator.worker.encode import (
    _EMPTY,
    _NO_DEFAULT,
    MAX_DEPTH,
    _is_empty_or_default,
    _model_fields,
    canonical_dumps,
    encode,
    error_entry,
)


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class User(BaseModel):
    name: str
    age: int = 0


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


Pair = namedtuple("Pair", "a b")


def test_json_scalars_stay() -> None:
    for value in ("x", 1, True, False, None, 1.5, [1, "a"], {"a": 1}):
        assert encode(value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (float("nan"), {"__type__": "float", "value": "nan"}),
        (float("-inf"), {"__type__": "float", "value": "-inf"}),
        ((1, "a"), {"__type__": "tuple", "items": [1, "a"]}),
        ({3, 1, 2}, {"__type__": "set", "items": [1, 2, 3]}),
        (frozenset({"b", "a"}), {"__type__": "frozenset", "items": ["a", "b"]}),
        (b"\x00ab", {"__type__": "bytes", "base64": "AGFi"}),
        (bytearray(b"ab"), {"__type__": "bytearray", "base64": "YWI="}),
        (dt.date(2024, 1, 2), {"__type__": "date", "iso": "2024-01-02"}),
        (dt.time(10, 30), {"__type__": "time", "iso": "10:30:00"}),
        (
            dt.timedelta(days=1, seconds=2, microseconds=3),
            {"__type__": "timedelta", "days": 1, "seconds": 2, "microseconds": 3},
        ),
        (Decimal("1.10"), {"__type__": "Decimal", "value": "1.10"}),
        (
            uuid.UUID(int=1),
            {"__type__": "UUID", "value": "00000000-0000-0000-0000-000000000001"},
        ),
        ({1: "a"}, {"__type__": "dict", "items": [[1, "a"]]}),
        ({"__x": 1}, {"__type__": "dict", "items": [["__x", 1]]}),
    ],
)
def test_tagged_types(value: Any, expected: Any) -> None:
    assert encode(value) == expected


def test_datetime_keeps_timezone() -> None:
    aware = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    naive = aware.replace(tzinfo=None)
    assert encode(aware) == {
        "__type__": "datetime",
        "iso": "2024-01-02T03:04:05+02:00",
        "tz": "UTC+02:00",
    }
    assert encode(naive) == {"__type__": "datetime", "iso": "2024-01-02T03:04:05"}


def test_enum_class_and_raw_value() -> None:
    assert encode(Color.RED) == {
        "__type__": "enum",
        "class": f"{__name__}.Color",
        "value": "red",
    }
    assert encode(Level.HIGH)["value"] == 3
    assert encode(Color.RED) != encode("red")


def test_pydantic_model_differs_from_its_dict() -> None:
    model = User(name="ada", age=3)
    tagged = encode(model)
    assert tagged == {
        "__type__": "pydantic",
        "class": f"{__name__}.User",
        "fields": {"name": "ada", "age": 3},
    }
    assert tagged != encode(model.model_dump())


def test_pydantic_v1_model() -> None:
    from pydantic import v1

    class Old(v1.BaseModel):
        a: int = 1

    tagged = encode(Old())
    assert tagged["__type__"] == "pydantic"
    assert tagged["fields"] == {"a": 1}


def test_dataclass_and_namedtuple() -> None:
    assert encode(Point(1)) == {
        "__type__": "dataclass",
        "class": f"{__name__}.Point",
        "fields": {"x": 1, "y": 0},
    }
    assert encode(Pair(1, 2)) == {
        "__type__": "namedtuple",
        "class": f"{__name__}.Pair",
        "fields": {"a": 1, "b": 2},
    }


def test_unknown_object_masks_addresses() -> None:
    class Thing:
        pass

    tagged = encode(Thing())
    assert tagged["__type__"] == "object"
    assert tagged["class"].endswith("Thing")
    assert "0x?" in tagged["repr"]
    assert encode(Thing()) == tagged


def test_failing_value_becomes_error_at_its_level() -> None:
    class Broken(BaseModel):
        a: int = 1

        def __getattribute__(self, name: str) -> Any:
            if name == "a":
                raise RuntimeError("boom")
            return super().__getattribute__(name)

    out = encode({"ok": 1, "bad": Broken()})
    assert out["ok"] == 1
    assert out["bad"]["fields"]["a"] == {"__error__": "RuntimeError: boom"}


def test_cycle_and_depth_guards() -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    out = encode(cyclic)
    assert out[0] == 1
    assert out[1]["__error__"].startswith("UnencodableValue: cyclic")
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH + 50):
        deep = [deep]
    text = canonical_dumps(encode(deep))
    assert "nested deeper than" in text
    shared = [1]
    assert encode([shared, shared]) == [[1], [1]]  # shared, not cyclic


def test_error_entry() -> None:
    assert error_entry(KeyError("x")) == {"__error__": "KeyError: 'x'"}
    assert error_entry(ValueError()) == {"__error__": "ValueError"}


def test_send_and_interrupt() -> None:
    from langgraph.types import Interrupt, Send

    assert encode(Send("node", {"a": 1})) == {
        "__type__": "Send",
        "node": "node",
        "arg": {"a": 1},
    }
    assert encode(Interrupt(value="ask", id="abc")) == {"__type__": "Interrupt", "value": "ask"}
    assert encode(Interrupt(value="ask", id="other")) == encode(Interrupt(value="ask", id="abc"))


class TestMessages:
    def test_defaults_and_empties_are_dropped(self) -> None:
        from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

        assert encode(HumanMessage(content="hi", id="1")) == {
            "__type__": "message",
            "class": "HumanMessage",
            "fields": {"content": "hi", "id": "1"},
        }
        bare = AIMessage(content="x", id="2")
        padded = AIMessage(
            content="x",
            id="2",
            additional_kwargs={},
            response_metadata={},
            tool_calls=[],
            invalid_tool_calls=[],
            usage_metadata=None,
            example=False,
            name=None,
        )
        assert encode(bare) == encode(padded)
        tool = encode(ToolMessage(content="r", tool_call_id="c1", status="success"))
        assert tool["fields"] == {"content": "r", "tool_call_id": "c1"}
        failed = encode(ToolMessage(content="r", tool_call_id="c1", status="error"))
        assert failed["fields"]["status"] == "error"

    def test_tool_calls_are_stable(self) -> None:
        from langchain_core.messages import AIMessage

        message = AIMessage(
            content="", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "c1"}], id="m"
        )
        fields = encode(message)["fields"]
        # newer langchain-core adds "type": "tool_call"; older did not
        assert fields["tool_calls"] == [{"name": "f", "args": {"a": 1}, "id": "c1"}]
        assert fields["content"] == ""

    def test_message_differs_from_its_dict(self) -> None:
        from langchain_core.messages import HumanMessage

        message = HumanMessage(content="hi")
        assert encode(message) != encode(message.model_dump())

    def test_lc_envelope_dicts_stay_plain(self) -> None:
        envelope = {
            "lc": 1,
            "type": "constructor",
            "id": ["langchain", "schema", "messages", "HumanMessage"],
            "kwargs": {"content": "hi"},
        }
        assert encode(envelope) == envelope


# --------------------------------------------------------------------------- properties

_keys = st.one_of(st.text(max_size=5), st.integers(), st.tuples(st.integers()))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.datetimes(timezones=st.none() | st.timezones()),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(_keys, inner, max_size=4),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=4)), max_size=4),
    ),
    max_leaves=25,
)


@given(_values)
def test_encoding_round_trips_through_canonical_json(value: Any) -> None:
    tagged = encode(value)
    text = canonical_dumps(tagged)
    assert json.loads(text) == tagged
    assert canonical_dumps(json.loads(text)) == text
    assert dumps(tagged) == text  # host and worker agree


@given(_values)
def test_encoding_is_deterministic(value: Any) -> None:
    assert canonical_dumps(encode(value)) == canonical_dumps(encode(value))


@given(st.sets(st.one_of(st.integers(), st.text(max_size=4)), max_size=8), st.randoms())
def test_set_order_does_not_matter(items: set[Any], rnd: Any) -> None:
    ordered = list(items)
    rnd.shuffle(ordered)
    assert canonical_dumps(encode(set(ordered))) == canonical_dumps(encode(items))


@given(st.dictionaries(st.integers(), st.integers(), max_size=8), st.randoms())
def test_dict_insertion_order_does_not_matter(mapping: dict[int, int], rnd: Any) -> None:
    keys = list(mapping)
    rnd.shuffle(keys)
    shuffled = {k: mapping[k] for k in keys}
    assert canonical_dumps(encode(shuffled)) == canonical_dumps(encode(mapping))


@given(st.dictionaries(st.text(max_size=4), st.integers(), min_size=1, max_size=8))
def test_tagged_dict_items_are_in_canonical_key_order(mapping: dict[str, int]) -> None:
    tagged = encode({"__dunder": 0, **mapping})  # a "__" key: items, not an object
    keys = [k for k, _ in tagged["items"]]
    assert keys == sorted(keys, key=canonical_dumps)


def test_tagged_dict_keys_json_orders_differently() -> None:
    # '"a"' > '"a b"' (the quote sorts after the space) though "a" < "a b"; 'a"' is
    # written '"a\\""', after '"a#"'
    keys = [k for k, _ in encode({"__x": 0, "a": 1, "a b": 2, "a!": 3, 'a"': 4, "a#": 5})["items"]]
    assert keys == ["__x", "a b", "a!", "a", "a#", 'a"']


_SAMPLES = [None, "", "x", [], [0], {}, {"a": 1}, (), (1,), 0, 1, False, True, 1.5, "success"]


@pytest.mark.parametrize("raw", _SAMPLES)
@pytest.mark.parametrize("default", [*_SAMPLES, _NO_DEFAULT])
def test_empty_or_default_is_the_documented_rule(raw: Any, default: Any) -> None:
    empty = any(raw is e or (type(raw) is type(e) and raw == e) for e in _EMPTY)
    same = default is not _NO_DEFAULT and type(raw) is type(default) and raw == default
    assert _is_empty_or_default(raw, default) == (empty or same)


def test_model_defaults_follow_a_replaced_field_table() -> None:
    class Late(BaseModel):
        a: int = 1

    value = Late()
    assert _model_fields(value) == {"a": 1}
    assert _model_fields(value) is _model_fields(Late())  # computed once per class
    old = Late.__pydantic_fields__
    try:
        Late.__pydantic_fields__ = {**old, "a": FieldInfo(default=2)}
        assert _model_fields(value) == {"a": 2}
    finally:
        Late.__pydantic_fields__ = old
