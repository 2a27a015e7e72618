"""The restore's fast paths: list encoding, read-back loading, value comparison, sampling.

Pure, no database: each fast path is checked against the slow path it replaces
(the new saver's own serializer, the canonical digests).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Interrupt, Send
from pydantic import BaseModel

from migrator.worker.decode import Decoder
from migrator.worker.dumpencode import dump_encode
from migrator.worker.readback import (
    SAMPLE_ONE_IN,
    Digests,
    PreparedThread,
    ReadBack,
    Sameness,
    sampled,
)
from migrator.worker.serde_cache import SELF_CHECKS, ListEncodingSerde, ReadBackSerde

SERDE = JsonPlusSerializer()


class Color(enum.Enum):
    RED = "red"


class Model(BaseModel):
    name: str
    tags: list[str]


@dataclasses.dataclass
class Record:
    label: str
    weight: float


def _conversation(turns: int) -> list[Any]:
    messages: list[Any] = []
    for i in range(turns):
        messages.append(HumanMessage(content=f"question {i}", id=f"h{i}"))
        call = {"name": "search", "args": {"q": f"q{i}", "n": i}, "id": f"c{i}"}
        messages.append(AIMessage(content="", id=f"a{i}", tool_calls=[call]))
        messages.append(ToolMessage(content="x" * (i * 50), tool_call_id=f"c{i}", id=f"t{i}"))
    return messages


RICH: list[Any] = [
    HumanMessage(content="hi", id="1"),
    None,
    7,
    "text",
    1.5,
    -0.0,
    {"a": [1, {"b": 2}], 3: "int key"},
    [[], [[]], (1, "two")],
    dt.datetime(2024, 5, 17, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.date(2024, 1, 2),
    uuid.UUID(int=7),
    Decimal("1234.5678"),
    Color.RED,
    Model(name="m", tags=["x"]),
    Record(label="r", weight=0.5),
    {"alpha", "beta"},
    frozenset({1, 2}),
    b"\x00\x01",
    Send("node", {"arg": 1}),
    Interrupt(value="ask"),
]


# --------------------------------------------------------------------------- ListEncodingSerde


def test_growing_message_list_encodes_exactly_like_the_serializer() -> None:
    serde = ListEncodingSerde(SERDE)
    messages = _conversation(8)  # 24 messages: fixarray up to 15, then array16
    for n in range(1, len(messages) + 1):
        version = messages[:n]  # the same objects, as a restore's decoded versions share them
        assert serde.dumps_typed(version) == SERDE.dumps_typed(version)
    assert serde.enabled and serde.checks_left == 0  # joined and trusted after SELF_CHECKS
    assert len(messages) > SELF_CHECKS


@pytest.mark.parametrize("value", [RICH, list(reversed(RICH)), [RICH, RICH[:3]]])
def test_rich_elements_encode_exactly_like_the_serializer(value: list[Any]) -> None:
    serde = ListEncodingSerde(SERDE)
    serde.checks_left = 0  # no self-check: the joined bytes themselves are compared
    for _ in range(2):  # once encoded, once from the memo
        assert serde.dumps_typed(value) == SERDE.dumps_typed(value)


@pytest.mark.parametrize(
    "value",
    [
        [],
        [1, 2, 3],
        ["a", HumanMessage(content="m")],
        {"k": [HumanMessage(content="m")]},
        (HumanMessage(content="m"),),
        None,
        b"raw",
        HumanMessage(content="m"),
    ],
)
def test_everything_else_is_the_serializer_itself(value: Any) -> None:
    serde = ListEncodingSerde(SERDE)
    assert serde.dumps_typed(value) == SERDE.dumps_typed(value)
    assert serde.checks_left == SELF_CHECKS  # not joined


class _Opaque:
    """Not msgpack-encodable: the serializer pickles the whole list or raises."""

    def __reduce__(self) -> Any:
        return (_Opaque, ())


def test_an_element_the_serializer_cannot_msgpack_falls_back_to_the_whole_list() -> None:
    pickling = JsonPlusSerializer(pickle_fallback=True)
    value = [HumanMessage(content="m", id="1"), _Opaque()]
    expected = pickling.dumps_typed(value)
    assert expected[0] == "pickle"
    assert ListEncodingSerde(pickling).dumps_typed(value)[0] == "pickle"
    strict = ListEncodingSerde(SERDE)
    with pytest.raises(Exception) as raised:
        SERDE.dumps_typed(value)
    with pytest.raises(type(raised.value)):
        strict.dumps_typed(value)


class _NotCompositional:
    """A serializer whose list bytes are not the join of its element bytes."""

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        data = SERDE.dumps_typed(obj)[1]
        odd = isinstance(obj, list) and len(obj) > 1 and obj[0] is not None  # not a header probe
        return "msgpack", data + b"!" if odd else data


def test_self_check_switches_the_join_off_when_bytes_differ() -> None:
    inner = _NotCompositional()
    serde = ListEncodingSerde(inner)
    value = [HumanMessage(content="a"), HumanMessage(content="b")]
    assert serde.dumps_typed(value) == inner.dumps_typed(value)
    assert not serde.enabled
    assert serde.dumps_typed(value) == inner.dumps_typed(value)


def test_only_the_plain_json_plus_serializer_is_supported() -> None:
    class Custom(JsonPlusSerializer):
        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            return "msgpack", b""

    assert ListEncodingSerde.supports(SERDE)
    assert not ListEncodingSerde.supports(Custom())
    assert not ListEncodingSerde.supports(object())


def test_clear_forgets_elements() -> None:
    serde = ListEncodingSerde(SERDE)
    message = HumanMessage(content="before", id="1")
    serde.dumps_typed([message, message])
    message.content = "after"  # only allowed after clear(): a new thread
    serde.clear()
    assert serde.dumps_typed([message, message]) == SERDE.dumps_typed([message, message])


# --------------------------------------------------------------------------- ReadBackSerde


def test_read_back_loads_like_the_serializer_and_shares_prefix_elements() -> None:
    messages = _conversation(6)
    serde = ReadBackSerde(SERDE)
    newest_first = [SERDE.dumps_typed(messages[:n]) for n in range(len(messages), 0, -1)]
    loaded = [serde.loads_typed(data) for data in newest_first]
    assert loaded == [SERDE.loads_typed(data) for data in newest_first]
    longest = loaded[0]
    for value in loaded[1:]:
        assert all(a is b for a, b in zip(value, longest, strict=False))
    assert serde.loads_typed(newest_first[0]) is longest  # equal bytes: one object
    serde.clear()
    assert serde.loads_typed(newest_first[0]) is not longest


@pytest.mark.parametrize(
    "values",
    [
        [[1, 2, 3], [1, 2], [1, 2, 4], [1]],
        [[HumanMessage(content="a")], [AIMessage(content="a")]],
        [RICH, RICH[:5], RICH[1:4], [RICH[0]], list(range(40)), list(range(20))],
        [{"a": 1}, "text", None, b"\x00", [], [[1, 2], [1]], [[1, 2]]],
    ],
)
def test_read_back_of_unrelated_and_nested_values(values: list[Any]) -> None:
    serde = ReadBackSerde(SERDE)
    for value in values:
        data = SERDE.dumps_typed(value)
        assert serde.loads_typed(data) == SERDE.loads_typed(data)


def test_read_back_keeps_the_longest_reference_lists() -> None:
    serde = ReadBackSerde(SERDE)
    long = _conversation(4)
    serde.loads_typed(SERDE.dumps_typed(long))
    for i in range(20):  # many short unrelated arrays (pending writes)
        serde.loads_typed(SERDE.dumps_typed([HumanMessage(content=f"w{i}"), i]))
    first = serde.loads_typed(SERDE.dumps_typed(long[:5]))
    assert first == long[:5]
    assert first[0] is serde.loads_typed(SERDE.dumps_typed(long))[0]


# --------------------------------------------------------------------------- Sameness


def _round_trip(value: Any) -> Any:
    return SERDE.loads_typed(SERDE.dumps_typed(value))


@pytest.mark.parametrize("value", [*RICH, RICH, _conversation(3), float("nan"), [float("nan")]])
def test_a_value_and_its_read_back_compare_as_their_digests_do(value: Any) -> None:
    got = _round_trip(value)
    same = Sameness()(value, got)
    assert same == (Digests()(value) == Digests()(got))
    assert same or _has_tuple(value)  # a tuple reads back as a list: different, by digest too


def _has_tuple(value: Any) -> bool:
    if isinstance(value, tuple):
        return True
    return isinstance(value, list) and any(map(_has_tuple, value))


@pytest.mark.parametrize(
    ("want", "got"),
    [
        (1, True),
        (1, 1.0),
        (0.0, -0.0),
        ([1, 2], [1, 2, 3]),
        ([1, 2], (1, 2)),
        ({"a": 1}, {"a": True}),
        ({"a": [1, 2]}, {"a": [1, 3]}),
        (HumanMessage(content="a", id="1"), HumanMessage(content="b", id="1")),
        (HumanMessage(content="a", id="1"), AIMessage(content="a", id="1")),
        ([HumanMessage(content="a", id="1")], [HumanMessage(content="a", id="2")]),
        (Color.RED, "red"),
        (Model(name="m", tags=["x"]), {"name": "m", "tags": ["x"]}),
    ],
)
def test_a_real_difference_is_different_as_by_digest(want: Any, got: Any) -> None:
    digest = Digests()
    assert digest(want) != digest(got)  # what the digest comparison reports
    assert not Sameness()(want, got)


def test_equal_by_digest_but_not_by_eq_is_the_same() -> None:
    # the canonical encoding ignores empty/default message fields; == does not
    want = HumanMessage(content="a", id="1")
    got = HumanMessage(content="a", id="1", name="")
    assert want != got
    assert Digests()(want) == Digests()(got)
    assert Sameness()(want, got)


def test_growing_lists_compare_each_new_pair_once() -> None:
    messages = _conversation(5)
    read = [_round_trip(m) for m in messages]
    same = Sameness()
    calls = 0
    compare = same._equal

    def counting(want: Any, got: Any) -> bool:
        nonlocal calls
        calls += 1
        return compare(want, got)

    same._equal = counting  # type: ignore[method-assign]
    for n in range(1, len(messages) + 1):
        assert same(messages[:n], read[:n])
    assert calls == 2 * len(messages)  # each list once, each element pair once
    changed = [*read[:-1], HumanMessage(content="other", id="x")]
    assert not same(messages, changed)


def test_pending_writes_in_any_order() -> None:
    same = Sameness()
    message = HumanMessage(content="m", id="1")
    want = [("t1", "messages", [message]), ("t1", "a", 1), ("t2", "a", 2)]
    got = [("t2", "a", 2), ("t1", "messages", [_round_trip(message)]), ("t1", "a", 1)]
    assert same.writes(want, got)
    assert same.writes([("t", "a", 1), ("t", "a", 2)], [("t", "a", 2), ("t", "a", 1)])
    assert not same.writes(want, got[:2])
    assert not same.writes([("t", "a", 1)], [("t", "a", 2)])
    assert not same.writes([("t", "a", 1)], [("u", "a", 1)])


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("value", [*RICH, RICH, {"__x": 1, "y": [None, 2.5]}, float("inf")])
def test_decoder_rebuilds_the_dump_encoding(value: Any) -> None:
    decoder = Decoder([f"{__name__}.Color", f"{__name__}.Model", f"{__name__}.Record"])
    rebuilt = decoder.decode(dump_encode(value))
    assert Digests()(rebuilt) == Digests()(value)


def test_decoder_records_the_tags_and_classes_it_rebuilt() -> None:
    decoder = Decoder([f"{__name__}.Color"])
    decoder.decode(dump_encode([HumanMessage(content="m"), Color.RED, {1: 2}, "plain"]))
    assert decoder.seen == {
        "message",
        "langchain_core.messages.HumanMessage",
        "enum",
        f"{__name__}.Color",
        "dict",
    }


# --------------------------------------------------------------------------- sampling


def _thread(thread_id: str, classes: set[str], changed: bool = False) -> PreparedThread:
    return PreparedThread([{"thread_id": thread_id}], frozenset(classes), changed)


def test_sample_lot_is_deterministic_and_about_one_in_twenty() -> None:
    ids = [f"thread-{i}" for i in range(4000)]
    chosen = [t for t in ids if sampled(t)]
    assert chosen == [t for t in ids if sampled(t)]
    assert 0.5 / SAMPLE_ONE_IN < len(chosen) / len(ids) < 1.5 / SAMPLE_ONE_IN


def test_sample_reads_first_new_classes_changed_and_the_lot() -> None:
    check = ReadBack(_FakeSaver(), None, "sample")
    lot = next(f"t{i}" for i in range(1000) if sampled(f"t{i}"))
    plain = next(f"t{i}" for i in range(1000) if not sampled(f"t{i}"))

    wanted = check._choose
    assert wanted(_thread(plain, {"message"}))  # the first thread
    assert not wanted(_thread(plain, {"message"}))
    assert wanted(_thread(plain, {"message", "enum"}))  # a class not read back yet
    assert not wanted(_thread(plain, {"enum"}))
    assert wanted(_thread(plain, set(), changed=True))  # a transform changed it
    assert wanted(_thread(lot, {"message"}))
    full = ReadBack(_FakeSaver(), None, "full")
    assert all(full.wanted(_thread(plain, set())) for _ in range(3))


class _FakeSaver:
    serde = SERDE


def test_nan_and_signed_zero_follow_the_digest() -> None:
    same = Sameness()
    assert same(float("nan"), float("nan"))
    assert not same(0.0, -0.0)
    assert math.copysign(1.0, -0.0) < 0
