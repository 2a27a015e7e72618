"""Canaries for control flow: messages with tool calls, interrupts, ``Send`` fan-out."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig

from migrator.worker import compat, trace
from migrator.worker.canaries import Canary

# --- messages ---------------------------------------------------------------

_TURNS = ("What is the capital of France?", "And of Italy?", "And of Spain?")


class _MessagesState(TypedDict):
    messages: Annotated[list[Any], compat.add_messages_reducer()]


def _fake_model(state: _MessagesState, config: RunnableConfig) -> dict[str, Any]:
    """A deterministic stand-in for an LLM: asks a tool, then answers from it."""
    trace.hit("messages", "agent", config)
    _, ai_message, tool_message = compat.message_classes()
    messages = state["messages"]
    last = messages[-1]
    n = len(messages)
    if isinstance(last, tool_message):
        reply = ai_message(content=f"The answer is {last.content}.", id=f"canary-ai-{n}")
    else:
        reply = ai_message(
            content="",
            id=f"canary-ai-{n}",
            tool_calls=[{"name": "lookup", "args": {"query": last.content}, "id": f"call-{n}"}],
        )
    return {"messages": [reply]}


def _fake_tools(state: _MessagesState, config: RunnableConfig) -> dict[str, Any]:
    """Answers every tool call of the last AI message with a fixed ToolMessage."""
    trace.hit("messages", "tools", config)
    _, _, tool_message = compat.message_classes()
    last = state["messages"][-1]
    n = len(state["messages"])
    return {
        "messages": [
            tool_message(
                content=f"capital-{call['args']['query'].split()[-1].rstrip('?')}",
                tool_call_id=call["id"],
                id=f"canary-tool-{n}-{i}",
            )
            for i, call in enumerate(last.tool_calls)
        ]
    }


def _route_tools(state: _MessagesState) -> str:
    last = state["messages"][-1]
    return "tools" if getattr(last, "tool_calls", None) else "__end__"


class MessagesCanary(Canary):
    """Two finished turns of Human/AI(tool_calls)/Tool messages; resume adds a third."""

    name = "messages"
    resumable = True
    expected_seed_trace = ("agent", "tools", "agent") * 2
    expected_resume_trace = ("agent", "tools", "agent")

    def unsupported_reason(self, info: Mapping[str, str | None]) -> str | None:
        return compat.json_only_reason()

    def build(self, checkpointer: Any) -> Any:
        state_graph, start, end = compat.graph_api()
        graph = state_graph(_MessagesState)
        graph.add_node("agent", _fake_model)
        graph.add_node("tools", _fake_tools)
        graph.add_edge(start, "agent")
        graph.add_conditional_edges("agent", _route_tools, {"tools": "tools", "__end__": end})
        graph.add_edge("tools", "agent")
        return graph.compile(checkpointer=checkpointer)

    def _turn(self, graph: Any, config: dict[str, Any], index: int) -> None:
        human_message, _, _ = compat.message_classes()
        message = human_message(content=_TURNS[index], id=f"canary-human-{index}")
        graph.invoke({"messages": [message]}, config)

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        self._turn(graph, config, 0)
        self._turn(graph, config, 1)

    def resume(self, graph: Any, config: dict[str, Any]) -> None:
        self._turn(graph, config, 2)


# --- interrupts -------------------------------------------------------------


class _LogState(TypedDict):
    log: Annotated[list[str], operator.add]


def _logging_node(canary: str, node: str) -> Any:
    def run(state: _LogState, config: RunnableConfig) -> dict[str, Any]:
        trace.hit(canary, node, config)
        return {"log": [node]}

    run.__name__ = f"{canary}_{node}"
    return run


class InterruptBeforeCanary(Canary):
    """``draft -> approve -> publish``, paused by ``interrupt_before=["approve"]``."""

    name = "interrupt_before"
    resumable = True
    expected_seed_trace = ("draft",)
    expected_resume_trace = ("approve", "publish")

    def build(self, checkpointer: Any) -> Any:
        state_graph, start, end = compat.graph_api()
        graph = state_graph(_LogState)
        for node in ("draft", "approve", "publish"):
            graph.add_node(node, _logging_node(self.name, node))
        graph.add_edge(start, "draft")
        graph.add_edge("draft", "approve")
        graph.add_edge("approve", "publish")
        graph.add_edge("publish", end)
        return graph.compile(checkpointer=checkpointer, interrupt_before=["approve"])

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke({"log": ["start"]}, config)

    def resume(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke(None, config)


def _ask(state: _LogState, config: RunnableConfig) -> dict[str, Any]:
    # Runs again from the top on resume: that is how interrupt() works.
    trace.hit("interrupt_fn", "ask", config)
    interrupt = compat.interrupt_function()
    assert interrupt is not None
    answer = interrupt({"question": "publish?", "draft": state["log"][-1]})
    return {"log": [f"answer:{answer}"]}


class InterruptFnCanary(Canary):
    """``prepare -> ask -> finish`` where ``ask`` is paused inside ``interrupt()``."""

    name = "interrupt_fn"
    resumable = True
    expected_seed_trace = ("prepare", "ask")
    expected_resume_trace = ("ask", "finish")

    def unsupported_reason(self, info: Mapping[str, str | None]) -> str | None:
        return compat.interrupt_fn_unsupported()

    def build(self, checkpointer: Any) -> Any:
        state_graph, start, end = compat.graph_api()
        graph = state_graph(_LogState)
        graph.add_node("prepare", _logging_node(self.name, "prepare"))
        graph.add_node("ask", _ask)
        graph.add_node("finish", _logging_node(self.name, "finish"))
        graph.add_edge(start, "prepare")
        graph.add_edge("prepare", "ask")
        graph.add_edge("ask", "finish")
        graph.add_edge("finish", end)
        return graph.compile(checkpointer=checkpointer)

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke({"log": ["start"]}, config)

    def resume(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke(compat.resume_command("yes"), config)


# --- Send fan-out -----------------------------------------------------------

_ITEMS = ["alpha", "beta", "gamma"]


class _MapState(TypedDict):
    items: list[str]
    results: Annotated[list[str], operator.add]
    summary: str


def _map_graph(canary: str, checkpointer: Any, pause: bool) -> Any:
    state_graph, start, end = compat.graph_api()
    send = compat.send_class()

    def plan(state: _MapState, config: RunnableConfig) -> dict[str, Any]:
        trace.hit(canary, "plan", config)
        return {"items": list(_ITEMS)}

    def fan_out(state: _MapState) -> list[Any]:
        return [send("work", {"item": item}) for item in state["items"]]

    def work(arg: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        trace.hit(canary, f"work:{arg['item']}", config)
        return {"results": [arg["item"].upper()]}

    def reduce(state: _MapState, config: RunnableConfig) -> dict[str, Any]:
        trace.hit(canary, "reduce", config)
        return {"summary": "+".join(sorted(state["results"]))}

    graph = state_graph(_MapState)
    graph.add_node("plan", plan)
    graph.add_node("work", work)
    graph.add_node("reduce", reduce)
    graph.add_edge(start, "plan")
    graph.add_conditional_edges("plan", fan_out, ["work"])
    graph.add_edge("work", "reduce")
    graph.add_edge("reduce", end)
    return graph.compile(checkpointer=checkpointer, interrupt_before=["work"] if pause else None)


_WORK_TRACE = tuple(f"work:{item}" for item in _ITEMS)


class SendCanary(Canary):
    """A finished map-reduce: ``plan`` sends three ``work`` tasks, ``reduce`` joins them."""

    name = "send"
    expected_seed_trace = ("plan", *_WORK_TRACE, "reduce")

    def build(self, checkpointer: Any) -> Any:
        return _map_graph(self.name, checkpointer, pause=False)

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke({"items": [], "results": [], "summary": ""}, config)


class SendPausedCanary(Canary):
    """The same map-reduce paused before ``work``: three pending ``Send`` tasks (H-SEND-DROPPED)."""

    name = "send_paused"
    resumable = True
    expected_seed_trace = ("plan",)
    expected_resume_trace = (*_WORK_TRACE, "reduce")

    def build(self, checkpointer: Any) -> Any:
        return _map_graph(self.name, checkpointer, pause=True)

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke({"items": [], "results": [], "summary": ""}, config)

    def resume(self, graph: Any, config: dict[str, Any]) -> None:
        graph.invoke(None, config)
