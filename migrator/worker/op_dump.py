"""Worker op ``dump``: every thread, read through this (old) version's saver, to a file.

Runs in the OLD version environment. Threads are enumerated with SQL (shard
filter included); everything else is read through the saver's public API
(``list`` per namespace, ``get_tuple`` where ``list`` returns no pending
writes). Values are type-tagged with the snapshot encoding
(:mod:`migrator.worker.encode`) plus what a restore needs to rebuild them:
Interrupt fields, checkpoint ids, parents, channel versions, ``versions_seen``,
metadata and each write's task id and task path. Nothing is pickled, and no type
is imported beyond what the old saver itself loads.

Request::

    {"dsn": str, "path": str, "shard": [i, n] | null, "threads": [str] | null}

The dump is gzip-compressed JSON lines (``docs/dump-restore.md``): a header, one
record per checkpoint, a trailer. The result is the manifest: record and
per-thread counts, the type inventory (every class named in a tag) and the
file's sha256.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

from migrator.worker import compat
from migrator.worker.encode import (
    TYPE_KEY,
    _Encoder,
    _langgraph_type,
    error_entry,
)
from migrator.worker.saver import open_connection

DUMP_FORMAT = "langgraph-migrator/dump@1"
MANIFEST_FORMAT = "langgraph-migrator/dump-manifest@1"

LIST_THREADS_SQL = "SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id"
LIST_SHARD_THREADS_SQL = (
    "SELECT DISTINCT thread_id FROM checkpoints"
    " WHERE (hashtext(thread_id) & 2147483647) %% %s = %s ORDER BY thread_id"
)
LIST_NAMESPACES_SQL = (
    "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_ns"
)
HAS_TASK_PATH_SQL = (
    "SELECT 1 AS x FROM information_schema.columns WHERE table_schema = current_schema()"
    " AND table_name = 'checkpoint_writes' AND column_name = 'task_path'"
)
TASK_PATHS_SQL = (
    "SELECT DISTINCT checkpoint_id, task_id, task_path FROM checkpoint_writes"
    " WHERE thread_id = %s AND checkpoint_ns = %s AND task_path <> ''"
)

#: Classes every restore may rebuild without an explicit allowlist entry.
BUILTIN_CLASSES = ("langgraph.types.Send", "langgraph.types.Interrupt")
MESSAGE_MODULE = "langchain_core.messages"


class _DumpEncoder(_Encoder):
    """The snapshot encoding, keeping every field of an ``Interrupt``.

    The snapshot keeps only ``Interrupt.value`` (the other fields change between
    releases); a restore needs all of them to rebuild the object the way the
    new version's own serializer would.
    """

    def _encode_compound(self, value: Any, depth: int) -> Any:
        if _langgraph_type(value) == "Interrupt":
            d = depth + 1
            if dataclasses.is_dataclass(value):
                names = [f.name for f in dataclasses.fields(value)]
            else:
                names = [k for k in vars(value) if not k.startswith("_")]
            return {
                TYPE_KEY: "Interrupt",
                "value": self.encode(value.value, d),
                "fields": {n: self.encode(getattr(value, n, None), d) for n in names},
            }
        return super()._encode_compound(value, depth)


def dump_encode(value: Any) -> Any:
    """Encode ``value`` for a dump record (never raises; failures become ``__error__``)."""
    return _DumpEncoder().encode(value, 0)


def inventory(value: Any, found: set[str]) -> None:
    """Add every class named by a tag inside ``value`` to ``found``.

    Args:
        value: Encoded data.
        found: Collects ``module.Qualname`` strings.
    """
    if isinstance(value, list):
        for item in value:
            inventory(item, found)
        return
    if not isinstance(value, dict):
        return
    tag = value.get(TYPE_KEY)
    if tag == "message":
        found.add(f"{MESSAGE_MODULE}.{value.get('class')}")
    elif tag in ("Send", "Interrupt"):
        found.add(f"langgraph.types.{tag}")
    elif isinstance(tag, str) and isinstance(value.get("class"), str):
        found.add(value["class"])
    for key, item in value.items():
        if key not in (TYPE_KEY, "class"):
            inventory(item, found)


def _config(thread_id: str, ns: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _tuples(saver: Any, thread_id: str, ns: str) -> Iterator[Any]:
    for tup in saver.list(_config(thread_id, ns)):
        if tup.pending_writes is None:  # 1.0.0 loads writes in get_tuple only
            tup = saver.get_tuple(tup.config) or tup
        yield tup


def checkpoint_record(
    tup: Any, thread_id: str, ns: str, task_paths: dict[str, str]
) -> dict[str, Any]:
    """One dump record for a ``CheckpointTuple`` as this version read it.

    Args:
        tup: The tuple from ``list``/``get_tuple``.
        thread_id: Its thread.
        ns: Its namespace.
        task_paths: ``task_id -> task_path`` of its writes (empty where the
            version has no ``task_path`` column).

    Returns:
        ``{"kind": "checkpoint", "thread_id", "checkpoint_ns", "checkpoint_id",
        "parent_checkpoint_id", "checkpoint", "channel_values", "metadata",
        "pending_writes"}``; ``checkpoint`` is the checkpoint without its
        channel values (``v``, ``id``, ``ts``, ``channel_versions``,
        ``versions_seen``, ...), encoded.
    """
    configurable = tup.config["configurable"]
    parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    checkpoint = dict(tup.checkpoint)
    values = checkpoint.pop("channel_values", None) or {}
    return {
        "kind": "checkpoint",
        "thread_id": thread_id,
        "checkpoint_ns": configurable.get("checkpoint_ns", ns),
        "checkpoint_id": configurable["checkpoint_id"],
        "parent_checkpoint_id": parent,
        "checkpoint": dump_encode(checkpoint),
        "channel_values": {str(k): dump_encode(v) for k, v in values.items()},
        "metadata": dump_encode(tup.metadata),
        "pending_writes": [
            {
                "task_id": str(w[0]),
                "task_path": task_paths.get(str(w[0]), ""),
                "channel": str(w[1]),
                "value": dump_encode(w[2]),
            }
            for w in tup.pending_writes or []
        ],
    }


def _errors_in(value: Any, path: str, out: list[str]) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            _errors_in(item, f"{path}[{i}]", out)
    elif isinstance(value, dict):
        if set(value) == {"__error__"}:
            out.append(f"{path}: {value['__error__']}")
            return
        for key, item in value.items():
            _errors_in(item, f"{path}.{key}", out)


def _threads(conn: Any, request: dict[str, Any]) -> list[str]:
    if request.get("threads"):
        return [str(t) for t in request["threads"]]
    shard = request.get("shard")
    if shard:
        index, count = int(shard[0]), int(shard[1])
        rows = conn.execute(LIST_SHARD_THREADS_SQL, (count, index))
    else:
        rows = conn.execute(LIST_THREADS_SQL)
    return [row["thread_id"] for row in rows]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Dump the requested threads to ``request["path"]`` and return the manifest.

    Args:
        request: ``dsn``, ``path`` (the file to write), ``shard`` (``[i, n]`` or
            null) and ``threads`` (thread ids, or null for every thread).

    Returns:
        The manifest (``docs/dump-restore.md``).
    """
    path = str(request["path"])
    versions = compat.installed_versions()
    threads: dict[str, dict[str, int]] = {}
    types: set[str] = set()
    errors: list[str] = []
    records = 0
    tmp = f"{path}.partial"
    with open_connection(request["dsn"]) as conn:
        from langgraph.checkpoint.postgres import PostgresSaver

        saver = PostgresSaver(conn)
        has_task_path = conn.execute(HAS_TASK_PATH_SQL).fetchone() is not None
        thread_ids = _threads(conn, request)
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=4) as out:
            header = {"kind": "header", "format": DUMP_FORMAT, "versions": versions}
            out.write(json.dumps(header, ensure_ascii=False) + "\n")
            for thread_id in thread_ids:
                counts = {"checkpoints": 0, "writes": 0, "namespaces": 0}
                namespaces = [
                    r["checkpoint_ns"] for r in conn.execute(LIST_NAMESPACES_SQL, (thread_id,))
                ]
                counts["namespaces"] = len(namespaces)
                for ns in namespaces:
                    all_paths: dict[str, dict[str, str]] = {}
                    if has_task_path:  # one query per namespace, not per checkpoint
                        for r in conn.execute(TASK_PATHS_SQL, (thread_id, ns)):
                            all_paths.setdefault(r["checkpoint_id"], {})[r["task_id"]] = r[
                                "task_path"
                            ]
                    for tup in _tuples(saver, thread_id, ns):
                        cid = tup.config["configurable"]["checkpoint_id"]
                        paths = all_paths.get(cid, {})
                        try:
                            record = checkpoint_record(tup, thread_id, ns, paths)
                        except Exception as exc:  # noqa: BLE001 - reported in the manifest
                            errors.append(f"{thread_id}/{ns}/{cid}: {error_entry(exc)}")
                            continue
                        inventory(record, types)
                        found: list[str] = []
                        _errors_in(record, f"{thread_id}/{ns}/{cid}", found)
                        errors.extend(found)
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                        records += 1
                        counts["checkpoints"] += 1
                        counts["writes"] += len(record["pending_writes"])
                threads[thread_id] = counts
            out.write(json.dumps({"kind": "end", "records": records}) + "\n")
    os.replace(tmp, path)
    return {
        "format": MANIFEST_FORMAT,
        "dump_format": DUMP_FORMAT,
        "file": os.path.basename(path),
        "sha256": _sha256(path),
        "bytes": os.path.getsize(path),
        "records": records,
        "threads": threads,
        "types": sorted(types),
        "errors": errors,
        "shard": request.get("shard"),
        "versions": versions,
    }
