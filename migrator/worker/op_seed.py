"""Worker op ``seed``: drive each canary's graph to its known shape in the database.

Assumes the checkpoint tables exist (the host runs op ``setup`` first).
"""

from __future__ import annotations

from typing import Any

from migrator.worker import compat, trace
from migrator.worker.canaries import (
    select_canaries,
    thread_id_of,
    unsupported_reason_of,
)
from migrator.worker.saver import open_saver


def seed_canary(canary: Any, saver: Any, info: dict[str, str | None]) -> dict[str, Any]:
    """Seed one canary's thread and describe what happened.

    A canary that raises is reported with status ``error``; it does not stop
    the other canaries.

    Args:
        canary: The canary object.
        saver: An open ``PostgresSaver``.
        info: Installed versions, passed to ``unsupported_reason``.

    Returns:
        ``{"thread_id", "canary", "status", "reason", "trace"}``.
    """
    thread_id = thread_id_of(canary)
    entry: dict[str, Any] = {
        "thread_id": thread_id,
        "canary": canary.name,
        "status": "seeded",
        "reason": None,
        "trace": [],
    }
    try:
        reason = unsupported_reason_of(canary, info)
    except Exception as exc:  # a user canary's check is user code
        reason = None
        entry.update(status="error", reason=f"unsupported_reason: {type(exc).__name__}: {exc}")
        return entry
    if reason:
        entry.update(status="skipped", reason=reason)
        return entry
    config = compat.thread_config(thread_id)
    trace.drain(canary.name)
    try:
        if saver.get_tuple(config) is not None:
            raise RuntimeError(
                f"thread {thread_id!r} already has checkpoints; seed a fresh database"
            )
        graph = canary.build(saver)
        canary.seed(graph, config)
    except Exception as exc:
        entry.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    entry["trace"] = trace.drain(canary.name)
    return entry


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Seed the requested canaries.

    Args:
        request: ``{"dsn": str, "canaries": [name, ...] | None (all built-in and
            user canaries), "user_canaries": "module:attr" | None}``.

    Returns:
        ``{"threads": [{"thread_id", "canary", "status": "seeded"|"skipped"|"error",
        "reason": str|None, "trace": [{"node": str}, ...]}], "versions": {...}}``.

    Raises:
        CanaryConfigError: Unknown canary name, or user canaries that cannot be loaded.
    """
    canaries = select_canaries(request.get("canaries"), request.get("user_canaries"))
    info = compat.installed_versions()
    with open_saver(request["dsn"]) as saver:
        threads = [seed_canary(canary, saver, info) for canary in canaries]
    return {"threads": threads, "versions": info}
