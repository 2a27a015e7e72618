"""Seed this app's threads into a Postgres database, or resume one of them.

    python -m orderbot.seed [--encrypt] [--only T1,T2] DSN [TRACE_FILE]
    python -m orderbot.seed [--encrypt] --resume DSN THREAD [TRACE_FILE]

Seeding runs ``PostgresSaver.setup()`` and leaves:

- ``order-1`` (orders): failed at ``stock`` (``ORDERBOT_FAIL_STOCK=1`` during the run),
  with ``price``'s writes pending beside ``stock``'s error;
- ``order-2`` (orders): run to the end;
- ``return-1`` (returns): paused inside ``refund_flow`` before ``approve``.

``--resume`` continues one thread (``invoke(None, config)``) with its graph and
``ORDERBOT_FAIL_STOCK`` unset. Both print one JSON object on stdout: per thread,
the graph, the nodes that ran, ``next`` and the status afterwards. ``TRACE_FILE``
(or ``ORDERBOT_TRACE``) also receives one line per node execution.

``--encrypt`` stores through :func:`orderbot.persistence.encrypted_serde` (key in
``LANGGRAPH_AES_KEY``); ``--only`` seeds only the named threads, so a database can
hold plaintext and encrypted threads side by side.
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


def _use_serde(saver: Any, encrypt: bool) -> Any:
    if encrypt:
        from orderbot.persistence import encrypted_serde

        saver.serde = encrypted_serde()
    return saver


def seed(dsn: str, *, encrypt: bool = False, only: list[str] | None = None) -> dict[str, Any]:
    """Run ``setup()`` and seed every thread of :data:`THREADS` (or those in ``only``)."""
    seeded = []
    with PostgresSaver.from_conn_string(dsn) as saver:
        saver.setup()
        _use_serde(saver, encrypt)
        for thread_id, (graph_name, payload, fail_stock) in THREADS.items():
            if only is not None and thread_id not in only:
                continue
            graph = graphs.GRAPHS[graph_name](saver)
            start = len(graphs.TRACE)
            _run(graph, thread_id, payload, fail_stock=fail_stock)
            seeded.append(_describe(graph, thread_id, graph_name, start))
    return {"op": "seed", "threads": seeded}


def resume(dsn: str, thread_id: str, *, encrypt: bool = False) -> dict[str, Any]:
    """Continue ``thread_id`` from where it stopped, with the stock service up."""
    graph_name = THREADS[thread_id][0]
    with PostgresSaver.from_conn_string(dsn) as saver:
        _use_serde(saver, encrypt)
        graph = graphs.GRAPHS[graph_name](saver)
        start = len(graphs.TRACE)
        _run(graph, thread_id, None, fail_stock=False)
        return {"op": "resume", "threads": [_describe(graph, thread_id, graph_name, start)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orderbot.seed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--resume", action="store_true", help="resume THREAD instead of seeding")
    parser.add_argument("--encrypt", action="store_true", help="store through encrypted_serde")
    parser.add_argument("--only", default=None, help="seed only these threads (comma-separated)")
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
    only = [t for t in args.only.split(",") if t] if args.only else None
    result = (
        resume(args.dsn, thread_id, encrypt=args.encrypt)
        if thread_id
        else seed(args.dsn, encrypt=args.encrypt, only=only)
    )
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
