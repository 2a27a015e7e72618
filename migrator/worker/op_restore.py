"""Worker op ``restore``: rebuild a dump through this (new) version's saver in a shadow schema.

Runs in the NEW version environment. The host has checked the dump's sha256 and
the type allowlist and holds the migrator lock; it created the shadow schema
and swaps it in afterwards. This op:

1. connects with ``search_path=<shadow>`` so ``setup()``'s unqualified names
   land there, and runs the version's own ``setup()``;
2. decodes each thread's blob records once and its checkpoint records
   (:mod:`migrator.worker.decode`), importing only allow-listed classes; a value many
   checkpoints reference is one object;
3. per thread: applies the built-in ``task-id`` transform (H-TASK-ID, needs
   the thread's graph) and the user transform, per checkpoint;
4. writes through the saver's own ``put`` and ``put_writes`` (one call per
   task, stored task path kept). ``write_mode`` ``"bulk"`` (default) runs them
   on a recording cursor and loads the captured rows with COPY
   (:mod:`migrator.worker.bulkwrite`: the same rows, no round trip per checkpoint);
   ``"put"`` sends every call to the database (``new_versions`` = the
   checkpoint's ``channel_versions``, so every blob is written). Committed in
   batches;
5. reads every thread back through the saver (:mod:`migrator.worker.readback`:
   ``list`` per namespace, once, deserializer memoized: :class:`ReadBackSerde`)
   and compares parents, values and pending writes with the records it wrote
   (:class:`Sameness`: ``==`` memoized per pair of objects, canonical digests
   where ``==`` says different). ``verify`` ``"sample"`` reads back only the
   threads :class:`ReadBack` picks (every tag or class at least once, and a
   fixed ~5 % lot); the result's ``verified`` says how many.

Request::

    {"dsn", "schema", "path", "allow_types": [...], "transform": "m:f" | null,
     "task_id": bool, "graph": "m:attr" | null, "dry_run": bool, "batch": int,
     "write_mode": "bulk" | "put", "verify": "full" | "sample",
     "progress_path": str | null}

Progress (``progress_path``, :class:`ProgressFile`) counts threads once they are
verified (decoded, with ``dry_run``).

With ``dry_run`` nothing is written: the result lists what the transforms
would change.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from migrator.worker import app as worker_app
from migrator.worker import compat, faults
from migrator.worker.bulkwrite import BulkWriter, write_record
from migrator.worker.cipher import app_cipher
from migrator.worker.decode import Decoder, DisallowedTypeError, decode_record, split_blobs
from migrator.worker.dumpfile import DumpFormatError, by_thread, read_dump
from migrator.worker.encode import encode
from migrator.worker.progressfile import ProgressFile
from migrator.worker.readback import VERIFY_MODES, PreparedThread, ReadBack
from migrator.worker.saver import make_saver
from migrator.worker.transforms import (
    TransformError,
    apply_user,
    canary_graph_source,
    cure_task_ids,
    load_callable,
)

SEARCH_PATH_OPTION = "-c search_path={schema}"
TASKS = "__pregel_tasks"
WRITE_MODES = ("bulk", "put")
SETUP_TRY_LOCK_SQL = (
    "SELECT pg_try_advisory_lock(hashtext('langgraph_migrator.restore_setup:' || %s)) AS got"
)
SETUP_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('langgraph_migrator.restore_setup:' || %s))"
#: Net allocations between two collections of the youngest generation during a restore.
GC_YOUNG_THRESHOLD = 50_000


def take_setup_lock(conn: Any, schema: str, *, poll_s: float = 0.05) -> None:
    """Take the session advisory lock that serializes ``setup()`` on ``schema``.

    It polls ``pg_try_advisory_lock`` on an autocommit connection instead of
    blocking in ``pg_advisory_lock``: a blocked statement holds a snapshot, and the
    holder's ``setup()`` runs ``CREATE INDEX CONCURRENTLY``, which waits for every
    older snapshot to end. Holder and waiter would each wait for the other until
    Postgres cancels one with "deadlock detected". Between polls this session has
    no transaction, so the index build goes on.
    """
    delay = poll_s
    while not conn.execute(SETUP_TRY_LOCK_SQL, (schema,)).fetchone()["got"]:
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _connect(dsn: str, schema: str, *, autocommit: bool) -> Any:
    import psycopg
    from psycopg.rows import dict_row

    return psycopg.connect(
        dsn,
        autocommit=autocommit,
        prepare_threshold=0,
        row_factory=dict_row,
        options=SEARCH_PATH_OPTION.format(schema=schema),
    )


def _stored_sends(records: list[dict[str, Any]]) -> list[str]:
    """Empty ``pending_sends`` the way the savers store them; report sends that are lost.

    checkpoint-postgres 1.0.x and 2.0.x return a v1 checkpoint's pending sends
    from its parent's ``__pregel_tasks`` writes (which the dump keeps) and
    store the list empty; only 1.0.0 kept them inside the checkpoint itself,
    which newer versions drop (H-SEND-DROPPED), as in-place upgrades do.
    """
    notes: list[str] = []
    by_id = {(r["checkpoint_ns"], r["checkpoint_id"]): r for r in records}
    for record in records:
        sends = record["checkpoint"].get("pending_sends")
        if not sends:
            continue
        parent = by_id.get((record["checkpoint_ns"], record["parent_checkpoint_id"]))
        if parent is None or not any(w["channel"] == TASKS for w in parent["pending_writes"]):
            notes.append(
                f"{record['thread_id']}/{record['checkpoint_ns'] or '(root)'}/"
                f"{record['checkpoint_id']}: {len(sends)} pending send(s) stored in the "
                "checkpoint itself are dropped by this version (H-SEND-DROPPED)"
            )
        record["checkpoint"]["pending_sends"] = []
    return notes


def _encoded(record: dict[str, Any]) -> str:
    return json.dumps(encode(record), sort_keys=True)


def _graph_source(records: list[dict[str, Any]], graph: Any) -> tuple[Any | None, str | None]:
    """The graph that cures a thread's task ids, or why there is none.

    A built-in canary's own graph; else the one ``--graph`` for every thread
    (``restore --graph`` without a profile); else the app profile's graph this
    thread belongs to (inferred from its nodes, or ``thread_graph``).
    """
    thread_id = records[0]["thread_id"]
    source = canary_graph_source(thread_id) or graph
    if source is not None:
        return source, None
    app = worker_app.current()
    if app is None or not app.graphs:
        return None, "no graph known (give the app profile's graphs)"
    roots = [r for r in records if r["checkpoint_ns"] == ""]
    if not roots:
        return None, "no root checkpoint to tell its graph by"
    last = max(roots, key=lambda r: r["checkpoint_id"])
    try:
        nodes = worker_app.recorded_nodes(last["checkpoint"], last["metadata"])
        name = worker_app.choose_graph(app, thread_id, nodes, last["metadata"])
        return app.obj(app.graphs[name], f"graph {name}"), None
    except worker_app.UnknownThreadGraph as exc:  # a broken profile fails the op instead
        return None, str(exc)


def _transform_thread(
    records: list[dict[str, Any]],
    user: Any,
    task_id: bool,
    graph: Any,
    uncured: list[str],
) -> tuple[list[dict[str, Any]], list[str]]:
    changes: list[str] = []
    if task_id:
        source, why = _graph_source(records, graph)
        if source is None:
            uncured.append(f"{records[0]['thread_id']}: task-id transform not applied: {why}")
        else:
            try:
                changes += cure_task_ids(records, source)
            except TransformError:
                raise
            except Exception as exc:
                raise TransformError(
                    f"task-id transform failed on thread {records[0]['thread_id']}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    if user is not None:
        out = []
        for record in records:
            before = _encoded(record)
            after = apply_user(user, record)
            if _encoded(after) != before:
                changes.append(
                    f"{record['thread_id']}/{record['checkpoint_ns'] or '(root)'}/"
                    f"{record['checkpoint_id']}: changed by the transform"
                )
            out.append(after)
        records = out
    return records, changes


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often (restored afterwards).

    A restore allocates millions of objects that live for a batch (records,
    messages, rows) and makes few reference cycles, while the default
    thresholds scan the whole heap, every imported module's objects included,
    every few hundred thousand allocations (a fifth of the CPU time of a
    large restore). Objects from before the op are frozen (never scanned), and
    the youngest generation is collected once :data:`GC_YOUNG_THRESHOLD` more
    objects were allocated than freed (instead of 700): rarely, as each batch
    is freed, and still whenever unreachable cycles pile up.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Restore a dump into ``request["schema"]`` (see the module docstring).

    Returns:
        ``{"threads": {tid: {"checkpoints", "writes"}}, "changes": [...],
        "problems": [...], "dry_run": bool, "write_mode": "bulk" | "put",
        "verified": {"threads", "of", "mode"}, "versions": {...}, "timings": {...}}``
        (``write_mode``, ``verified`` and ``timings`` only when something was written).

    Raises:
        DumpFormatError, DisallowedTypeError, TransformError: nothing is swapped;
            the host drops the shadow schema.
    """
    with _fewer_collections():
        return _run(request)


def _run(request: dict[str, Any]) -> dict[str, Any]:
    """:func:`run`'s body."""
    faults.pause_point("restore.start")
    decoder = Decoder(request.get("allow_types") or ())
    user = load_callable(request["transform"], "transform") if request.get("transform") else None
    graph = load_callable(request["graph"], "graph") if request.get("graph") else None
    task_id = bool(request.get("task_id"))
    dry_run = bool(request.get("dry_run"))
    batch = int(request.get("batch") or 500)
    meter = ProgressFile(request.get("progress_path"))
    threads: dict[str, dict[str, int]] = {}
    changes: list[str] = []
    uncured: list[str] = []

    def _prepared() -> Iterator[PreparedThread]:
        stream = read_dump(
            str(request["path"]),
            int(request.get("offset") or 0),
            request.get("length"),
            cipher=app_cipher(),
        )
        for raw_thread in by_thread(stream):
            decoder.seen.clear()
            blobs, raw_checkpoints = split_blobs(decoder, raw_thread)
            if not raw_checkpoints:
                raise DumpFormatError(f"thread {raw_thread[0]['thread_id']} has no checkpoints")
            decoded = []
            for raw in raw_checkpoints:
                try:
                    decoded.append(decode_record(decoder, raw, blobs))
                except DisallowedTypeError as exc:
                    raise DisallowedTypeError(
                        f"{raw['thread_id']}/{raw['checkpoint_ns'] or '(root)'}/"
                        f"{raw['checkpoint_id']}: {exc}"
                    ) from exc
            changes.extend(_stored_sends(decoded))
            records, changed = _transform_thread(decoded, user, task_id, graph, uncured)
            changes.extend(changed)
            tid = records[0]["thread_id"]
            threads[tid] = {
                "checkpoints": len(records),
                "writes": sum(len(r["pending_writes"]) for r in records),
            }
            yield PreparedThread(records, frozenset(decoder.seen), bool(changed))

    if dry_run:
        for thread in _prepared():
            meter.advance(1, len(thread.records))
        meter.finish()
        return {
            "threads": threads,
            "changes": changes,
            "uncured": uncured,
            "problems": [],
            "dry_run": True,
            "versions": compat.installed_versions(),
        }

    from langgraph.checkpoint.postgres import PostgresSaver

    schema = str(request["schema"])
    mode = str(request.get("write_mode") or "bulk")
    if mode not in WRITE_MODES:
        raise ValueError(f"write_mode must be one of {WRITE_MODES}, not {mode!r}")
    verify_mode = str(request.get("verify") or "full")
    if verify_mode not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, not {verify_mode!r}")
    started = time.perf_counter()
    timings = dict.fromkeys(("setup", "write", "flush", "verify"), 0.0)
    with _connect(request["dsn"], schema, autocommit=True) as setup_conn:
        # Workers restoring parts of one dump share the shadow schema: the first
        # runs setup(), the others wait here and find nothing left to do
        # (concurrent setup() calls race each other: H-SETUP-RACE).
        take_setup_lock(setup_conn, schema)
        PostgresSaver(setup_conn).setup()
        setup_conn.execute(SETUP_UNLOCK_SQL, (schema,))
    timings["setup"] = time.perf_counter() - started
    with (
        _connect(request["dsn"], schema, autocommit=False) as conn,
        _connect(request["dsn"], schema, autocommit=True) as read_conn,
        ThreadPoolExecutor(max_workers=1) as loader,
    ):
        saver = make_saver(conn, guarded=False)  # writes only; the read-back is guarded
        check = ReadBack(make_saver(read_conn), read_conn, verify_mode)
        writer = BulkWriter(saver, conn) if mode == "bulk" and BulkWriter.available(saver) else None
        if writer is None:
            mode = "put"
        pending = 0
        batch_threads: list[PreparedThread] = []
        loading: tuple[Future[None], list[PreparedThread]] | None = None

        def _verify(loaded: tuple[Future[None], list[PreparedThread]]) -> None:
            check.batch(*loaded)
            meter.advance(len(loaded[1]), sum(len(t.records) for t in loaded[1]))

        def _end_batch() -> tuple[Future[None], list[PreparedThread]]:
            # Batch k loads in the background while batch k-1 is verified and k+1 decoded
            # (verifying here, not in a third thread: the main thread's CPU work would
            # delay every read-back round trip by the interpreter's switch interval).
            if writer is not None:
                future = loader.submit(writer.load, writer.take())
            else:  # put() used the connection in this thread: commit here
                conn.commit()
                future = Future()
                future.set_result(None)
            return future, batch_threads.copy()

        for thread in _prepared():
            t0 = time.perf_counter()
            for record in thread.records:
                if writer is not None:
                    writer.write(record)
                else:
                    write_record(saver, record)
                pending += 1
            if writer is not None:
                writer.forget_thread(thread.thread_id)
            timings["write"] += time.perf_counter() - t0
            batch_threads.append(thread)
            if pending >= batch:
                previous, loading = loading, _end_batch()
                batch_threads.clear()
                if previous is not None:
                    _verify(previous)
                pending = 0
        previous, loading = loading, _end_batch()
        for loaded in (previous, loading):
            if loaded is not None:
                _verify(loaded)
    meter.finish()
    timings.update(check.seconds)
    return {
        "threads": threads,
        "changes": changes,
        "problems": check.problems,
        "dry_run": False,
        "write_mode": mode,
        "verified": check.summary(),
        "versions": compat.installed_versions(),
        "timings": {
            **{k: round(v, 3) for k, v in timings.items()},
            # decoding, transforms and reading the dump: the rest of the op
            "decode": round(time.perf_counter() - started - sum(timings.values()), 3),
        },
    }
