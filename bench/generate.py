"""A realistic large checkpoint database, generated fast with binary COPY.

The rows are real: a few template threads are written by the newest
``PostgresSaver`` (the tool's own langgraph) running a deterministic chat agent
with tool calls (messages serialized by the real msgpack serializer), in a scratch
schema. Their rows are read back as binary COPY and cloned into the target's
tables (built by ``PostgresSaver.setup()``), varying the thread id and the time
part of every checkpoint id per clone (equal-length byte replacements keep the
binary COPY valid). Threads come short, medium and long; each template's message
size is calibrated so a checkpoint weighs about ``--kb`` KB across checkpoints,
checkpoint_blobs and checkpoint_writes (binary COPY bytes). The newest saver then
reads a sample of generated threads back, to prove they are loadable.

Run: ``.venv/bin/python bench/generate.py --dsn DSN [--checkpoints 100000] [--seed 1]``
(``--checkpoints 1000000`` for the 1 M tier; the tables must not exist yet).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from psycopg import sql
from psycopg.rows import dict_row

TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
TEMPLATE_SCHEMA = "bench_templates"
PGCOPY_HEADER_LEN = 19  # signature (11) + flags (4) + header extension length (4)
PGCOPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
PGCOPY_TRAILER = b"\xff\xff"
#: (name, user turns, share of threads)
KINDS = (("short", 2, 0.55), ("medium", 6, 0.30), ("long", 20, 0.15))
THREAD_ID = "bench-{:012d}"  # 18 characters, like TEMPLATE_ID
TEMPLATE_ID = "tmpl-{:013d}"
FLUSH_BYTES = 4 << 20

COPY_THREAD_OUT_SQL = (
    "COPY (SELECT * FROM {}.{} WHERE thread_id = {} ORDER BY 1, 2, 3) TO STDOUT (FORMAT binary)"
)
COPY_IN_SQL = "COPY {} FROM STDIN (FORMAT binary)"
CHECKPOINT_IDS_SQL = "SELECT checkpoint_id FROM {}.checkpoints WHERE thread_id = %s"

_WORDS = (
    "the order shipped invoice refund customer account payment delayed warehouse "
    "tracking number address update policy support ticket escalate priority review "
    "inventory supplier contract renewal schedule meeting summary analysis report "
    "forecast revenue quarter budget approval pending confirmed cancelled returned "
    "database migration deploy rollback version release notes incident latency"
).split()


@dataclass(frozen=True)
class Template:
    """One template thread's rows per table (binary COPY bodies, no header/trailer)."""

    kind: str
    thread_id: str
    checkpoints: int
    bodies: dict[str, bytes]
    id_prefixes: tuple[str, ...]

    @property
    def bytes_per_checkpoint(self) -> float:
        return sum(len(b) for b in self.bodies.values()) / self.checkpoints


@dataclass(frozen=True)
class GenerateStats:
    threads: int
    checkpoints: int
    rows: dict[str, int]
    copy_bytes: int
    seconds: float


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        if rng.random() < 0.08:
            word = f"{word}-{rng.randrange(10**6):06d}"
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def _graph(msg_bytes: int, seed: int) -> Any:
    def agent(state: MessagesState) -> dict[str, Any]:
        rng = random.Random(seed * 7919 + len(state["messages"]))
        last = state["messages"][-1]
        if isinstance(last, HumanMessage):
            call = {
                "name": "search",
                "args": {"query": _text(rng, 60)},
                "id": f"call_{rng.getrandbits(48):012x}",
            }
            return {"messages": [AIMessage(content=_text(rng, msg_bytes // 3), tool_calls=[call])]}
        return {"messages": [AIMessage(content=_text(rng, msg_bytes))]}

    def tools(state: MessagesState) -> dict[str, Any]:
        rng = random.Random(seed * 104729 + len(state["messages"]))
        call_id = state["messages"][-1].tool_calls[0]["id"]  # type: ignore[attr-defined]
        return {"messages": [ToolMessage(content=_text(rng, msg_bytes), tool_call_id=call_id)]}

    def route(state: MessagesState) -> str:
        return "tools" if getattr(state["messages"][-1], "tool_calls", None) else END

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", tools)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, ["tools", END])
    builder.add_edge("tools", "agent")
    return builder


def _run_template(dsn: str, thread_id: str, turns: int, msg_bytes: int, seed: int) -> None:
    with psycopg.connect(
        dsn, autocommit=True, row_factory=dict_row, options=f"-c search_path={TEMPLATE_SCHEMA}"
    ) as conn:
        saver = PostgresSaver(conn)  # type: ignore[arg-type]
        saver.setup()
        graph = _graph(msg_bytes, seed).compile(checkpointer=saver)
        rng = random.Random(seed)
        config = {"configurable": {"thread_id": thread_id}}
        for _ in range(turns):
            graph.invoke({"messages": [HumanMessage(content=_text(rng, msg_bytes // 2))]}, config)


def _read_template(conn: psycopg.Connection[Any], kind: str, thread_id: str) -> Template:
    bodies = {}
    for table in TABLES:
        query = sql.SQL(COPY_THREAD_OUT_SQL).format(
            sql.Identifier(TEMPLATE_SCHEMA), sql.Identifier(table), sql.Literal(thread_id)
        )
        with conn.cursor().copy(query) as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
        assert data.startswith(PGCOPY_SIGNATURE) and data.endswith(PGCOPY_TRAILER)
        bodies[table] = data[PGCOPY_HEADER_LEN:-2]
    query = sql.SQL(CHECKPOINT_IDS_SQL).format(sql.Identifier(TEMPLATE_SCHEMA))
    ids = [str(row[0]) for row in conn.execute(query, (thread_id,)).fetchall()]
    return Template(kind, thread_id, len(ids), bodies, tuple(sorted({i[:8] for i in ids})))


def build_templates(dsn: str, *, kb: float, seed: int) -> list[Template]:
    """Write the template threads with the real saver and read their rows back."""
    templates = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(TEMPLATE_SCHEMA))
        )
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(TEMPLATE_SCHEMA)))
        try:
            for k, (kind, turns, _) in enumerate(KINDS):
                # Calibrate: one trial run, then scale the message size to the target weight.
                msg_bytes = 400
                for attempt in range(3):
                    thread_id = TEMPLATE_ID.format(k * 10 + attempt)
                    _run_template(dsn, thread_id, turns, msg_bytes, seed + k)
                    template = _read_template(conn, kind, thread_id)
                    msg_bytes = max(40, int(msg_bytes * kb * 1024 / template.bytes_per_checkpoint))
                templates.append(template)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(TEMPLATE_SCHEMA)))
    return templates


def _clone(template: Template, table: str, thread_id: str, shift: int) -> bytes:
    body = template.bodies[table].replace(template.thread_id.encode(), thread_id.encode())
    for prefix in template.id_prefixes:
        new = f"{(int(prefix, 16) + shift) % (1 << 32):08x}".encode()
        old = prefix.encode()
        # Checkpoint ids as text columns (length-prefixed 36) and inside checkpoint JSON.
        body = body.replace(b"\x00\x00\x00\x24" + old, b"\x00\x00\x00\x24" + new)
        body = body.replace(b'"' + old, b'"' + new)
    return body


def generate(
    dsn: str,
    *,
    checkpoints: int = 100_000,
    kb: float = 12.0,
    seed: int = 1,
    progress: Callable[[str], None] = print,
) -> GenerateStats:
    """Fill ``dsn`` (no checkpoint tables yet) with at least ``checkpoints`` checkpoints."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('checkpoints')").fetchone() != (None,):
            raise SystemExit("the target database already has checkpoint tables")
    templates = build_templates(dsn, kb=kb, seed=seed)
    for t in templates:
        progress(
            f"template {t.kind}: {t.checkpoints} checkpoints, "
            f"{t.bytes_per_checkpoint / 1024:.1f} KB each"
        )
    rng = random.Random(seed)
    plan: list[Template] = []
    total = 0
    weights = [share for _, _, share in KINDS]
    while total < checkpoints:
        template = rng.choices(templates, weights)[0]
        plan.append(template)
        total += template.checkpoints
    with PostgresSaver.from_conn_string(dsn) as saver:
        saver.setup()
    copy_bytes = 0
    rows: dict[str, int] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in TABLES:
            with conn.cursor().copy(sql.SQL(COPY_IN_SQL).format(sql.Identifier(table))) as copy:
                buffer = bytearray(PGCOPY_SIGNATURE + b"\x00" * 8)
                for i, template in enumerate(plan):
                    buffer += _clone(template, table, THREAD_ID.format(i), 1 + i % 50_000)
                    if len(buffer) >= FLUSH_BYTES:
                        copy.write(buffer)
                        copy_bytes += len(buffer)
                        buffer = bytearray()
                buffer += PGCOPY_TRAILER
                copy.write(buffer)
                copy_bytes += len(buffer)
            rows[table] = int(
                conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                ).fetchone()[0]
            )  # type: ignore[index]
            progress(f"{table}: {rows[table]} rows")
        conn.execute("ANALYZE")
    _check_readable(dsn, plan, rng)
    return GenerateStats(len(plan), total, rows, copy_bytes, time.perf_counter() - started)


def _check_readable(dsn: str, plan: list[Template], rng: random.Random, sample: int = 5) -> None:
    """The newest saver reads sampled threads: every checkpoint, with its messages."""
    with PostgresSaver.from_conn_string(dsn) as saver:
        for i in rng.sample(range(len(plan)), min(sample, len(plan))):
            config = {"configurable": {"thread_id": THREAD_ID.format(i)}}
            history = list(saver.list(config))  # type: ignore[arg-type]
            assert len(history) == plan[i].checkpoints, (i, len(history))
            latest = saver.get_tuple(config)  # type: ignore[arg-type]
            assert latest is not None and latest.checkpoint["channel_values"]["messages"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--checkpoints", type=int, default=100_000)
    parser.add_argument("--kb", type=float, default=12.0, help="target KB per checkpoint")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    stats = generate(args.dsn, checkpoints=args.checkpoints, kb=args.kb, seed=args.seed)
    print(
        f"{stats.threads} threads, {stats.checkpoints} checkpoints, "
        f"{stats.copy_bytes / 2**20:.0f} MiB binary COPY "
        f"({stats.copy_bytes / stats.checkpoints / 1024:.1f} KB/checkpoint) in {stats.seconds:.1f}s"
    )


if __name__ == "__main__":
    main()
