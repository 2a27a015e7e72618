"""A canary whose messages live in a ``DeltaChannel`` (langgraph >= 1.2; H-DELTA-*).

A ``DeltaChannel`` stores a full snapshot blob (msgpack ext 7) every
``snapshot_frequency`` updates and nothing in between: a step's value is rebuilt
at read time by replaying the parent chain's writes through the reducer. So:

* versions before 1.2 cannot read these threads (H-DELTA-ROLLBACK);
* a copy or restore that drops an ancestor rebuilds the channel wrong, silently;
* a library upgrade can change what identical rows read back as
  (H-DELTA-SEMANTICS): langgraph 1.2.24's messages delta reducer honours
  ``RemoveMessage(id=REMOVE_ALL_MESSAGES)``, which 1.2.23 and earlier ignored.
  The third turn sends exactly that, so the drift check sees the difference.

Runs only where ``langgraph.channels.delta.DeltaChannel`` and the messages delta
reducer exist; elsewhere ``unsupported_reason`` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig

from migrator.worker import compat, trace
from migrator.worker.canaries import Canary

#: The seed makes 6 updates: a snapshot blob after the 4th, and the last step is
#: rebuilt by replaying the REMOVE_ALL_MESSAGES write on top of it.
SNAPSHOT_FREQUENCY = 4
_TURNS = ("first question", "second question", "start over: third question", "fourth question")


def _delta_api() -> tuple[Any, Any, Any, Any] | None:
    """(DeltaChannel, messages delta reducer, RemoveMessage, REMOVE_ALL_MESSAGES), or None."""
    try:
        from langchain_core.messages import RemoveMessage
        from langgraph.channels.delta import DeltaChannel
        from langgraph.graph import message
    except ImportError:
        return None
    reducer = getattr(message, "_messages_delta_reducer", None)
    remove_all = getattr(message, "REMOVE_ALL_MESSAGES", None)
    if reducer is None or remove_all is None:
        return None
    return DeltaChannel, reducer, RemoveMessage, remove_all


def _reply(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
    trace.hit("delta_messages", "reply", config)
    _, ai_message, _ = compat.message_classes()
    n = len(state["messages"])
    last = state["messages"][-1].content if state["messages"] else ""
    return {"messages": [ai_message(content=f"answer to {last}", id=f"canary-delta-ai-{n}")]}


class DeltaMessagesCanary(Canary):
    """Three turns of messages in a ``DeltaChannel``, the third starting over."""

    name = "delta_messages"
    resumable = True
    expected_seed_trace = ("reply",) * 3
    expected_resume_trace = ("reply",)

    def unsupported_reason(self, info: Mapping[str, str | None]) -> str | None:
        if _delta_api() is None:
            return "DeltaChannel needs langgraph >= 1.2"
        return None

    def build(self, checkpointer: Any) -> Any:
        api = _delta_api()
        assert api is not None
        delta_channel, reducer, _, _ = api

        # Functional form: a class body's annotations would be strings (PEP 563)
        # naming a local the graph cannot resolve.
        channel = delta_channel(reducer, snapshot_frequency=SNAPSHOT_FREQUENCY)
        fields = {"messages": Annotated[list[Any], channel]}
        state: Any = TypedDict("_DeltaState", fields)  # type: ignore[misc]  # noqa: UP013
        state_graph, start, end = compat.graph_api()
        graph = state_graph(state)
        graph.add_node("reply", _reply)
        graph.add_edge(start, "reply")
        graph.add_edge("reply", end)
        return graph.compile(checkpointer=checkpointer)

    def _turn(self, graph: Any, config: dict[str, Any], index: int) -> None:
        api = _delta_api()
        assert api is not None
        _, _, remove_message, remove_all = api
        human_message, _, _ = compat.message_classes()
        messages: list[Any] = [human_message(content=_TURNS[index], id=f"canary-delta-h-{index}")]
        if index == 2:
            messages.insert(0, remove_message(id=remove_all))
        graph.invoke({"messages": messages}, config)

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        for index in range(3):
            self._turn(graph, config, index)

    def resume(self, graph: Any, config: dict[str, Any]) -> None:
        self._turn(graph, config, 3)
