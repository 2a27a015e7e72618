"""Seed this app's threads into a Postgres database, or resume one of them.

    python -m orderbot.seed DSN [TRACE_FILE]
    python -m orderbot.seed --resume DSN THREAD [TRACE_FILE]

Seeding runs ``PostgresSaver.setup()`` and leaves:

- ``order-1`` (orders): failed at ``stock`` (``ORDERBOT_FAIL_STOCK=1`` during the run),
  with ``price``'s writes pending beside ``stock``'s error;
- ``order-2`` (orders): run to the end;
- ``return-1`` (returns): paused inside ``refund_flow`` before ``approve``.

``--resume`` continues one thread (``invoke(None, config)``) with its graph and
``ORDERBOT_FAIL_STOCK`` unset. Both print one JSON object on stdout: per thread,
the graph, the nodes that ran, ``next`` and the status afterwards. ``TRACE_FILE``
(or ``ORDERBOT_TRACE``) also receives one line per node execution.
"""

import argparse
import json
import os
import sys
from typing import Any

from langgraph.checkpoint.postgres import PostgresSaver

from orderbot import graphs
from orderbot.models import Order

#: thread id -> (graph name, input, whether the seed run must fail at ``stock``).
THREADS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "order-1": ("orders", {"order": Order(sku="MUG-01", qty=2), "log": []}, True),
    "order-2": ("orders", {"order": Order(sku="TEE-M", qty=4, note="gift"), "log": []}, False),
    "return-1": (
        "returns",
        {"order": Order(sku="TEE-M", qty=1, note="too small"), "history": []},
        False,
    ),
}


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _ran(thread_id: str, start: int) -> list[str]:
    return [node for tid, node in graphs.TRACE[start:] if tid == thread_id]


def _describe(graph: Any, thread_id: str, graph_name: str, start: int) -> dict[str, Any]:
    state = graph.get_state(_config(thread_id))
    status = state.values.get("status")
    return {
        "thread_id": thread_id,
        "graph": graph_name,
        "trace": _ran(thread_id, start),
        "next": list(state.next),
        "failed": sorted(t.name for t in state.tasks if getattr(t, "error", None)),
        "status": getattr(status, "value", status),
    }


def _run(graph: Any, thread_id: str, payload: Any, *, fail_stock: bool) -> None:
    previous = os.environ.pop(graphs.FAIL_STOCK_ENV, None)
    if fail_stock:
        os.environ[graphs.FAIL_STOCK_ENV] = "1"
    try:
        graph.invoke(payload, _config(thread_id))
    except graphs.StockUnavailable:
        if not fail_stock:
            raise
    else:
        if fail_stock:
            raise AssertionError(f"{thread_id}: stock did not fail")
    finally:
        os.environ.pop(graphs.FAIL_STOCK_ENV, None)
        if previous is not None:
            os.environ[graphs.FAIL_STOCK_ENV] = previous


def seed(dsn: str) -> dict[str, Any]:
    """Run ``setup()`` and seed every thread of :data:`THREADS`."""
    seeded = []
    with PostgresSaver.from_conn_string(dsn) as saver:
        saver.setup()
        for thread_id, (graph_name, payload, fail_stock) in THREADS.items():
            graph = graphs.GRAPHS[graph_name](saver)
            start = len(graphs.TRACE)
            _run(graph, thread_id, payload, fail_stock=fail_stock)
            seeded.append(_describe(graph, thread_id, graph_name, start))
    return {"op": "seed", "threads": seeded}


def resume(dsn: str, thread_id: str) -> dict[str, Any]:
    """Continue ``thread_id`` from where it stopped, with the stock service up."""
    graph_name = THREADS[thread_id][0]
    with PostgresSaver.from_conn_string(dsn) as saver:
        graph = graphs.GRAPHS[graph_name](saver)
        start = len(graphs.TRACE)
        _run(graph, thread_id, None, fail_stock=False)
        return {"op": "resume", "threads": [_describe(graph, thread_id, graph_name, start)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orderbot.seed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--resume", action="store_true", help="resume THREAD instead of seeding")
    parser.add_argument("dsn", help="Postgres connection string")
    parser.add_argument("rest", nargs="*", help="[THREAD] [TRACE_FILE]")
    args = parser.parse_args(argv)
    rest = list(args.rest)
    thread_id = rest.pop(0) if args.resume and rest else None
    if args.resume and thread_id not in THREADS:
        parser.error(f"--resume needs one of {', '.join(THREADS)}")
    if len(rest) > 1:
        parser.error("too many arguments")
    if rest:
        os.environ[graphs.TRACE_ENV] = rest[0]
    result = resume(args.dsn, thread_id) if thread_id else seed(args.dsn)
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
