"""Built-in canaries: shapes they leave, resume traces, and every era's worker.

In-process tests use the newest langgraph in this venv against real Postgres
(``pg_dsn``). Era tests run ops ``setup``/``seed``/``resume`` in each known
version environment through ``migrator.envs``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from migrator.postgres import scratch_database
from migrator.worker import compat, op_resume, op_seed, op_setup, trace
from migrator.worker.canaries import (
    BUILTIN,
    Canary,
    CanaryConfigError,
    get,
    load_user_canaries,
    select_canaries,
)
from migrator.worker.canaries.rich import CanaryColor, CanaryModel, CanaryRecord
from migrator.worker.saver import open_saver

NAMES = [c.name for c in BUILTIN]
RESUMABLE = [c.name for c in BUILTIN if c.resumable]


def _nodes(entries: list[dict[str, str]]) -> list[str]:
    return [e["node"] for e in entries]


def _seed(dsn: str, names: list[str] | None = None) -> dict[str, Any]:
    op_setup.run({"dsn": dsn})
    result = op_seed.run({"dsn": dsn, "canaries": names, "user_canaries": None})
    return {t["canary"]: t for t in result["threads"]}


def _state(dsn: str, name: str) -> Any:
    canary = get(name)
    with open_saver(dsn) as saver:
        graph = canary.build(saver)
        return graph.get_state(compat.thread_config(canary.thread_id))


def _rows(dsn: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


# ------------------------------------------------------------------ pure parts


def test_registry_names_are_unique_and_threads_deterministic() -> None:
    assert len(NAMES) == len(set(NAMES))
    assert {
        "messages",
        "interrupt_before",
        "interrupt_fn",
        "send",
        "send_paused",
        "subgraph",
        "rich_values",
        "time_travel",
        "failed_node",
        "large_state",
    } <= set(NAMES)
    for canary in BUILTIN:
        assert canary.thread_id == f"canary:{canary.name}"
        assert get(canary.name) is canary
        assert canary.expected_seed_trace
        assert bool(canary.expected_resume_trace) == canary.resumable


def test_unknown_canary_and_bad_user_spec_fail_clearly() -> None:
    with pytest.raises(CanaryConfigError, match="Unknown canary 'nope'"):
        select_canaries(["nope"], None)
    with pytest.raises(CanaryConfigError, match="module:attr"):
        load_user_canaries("no_colon")
    with pytest.raises(CanaryConfigError, match="Cannot import user canary module 'no_such_mod_x'"):
        load_user_canaries("no_such_mod_x:CANARIES")
    with pytest.raises(CanaryConfigError, match="has no attribute 'MISSING'"):
        load_user_canaries("migrator.worker.trace:MISSING")
    with pytest.raises(CanaryConfigError, match="not a canary"):
        load_user_canaries("migrator.worker.canaries:CanaryConfigError")


def test_trace_sorts_concurrent_hits_of_one_superstep_only() -> None:
    trace.clear()
    step = {"metadata": {"langgraph_step": 2}}
    trace.hit("t", "plan", {"metadata": {"langgraph_step": 1}})
    trace.hit("t", "work:b", step)
    trace.hit("other", "x", step)
    trace.hit("t", "work:a", step)
    trace.barrier()
    trace.hit("t", "work:c", step)
    trace.hit("t", "work:0", step)
    assert _nodes(trace.drain("t")) == ["plan", "work:a", "work:b", "work:0", "work:c"]
    assert _nodes(trace.drain()) == ["x"]


def test_values_digest_is_type_aware() -> None:
    assert op_resume.values_digest({"a": (1, 2)}) != op_resume.values_digest({"a": [1, 2]})
    assert op_resume.values_digest({"a": {1, 2}}) == op_resume.values_digest({"a": {2, 1}})
    model = CanaryModel(name="n", count=1, tags=[])
    assert op_resume.values_digest(model) != op_resume.values_digest(model.model_dump())


# ------------------------------------------------------------ newest, in-process


@pytest.mark.slow
def test_seed_leaves_every_canary_in_its_known_shape(pg_dsn: str) -> None:
    threads = _seed(pg_dsn)
    assert list(threads) == NAMES
    for canary in BUILTIN:
        entry = threads[canary.name]
        assert entry["status"] == "seeded", entry
        assert entry["thread_id"] == canary.thread_id
        assert _nodes(entry["trace"]) == list(canary.expected_seed_trace), canary.name

    messages = _state(pg_dsn, "messages").values["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"] * 2
    assert messages[1].tool_calls[0]["name"] == "lookup"
    assert messages[2].tool_call_id == messages[1].tool_calls[0]["id"]
    assert all(m.id for m in messages)

    assert _state(pg_dsn, "interrupt_before").next == ("approve",)
    paused_fn = _state(pg_dsn, "interrupt_fn")
    assert paused_fn.next == ("ask",)
    assert paused_fn.tasks[0].interrupts

    assert _state(pg_dsn, "send").values["summary"] == "ALPHA+BETA+GAMMA"
    send_paused = _state(pg_dsn, "send_paused")
    assert send_paused.next == ("work", "work", "work")
    assert [t.name for t in send_paused.tasks] == ["work"] * 3

    assert _state(pg_dsn, "subgraph").next == ("child",)
    namespaces = {
        r["checkpoint_ns"]
        for r in _rows(
            pg_dsn,
            "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = %s",
            "canary:subgraph",
        )
    }
    assert "" in namespaces and any(ns.startswith("child:") for ns in namespaces)

    rich = _state(pg_dsn, "rich_values").values
    assert rich["color"] is CanaryColor.GREEN
    assert isinstance(rich["model"], CanaryModel) and isinstance(rich["record"], CanaryRecord)
    assert rich["when"].utcoffset() is not None and isinstance(rich["tags"], set)

    config = compat.thread_config("canary:time_travel")
    with open_saver(pg_dsn) as saver:
        history = list(get("time_travel").build(saver).get_state_history(config))
    children: dict[str, int] = {}
    for snap in history:
        parent = snap.parent_config["configurable"]["checkpoint_id"] if snap.parent_config else None
        children[parent] = children.get(parent, 0) + 1
    fork = [s for s in history if s.next == ("b",) and s.metadata.get("source") == "loop"]
    assert len(fork) == 1 and children[fork[0].config["configurable"]["checkpoint_id"]] == 2

    with open_saver(pg_dsn) as saver:
        failed = saver.get_tuple(compat.thread_config("canary:failed_node"))
    channels = {channel for _, channel, _ in failed.pending_writes}
    assert "__error__" in channels and "log" in channels
    failed_state = _state(pg_dsn, "failed_node")
    assert [t.name for t in failed_state.tasks if t.error] == ["flaky"]

    sizes = _rows(
        pg_dsn,
        "SELECT max(length(blob)) AS biggest, sum(length(blob)) AS total "
        "FROM checkpoint_blobs WHERE thread_id = %s",
        "canary:large_state",
    )[0]
    assert sizes["biggest"] >= 1_000_000 and sizes["total"] >= sizes["biggest"]
    assert _state(pg_dsn, "large_state").next == ("verify",)


@pytest.mark.slow
def test_resume_runs_only_the_remaining_nodes(pg_dsn: str) -> None:
    _seed(pg_dsn)
    result = op_resume.run({"dsn": pg_dsn, "canaries": None, "user_canaries": None})
    threads = {t["canary"]: t for t in result["threads"]}
    for canary in BUILTIN:
        entry = threads[canary.name]
        if not canary.resumable:
            assert entry["outcome"] == "skipped" and entry["reason"] == "not resumable"
            continue
        assert entry["outcome"] == "completed", entry
        assert entry["error"] is None and entry["next"] == []
        assert _nodes(entry["trace"]) == list(canary.expected_resume_trace), canary.name
        assert len(entry["values_digest"]) == 64
    assert _state(pg_dsn, "interrupt_fn").values["log"][-2:] == ["answer:yes", "finish"]


@pytest.mark.slow
def test_same_canaries_seeded_twice_give_the_same_values(pg_server: Any) -> None:
    digests = []
    for _ in range(2):
        with scratch_database(pg_server) as dsn:
            _seed(dsn)
            digests.append({n: op_resume.values_digest(_state(dsn, n).values) for n in NAMES})
    assert digests[0] == digests[1]


class _Boom(Canary):
    name = "boom"

    def build(self, checkpointer: Any) -> Any:
        return get("interrupt_before").build(checkpointer)

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        raise ValueError("user canary broke")


class _Old(Canary):
    name = "old_only"

    def unsupported_reason(self, info: Any) -> str | None:
        return "needs langgraph < 0.1"


@pytest.mark.slow
def test_user_canaries_errors_and_skips_are_data(pg_dsn: str, monkeypatch) -> None:
    module = types.ModuleType("fake_user_canaries")
    module.CANARIES = [_Boom(), _Old()]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_user_canaries", module)
    op_setup.run({"dsn": pg_dsn})
    result = op_seed.run(
        {
            "dsn": pg_dsn,
            "canaries": ["boom", "old_only", "send"],
            "user_canaries": "fake_user_canaries:CANARIES",
        }
    )
    by_name = {t["canary"]: t for t in result["threads"]}
    assert by_name["boom"]["status"] == "error"
    assert by_name["boom"]["reason"] == "ValueError: user canary broke"
    assert by_name["old_only"] == {
        "thread_id": "canary:old_only",
        "canary": "old_only",
        "status": "skipped",
        "reason": "needs langgraph < 0.1",
        "trace": [],
    }
    assert by_name["send"]["status"] == "seeded"
    again = op_seed.run({"dsn": pg_dsn, "canaries": ["send"], "user_canaries": None})
    assert "already has checkpoints" in again["threads"][0]["reason"]
    with pytest.raises(CanaryConfigError, match="fake_missing"):
        op_seed.run({"dsn": pg_dsn, "canaries": None, "user_canaries": "fake_missing:X"})


# ------------------------------------------------------------------ every era

envs = pytest.importorskip("migrator.envs")
ERAS = envs.known_eras()
# Measured: which built-ins each era cannot run (others must be seeded).
ERA_SKIPS = {
    "1.0.0": {"messages", "interrupt_fn", "rich_values"},
    "1.0.1": {"interrupt_fn", "rich_values"},
    "1.0.9": {"interrupt_fn"},
}
MEASURED = {
    "1.0.0",
    "1.0.1",
    "1.0.9",
    "2.0.8",
    "2.0.10",
    "2.0.11",
    "2.0.12",
    "2.0.13",
    "2.0.25",
    "3.0.0",
    "3.0.1",
    "3.2.0",
}


def _era_env(name: str) -> Any:
    return envs.ensure_env(envs.parse_version_set(f"langgraph-checkpoint-postgres=={name}"))


@pytest.mark.slow
@pytest.mark.parametrize("era", ERAS, ids=[e.name for e in ERAS])
def test_era_seeds_and_resumes_every_canary(era: Any, pg_default: Any) -> None:
    env = _era_env(era.name)
    with scratch_database(pg_default) as dsn:
        request = {"dsn": dsn, "canaries": None, "user_canaries": None}
        envs.run_worker(env, "setup", {"dsn": dsn}, timeout=300)
        seeded = {t["canary"]: t for t in envs.run_worker(env, "seed", request)["threads"]}
        resumed = {t["canary"]: t for t in envs.run_worker(env, "resume", request)["threads"]}
    skipped = {n for n, t in seeded.items() if t["status"] == "skipped"}
    assert all(t["status"] in ("seeded", "skipped") for t in seeded.values()), seeded
    assert all(seeded[n]["reason"] for n in skipped)
    if era.name in MEASURED:
        assert skipped == ERA_SKIPS.get(era.name, set())
    for canary in BUILTIN:
        if canary.name in skipped:
            assert resumed[canary.name]["outcome"] == "skipped"
            continue
        assert _nodes(seeded[canary.name]["trace"]) == list(canary.expected_seed_trace)
        if canary.resumable:
            entry = resumed[canary.name]
            assert entry["outcome"] == "completed", (canary.name, entry)
            assert _nodes(entry["trace"]) == list(canary.expected_resume_trace), canary.name


@pytest.mark.slow
def test_canaries_show_task_id_hazard_after_upgrade_from_2_0_8(pg_default: Any) -> None:
    """H-TASK-ID: seeded by 2.0.8, resumed by the newest: completed work runs again."""
    old = _era_env("2.0.8")
    new = envs.ensure_env(envs.parse_version_set("current"))
    names = ["failed_node", "subgraph", "interrupt_before"]
    with scratch_database(pg_default) as dsn:
        request = {"dsn": dsn, "canaries": names, "user_canaries": None}
        envs.run_worker(old, "setup", {"dsn": dsn}, timeout=300)
        envs.run_worker(old, "seed", request)
        envs.run_worker(new, "setup", {"dsn": dsn}, timeout=300)
        resumed = {t["canary"]: t for t in envs.run_worker(new, "resume", request)["threads"]}
    assert _nodes(resumed["failed_node"]["trace"]) == ["flaky", "sibling", "join"]
    assert _nodes(resumed["subgraph"]["trace"]) == ["step_1"]
    assert resumed["subgraph"]["outcome"] == "paused"
    assert _nodes(resumed["interrupt_before"]["trace"]) == ["approve", "publish"]
