"""Transforms a restore applies to decoded dump records (run in the NEW env).

A record is the decoded form of a dump record (``docs/dump-restore.md``)::

    {"thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id",
     "checkpoint": {... with "channel_values" ...}, "metadata": {...},
     "pending_writes": [{"task_id", "task_path", "channel", "value"}, ...]}

A user transform is ``module:function`` taking one record and returning the
record to write (the same object changed in place, a new one, or None for
"unchanged"). The built-in ``task-id`` transform cures H-TASK-ID: it works on a
whole thread at once, because a subgraph's namespace carries the id of a task
prepared in its parent's checkpoint.

H-TASK-ID: langgraph <= 0.3.16 derived a PULL task's id from the channels that
*triggered* it; newer versions hash all of the node's triggers (and use xxh3 for
checkpoints of format ``v`` > 1). Pending writes stored under the old ids are
orphaned by newer code, and a paused subgraph's namespace ``<node>:<old id>``
is never found again. The cure asks the NEW version which tasks it prepares for
each checkpoint (``graph.get_state`` on an in-memory copy of the checkpoint),
recomputes each task's id under the old scheme, and renames what the old id
keyed: the task ids of pending writes and the ``<node>:<task id>`` segments of
child namespaces (nested namespaces are ``|``-joined and handled top-down).
langgraph 0.2.0 (checkpoint-postgres 1.0.0) named a child namespace ``<node>``
alone; it becomes ``<node>:<task id>`` with the id the new version prepares.
"""

from __future__ import annotations

import binascii
import copy
import importlib
import itertools
from collections.abc import Callable, Iterable
from hashlib import sha1
from typing import Any

NS_SEP = "|"
NS_END = ":"
PULL = "__pregel_pull"
PUSH = "__pregel_push"
MAX_TRIGGER_SUBSETS = 4096


class TransformError(Exception):
    """A transform could not be loaded or failed; the restore stops before any swap."""


def load_callable(spec: str, what: str) -> Any:
    """Import ``module:attr``.

    Raises:
        TransformError: malformed spec, module or attribute missing.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TransformError(f"{what} {spec!r} is not of the form module:attr")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TransformError(f"cannot import {what} module {module_name!r}: {exc}") from exc
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError as exc:
            raise TransformError(f"{what} module {module_name!r} has no {attr!r}") from exc
    return value


def apply_user(transform: Callable[[dict[str, Any]], Any], record: dict[str, Any]) -> Any:
    """Run a user transform on a copy of ``record``; return the record to write."""
    work = copy.deepcopy(record)
    try:
        out = transform(work)
    except Exception as exc:
        raise TransformError(
            f"transform raised on {record['thread_id']}/{record['checkpoint_ns']}/"
            f"{record['checkpoint_id']}: {type(exc).__name__}: {exc}"
        ) from exc
    result = work if out is None else out
    if not isinstance(result, dict):
        raise TransformError(f"transform returned {type(result).__name__}, not a record dict")
    return result


# --------------------------------------------------------------------------- graphs


def graph_for(spec_or_obj: Any, checkpointer: Any) -> Any:
    """A compiled graph on ``checkpointer`` from a builder, a StateGraph or a compiled graph."""
    obj = spec_or_obj
    if hasattr(obj, "compile") and not hasattr(obj, "get_state"):
        return obj.compile(checkpointer=checkpointer)
    if hasattr(obj, "get_state"):
        from migrator.worker.app import with_checkpointer

        return with_checkpointer(obj, checkpointer)
    if hasattr(obj, "build"):  # a canary
        return obj.build(checkpointer)
    if callable(obj):
        return obj(checkpointer)
    raise TransformError(f"{obj!r} is not a graph, a StateGraph or a graph builder")


def canary_graph_source(thread_id: str) -> Any | None:
    """The built-in canary for a ``canary:<name>`` thread, or None."""
    if not thread_id.startswith("canary:"):
        return None
    from migrator.worker import canaries

    try:
        return canaries.get(thread_id.split(":", 1)[1])
    except canaries.CanaryConfigError:
        return None


def _memory_saver() -> Any:
    try:
        from langgraph.checkpoint.memory import InMemorySaver
    except ImportError:  # older langgraph-checkpoint
        from langgraph.checkpoint.memory import MemorySaver as InMemorySaver
    return InMemorySaver()


# --------------------------------------------------------------------------- task ids


def _uuid5_str(namespace: bytes, *parts: str) -> str:
    """langgraph <= 0.3.16's task id: SHA-1 of a namespace and the joined parts."""
    sha = sha1(namespace, usedforsecurity=False)
    sha.update(b"".join(p.encode() for p in parts))
    hexd = sha.hexdigest()
    return f"{hexd[:8]}-{hexd[8:12]}-{hexd[12:16]}-{hexd[16:20]}-{hexd[20:32]}"


def _old_ids(
    checkpoint_id: str, parent_ns: str, step: int, name: str, path: Any, triggers: Iterable[str]
) -> set[str]:
    """Every id the old scheme could have given this task (trigger subsets for PULL)."""
    cid = binascii.unhexlify(checkpoint_id.replace("-", ""))
    ns = f"{parent_ns}{NS_SEP}{name}" if parent_ns else name
    out: set[str] = set()
    kind = path[0] if isinstance(path, (tuple, list)) and path else PULL
    if kind == PUSH:
        if len(path) >= 2 and isinstance(path[1], int):
            out.add(_uuid5_str(cid, ns, str(step), name, PUSH, str(path[1])))
        return out
    trig = sorted(set(triggers))
    count = 0
    for size in range(1, len(trig) + 1):
        for subset in itertools.combinations(trig, size):
            out.add(_uuid5_str(cid, ns, str(step), name, PULL, *subset))
            count += 1
            if count >= MAX_TRIGGER_SUBSETS:
                return out
    return out


def _newer(version: Any, seen: Any) -> bool:
    if seen is None:
        return True
    if type(version) is type(seen):
        return bool(version > seen)
    return str(version) > str(seen)


def _updated_channels(checkpoint: dict[str, Any], name: str) -> set[str]:
    """Channels whose version is newer than what node ``name`` has seen.

    The old scheme hashed exactly the node's triggers among these, under the
    channel names the OLD version used (which newer versions renamed), so the
    candidates come from the checkpoint itself.
    """
    seen = (checkpoint.get("versions_seen") or {}).get(name) or {}
    return {
        str(ch)
        for ch, version in (checkpoint.get("channel_versions") or {}).items()
        if _newer(version, seen.get(ch))
    }


def _node_triggers(graph: Any, name: str) -> list[str]:
    node = getattr(graph, "nodes", {}).get(name)
    triggers = getattr(node, "triggers", None) or []
    return [str(t) for t in triggers]


def _subgraph(graph: Any, ns: str) -> Any:
    """The (sub)graph that writes checkpoints in namespace ``ns`` ("" is the root)."""
    if not ns:
        return graph
    recast = NS_SEP.join(seg.split(NS_END, 1)[0] for seg in ns.split(NS_SEP))
    for _, sub in graph.get_subgraphs(namespace=recast, recurse=True):
        return sub
    return None


def new_tasks(graph: Any, record: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """``(id, name, path)`` of the tasks the NEW version prepares for ``record``.

    The checkpoint goes into an in-memory saver under its (already renamed)
    namespace, so no database is involved; the graph locates the subgraph of a
    child namespace itself.
    """
    saver = _memory_saver()
    bound = graph_for(graph, saver)
    checkpoint = copy.deepcopy(record["checkpoint"])
    config = {
        "configurable": {"thread_id": record["thread_id"], "checkpoint_ns": record["checkpoint_ns"]}
    }
    versions = dict(checkpoint.get("channel_versions") or {})
    stored = saver.put(config, checkpoint, copy.deepcopy(record["metadata"]), versions)
    state = bound.get_state(stored)
    return [
        (str(t.id), str(t.name), tuple(getattr(t, "path", ()) or ()))
        for t in getattr(state, "tasks", ()) or ()
    ]


def _rename_ns(
    ns: str, depth: int, mapping: dict[str, str], bare: dict[str, str] | None = None
) -> str:
    """Replace the task id of segment ``depth`` of ``ns`` when ``mapping`` has it.

    A bare segment (``<node>``, as langgraph 0.2.0 / checkpoint-postgres 1.0.0
    wrote child namespaces) becomes ``<node>:<task id>`` when ``bare`` has the node.
    """
    segments = ns.split(NS_SEP)
    name, sep, task_id = segments[depth].partition(NS_END)
    if sep and task_id in mapping:
        segments[depth] = f"{name}{NS_END}{mapping[task_id]}"
    elif not sep and bare and name in bare:
        segments[depth] = f"{name}{NS_END}{bare[name]}"
    return NS_SEP.join(segments)


def _bare_children(
    graph: Any, members: list[dict[str, Any]], children: list[dict[str, Any]], depth: int
) -> dict[str, str]:
    """Node name -> new task id for child namespaces stored without a task id.

    langgraph 0.2.0 named a subgraph's namespace after its node only (``child``);
    newer versions look a paused child up under ``child:<task id>``. The task is
    the one the NEW version prepares for that node in the newest parent checkpoint
    that prepares it (the step the child paused in).
    """
    names = {
        seg for r in children if NS_END not in (seg := r["checkpoint_ns"].split(NS_SEP)[depth])
    }
    found: dict[str, str] = {}
    for r in sorted(members, key=lambda x: str(x["checkpoint_id"]), reverse=True):
        if names <= set(found):
            break
        for new_id, name, _path in new_tasks(graph, r):
            if name in names and name not in found:
                found[name] = new_id
    return found


def _depth(ns: str) -> int:
    return ns.count(NS_SEP) + 1 if ns else 0


def cure_task_ids(records: list[dict[str, Any]], graph_source: Any) -> list[str]:
    """Rewrite one thread's records from the old task-id scheme to the new one, in place.

    Namespaces are handled top-down: the ids in a child namespace were derived
    from the parent's namespace text, so old ids are recomputed with the original
    namespace and new ones with the renamed one.

    Args:
        records: Every decoded record of one thread.
        graph_source: The application graph (compiled graph, StateGraph, builder
            or canary) the thread was written by.

    Returns:
        Human-readable changes (``old -> new``), empty when nothing needed renaming.
    """
    changes: list[str] = []
    graph = graph_for(graph_source, _memory_saver())
    original = {id(r): r["checkpoint_ns"] for r in records}
    max_depth = max((_depth(r["checkpoint_ns"]) for r in records), default=0)
    for depth in range(max_depth + 1):
        by_ns: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            if _depth(r["checkpoint_ns"]) == depth:
                by_ns.setdefault(r["checkpoint_ns"], []).append(r)
        for ns, members in by_ns.items():
            prefix = f"{ns}{NS_SEP}" if ns else ""
            children = [
                r
                for r in records
                if r["checkpoint_ns"].startswith(prefix) and _depth(r["checkpoint_ns"]) > depth
            ]
            child_ids = {
                r["checkpoint_ns"].split(NS_SEP)[depth].partition(NS_END)[2] for r in children
            } - {""}
            bare = _bare_children(graph, members, children, depth)
            mapping: dict[str, str] = {}
            for r in sorted(members, key=lambda x: str(x["checkpoint_id"]), reverse=True):
                wanted = {w["task_id"] for w in r["pending_writes"]} | (child_ids - set(mapping))
                if not wanted:
                    continue
                local = _map_checkpoint(graph, r, original[id(r)], wanted)
                for w in r["pending_writes"]:
                    new = local.get(w["task_id"])
                    if new and new != w["task_id"]:
                        changes.append(
                            f"{r['thread_id']}/{r['checkpoint_ns'] or '(root)'}/"
                            f"{r['checkpoint_id']}: "
                            f"task {w['task_id']} -> {new} (write to {w['channel']})"
                        )
                        w["task_id"] = new
                mapping.update({k: v for k, v in local.items() if k in child_ids})
            renamed = {k: v for k, v in mapping.items() if k != v}
            for r in children:
                cns = r["checkpoint_ns"]
                new_ns = _rename_ns(cns, depth, renamed, bare)
                if new_ns != cns:
                    changes.append(f"namespace {cns} -> {new_ns} ({r['thread_id']})")
                    r["checkpoint_ns"] = new_ns
    return _dedupe(changes)


def _dedupe(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _map_checkpoint(
    graph: Any, record: dict[str, Any], original_ns: str, wanted: set[str]
) -> dict[str, str]:
    """Old task id -> new task id for the tasks of one checkpoint, limited to ``wanted``."""
    tasks = new_tasks(graph, record)
    if not tasks:
        return {}
    target = _subgraph(graph, record["checkpoint_ns"])
    step = int((record["metadata"] or {}).get("step", -1)) + 1
    out: dict[str, str] = {}
    for new_id, name, path in tasks:
        if new_id in wanted:
            out[new_id] = new_id
            continue
        triggers = set(_node_triggers(target, name) if target is not None else [])
        triggers |= _updated_channels(record["checkpoint"], name)
        for old in _old_ids(record["checkpoint_id"], original_ns, step, name, path, triggers):
            if old in wanted:
                out[old] = new_id
    return out
