"""migrator.compare: structural drift between snapshots and between resume results (pure)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.compare import (
    BENIGN_RULES,
    Diff,
    Difference,
    VersionRange,
    attribute_hazard,
    compare_resumes,
    compare_snapshots,
    diff_values,
    hazard_for_error,
    parse_version,
    short_hash,
)
from migrator.policy import Policy

TID = "canary:messages"
T = f'threads["{TID}"]'


def cp(
    cid: str,
    values: dict[str, Any] | None = None,
    *,
    ns: str = "",
    parent: str | None = None,
    metadata: dict[str, Any] | None = None,
    writes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "checkpoint_ns": ns,
        "checkpoint_id": cid,
        "parent_checkpoint_id": parent,
        "metadata": metadata if metadata is not None else {"source": "loop", "step": 1},
        "channel_values": values if values is not None else {},
        "pending_writes": writes or [],
        "error": None,
    }


def msg(cls: str, content: str) -> dict[str, Any]:
    return {"__type__": "message", "class": cls, "fields": {"content": content}}


def base_thread() -> dict[str, Any]:
    messages = [msg("HumanMessage", "hi"), msg("AIMessage", "hello"), msg("HumanMessage", "bye")]
    thread = {
        "canary": "messages",
        "error": None,
        "checkpoints": [
            cp("1ef-1", {"messages": messages[:1]}, metadata={"source": "input", "step": -1}),
            cp("1ef-2", {"messages": messages}, parent="1ef-1"),
        ],
        "state": {
            "values": {"messages": messages},
            "next": ["agent"],
            "tasks": [
                {"id": "t-1", "name": "agent", "error": None, "interrupts": [], "state": None}
            ],
            "interrupts": [],
        },
        "history": [
            {
                "checkpoint_id": "1ef-2",
                "parent_checkpoint_id": "1ef-1",
                "next": ["agent"],
                "values": {"messages": messages},
                "metadata": {"source": "loop", "step": 1},
                "tasks": [],
            },
            {
                "checkpoint_id": "1ef-1",
                "parent_checkpoint_id": None,
                "next": [],
                "values": {"messages": messages[:1]},
                "metadata": {"source": "input", "step": -1},
                "tasks": [],
            },
        ],
    }
    return json.loads(json.dumps(thread))  # type: ignore[no-any-return]  # no aliasing


def snap(thread: dict[str, Any] | None = None, *, lg: str = "1.2.22") -> dict[str, Any]:
    return {
        "format": "langgraph-migrator/snapshot@1",
        "versions": {"langgraph": lg, "langgraph-checkpoint-postgres": "3.2.0"},
        "threads": {TID: thread if thread is not None else base_thread()},
    }


def pair(lg_old: str = "1.0.1", lg_new: str = "1.2.22") -> tuple[dict[str, Any], dict[str, Any]]:
    return snap(lg=lg_old), snap(lg=lg_new)


def only(diff: Diff) -> Difference:
    assert len(diff.differences) == 1, [d.summary() for d in diff.differences]
    return diff.differences[0]


def latest(s: dict[str, Any]) -> dict[str, Any]:
    return s["threads"][TID]["checkpoints"][1]  # type: ignore[no-any-return]


CP2 = f'{T}.checkpoints[ns="",id="1ef-2"]'


# --------------------------------------------------------------------------- basics


def test_identical_snapshots_have_no_differences() -> None:
    old, new = pair()
    diff = compare_snapshots(old, new)
    assert diff.differences == ()
    assert diff.ok
    assert diff.to_dict()["ok"] is True


def test_pydantic_to_dict_is_breaking_strict_msgpack_at_the_right_path() -> None:
    old, new = pair()
    model = {"__type__": "pydantic", "class": "app.Order", "fields": {"id": 1}}
    latest(old)["channel_values"]["order"] = model
    latest(new)["channel_values"]["order"] = {"id": 1}
    d = only(compare_snapshots(old, new))
    assert d.path == f"{CP2}.channel_values.order"
    assert (d.kind, d.severity, d.hazard) == ("type_changed", "breaking", "H-STRICT-MSGPACK")
    assert d.thread_id == TID
    assert "pydantic(app.Order) -> dict" in d.message


def test_enum_and_dataclass_to_raw_are_strict_msgpack() -> None:
    for tagged, raw in [
        ({"__type__": "enum", "class": "app.Color", "value": "red"}, "red"),
        ({"__type__": "dataclass", "class": "app.P", "fields": {"x": 1}}, {"x": 1}),
    ]:
        old, new = pair()
        latest(old)["channel_values"]["v"] = tagged
        latest(new)["channel_values"]["v"] = raw
        assert only(compare_snapshots(old, new)).hazard == "H-STRICT-MSGPACK"


def test_a_missing_checkpoint_is_exactly_one_difference() -> None:
    old, new = pair()
    new["threads"][TID]["checkpoints"].pop(0)
    new["threads"][TID]["history"].pop(1)
    new["threads"][TID]["history"][0]["parent_checkpoint_id"] = "1ef-1"  # unchanged
    d = only(compare_snapshots(old, new))
    assert d.path == f'{T}.checkpoints[ns="",id="1ef-1"]'
    assert d.kind == "checkpoint_missing"
    assert d.severity == "breaking"


def test_added_thread_and_missing_thread() -> None:
    old, new = pair()
    new["threads"]["other"] = new["threads"].pop(TID)
    kinds = {(d.path, d.kind) for d in compare_snapshots(old, new).differences}
    assert kinds == {(T, "thread_missing"), ('threads["other"]', "thread_added")}


def test_changed_next() -> None:
    old, new = pair()
    new["threads"][TID]["state"]["next"] = ["tools"]
    d = only(compare_snapshots(old, new))
    assert (d.path, d.kind) == (f"{T}.state.next", "next_changed")
    assert (d.old, d.new) == (["agent"], ["tools"])


def test_tampered_value_is_value_changed_at_its_path() -> None:
    old, new = pair()
    latest(new)["channel_values"]["messages"][1]["fields"]["content"] = "HELLO"
    d = only(compare_snapshots(old, new))
    assert d.path == f"{CP2}.channel_values.messages[1].fields.content"
    assert (d.kind, d.old, d.new) == ("value_changed", "hello", "HELLO")


def test_list_length_change_is_one_difference() -> None:
    old, new = pair()
    latest(new)["channel_values"]["messages"].pop()
    d = only(compare_snapshots(old, new))
    assert (d.path, d.kind, d.old, d.new) == (
        f"{CP2}.channel_values.messages",
        "length_changed",
        3,
        2,
    )


def test_error_appearing_in_a_value() -> None:
    old, new = pair()
    latest(new)["channel_values"]["messages"] = {"__error__": "TypeError: bad"}
    d = only(compare_snapshots(old, new))
    assert (d.path, d.kind, d.severity) == (
        f"{CP2}.channel_values.messages",
        "value_error",
        "breaking",
    )
    assert "TypeError: bad" in d.message


def test_checkpoint_error_is_one_difference_with_schema_hazard_by_context() -> None:
    old, new = pair()
    latest(new)["error"] = {"__error__": "UndefinedColumn: column cw.task_path does not exist"}
    latest(new)["channel_values"] = None
    d = only(compare_snapshots(old, new))
    assert (d.path, d.kind, d.hazard) == (CP2, "checkpoint_error", "H-LEDGER-SHIFT")
    rolling = only(compare_snapshots(old, new, context="read-before-setup"))
    assert rolling.hazard == "H-READ-BEFORE-SETUP"


def test_thread_error_rollback_hazards() -> None:
    for text in (
        "NotImplementedError: Unknown serialization type: null",
        "KeyError: 'pending_sends'",
    ):
        old = snap()
        new = snap({"canary": "messages", "error": {"__error__": text}, "checkpoints": []})
        d = only(compare_snapshots(old, new, context="rollback"))
        assert (d.path, d.kind, d.hazard) == (T, "thread_error", "H-ROLLBACK-NULL")


def test_parent_and_metadata_kinds() -> None:
    old, new = pair()
    latest(new)["parent_checkpoint_id"] = "1ef-0"
    latest(new)["metadata"]["step"] = 2
    kinds = {d.path: d.kind for d in compare_snapshots(old, new).differences}
    assert kinds == {
        f"{CP2}.parent_checkpoint_id": "parent_changed",
        f"{CP2}.metadata.step": "metadata_changed",
    }


def test_sets_and_non_str_key_dicts_are_unordered() -> None:
    a = {"__type__": "set", "items": [1, 2, 3]}
    b = {"__type__": "set", "items": [3, 1, 2]}
    assert diff_values(a, b) == ()
    c = {"__type__": "set", "items": [1, 2, 4]}
    # A set item is a value: its path segment is its short hash, never the item itself.
    assert {(p, k) for p, k, _, _ in diff_values(a, c)} == {
        (f"$.items[#{short_hash(3)}]", "item_missing"),
        (f"$.items[#{short_hash(4)}]", "item_added"),
    }
    secret = {"__type__": "set", "items": ["s3cr3t-token"]}
    ((where, kind, old, new),) = diff_values(secret, {"__type__": "set", "items": []})
    assert "s3cr3t" not in where and (kind, old, new) == ("item_missing", "s3cr3t-token", None)
    d1 = {"__type__": "dict", "items": [[1, "a"], [2, "b"]]}
    d2 = {"__type__": "dict", "items": [[2, "b"], [1, "A"]]}
    assert diff_values(d1, d2) == (("$.items[key=1]", "value_changed", "a", "A"),)


# --------------------------------------------------------------------------- hazards


def test_metadata_writes_lc_envelope_is_breaking_on_the_metadata_path_only() -> None:
    old, new = pair("0.2.56", "1.2.22")
    latest(old)["metadata"]["writes"] = {"agent": {"messages": [msg("AIMessage", "hello")]}}
    envelope = {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", "AIMessage"],
        "kwargs": {"content": "hello"},
    }
    latest(new)["metadata"]["writes"] = {"agent": {"messages": [envelope]}}
    d = only(compare_snapshots(old, new))
    assert d.path == f"{CP2}.metadata.writes.agent.messages[0]"
    assert (d.kind, d.severity, d.hazard) == ("type_changed", "breaking", "H-METADATA-WRITES")


def test_send_dropped() -> None:
    old, new = pair("0.2.0", "1.2.22")
    send = {"__type__": "Send", "node": "worker", "arg": {"n": 1}}
    for s in (old, new):
        s["threads"][TID]["state"]["tasks"] = None
        s["threads"][TID]["state"]["interrupts"] = None
        s["threads"][TID]["history"] = None
    latest(old)["channel_values"]["__pregel_tasks"] = [send]
    latest(new)["channel_values"]["__pregel_tasks"] = [send]
    old["threads"][TID]["state"]["next"] = ["worker"]
    new["threads"][TID]["state"]["next"] = []
    d = only(compare_snapshots(old, new))
    assert (d.kind, d.hazard) == ("next_changed", "H-SEND-DROPPED")


def test_task_error_disappearing_across_0_3_17_is_task_id_hazard() -> None:
    old, new = pair("0.3.16", "0.3.17")
    old["threads"][TID]["state"]["tasks"][0]["error"] = "ValueError: boom"
    new["threads"][TID]["state"]["tasks"][0]["id"] = "t-NEW"
    diff = compare_snapshots(old, new)
    by_path = {d.path: d for d in diff.differences}
    task = f'{T}.state.tasks[name="agent"]'
    assert by_path[f"{task}.id"].severity == "benign"
    assert by_path[f"{task}.id"].rule == "task-id-derivation-0.3.17"
    assert by_path[f"{task}.error"].severity == "breaking"
    assert by_path[f"{task}.error"].hazard == "H-TASK-ID"


def test_nested_subgraph_state_emptied_across_0_3_17_is_task_id_hazard() -> None:
    old, new = pair("0.3.16", "0.3.17")
    nested = {"values": {"step": 1}, "next": ["child"], "tasks": [], "interrupts": []}
    old_task = old["threads"][TID]["state"]["tasks"][0]
    old_task["state"] = nested
    new_task = new["threads"][TID]["state"]["tasks"][0]
    new_task["state"] = {"values": {}, "next": ["child"], "tasks": [], "interrupts": []}
    new_task["id"] = "t-NEW"
    diff = compare_snapshots(old, new)
    kinds = {(d.kind, d.severity, d.hazard) for d in diff.differences}
    assert kinds == {
        ("value_changed", "benign", None),
        ("key_missing", "breaking", "H-TASK-ID"),
    }


def test_hazard_for_error_messages() -> None:
    assert hazard_for_error("TypeError: 'Interrupt' object is not subscriptable") == (
        "H-INTERRUPT-RESUME"
    )
    assert hazard_for_error("DuplicateColumn: column task_path already exists") == "H-DUP-COLUMN"
    assert hazard_for_error("ValueError: nope") is None
    assert attribute_hazard("x", "value_changed", 1, 2) is None


# --------------------------------------------------------------------------- benign rules


def test_task_id_change_is_benign_only_across_the_0_3_17_boundary() -> None:
    def run(lg_old: str, lg_new: str) -> Difference:
        old, new = pair(lg_old, lg_new)
        new["threads"][TID]["state"]["tasks"][0]["id"] = "t-NEW"
        return only(compare_snapshots(old, new))

    d = run("0.3.16", "0.3.17")
    assert (d.path, d.severity, d.rule) == (
        f'{T}.state.tasks[name="agent"].id',
        "benign",
        "task-id-derivation-0.3.17",
    )
    assert run("0.2.56", "1.2.22").severity == "benign"
    for lg_old, lg_new in [("0.3.17", "0.3.18"), ("0.3.15", "0.3.16"), ("1.0.1", "1.2.22")]:
        d = run(lg_old, lg_new)
        assert (d.severity, d.rule) == ("breaking", None), (lg_old, lg_new)


def test_fan_out_tasks_pair_by_content_when_ids_change() -> None:
    old, new = pair("0.3.16", "0.3.17")

    def task(tid: str, n: int) -> dict[str, Any]:
        return {"id": tid, "name": "worker", "error": None, "interrupts": [n], "state": None}

    old["threads"][TID]["state"]["tasks"] = [task("a", 1), task("b", 2), task("c", 3)]
    new["threads"][TID]["state"]["tasks"] = [task("z", 3), task("x", 1), task("y", 2)]
    diff = compare_snapshots(old, new)
    assert len(diff.differences) == 3 and diff.ok
    assert {d.path for d in diff.differences} == {
        f'{T}.state.tasks[name="worker"].id',
        f'{T}.state.tasks[name="worker",i=1].id',
        f'{T}.state.tasks[name="worker",i=2].id',
    }
    new["threads"][TID]["state"]["tasks"].append(task("w", 4))
    added = [d for d in compare_snapshots(old, new).differences if d.kind == "tasks_changed"]
    assert [(d.path, d.hazard) for d in added] == [
        (f'{T}.state.tasks[name="worker",i=3]', "H-TASK-ID")
    ]


def test_task_id_change_unknown_versions_is_breaking() -> None:
    old, new = pair("0.3.16", "0.3.17")
    del new["versions"]["langgraph"]
    new["threads"][TID]["state"]["tasks"][0]["id"] = "t-NEW"
    assert only(compare_snapshots(old, new)).severity == "breaking"


def test_pending_write_task_id_change_is_matched_ignoring_task_id() -> None:
    old, new = pair("0.3.16", "0.4.0")
    latest(old)["pending_writes"] = [{"task_id": "a", "channel": "messages", "value": 1}]
    latest(new)["pending_writes"] = [{"task_id": "b", "channel": "messages", "value": 1}]
    d = only(compare_snapshots(old, new))
    assert d.path == f'{CP2}.pending_writes[task_id="a",channel="messages"].task_id'
    assert (d.severity, d.rule) == ("benign", "task-id-derivation-0.3.17")
    # the same change between two new versions is breaking
    old["versions"]["langgraph"] = "0.3.17"
    assert only(compare_snapshots(old, new)).severity == "breaking"


def test_pending_write_missing_is_pending_writes_changed() -> None:
    old, new = pair()
    latest(old)["pending_writes"] = [{"task_id": "a", "channel": "x", "value": 1}]
    d = only(compare_snapshots(old, new))
    assert (d.path, d.kind) == (
        f'{CP2}.pending_writes[task_id="a",channel="x"]',
        "pending_writes_changed",
    )


def test_subgraph_namespace_task_suffix_is_paired_and_benign_across_boundary() -> None:
    old, new = pair("0.3.16", "0.3.17")
    old["threads"][TID]["checkpoints"].append(cp("1ef-3", {"x": 1}, ns="sub:old"))
    new["threads"][TID]["checkpoints"].append(cp("1ef-3", {"x": 1}, ns="sub:new"))
    d = only(compare_snapshots(old, new))
    assert d.path == f'{T}.checkpoints[ns="sub:old",id="1ef-3"].checkpoint_ns'
    assert d.severity == "benign"


def test_metadata_writes_dropped_benign_only_in_range() -> None:
    def run(lg_old: str, lg_new: str) -> Difference:
        old, new = pair(lg_old, lg_new)
        latest(old)["metadata"]["writes"] = None
        return only(compare_snapshots(old, new))

    d = run("0.4.8", "0.6.9")
    assert (d.kind, d.severity, d.rule) == ("key_missing", "benign", "metadata-writes-dropped-0.5")
    assert run("0.5.0", "0.6.9").severity == "breaking"


def test_metadata_config_copies_benign_but_value_change_breaking() -> None:
    old, new = pair()
    latest(old)["metadata"]["thread_id"] = TID
    assert only(compare_snapshots(old, new)).severity == "benign"
    latest(new)["metadata"]["thread_id"] = "someone-else"
    assert only(compare_snapshots(old, new)).severity == "breaking"


def test_state_tasks_absent_on_langgraph_0_2_0() -> None:
    old, new = pair("0.2.0", "1.2.22")
    old["threads"][TID]["state"]["tasks"] = None
    d = only(compare_snapshots(old, new))
    assert (d.kind, d.severity, d.rule) == ("tasks_changed", "benign", "state-tasks-absent-0.2")
    old2, new2 = pair("0.2.0", "1.2.22")
    new2["threads"][TID]["state"]["tasks"] = None  # the other way round: lost
    assert only(compare_snapshots(old2, new2)).severity == "breaking"


def test_rules_document_their_evidence_and_versions() -> None:
    ids = [r.id for r in BENIGN_RULES]
    assert len(ids) == len(set(ids))
    for rule in BENIGN_RULES:
        assert rule.description.startswith(rule.evidence)


def test_hazard_wins_over_benign_rules() -> None:
    old, new = pair("0.4.8", "0.6.9")
    latest(old)["metadata"]["writes"] = {"a": {"__type__": "pydantic", "class": "M", "fields": {}}}
    latest(new)["metadata"]["writes"] = {"a": {}}
    d = only(compare_snapshots(old, new))
    assert (d.severity, d.hazard, d.rule) == ("breaking", "H-STRICT-MSGPACK", None)


# --------------------------------------------------------------------------- policy


def test_policy_ignore_and_benign() -> None:
    old, new = pair()
    latest(new)["channel_values"]["messages"][1]["fields"]["content"] = "HELLO"
    new["threads"][TID]["state"]["next"] = []
    ignore = Policy(ignore=(f"{CP2}.channel_values.*",))
    severities = {
        d.kind: d.severity for d in compare_snapshots(old, new, policy=ignore).differences
    }
    assert severities == {"value_changed": "ignored", "next_changed": "breaking"}
    both = Policy(ignore=(f"{CP2}.channel_values.*",), benign=(f"{T}.state.next",))
    diff = compare_snapshots(old, new, policy=both)
    assert diff.ok
    assert {d.rule for d in diff.differences} == {
        f"policy:ignore:{CP2}.channel_values.*",
        f"policy:benign:{T}.state.next",
    }
    assert diff.counts_by_thread() == {TID: {"breaking": 0, "benign": 1, "ignored": 1}}


def test_policy_hazards_ignore() -> None:
    old, new = pair()
    latest(old)["channel_values"]["v"] = {"__type__": "enum", "class": "C", "value": 1}
    latest(new)["channel_values"]["v"] = 1
    diff = compare_snapshots(old, new, policy=Policy(hazards_ignore=("H-STRICT-MSGPACK",)))
    assert only(diff).severity == "ignored"
    assert diff.ok


# --------------------------------------------------------------------------- rendering


def test_summary_hides_values_by_default_and_truncates_when_shown() -> None:
    old, new = pair()
    latest(new)["channel_values"]["messages"][1]["fields"]["content"] = "SECRET" * 100
    d = only(compare_snapshots(old, new))
    text = d.summary()
    assert "SECRET" not in text and short_hash("hello") in text and "str#" in text
    shown = d.summary(show_values=True)
    assert "SECRET" in shown and len(shown) < 600 and "..." in shown
    json.dumps(compare_snapshots(old, new).to_dict())


def test_version_parser() -> None:
    assert parse_version("1.0") == parse_version("1.0.0")
    assert parse_version("0.3.16") < parse_version("0.3.17") < parse_version("0.10.0")
    assert parse_version("0.3.17rc1") < parse_version("0.3.17") < parse_version("0.3.17.post1")
    assert VersionRange(below="0.3.17").contains("0.3.16")
    assert not VersionRange(below="0.3.17").contains("0.3.17")
    assert not VersionRange(at_least="0.3.17").contains("0.3.17rc1")
    assert not VersionRange(at_least="0.3.17").contains(None)
    assert not VersionRange(at_least="0.3.17").contains("garbage")
    assert VersionRange().contains(None)
    with pytest.raises(ValueError):
        parse_version("x")


# --------------------------------------------------------------------------- resume


def resume_entry(**kw: Any) -> dict[str, Any]:
    entry = {
        "thread_id": "canary:interrupt",
        "canary": "interrupt",
        "outcome": "completed",
        "error": None,
        "reason": None,
        "trace": ["approve", "finish"],
        "next": [],
        "values_digest": "abc",
    }
    entry.update(kw)
    return entry


def resumes(lg: str, **kw: Any) -> dict[str, Any]:
    return {"threads": [resume_entry(**kw)], "versions": {"langgraph": lg}}


R = 'resume.threads["canary:interrupt"]'


def test_resume_identical() -> None:
    assert compare_resumes(resumes("0.2.56"), resumes("1.2.22")).differences == ()


def test_resume_node_reexecuted_is_task_id_hazard_from_old_langgraph() -> None:
    old = resumes("0.3.16", trace=["approve", "finish"])
    new = resumes("0.3.17", trace=["approve", "approve", "finish"])
    d = only(compare_resumes(old, new))
    assert (d.path, d.kind, d.hazard, d.severity) == (
        f'{R}.trace[node="approve"]',
        "node_reexecuted",
        "H-TASK-ID",
        "breaking",
    )
    assert (
        "node approve ran 2 time(s) after the upgrade, 1 before: completed work re-executed"
        in d.message
    )
    d2 = only(compare_resumes(resumes("1.0.1"), new))
    assert d2.kind == "node_reexecuted" and d2.hazard is None


def test_resume_trace_entries_are_dicts_keyed_by_node_name() -> None:
    old = resumes("0.2.56", trace=[{"node": "step_1"}, {"node": "step_2"}])
    new = resumes("1.2.22", trace=[{"node": "step_1"}, {"node": "step_1"}, {"node": "step_2"}])
    d = only(compare_resumes(old, new))
    assert (d.path, d.kind, d.hazard, d.old, d.new) == (
        f'{R}.trace[node="step_1"]',
        "node_reexecuted",
        "H-TASK-ID",
        1,
        2,
    )
    assert d.message.startswith("node step_1 ran 2 time(s) after the upgrade, 1 before")
    assert "{" not in d.message
    # extra keys (timings, steps) are not identity; str and dict entries are the same node
    same = resumes("1.2.22", trace=["step_1", {"node": "step_2", "step": 3, "t": 0.1}])
    assert compare_resumes(old, same).differences == ()


def test_resume_trace_ns_and_canary_kept_only_when_meaningful() -> None:
    old = resumes("0.2.56", trace=[{"node": "a", "ns": "", "canary": "interrupt"}])
    new = resumes("1.2.22", trace=[{"node": "a", "ns": "sub:1f2e"}])
    d = only(
        compare_resumes(old, resumes("1.2.22", trace=[{"node": "a"}, *new["threads"][0]["trace"]]))
    )
    assert d.path == f'{R}.trace[node="a",ns="sub"]'
    assert d.message.startswith("node a (ns sub) ran 1 time(s) after the upgrade, 0 before")
    # the task id inside ns changes across 0.3.17 (H-TASK-ID): not a different node
    moved = resumes("0.2.56", trace=[{"node": "a", "ns": "sub:9a8b"}])
    assert compare_resumes(moved, new).differences == ()
    other = resumes("1.2.22", trace=[{"node": "a", "canary": "other"}])
    d2 = [x for x in compare_resumes(old, other).differences if "other" in x.path]
    assert [x.path for x in d2] == [f'{R}.trace[node="a",canary="other"]']


def test_resume_outcome_changed_and_error_with_hazard() -> None:
    diff = compare_resumes(resumes("1.0.1"), resumes("1.2.22", outcome="paused", next=["finish"]))
    assert {x.kind for x in diff.differences} == {"outcome_changed", "next_changed"}
    err = "TypeError: 'Interrupt' object is not subscriptable"
    new = resumes("1.0.1", outcome="error", error=err, trace=[], values_digest="abc")
    old = resumes("0.2.56")
    diff = compare_resumes(old, new)
    first = diff.differences[0]
    assert (first.path, first.kind, first.hazard) == (
        f"{R}.error",
        "value_error",
        "H-INTERRUPT-RESUME",
    )
    assert {x.kind for x in diff.differences[1:]} == {"node_not_executed"}
    assert not diff.ok


def test_resume_values_digest_and_skipped() -> None:
    d = only(compare_resumes(resumes("1.0.1"), resumes("1.2.22", values_digest="def")))
    assert (d.path, d.kind) == (f"{R}.values_digest", "value_changed")
    skipped_old = resumes("1.0.1", outcome="skipped", trace=[], values_digest=None)
    assert compare_resumes(skipped_old, resumes("1.2.22")).differences == ()
    skipped_new = resumes("1.2.22", outcome="skipped", reason="unsupported", trace=[])
    assert only(compare_resumes(resumes("1.0.1"), skipped_new)).kind == "outcome_changed"


def test_resume_post_snapshot_state_is_compared() -> None:
    old = resumes("1.0.1")
    new = resumes("1.2.22")
    old["snapshot"] = {"threads": {"canary:interrupt": {"state": {"values": {"a": 1}, "next": []}}}}
    new["snapshot"] = copy.deepcopy(old["snapshot"])
    assert compare_resumes(old, new).differences == ()
    new["snapshot"]["threads"]["canary:interrupt"]["state"]["values"]["a"] = 2
    assert only(compare_resumes(old, new)).path == f"{R}.state.values.a"


# --------------------------------------------------------------------------- properties

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_keys = st.text(max_size=6).filter(lambda k: not k.startswith("__"))


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_keys, children, max_size=4),
        st.builds(lambda xs: {"__type__": "tuple", "items": xs}, st.lists(children, max_size=3)),
        st.builds(
            lambda xs: {"__type__": "set", "items": sorted(set(xs))},
            st.lists(st.integers(0, 9), max_size=4),
        ),
        st.builds(
            lambda f: {"__type__": "pydantic", "class": "app.M", "fields": f},
            st.dictionaries(_keys, children, max_size=3),
        ),
        st.builds(lambda v: {"__type__": "enum", "class": "app.E", "value": v}, _scalars),
        st.builds(lambda s: {"__type__": "datetime", "iso": s}, st.text(max_size=5)),
        st.builds(
            lambda kv: {"__type__": "dict", "items": [[k, v] for k, v in sorted(kv.items())]},
            st.dictionaries(st.integers(0, 5), children, max_size=3),
        ),
        st.builds(lambda m: {"__error__": m}, st.text(max_size=5)),
    )


tagged = st.recursive(_scalars, _extend, max_leaves=20)


def _snap_with(value: Any) -> dict[str, Any]:
    thread = {"canary": None, "error": None, "checkpoints": [cp("1", {"v": value})], "state": None}
    return {"versions": {"langgraph": "1.0.1"}, "threads": {"t": thread}}


_P = 'threads["t"].checkpoints[ns="",id="1"].channel_values.v'


@given(tagged)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_compare_x_with_itself_is_empty(value: Any) -> None:
    assert compare_snapshots(_snap_with(value), _snap_with(copy.deepcopy(value))).differences == ()


@given(tagged, tagged)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_difference_count_is_symmetric(a: Any, b: Any) -> None:
    forward = compare_snapshots(_snap_with(a), _snap_with(b))
    backward = compare_snapshots(_snap_with(b), _snap_with(a))
    assert len(forward.differences) == len(backward.differences)
    assert {d.path for d in forward.differences} == {d.path for d in backward.differences}


def _key_segment(key: str) -> str:
    return f".{key}" if key.isidentifier() else "[" + json.dumps(key, ensure_ascii=False) + "]"


def _children(node: Any) -> list[tuple[str, Any, Any]]:
    """(path segment, container, key) for each child a mutation may target."""
    if isinstance(node, list):
        return [(f"[{i}]", node, i) for i in range(len(node))]
    if not isinstance(node, dict) or "__error__" in node:
        return []
    tag = node.get("__type__")
    if tag is None:
        return [(_key_segment(k), node, k) for k in node]
    if tag == "tuple":
        return [(f".items[{i}]", node["items"], i) for i in range(len(node["items"]))]
    if tag == "pydantic":
        return [(f".fields{_key_segment(k)}", node["fields"], k) for k in node["fields"]]
    return []


@given(tagged, st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_single_mutation_is_reported_exactly_at_its_path(value: Any, data: st.DataObject) -> None:
    root = {"v": value}
    mutated = copy.deepcopy(root)
    path, container, key = _P, mutated, "v"
    while True:
        children = _children(container[key])
        if not children or data.draw(st.booleans()):
            break
        segment, container, key = data.draw(st.sampled_from(children))
        path += segment
    sentinel = "MUTATED" if container[key] != "MUTATED" else "MUTATED-2"
    container[key] = sentinel
    diff = compare_snapshots(_snap_with(root["v"]), _snap_with(mutated["v"]))
    assert [d.path for d in diff.differences] == [path]


# --------------------------------------------------------------------------- era findings

SEND = {"__type__": "Send", "node": "work", "arg": {"item": "alpha"}}
SEND_ENVELOPE = {
    "lc": 2,
    "type": "constructor",
    "id": ["langgraph", "constants", "Send"],
    "kwargs": {"node": "work", "arg": {"item": "alpha"}},
}


def era_pair(old_cp: str, old_lg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    old, new = snap(lg=old_lg), snap()
    old["versions"]["langgraph-checkpoint-postgres"] = old_cp
    return old, new


def test_pending_sends_migrated_to_the_tasks_channel_is_benign_only_as_send() -> None:
    old, new = era_pair("2.0.8", "0.2.56")
    latest(new)["channel_values"]["__pregel_tasks"] = [SEND, SEND]
    d = only(compare_snapshots(old, new))
    assert (d.kind, d.severity, d.rule, d.hazard) == (
        "key_added",
        "benign",
        "pending-sends-migrated-2.0.25",
        None,
    )
    latest(new)["channel_values"]["__pregel_tasks"] = [SEND, SEND_ENVELOPE]
    d = only(compare_snapshots(old, new))
    assert (d.severity, d.hazard) == ("breaking", "H-SEND-DROPPED")
    # outside the measured ranges the rule does not apply
    old25, new25 = era_pair("2.0.25", "0.6.9")
    latest(new25)["channel_values"]["__pregel_tasks"] = [SEND]
    assert only(compare_snapshots(old25, new25)).severity == "breaking"


def test_send_read_back_as_envelope_is_send_dropped() -> None:
    old, new = era_pair("1.0.1", "0.2.2")
    latest(old)["pending_writes"] = [{"task_id": "t", "channel": "__pregel_tasks", "value": SEND}]
    latest(new)["pending_writes"] = [
        {"task_id": "t", "channel": "__pregel_tasks", "value": SEND_ENVELOPE}
    ]
    d = only(compare_snapshots(old, new))
    assert d.path.endswith('channel="__pregel_tasks"].value')
    assert (d.kind, d.hazard) == ("type_changed", "H-SEND-DROPPED")


def test_state_interrupts_absent_on_langgraph_0_2_is_benign_not_task_id() -> None:
    old, new = pair("0.2.2", "1.2.22")
    old["threads"][TID]["state"]["interrupts"] = None
    d = only(compare_snapshots(old, new))
    assert (d.path, d.severity, d.rule, d.hazard) == (
        f"{T}.state.interrupts",
        "benign",
        "state-tasks-absent-0.2",
        None,
    )


def test_lost_subgraph_state_next_is_task_id() -> None:
    old, new = pair("0.2.56", "1.2.22")
    child = {"values": {"log": ["a"]}, "next": ["step_2"], "tasks": [], "interrupts": []}
    old["threads"][TID]["state"]["tasks"][0]["state"] = child
    new["threads"][TID]["state"]["tasks"][0]["state"] = dict(child, next=[])
    d = only(compare_snapshots(old, new))
    assert d.path == f'{T}.state.tasks[name="agent"].state.next'
    assert (d.kind, d.hazard) == ("next_changed", "H-TASK-ID")
    assert only(compare_snapshots(snap(old["threads"][TID], lg="1.0.1"), new)).hazard is None


def test_orphaned_writes_consequence_in_state_values_gets_task_id() -> None:
    old, new = pair("0.2.56", "1.2.22")
    state_old, state_new = old["threads"][TID]["state"], new["threads"][TID]["state"]
    state_old["tasks"][0]["error"] = "RuntimeError('boom')"
    state_new["values"]["messages"].pop()  # the sibling's write is no longer applied
    diff = compare_snapshots(old, new)
    by_path = {d.path: d for d in diff.differences}
    assert by_path[f"{T}.state.values.messages"].hazard == "H-TASK-ID"
    assert by_path[f'{T}.state.tasks[name="agent"].error'].hazard == "H-TASK-ID"
    # without a hazard in the thread nothing is attributed
    state_old["tasks"][0]["error"] = None
    assert only(compare_snapshots(old, new)).hazard is None
    # nor when the stored data changed too (it could explain the view)
    state_old["tasks"][0]["error"] = "RuntimeError('boom')"
    latest(new)["channel_values"]["messages"].pop()
    diff = compare_snapshots(old, new)
    assert {d.path: d.hazard for d in diff.differences}[f"{T}.state.values.messages"] is None


def test_resume_consequences_inherit_the_cause_hazard() -> None:
    old = resumes("0.2.56", trace=[{"node": "step_2"}, {"node": "done"}])
    new = resumes(
        "1.2.22", trace=[{"node": "step_1"}], outcome="paused", next=["child"], values_digest="x"
    )
    diff = compare_resumes(old, new)
    assert {d.path.rsplit(".", 1)[-1]: d.hazard for d in diff.differences} == {
        "outcome": "H-TASK-ID",
        'trace[node="done"]': "H-TASK-ID",
        'trace[node="step_1"]': "H-TASK-ID",
        'trace[node="step_2"]': "H-TASK-ID",
        "next": "H-TASK-ID",
        "values_digest": "H-TASK-ID",
    }
    ignored = compare_resumes(old, new, policy=Policy(hazards_ignore=("H-TASK-ID",)))
    assert {d.severity for d in ignored.differences} == {"ignored"}


def test_resume_that_runs_nothing_after_a_send_fan_out_is_send_dropped() -> None:
    fan_out = [{"node": "work:alpha"}, {"node": "work:beta"}, {"node": "reduce"}]
    old = resumes("0.2.2", trace=fan_out, values_digest="a")
    new = resumes("1.2.22", trace=[], values_digest="b")
    diff = compare_resumes(old, new)
    assert {d.hazard for d in diff.differences} == {"H-SEND-DROPPED"}
    assert {d.kind for d in diff.differences} == {"node_not_executed", "value_changed"}
    # a node that still runs something is not a dropped fan-out
    partial = compare_resumes(old, resumes("1.2.22", trace=[{"node": "reduce"}]))
    assert {d.hazard for d in partial.differences} == {"H-TASK-ID"}


def test_resume_error_hazard_explains_the_work_not_done() -> None:
    err = "TypeError: 'Interrupt' object is not subscriptable"
    old = resumes("0.2.56", trace=[{"node": "ask"}, {"node": "finish"}])
    new = resumes("1.0.1", outcome="error", error=err, trace=[], next=["ask"], values_digest="x")
    diff = compare_resumes(old, new)
    assert {d.path.rsplit(".", 1)[-1]: d.hazard for d in diff.differences} == {
        "error": "H-INTERRUPT-RESUME",
        'trace[node="ask"]': "H-INTERRUPT-RESUME",
        'trace[node="finish"]': "H-INTERRUPT-RESUME",
        "next": "H-INTERRUPT-RESUME",
        "values_digest": "H-INTERRUPT-RESUME",
    }


def test_a_key_added_with_none_reads_absent_to_null_not_absent_to_absent() -> None:
    """A trial's gate said "absent -> absent" for a state key added with the value None."""
    added = Difference('threads["t"].state.values.note', "key_added", None, None)
    assert "key_added absent -> null" in added.summary()
    assert "key_added absent -> null" in added.summary(show_values=True)
    entry = added.to_dict()
    assert (entry["old_type"], entry["old_hash"]) == (None, None)
    assert entry["new_type"] == "null" and entry["new_hash"]
    gone = Difference('threads["t"].state.values.note', "key_missing", 3, None)
    assert gone.summary().endswith("-> absent") and gone.to_dict()["new_type"] is None
    changed = Difference('threads["t"].state.values.note', "value_changed", None, 3)
    assert "value_changed null -> " in changed.summary()
