"""Side-effect trace of canary node executions, kept outside the graph state.

Every canary node calls :func:`hit` when it runs. The trace lives in a
process-global list, so a resume that re-executes completed work shows up even
when the final values look right (hazard H-TASK-ID). Worker ops :func:`drain`
it after each canary and return it with their result.

Nodes of one superstep run concurrently in a thread pool, so their order is
not defined; :func:`drain` sorts each run of consecutive hits that share a
canary and a superstep by node name, which makes the trace comparable between
versions. A canary that invokes its graph several times where step numbers can
repeat (a time-travel fork) calls :func:`barrier` between the invocations.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

_LOCK = threading.Lock()
_HITS: list[tuple[str, str, int | None, int]] = []
_SEGMENT = [0]


def _step_of(config: Mapping[str, Any] | None) -> int | None:
    """The superstep a node runs in, from the config langgraph hands to it."""
    if not config:
        return None
    metadata = config.get("metadata") or {}
    step = metadata.get("langgraph_step")
    return step if isinstance(step, int) else None


def hit(canary: str, node: str, config: Mapping[str, Any] | None = None) -> None:
    """Record that ``node`` of ``canary`` just executed.

    Args:
        canary: Name of the canary the node belongs to.
        node: Name to record (a graph node, or ``node:item`` for mapped tasks).
        config: The ``RunnableConfig`` the node received, used to group hits of
            one superstep; optional.
    """
    with _LOCK:
        _HITS.append((canary, node, _step_of(config), _SEGMENT[0]))


def barrier() -> None:
    """Keep hits recorded before and after this call in separate superstep groups."""
    with _LOCK:
        _SEGMENT[0] += 1


def drain(canary: str | None = None) -> list[dict[str, str]]:
    """Remove and return the recorded hits, oldest first.

    Args:
        canary: Only drain this canary's hits (others stay); None drains all.

    Returns:
        ``[{"node": name}, ...]`` in execution order, with concurrent hits of
        one superstep sorted by name.
    """
    with _LOCK:
        taken = [h for h in _HITS if canary is None or h[0] == canary]
        _HITS[:] = [h for h in _HITS if not (canary is None or h[0] == canary)]
    ordered: list[tuple[str, str, int | None, int]] = []
    run: list[tuple[str, str, int | None, int]] = []
    for item in taken:
        if run and (
            item[2] is None or (item[0], item[2], item[3]) != (run[0][0], run[0][2], run[0][3])
        ):
            ordered.extend(sorted(run, key=lambda h: h[1]))
            run = []
        run.append(item)
    ordered.extend(sorted(run, key=lambda h: h[1]))
    return [{"node": item[1]} for item in ordered]


def clear() -> None:
    """Forget every recorded hit."""
    with _LOCK:
        _HITS.clear()
