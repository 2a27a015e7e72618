"""Worker op ``resume``: continue each seeded canary thread the way an app would.

The host runs it in the old and in the new version environment (on copies of
the same database) and compares outcomes and node-execution traces: a node that
ran during seed and runs again during resume is re-executed work (H-TASK-ID).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
from typing import Any

from migrator.worker import compat, trace
from migrator.worker.canaries import (
    is_resumable,
    select_canaries,
    thread_id_of,
    unsupported_reason_of,
)
from migrator.worker.saver import open_saver


def canonical(value: Any) -> Any:
    """A JSON-able, type-tagged, order-independent form of a state value.

    Best effort: messages keep only the fields every langchain-core version
    has (type, content, id, tool calls, tool_call_id), so fields newer
    releases add with defaults do not change the digest.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, dict):
        return {"dict": sorted([json.dumps(canonical(k)), canonical(v)] for k, v in value.items())}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [canonical(v) for v in value]}
    if isinstance(value, set | frozenset):
        return {"set": sorted(json.dumps(canonical(v)) for v in value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, enum.Enum):
        return {"enum": _type_name(value), "value": canonical(value.value)}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return {_type_name(value): value.isoformat()}
    if hasattr(value, "tool_call_id") or (hasattr(value, "content") and hasattr(value, "type")):
        return {
            "message": getattr(value, "type", None),
            "content": canonical(getattr(value, "content", None)),
            "id": getattr(value, "id", None),
            "tool_calls": canonical(
                [
                    {"name": c["name"], "args": c["args"], "id": c["id"]}
                    for c in getattr(value, "tool_calls", None) or []
                ]
            ),
            "tool_call_id": getattr(value, "tool_call_id", None),
        }
    if hasattr(value, "model_dump"):
        return {"model": _type_name(value), "fields": canonical(value.model_dump())}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"dataclass": _type_name(value), "fields": canonical(fields)}
    return {_type_name(value): str(value)}


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def values_digest(values: Any) -> str:
    """sha256 of the canonical JSON of a thread's final values."""
    text = json.dumps(canonical(values), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def resume_canary(canary: Any, saver: Any, info: dict[str, str | None]) -> dict[str, Any]:
    """Resume one canary's thread and describe the outcome.

    Args:
        canary: The canary object.
        saver: An open ``PostgresSaver``.
        info: Installed versions, passed to ``unsupported_reason``.

    Returns:
        ``{"thread_id", "canary", "outcome", "error", "reason", "trace", "next",
        "values_digest"}``; ``outcome`` is ``completed``, ``paused``, ``error``
        or ``skipped`` (not resumable, unsupported here, or never seeded).
    """
    thread_id = thread_id_of(canary)
    entry: dict[str, Any] = {
        "thread_id": thread_id,
        "canary": canary.name,
        "outcome": "skipped",
        "error": None,
        "reason": None,
        "trace": [],
        "next": None,
        "values_digest": None,
    }
    config = compat.thread_config(thread_id)
    try:
        reason = unsupported_reason_of(canary, info)
        if reason is None and not is_resumable(canary):
            reason = "not resumable"
        if reason is None and saver.get_tuple(config) is None:
            reason = "thread has no checkpoint (not seeded)"
    except Exception as exc:
        entry.update(outcome="error", error=f"{type(exc).__name__}: {exc}")
        return entry
    if reason:
        entry["reason"] = reason
        return entry
    trace.drain(canary.name)
    graph = None
    try:
        graph = canary.build(saver)
        canary.resume(graph, config)
    except Exception as exc:
        entry.update(outcome="error", error=f"{type(exc).__name__}: {exc}")
    entry["trace"] = trace.drain(canary.name)
    if graph is not None:
        try:
            state = graph.get_state(config)
            entry["next"] = sorted(state.next)
            entry["values_digest"] = values_digest(state.values)
            if entry["outcome"] != "error":
                entry["outcome"] = "paused" if state.next else "completed"
        except Exception as exc:
            if entry["outcome"] != "error":
                entry.update(outcome="error", error=f"get_state: {type(exc).__name__}: {exc}")
    return entry


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Resume the requested canaries' threads.

    Args:
        request: ``{"dsn": str, "canaries": [name, ...] | None (all built-in and
            user canaries), "user_canaries": "module:attr" | None}``.

    Returns:
        ``{"threads": [...], "versions": {...}}``, one entry per canary as
        :func:`resume_canary` describes.

    Raises:
        CanaryConfigError: Unknown canary name, or user canaries that cannot be loaded.
    """
    canaries = select_canaries(request.get("canaries"), request.get("user_canaries"))
    info = compat.installed_versions()
    with open_saver(request["dsn"]) as saver:
        threads = [resume_canary(canary, saver, info) for canary in canaries]
    return {"threads": threads, "versions": info}
