"""Worker op ``snapshot``: what this version reads for each thread, type-tagged.

Request::

    {"dsn": str,
     "threads": [{"thread_id": str, "canary": str | None}] | None,   # None: every thread
     "user_canaries": "module:attr" | None,
     "include_history": bool}                                        # default True

Result: the snapshot object described in ``docs/snapshot-format.md``. Reading
errors never fail the op; they become ``{"__error__": "ExcType: message"}`` at
the narrowest level that can be told apart (one value, one checkpoint, the
state/history of a canary, the thread).

Reads go through the public API of the installed version: ``saver.list`` and
``saver.get_tuple`` per namespace, and ``graph.get_state``/``get_state_history``
for canary threads. Two plain SQL queries only enumerate what exists (thread
ids, namespaces, checkpoint ids), because ``list`` reads a single namespace in
the oldest versions and stops at the first unreadable row in all of them. When a
checkpoint cannot be read through the API, its stored values are decoded one by
one with the version's own serializer so the error lands on the value that
caused it.
"""

from __future__ import annotations

import inspect
import platform
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Any

from migrator.worker import app as worker_app
from migrator.worker import strict
from migrator.worker.cipher import CipherKeyError
from migrator.worker.encode import encode, error_entry
from migrator.worker.saver import make_saver, open_connection

FORMAT = "langgraph-migrator/snapshot@1"
VERSION_PACKAGES = (
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-postgres",
    "langchain-core",
    "pydantic",
    "psycopg",
)

LIST_THREADS_SQL = "SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id"
LIST_NAMESPACES_SQL = (
    "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_ns"
)
LIST_CHECKPOINT_IDS_SQL = (
    "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s"
    " ORDER BY checkpoint_id"
)
RAW_CHECKPOINT_SQL = (
    "SELECT checkpoint, metadata, parent_checkpoint_id FROM checkpoints"
    " WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s"
)
RAW_BLOB_SQL = (
    "SELECT type, blob FROM checkpoint_blobs"
    " WHERE thread_id = %s AND checkpoint_ns = %s AND channel = %s AND version = %s"
)
RAW_WRITES_SQL = (
    "SELECT task_id, channel, type, blob FROM checkpoint_writes"
    " WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s ORDER BY task_id, idx"
)


class NoSuchThread(Exception):
    """The thread id has no checkpoint in any namespace."""


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Snapshot the requested threads as this version reads them.

    Args:
        request: ``dsn``, ``threads`` (list of ``{"thread_id", "canary"}`` or None
            for every thread in the database), ``user_canaries`` and
            ``include_history``.

    Returns:
        The snapshot object (``format``, ``versions``, ``threads``).
    """
    include_history = bool(request.get("include_history", True))
    user_canaries = request.get("user_canaries")
    threads: dict[str, Any] = {}
    events = strict.EventCounter()
    hooks = events.install()
    try:
        with open_connection(request["dsn"]) as conn:
            saver = make_saver(conn)
            for thread_id, canary in _requested_threads(conn, request.get("threads")):
                events.current = thread_id
                threads[thread_id] = _snapshot_thread(
                    conn, saver, thread_id, canary, user_canaries, include_history
                )
    finally:
        events.close()
    _raise_key_errors(threads)
    result: dict[str, Any] = {"format": FORMAT, "versions": _versions(), "threads": threads}
    if strict.settings() is not None:
        result["strict"] = {
            "supported": strict.supported(),
            "allow": [f"{m}.{n}" for m, n in strict.allowlist()],
            "events_supported": hooks,
        }
    if events.counts:  # beside the threads, not in them: they are not read values
        result["serde_events"] = {
            t: dict(sorted(c.items())) for t, c in sorted(events.counts.items()) if t in threads
        }
    return result


def _raise_key_errors(value: Any) -> None:
    """Fail the op on the first value that did not decrypt: a wrong or missing key is a
    configuration error, never drift to diff (:class:`CipherKeyError`)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            text = item.get("__error__")
            if isinstance(text, str) and text.startswith(CipherKeyError.__name__ + ":"):
                raise CipherKeyError(text.partition(": ")[2])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in VERSION_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["python"] = platform.python_version()
    return found


def _requested_threads(conn: Any, threads: Any) -> list[tuple[str, str | None]]:
    if threads is None:
        return [(row["thread_id"], None) for row in conn.execute(LIST_THREADS_SQL)]
    out: list[tuple[str, str | None]] = []
    for entry in threads:
        if isinstance(entry, str):
            out.append((entry, None))
        else:
            out.append((str(entry["thread_id"]), entry.get("canary")))
    return out


def _snapshot_thread(
    conn: Any,
    saver: Any,
    thread_id: str,
    canary: str | None,
    user_canaries: str | None,
    include_history: bool,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "canary": canary,
        "error": None,
        "checkpoints": [],
        "state": None,
        "history": None,
    }
    try:
        namespaces = [
            row["checkpoint_ns"] for row in conn.execute(LIST_NAMESPACES_SQL, (thread_id,))
        ]
        if not namespaces:
            raise NoSuchThread(f"no checkpoint with thread_id {thread_id!r} in any namespace")
        for ns in namespaces:
            entry["checkpoints"].extend(_read_namespace(conn, saver, thread_id, ns))
    except Exception as exc:  # noqa: BLE001 - the thread could not be read at all
        entry["error"] = error_entry(exc)
        entry["checkpoints"] = []
    entry["checkpoints"].sort(key=lambda c: (c["checkpoint_ns"], c["checkpoint_id"]))
    if canary is not None and entry["error"] is None:
        entry["state"], entry["history"] = _read_graph(
            saver, thread_id, canary, user_canaries, include_history
        )
    elif entry["error"] is None and (app := worker_app.current()) is not None and app.graphs:
        entry["graph"], entry["state"], entry["history"] = _read_app_graph(
            app, saver, thread_id, include_history
        )
    return entry


# --------------------------------------------------------------------------- saver


def _config(thread_id: str, ns: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _read_namespace(conn: Any, saver: Any, thread_id: str, ns: str) -> Iterator[dict[str, Any]]:
    """Every checkpoint of one namespace; per-checkpoint errors when ``list`` fails."""
    done: set[str] = set()
    try:
        for tup in saver.list(_config(thread_id, ns)):
            if tup.pending_writes is None:  # 1.0.0 loads writes in get_tuple only
                tup = saver.get_tuple(tup.config) or tup
            record = _checkpoint_record(tup, ns)
            done.add(record["checkpoint_id"])
            yield record
        return
    except Exception:  # noqa: BLE001 - retry one by one to find the bad checkpoint(s)
        pass
    ids = [row["checkpoint_id"] for row in conn.execute(LIST_CHECKPOINT_IDS_SQL, (thread_id, ns))]
    for checkpoint_id in ids:
        if checkpoint_id in done:
            continue
        try:
            tup = saver.get_tuple(_config(thread_id, ns, checkpoint_id))
            if tup is None:
                raise LookupError(f"get_tuple returned None for checkpoint {checkpoint_id}")
            yield _checkpoint_record(tup, ns)
        except Exception as exc:  # noqa: BLE001 - this checkpoint is unreadable
            yield _raw_record(conn, saver, thread_id, ns, checkpoint_id, exc)


def _checkpoint_record(tup: Any, ns: str) -> dict[str, Any]:
    configurable = tup.config["configurable"]
    parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    checkpoint = tup.checkpoint
    return {
        "checkpoint_ns": configurable.get("checkpoint_ns", ns),
        "checkpoint_id": configurable["checkpoint_id"],
        "parent_checkpoint_id": parent,
        "metadata": encode(tup.metadata),
        "channel_values": _encode_channels(checkpoint.get("channel_values") or {}),
        "pending_writes": _encode_writes(tup.pending_writes or []),
        "error": None,
    }


def _encode_channels(values: dict[str, Any]) -> dict[str, Any]:
    return {str(channel): encode(value) for channel, value in values.items()}


def _encode_writes(writes: Iterable[Any]) -> list[dict[str, Any]]:
    out = [{"task_id": str(w[0]), "channel": str(w[1]), "value": encode(w[2])} for w in writes]
    # Stable sort: writes of one task to one channel keep their stored order (idx).
    out.sort(key=lambda w: (w["task_id"], w["channel"]))
    return out


def _raw_record(
    conn: Any, saver: Any, thread_id: str, ns: str, checkpoint_id: str, exc: BaseException
) -> dict[str, Any]:
    """A checkpoint the API cannot read: the error, plus what decodes value by value."""
    record: dict[str, Any] = {
        "checkpoint_ns": ns,
        "checkpoint_id": checkpoint_id,
        "parent_checkpoint_id": None,
        "metadata": None,
        "channel_values": None,
        "pending_writes": None,
        "error": error_entry(exc),
    }
    try:
        row = conn.execute(RAW_CHECKPOINT_SQL, (thread_id, ns, checkpoint_id)).fetchone()
        if row is None:
            return record
        record["parent_checkpoint_id"] = row["parent_checkpoint_id"]
        record["metadata"] = encode(row["metadata"])
        checkpoint = row["checkpoint"] if isinstance(row["checkpoint"], dict) else {}
        values: dict[str, Any] = {
            str(k): encode(v) for k, v in (checkpoint.get("channel_values") or {}).items()
        }
        for channel, version in (checkpoint.get("channel_versions") or {}).items():
            blob = conn.execute(RAW_BLOB_SQL, (thread_id, ns, channel, str(version))).fetchone()
            if blob is None or blob["type"] == "empty":
                continue
            values[str(channel)] = _decode(saver, blob["type"], blob["blob"])
        record["channel_values"] = values
        record["pending_writes"] = [
            {
                "task_id": w["task_id"],
                "channel": w["channel"],
                "value": _decode(saver, w["type"], w["blob"]),
            }
            for w in conn.execute(RAW_WRITES_SQL, (thread_id, ns, checkpoint_id))
        ]
        record["pending_writes"].sort(key=lambda w: (w["task_id"], w["channel"]))
    except Exception:  # noqa: BLE001 - the API error already says the checkpoint is bad
        pass
    return record


def _decode(saver: Any, type_: str, blob: Any) -> Any:
    try:
        return encode(saver.serde.loads_typed((type_, bytes(blob) if blob is not None else blob)))
    except Exception as exc:  # noqa: BLE001 - this one value does not load
        return error_entry(exc)


# --------------------------------------------------------------------------- graph


def _load_canary(name: str, user_canaries: str | None) -> Any:
    from migrator.worker import canaries

    if user_canaries:
        found = canaries.load_user_canaries(user_canaries)
        if isinstance(found, dict):
            if name in found:
                return found[name]
        else:
            for candidate in found or ():
                if getattr(candidate, "name", None) == name:
                    return candidate
    return canaries.get(name)


def _read_graph(
    saver: Any, thread_id: str, canary_name: str, user_canaries: str | None, include_history: bool
) -> tuple[Any, Any]:
    try:
        graph = _load_canary(canary_name, user_canaries).build(saver)
    except Exception as exc:  # noqa: BLE001 - no graph: no state, no history
        error = error_entry(exc)
        return error, (error if include_history else None)
    return _read_state(graph, thread_id, include_history)


def _read_app_graph(
    app: worker_app.WorkerApp, saver: Any, thread_id: str, include_history: bool
) -> tuple[Any, Any, Any]:
    """(graph name, state, history) of a real thread, read through the app's graph.

    The graph is inferred from the node names the thread recorded (see
    :func:`migrator.worker.app.graph_of_thread`); only ``get_state`` and
    ``get_state_history`` are called: no node of the app runs.
    """
    try:
        name = worker_app.graph_of_thread(app, saver, thread_id)
        graph = app.graph(name, saver)
    except worker_app.UnknownThreadGraph as exc:
        error = error_entry(exc)
        return {"error": str(exc)}, error, (error if include_history else None)
    except worker_app.AppConfigError:
        raise  # the profile names code that does not load: a configuration error
    except Exception as exc:  # noqa: BLE001 - e.g. unreadable before setup(): no state
        error = error_entry(exc)
        return {"error": str(error)}, error, (error if include_history else None)
    state, history = _read_state(graph, thread_id, include_history)
    return name, state, history


def _read_state(graph: Any, thread_id: str, include_history: bool) -> tuple[Any, Any]:
    config = {"configurable": {"thread_id": thread_id}}
    try:
        if "subgraphs" in inspect.signature(graph.get_state).parameters:
            snapshot = graph.get_state(config, subgraphs=True)
        else:
            snapshot = graph.get_state(config)
        state: Any = _state_record(snapshot)
    except Exception as exc:  # noqa: BLE001
        state = error_entry(exc)
    history: Any = None
    if include_history:
        try:
            history = [_history_record(s) for s in graph.get_state_history(config)]
        except Exception as exc:  # noqa: BLE001
            history = error_entry(exc)
    return state, history


def _is_state_snapshot(value: Any) -> bool:
    return type(value).__name__ == "StateSnapshot" and hasattr(value, "values")


def _task_records(snapshot: Any) -> list[dict[str, Any]] | None:
    tasks = getattr(snapshot, "tasks", None)
    if tasks is None:  # langgraph 0.2.0 has no StateSnapshot.tasks
        return None
    out = []
    for task in tasks:
        error = getattr(task, "error", None)
        nested = getattr(task, "state", None)
        out.append(
            {
                "id": task.id,
                "name": task.name,
                "error": None if error is None else _error_text(error),
                "interrupts": [encode(i) for i in getattr(task, "interrupts", ()) or ()],
                "state": _state_record(nested) if _is_state_snapshot(nested) else None,
            }
        )
    out.sort(key=lambda t: (t["name"], t["id"]))
    return out


def _error_text(error: Any) -> str:
    if isinstance(error, BaseException):
        return str(error_entry(error)["__error__"])
    return str(error)


def _interrupts(snapshot: Any, tasks: list[dict[str, Any]] | None) -> list[Any] | None:
    if hasattr(snapshot, "interrupts"):
        return [encode(i) for i in snapshot.interrupts or ()]
    if tasks is None:
        return None
    return [i for t in tasks for i in t["interrupts"]]


def _state_record(snapshot: Any) -> dict[str, Any]:
    tasks = _task_records(snapshot)
    return {
        "values": encode(snapshot.values),
        "next": sorted(str(n) for n in snapshot.next or ()),
        "tasks": tasks,
        "interrupts": _interrupts(snapshot, tasks),
    }


def _history_record(snapshot: Any) -> dict[str, Any]:
    configurable = (snapshot.config or {}).get("configurable", {})
    parent = (snapshot.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    return {
        "checkpoint_id": configurable.get("checkpoint_id"),
        "parent_checkpoint_id": parent,
        "next": sorted(str(n) for n in snapshot.next or ()),
        "values": encode(snapshot.values),
        "metadata": encode(snapshot.metadata),
        "tasks": _task_records(snapshot),
    }
