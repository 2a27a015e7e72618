"""Canaries for thread structure: subgraph, time-travel fork, failed node, large state."""

from __future__ import annotations

import hashlib
import operator
import threading
import time
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig

from migrator.worker import compat, trace
from migrator.worker.canaries import Canary


class _LogState(TypedDict):
    log: Annotated[list[str], operator.add]


def _logging_node(canary: str, node: str) -> Any:
    def run(state: _LogState, config: RunnableConfig) -> dict[str, Any]:
        trace.hit(canary, node, config)
        return {"log": [node]}

    run.__name__ = f"{canary}_{node}"
    return run


def _chain(canary: str, nodes: list[str], **compile_kwargs: Any) -> Any:
    """A compiled linear graph ``START -> nodes... -> END`` over :class:`_LogState`."""
    state_graph, start, end = compat.graph_api()
    graph = state_graph(_LogState)
    previous = start
    for node in nodes:
        graph.add_node(node, _logging_node(canary, node))
        graph.add_edge(previous, node)
        previous = node
    graph.add_edge(previous, end)
    return graph.compile(**compile_kwargs)


# --- subgraph -----------------------------------------------------------------


class SubgraphCanary(Canary):
    """``prep -> child(step_1 -> step_2) -> done``, paused inside the child before ``step_2``.

    The child's checkpoints live under a non-empty ``checkpoint_ns``
    (``child:<task_id>``); H-TASK-ID makes newer code look in another namespace,
    re-run ``step_1`` and stop at the same interrupt again.
    """

    name = "subgraph"
    resumable = True
    expected_seed_trace = ("prep", "step_1")
    expected_resume_trace = ("step_2", "done")

    def build(self, checkpointer: Any) -> Any:
        state_graph, start, end = compat.graph_api()
        child = _chain(self.name, ["step_1", "step_2"], interrupt_before=["step_2"])
        graph = state_graph(_LogState)
        graph.add_node("prep", _logging_node(self.name, "prep"))
        graph.add_node("child", child)
        graph.add_node("done", _logging_node(self.name, "done"))
        graph.add_edge(start, "prep")
        graph.add_edge("prep", "child")
        graph.add_edge("child", "done")
        graph.add_edge("done", end)
        return graph.compile(checkpointer=checkpointer)

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke({"log": ["start"]}, config)

    def resume(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke(None, config)


# --- time travel --------------------------------------------------------------


class TimeTravelCanary(Canary):
    """``a -> b -> c`` run to the end, then forked after ``a``.

    ``update_state`` on the checkpoint after ``a`` (as node ``a``) writes
    ``"edited"`` and a second run from the fork executes ``b`` and ``c`` again,
    so that checkpoint has two children: the original ``b`` step and the edit.
    """

    name = "time_travel"
    expected_seed_trace = ("a", "b", "c", "b", "c")

    def build(self, checkpointer: Any) -> Any:
        return _chain(self.name, ["a", "b", "c"], checkpointer=checkpointer)

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke({"log": ["start"]}, config)
        trace.barrier()
        after_a = next(s for s in graph.get_state_history(config) if tuple(s.next) == ("b",))
        fork = graph.update_state(after_a.config, {"log": ["edited"]}, as_node="a")
        graph.invoke(None, fork)


# --- failed node --------------------------------------------------------------

#: ``configurable`` key that makes the ``flaky`` node fail (seed sets it, resume not).
FAIL_FLAG = "canary_fail"

# Lets the failing ``flaky`` wait until ``sibling`` has finished, so the failed
# superstep always holds the sibling's writes (tasks of a step run concurrently).
_SIBLING_DONE = threading.Event()


class FailedNodeCanary(Canary):
    """``fan -> (sibling, flaky) -> join`` where ``flaky`` raised while ``sibling`` succeeded.

    The failing superstep leaves pending writes: ``sibling``'s output and
    ``flaky``'s error. ``flaky`` fails only while the run config carries
    ``configurable[canary_fail]``, so the resume (another process, no flag)
    succeeds and must not run ``sibling`` again.
    """

    name = "failed_node"
    resumable = True
    expected_seed_trace = ("fan", "flaky", "sibling")
    expected_resume_trace = ("flaky", "join")

    def build(self, checkpointer: Any) -> Any:
        state_graph, start, end = compat.graph_api()

        def flaky(state: _LogState, config: RunnableConfig) -> dict[str, Any]:
            trace.hit(self.name, "flaky", config)
            if compat.configurable(config).get(FAIL_FLAG):
                _SIBLING_DONE.wait(timeout=10)
                time.sleep(0.2)  # let the saver store the sibling's writes first
                raise RuntimeError("canary: planned failure in flaky")
            return {"log": ["flaky"]}

        def sibling(state: _LogState, config: RunnableConfig) -> dict[str, Any]:
            trace.hit(self.name, "sibling", config)
            _SIBLING_DONE.set()
            return {"log": ["sibling"]}

        graph = state_graph(_LogState)
        graph.add_node("fan", _logging_node(self.name, "fan"))
        graph.add_node("sibling", sibling)
        graph.add_node("flaky", flaky)
        graph.add_node("join", _logging_node(self.name, "join"))
        graph.add_edge(start, "fan")
        graph.add_edge("fan", "sibling")
        graph.add_edge("fan", "flaky")
        graph.add_edge(["sibling", "flaky"], "join")
        graph.add_edge("join", end)
        return graph.compile(checkpointer=checkpointer)

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        _SIBLING_DONE.clear()
        failing = {**config, "configurable": {**config["configurable"], FAIL_FLAG: True}}
        try:
            graph.invoke({"log": ["start"]}, failing)
        except RuntimeError as exc:
            if "planned failure" not in str(exc):
                raise
        else:
            raise AssertionError("flaky did not fail during seed")

    def resume(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke(None, config)


# --- large state --------------------------------------------------------------

LARGE_STEPS = 16
_CHUNK_REPEAT = 1040  # 64 hex chars x 1040 = 66,560 bytes per step, ~1.07 MB in all


def large_chunk(index: int) -> str:
    """The deterministic chunk the ``grow`` node appends at step ``index``."""
    return hashlib.sha256(f"canary-large-{index}".encode()).hexdigest() * _CHUNK_REPEAT


class _LargeState(TypedDict):
    chunks: Annotated[list[str], operator.add]
    verified: str


class LargeStateCanary(Canary):
    """``grow`` loops 16 times appending ~65 KB chunks (>= 1 MB), then pauses before ``verify``.

    Resume runs ``verify``, which recomputes every chunk and raises when the
    loaded state differs (truncated, reordered or re-encoded).
    """

    name = "large_state"
    resumable = True
    expected_seed_trace = ("grow",) * LARGE_STEPS
    expected_resume_trace = ("verify",)

    def build(self, checkpointer: Any) -> Any:
        state_graph, start, end = compat.graph_api()

        def grow(state: _LargeState, config: RunnableConfig) -> dict[str, Any]:
            trace.hit(self.name, "grow", config)
            return {"chunks": [large_chunk(len(state["chunks"]))]}

        def more(state: _LargeState) -> str:
            return "grow" if len(state["chunks"]) < LARGE_STEPS else "verify"

        def verify(state: _LargeState, config: RunnableConfig) -> dict[str, Any]:
            trace.hit(self.name, "verify", config)
            expected = [large_chunk(i) for i in range(LARGE_STEPS)]
            if state["chunks"] != expected:
                raise ValueError("large_state: loaded chunks differ from what seed wrote")
            digest = hashlib.sha256("".join(state["chunks"]).encode()).hexdigest()
            return {"verified": digest}

        graph = state_graph(_LargeState)
        graph.add_node("grow", grow)
        graph.add_node("verify", verify)
        graph.add_edge(start, "grow")
        graph.add_conditional_edges("grow", more, {"grow": "grow", "verify": "verify"})
        graph.add_edge("verify", end)
        return graph.compile(checkpointer=checkpointer, interrupt_before=["verify"])

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke({"chunks": [], "verified": ""}, config)

    def resume(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke(None, config)
