"""Worker op ``snapshot`` against real Postgres, with the newest langgraph in this venv."""

from __future__ import annotations

import operator
import sys
import time
import types
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import psycopg
import pytest
from psycopg.rows import dict_row

import migrator.worker
from migrator.snapshot import Snapshot, iter_errors
from migrator.worker import op_snapshot

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def dsn(pg_dsn: str) -> str:
    """A fresh database per test (``pg_dsn`` from tests/conftest.py; it skips with a
    reason when no server can be provided)."""
    return pg_dsn


class _State(TypedDict):
    items: Annotated[list, operator.add]
    n: int


class _SubState(TypedDict):
    items: Annotated[list, operator.add]


def _build(checkpointer: Any) -> Any:
    """Parent ``a`` -> subgraph ``child`` (``inner`` pauses in it) -> ``b``."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    def inner(state: _SubState) -> dict[str, Any]:
        answer = interrupt("approve?")
        return {"items": [answer]}

    sub = StateGraph(_SubState)
    sub.add_node("inner", inner)
    sub.add_edge(START, "inner")
    sub.add_edge("inner", END)

    def a(state: _State) -> dict[str, Any]:
        return {"items": ["a", {1, 2}], "n": state["n"] + 1}

    def b(state: _State) -> dict[str, Any]:
        return {"items": ["b"], "n": state["n"] * 2}

    graph = StateGraph(_State)
    graph.add_node("a", a)
    graph.add_node("child", sub.compile())
    graph.add_node("b", b)
    graph.add_edge(START, "a")
    graph.add_edge("a", "child")
    graph.add_edge("child", "b")
    graph.add_edge("b", END)
    return graph.compile(checkpointer=checkpointer)


@pytest.fixture
def fake_canaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in for ``migrator.worker.canaries`` with one canary, ``paused``."""
    canary = types.SimpleNamespace(name="paused", thread_id="paused-1", build=_build)
    module = types.ModuleType("migrator.worker.canaries")
    module.get = lambda name: {"paused": canary}[name]  # type: ignore[attr-defined]
    module.load_user_canaries = lambda spec: []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "migrator.worker.canaries", module)
    monkeypatch.setattr(migrator.worker, "canaries", module, raising=False)


@pytest.fixture
def saver(dsn: str) -> Iterator[Any]:
    from langgraph.checkpoint.postgres import PostgresSaver

    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        checkpointer = PostgresSaver(conn)
        checkpointer.setup()
        yield checkpointer


def _seed_paused(saver: Any, thread_id: str = "paused-1") -> None:
    _build(saver).invoke({"items": [], "n": 1}, {"configurable": {"thread_id": thread_id}})


def _snapshot(dsn: str, threads: Any, **extra: Any) -> dict[str, Any]:
    result = op_snapshot.run({"dsn": dsn, "threads": threads, **extra})
    Snapshot.from_json(result)  # the host accepts what the worker wrote
    return result


def test_structure_of_a_paused_subgraph_thread(dsn: str, saver: Any, fake_canaries: None) -> None:
    _seed_paused(saver)
    result = _snapshot(dsn, [{"thread_id": "paused-1", "canary": "paused"}])
    assert result["format"] == "langgraph-migrator/snapshot@1"
    assert result["versions"]["langgraph"] and result["versions"]["python"]
    thread = result["threads"]["paused-1"]
    assert thread["error"] is None and thread["canary"] == "paused"
    checkpoints = thread["checkpoints"]
    keys = [(c["checkpoint_ns"], c["checkpoint_id"]) for c in checkpoints]
    assert keys == sorted(keys)
    namespaces = {c["checkpoint_ns"] for c in checkpoints}
    assert "" in namespaces and any(ns.startswith("child:") for ns in namespaces)
    assert all(c["error"] is None for c in checkpoints)
    root = [c for c in checkpoints if c["checkpoint_ns"] == ""]
    assert root[0]["parent_checkpoint_id"] is None
    assert all(c["parent_checkpoint_id"] for c in root[1:])
    values = root[-1]["channel_values"]
    assert values["n"] == 2
    assert {"__type__": "set", "items": [1, 2]} in values["items"]
    interrupted = [w for c in checkpoints for w in c["pending_writes"]]
    assert any(w["channel"] == "__interrupt__" for w in interrupted)

    state = thread["state"]
    assert state["next"] == ["child"]
    assert state["interrupts"] == [{"__type__": "Interrupt", "value": "approve?"}]
    (task,) = state["tasks"]
    assert task["name"] == "child" and task["error"] is None
    assert task["state"]["next"] == ["inner"]  # get_state(subgraphs=True)
    assert task["state"]["tasks"][0]["interrupts"] == state["interrupts"]

    history = thread["history"]
    assert [h["checkpoint_id"] for h in history] == [c["checkpoint_id"] for c in root][::-1]
    assert history[-1]["parent_checkpoint_id"] is None
    assert list(iter_errors(result)) == []


def test_deterministic(dsn: str, saver: Any, fake_canaries: None) -> None:
    _seed_paused(saver)
    request = [{"thread_id": "paused-1", "canary": "paused"}]
    first = Snapshot.from_json(_snapshot(dsn, request)).dumps()
    assert Snapshot.from_json(_snapshot(dsn, request)).dumps() == first


def test_missing_thread_and_all_threads(dsn: str, saver: Any, fake_canaries: None) -> None:
    _seed_paused(saver, "t-a")
    _seed_paused(saver, "t-b")
    result = _snapshot(dsn, [{"thread_id": "nope", "canary": "paused"}])
    thread = result["threads"]["nope"]
    assert thread["error"]["__error__"].startswith("NoSuchThread: ")
    assert thread["checkpoints"] == [] and thread["state"] is None
    every = _snapshot(dsn, None, include_history=False)
    assert sorted(every["threads"]) == ["t-a", "t-b"]
    assert all(t["history"] is None for t in every["threads"].values())


def test_tampered_blob_is_an_error_on_the_value(dsn: str, saver: Any, fake_canaries: None) -> None:
    _seed_paused(saver)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # 0xc1 is never valid msgpack (plain 'garbage' decodes as the integer 103)
        updated = conn.execute(
            "UPDATE checkpoint_blobs SET blob = decode('c1c1', 'hex')"
            " WHERE thread_id = 'paused-1' AND checkpoint_ns = '' AND channel = 'items'"
        ).rowcount
    assert updated
    result = _snapshot(dsn, [{"thread_id": "paused-1", "canary": "paused"}])
    thread = result["threads"]["paused-1"]
    assert thread["error"] is None
    bad = [c for c in thread["checkpoints"] if c["error"] is not None]
    good = [c for c in thread["checkpoints"] if c["error"] is None]
    assert bad and good
    for record in bad:
        assert record["checkpoint_ns"] == ""
        assert "__error__" in record["channel_values"]["items"]
        assert record["channel_values"]["n"] in (1, 2)  # the rest still decodes
    assert all(
        c["checkpoint_ns"].startswith("child:") or "items" not in c["channel_values"] for c in good
    )
    assert "__error__" in thread["state"]
    assert "__error__" in thread["history"]


def test_unknown_canary_errors_only_the_graph_part(
    dsn: str, saver: Any, fake_canaries: None
) -> None:
    _seed_paused(saver)
    thread = _snapshot(dsn, [{"thread_id": "paused-1", "canary": "unknown"}])["threads"]["paused-1"]
    assert thread["error"] is None and thread["checkpoints"]
    assert thread["state"]["__error__"].startswith("KeyError")


def test_unreadable_database_is_a_thread_error(dsn: str) -> None:
    # no setup(): the tables do not exist
    result = _snapshot(dsn, [{"thread_id": "t", "canary": None}])
    assert "UndefinedTable" in result["threads"]["t"]["error"]["__error__"]


def test_large_state(dsn: str, saver: Any) -> None:
    config = {"configurable": {"thread_id": "big", "checkpoint_ns": ""}}
    from langgraph.checkpoint.base import empty_checkpoint

    checkpoint = empty_checkpoint()
    blob = ["x" * 1000 + str(i) for i in range(1500)]  # ~1.5 MB
    checkpoint["channel_values"] = {"big": blob}
    checkpoint["channel_versions"] = {"big": saver.get_next_version(None, None)}
    saver.put(config, checkpoint, {"source": "input", "step": -1}, checkpoint["channel_versions"])
    started = time.monotonic()
    result = _snapshot(dsn, [{"thread_id": "big", "canary": None}])
    assert time.monotonic() - started < 30
    (record,) = result["threads"]["big"]["checkpoints"]
    assert record["channel_values"]["big"] == blob
