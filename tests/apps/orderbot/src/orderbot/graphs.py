"""The app's graphs. Each ``build_*(checkpointer)`` returns the compiled graph.

Written against the API every langgraph from 0.2.56 to 1.2.x has: ``StateGraph``,
``START``/``END``, plain edges, a compiled graph as a node, and
``interrupt_before`` for pauses (the ``interrupt()`` function is newer). Node
names differ between the graphs, so a thread's graph can be told from the node
names its checkpoints recorded.

``orders``  ``intake -> (price, stock) -> ship``. ``stock`` raises while the
            environment variable ``ORDERBOT_FAIL_STOCK=1`` is set, after ``price``
            (its sibling in the same superstep) has finished: the thread keeps a
            failed task and the sibling's pending writes. A resume without the
            variable runs ``stock`` and ``ship`` only.
``returns`` ``rma -> refund_flow -> notify`` where ``refund_flow`` is a compiled
            child graph ``inspect -> approve`` that pauses before ``approve``:
            the pause lives in the child's (non-empty) checkpoint namespace. A
            resume runs ``approve`` and ``notify`` only.

Every node execution appends the node's name as one line to the file named by
``ORDERBOT_TRACE`` (when set), and to :data:`TRACE` in this process.
"""

import operator
import os
import threading
import time
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from orderbot.models import Order, Shipment, Status

TRACE_ENV = "ORDERBOT_TRACE"
FAIL_STOCK_ENV = "ORDERBOT_FAIL_STOCK"

ORDERS_NODES = ("intake", "price", "stock", "ship")
RETURNS_NODES = ("rma", "refund_flow", "notify")
REFUND_FLOW_NODES = ("inspect", "approve")

#: ``(thread_id, node)`` for every node execution in this process, oldest first.
TRACE: list[tuple[str, str]] = []
_TRACE_LOCK = threading.Lock()

# The failing ``stock`` waits until ``price`` (same superstep, run concurrently)
# has finished, so the failed step always holds ``price``'s writes.
_PRICE_DONE: dict[str, threading.Event] = {}
_EVENTS_LOCK = threading.Lock()


class StockUnavailable(RuntimeError):
    """The planned failure of ``stock`` while ``ORDERBOT_FAIL_STOCK=1``."""


def _thread_id(config: RunnableConfig) -> str:
    return str((config.get("configurable") or {}).get("thread_id", ""))


def _trace(node: str, config: RunnableConfig) -> None:
    with _TRACE_LOCK:
        TRACE.append((_thread_id(config), node))
        path = os.environ.get(TRACE_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(node + "\n")


def _price_done(config: RunnableConfig) -> threading.Event:
    with _EVENTS_LOCK:
        return _PRICE_DONE.setdefault(_thread_id(config), threading.Event())


# ------------------------------------------------------------------- orders


class OrderState(TypedDict, total=False):
    order: Order
    status: Status
    total_cents: int
    shipment: Shipment | None
    log: Annotated[list[str], operator.add]


_UNIT_CENTS = {"MUG-01": 1250, "TEE-M": 1900}


def intake(state: OrderState, config: RunnableConfig) -> dict[str, Any]:
    _trace("intake", config)
    order = state["order"]
    note = order.note or "standard"
    return {
        "order": Order(sku=order.sku, qty=order.qty, note=note),
        "status": Status.NEW,
        "log": ["intake"],
    }


def price(state: OrderState, config: RunnableConfig) -> dict[str, Any]:
    _trace("price", config)
    order = state["order"]
    total = _UNIT_CENTS.get(order.sku, 1000) * order.qty
    _price_done(config).set()
    return {"total_cents": total, "log": ["price"]}


def stock(state: OrderState, config: RunnableConfig) -> dict[str, Any]:
    _trace("stock", config)
    if os.environ.get(FAIL_STOCK_ENV) == "1":
        _price_done(config).wait(timeout=10)
        time.sleep(0.3)  # let the saver store price's writes before this task fails
        raise StockUnavailable(f"stock service unavailable for {state['order'].sku}")
    return {"status": Status.RESERVED, "log": ["stock"]}


def ship(state: OrderState, config: RunnableConfig) -> dict[str, Any]:
    _trace("ship", config)
    order = state["order"]
    parcels = max(1, (order.qty + 2) // 3)
    shipment = Shipment(carrier="ACME", tracking=f"TRK-{order.sku}-{order.qty}", parcels=parcels)
    return {"shipment": shipment, "status": Status.SHIPPED, "log": ["ship"]}


def build_orders(checkpointer: Any) -> Any:
    """``intake -> (price, stock) -> ship`` compiled with ``checkpointer``."""
    graph = StateGraph(OrderState)
    graph.add_node("intake", intake)
    graph.add_node("price", price)
    graph.add_node("stock", stock)
    graph.add_node("ship", ship)
    graph.add_edge(START, "intake")
    graph.add_edge("intake", "price")
    graph.add_edge("intake", "stock")
    graph.add_edge(["price", "stock"], "ship")
    graph.add_edge("ship", END)
    return graph.compile(checkpointer=checkpointer)


# ------------------------------------------------------------------ returns


class ReturnState(TypedDict, total=False):
    order: Order
    status: Status
    rma_id: str
    history: list[str]


def _step(state: ReturnState, node: str) -> list[str]:
    return [*state.get("history", []), node]


def rma(state: ReturnState, config: RunnableConfig) -> dict[str, Any]:
    _trace("rma", config)
    order = state["order"]
    return {
        "status": Status.RETURN_REQUESTED,
        "rma_id": f"RMA-{order.sku}-{order.qty}",
        "history": _step(state, "rma"),
    }


def inspect(state: ReturnState, config: RunnableConfig) -> dict[str, Any]:
    _trace("inspect", config)
    return {"status": Status.INSPECTED, "history": _step(state, "inspect")}


def approve(state: ReturnState, config: RunnableConfig) -> dict[str, Any]:
    _trace("approve", config)
    return {"status": Status.APPROVED, "history": _step(state, "approve")}


def notify(state: ReturnState, config: RunnableConfig) -> dict[str, Any]:
    _trace("notify", config)
    return {"status": Status.REFUNDED, "history": _step(state, "notify")}


def build_refund_flow() -> Any:
    """The child graph ``inspect -> approve``, pausing before ``approve``."""
    graph = StateGraph(ReturnState)
    graph.add_node("inspect", inspect)
    graph.add_node("approve", approve)
    graph.add_edge(START, "inspect")
    graph.add_edge("inspect", "approve")
    graph.add_edge("approve", END)
    return graph.compile(interrupt_before=["approve"])


def build_returns(checkpointer: Any) -> Any:
    """``rma -> refund_flow(inspect -> approve) -> notify`` compiled with ``checkpointer``."""
    graph = StateGraph(ReturnState)
    graph.add_node("rma", rma)
    graph.add_node("refund_flow", build_refund_flow())
    graph.add_node("notify", notify)
    graph.add_edge(START, "rma")
    graph.add_edge("rma", "refund_flow")
    graph.add_edge("refund_flow", "notify")
    graph.add_edge("notify", END)
    return graph.compile(checkpointer=checkpointer)


GRAPHS = {"orders": build_orders, "returns": build_returns}
