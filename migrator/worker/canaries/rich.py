"""The ``rich_values`` canary: state holding types JSON cannot, checked after a resume.

The custom types live at module level here so that every version environment
can import them by the same path when it loads the checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel

from migrator.worker import compat, trace
from migrator.worker.canaries import Canary


class CanaryColor(enum.Enum):
    """An Enum stored in state (H-STRICT-MSGPACK turns it into its raw value)."""

    RED = "red"
    GREEN = "green"


class CanaryModel(BaseModel):
    """A pydantic model stored in state (H-STRICT-MSGPACK turns it into a dict)."""

    name: str
    count: int
    tags: list[str]


@dataclasses.dataclass
class CanaryRecord:
    """A dataclass stored in state (H-STRICT-MSGPACK turns it into a dict)."""

    label: str
    weight: float


def rich_values() -> dict[str, Any]:
    """The fixed values the ``make`` node writes (one per supported type)."""
    return {
        "when": dt.datetime(
            2024, 5, 17, 12, 30, 45, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))
        ),
        "when_utc": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "amount": Decimal("1234.5678"),
        "ident": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "color": CanaryColor.GREEN,
        "tags": {"alpha", "beta", "gamma"},
        "pair": (1, "two", 3.5),
        "raw": b"\x00\x01canary\xff",
        "model": CanaryModel(name="widget", count=3, tags=["x", "y"]),
        "record": CanaryRecord(label="rec", weight=2.5),
    }


# What the app relies on. ``pair`` is left out: msgpack serializers of every
# era give a tuple back as a list, in the version that wrote it too.
_TYPES: dict[str, type] = {
    "when": dt.datetime,
    "when_utc": dt.datetime,
    "amount": Decimal,
    "ident": uuid.UUID,
    "color": CanaryColor,
    "tags": set,
    "raw": bytes,
    "model": CanaryModel,
    "record": CanaryRecord,
}


class _RichState(TypedDict, total=False):
    when: Any
    when_utc: Any
    amount: Any
    ident: Any
    color: Any
    tags: Any
    pair: Any
    raw: Any
    model: Any
    record: Any
    checked: Any


def _make(state: _RichState, config: RunnableConfig) -> dict[str, Any]:
    trace.hit("rich_values", "make", config)
    return rich_values()


def _check(state: _RichState, config: RunnableConfig) -> dict[str, Any]:
    """Uses the loaded values as an app would; raises when any came back altered."""
    trace.hit("rich_values", "check", config)
    expected = rich_values()
    wrong = [
        f"{key}: {type(state.get(key)).__name__} {state.get(key)!r}"
        for key, kind in _TYPES.items()
        if not isinstance(state.get(key), kind) or state.get(key) != expected[key]
    ]
    if wrong:
        raise TypeError("rich_values loaded altered values: " + "; ".join(wrong))
    # The loaded types of every value go into state, so the values digest shows them.
    loaded = ",".join(f"{key}={type(state.get(key)).__name__}" for key in sorted(expected))
    return {"checked": f"{state['model'].name}:{state['record'].label}:{loaded}"}


class RichValuesCanary(Canary):
    """``make`` writes one value of each rich type; the thread is paused before ``check``."""

    name = "rich_values"
    resumable = True
    expected_seed_trace = ("make",)
    expected_resume_trace = ("check",)

    def unsupported_reason(self, info: Mapping[str, str | None]) -> str | None:
        return compat.metadata_json_rejects(rich_values())

    def build(self, checkpointer: Any) -> Any:
        state_graph, start, end = compat.graph_api()
        graph = state_graph(_RichState)
        graph.add_node("make", _make)
        graph.add_node("check", _check)
        graph.add_edge(start, "make")
        graph.add_edge("make", "check")
        graph.add_edge("check", end)
        return graph.compile(checkpointer=checkpointer, interrupt_before=["check"])

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke({"checked": ""}, config)

    def resume(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke(None, config)
