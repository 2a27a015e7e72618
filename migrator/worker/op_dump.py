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
``blob`` record per distinct non-primitive channel value of a thread
(``thread_id``, ``checkpoint_ns``, ``channel``, ``version``), one record per
checkpoint referencing its blobs by version, a trailer. A channel version is
read, encoded and written once however many checkpoints share it (the old
saver's deserializer is memoized per thread for the same reason). The result is
the manifest: record and per-thread counts, the type inventory (every class
named in a tag) and the file's sha256.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from migrator.worker import compat
from migrator.worker.encode import (
    TYPE_KEY,
    _Encoder,
    _langgraph_type,
    error_entry,
)
from migrator.worker.saver import open_connection

DUMP_FORMAT = "langgraph-migrator/dump@2"
#: Formats a restore reads (``@1`` has no blob records: every value inline).
READABLE_FORMATS = ("langgraph-migrator/dump@1", DUMP_FORMAT)
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

    def encode(self, value: Any, depth: int) -> Any:
        vtype = type(value)
        if vtype is str or vtype is int or vtype is bool or value is None:
            return value  # the common case, without the generic dispatch
        return super().encode(value, depth)

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


class CachingSerde:
    """Memoizes a serializer's ``loads_typed`` by the stored bytes (per thread).

    A saver's ``list()`` loads every blob a checkpoint references, so a thread of
    n checkpoints deserializes its growing message list n times. Equal bytes
    always load to equal values; with the cache they load to the *same* object,
    which also lets the dump encode a (channel, version) once. Everything else
    is delegated to the wrapped serializer.

    Args:
        inner: The saver's own serializer.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._memo: dict[tuple[str, bytes], Any] = {}

    def loads_typed(self, data: tuple[str, Any]) -> Any:
        """``inner.loads_typed``, memoized by ``(type, bytes)``.

        A msgpack array (a message list) is loaded element by element, each
        distinct element once: msgpack is compositional (an array is its header
        followed by its elements' encodings), so this is the same list, and a
        message repeated in every later version of the list is one object.
        """
        type_, raw = data
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            return self.inner.loads_typed(data)
        key = (str(type_), bytes(raw))
        if key in self._memo:
            return self._memo[key]
        value: Any = None
        if type_ == "msgpack":
            spans = msgpack_array_items(key[1])
            if spans is not None:
                value = [self.loads_typed(("msgpack", key[1][a:b])) for a, b in spans]
        if value is None:
            value = self.inner.loads_typed(data)
        self._memo[key] = value
        return value

    def clear(self) -> None:
        """Forget every memoized value (call between threads)."""
        self._memo.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FIXED.update({0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8})
_FIXEXT = {0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
_SIZED = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0)}
_SIZED.update({0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1)})  # ext: length, then a type byte
_COUNTED = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}


def _skip(buf: bytes, pos: int) -> int:
    """The offset after the msgpack object at ``pos`` (ValueError/IndexError if malformed)."""
    pending = 1
    while pending:
        pending -= 1
        b = buf[pos]
        pos += 1
        if b <= 0x7F or b >= 0xE0:
            continue
        if b <= 0x8F:
            pending += 2 * (b & 0x0F)
        elif b <= 0x9F:
            pending += b & 0x0F
        elif b <= 0xBF:
            pos += b & 0x1F
        elif b in _FIXED:
            pos += _FIXED[b]
        elif b in _FIXEXT:
            pos += _FIXEXT[b]
        elif b in _SIZED:
            width, extra = _SIZED[b]
            pos += width + extra + int.from_bytes(buf[pos : pos + width], "big")
        elif b in _COUNTED:
            width, per = _COUNTED[b]
            pending += per * int.from_bytes(buf[pos : pos + width], "big")
            pos += width
        else:
            raise ValueError(f"msgpack byte 0x{b:02x} at {pos - 1}")
    if pos > len(buf):
        raise ValueError("truncated msgpack")
    return pos


def msgpack_array_items(buf: bytes) -> list[tuple[int, int]] | None:
    """``(start, end)`` of each element when ``buf`` is exactly one msgpack array, else None."""
    if not buf:
        return None
    b = buf[0]
    if 0x90 <= b <= 0x9F:
        count, pos = b & 0x0F, 1
    elif b in (0xDC, 0xDD):
        width = 2 if b == 0xDC else 4
        count, pos = int.from_bytes(buf[1 : 1 + width], "big"), 1 + width
    else:
        return None
    spans = []
    try:
        for _ in range(count):
            end = _skip(buf, pos)
            spans.append((pos, end))
            pos = end
    except (ValueError, IndexError):
        return None
    return spans if pos == len(buf) else None


def caching_saver(saver: Any) -> CachingSerde:
    """Put a :class:`CachingSerde` in front of ``saver``'s serializer; return it."""
    cache = CachingSerde(saver.serde)
    saver.serde = cache
    return cache


def is_inline(value: Any) -> bool:
    """Values kept inside a checkpoint record (JSON primitives), not as blob records."""
    return value is None or type(value) in (str, int, float, bool)


def version_key(version: Any) -> str:
    """A channel version as a string key (versions are ``str`` or, in old eras, ``int``)."""
    return json.dumps(version)


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


class BlobTable:
    """The blob records of one thread: each (ns, channel, version) encoded once.

    A checkpoint references a blob when its value is the very object (or encodes
    the same as) the value first seen for that (ns, channel, version); a value
    that differs stays inline in its checkpoint record, so nothing is lost. A
    list whose first elements are the very objects of the channel's previous
    blob (a message list growing; see :class:`CachingSerde`) is recorded as
    ``"base"`` version + ``"keep"`` count + the new elements in ``"value"``;
    list elements are encoded once per object.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.last: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.new: list[dict[str, Any]] = []
        self._items: dict[int, tuple[Any, Any]] = {}

    def _encode(self, value: Any) -> Any:
        if type(value) is not list:
            return dump_encode(value)
        out = []
        for item in value:
            hit = self._items.get(id(item))
            if hit is None or hit[0] is not item:
                hit = (item, dump_encode(item))
                if not is_inline(item):
                    self._items[id(item)] = hit
            out.append(hit[1])
        return out

    def reference(self, thread_id: str, ns: str, channel: str, version: Any, value: Any) -> bool:
        """Reference (recording a new blob record if needed); False: keep it inline."""
        key = (ns, channel, version_key(version))
        first = self.seen.get(key)
        if first is not None:
            return first[0] is value or self._encode(value) == first[1]
        record: dict[str, Any] = {
            "kind": "blob",
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "channel": channel,
            "version": version,
        }
        base = self.last.get((ns, channel))
        keep = 0
        if base is not None and type(value) is list and type(base[1]) is list:
            limit = min(len(value), len(base[1]))
            while keep < limit and value[keep] is base[1][keep]:
                keep += 1
        encoded = self._encode(value)
        if keep and base is not None:
            record.update(base=base[0], keep=keep, value=encoded[keep:])
        else:
            record["value"] = encoded
        self.seen[key] = (value, encoded)
        self.last[(ns, channel)] = (version, value)
        self.new.append(record)
        return True

    def take(self) -> list[dict[str, Any]]:
        """The blob records not handed out yet."""
        new, self.new = self.new, []
        return new


def checkpoint_record(
    tup: Any,
    thread_id: str,
    ns: str,
    task_paths: dict[str, str],
    blobs: BlobTable | None = None,
) -> dict[str, Any]:
    """One dump record for a ``CheckpointTuple`` as this version read it.

    Args:
        tup: The tuple from ``list``/``get_tuple``.
        thread_id: Its thread.
        ns: Its namespace.
        task_paths: ``task_id -> task_path`` of its writes (empty where the
            version has no ``task_path`` column).
        blobs: The thread's blob table; None keeps every value inline.

    Returns:
        ``{"kind": "checkpoint", "thread_id", "checkpoint_ns", "checkpoint_id",
        "parent_checkpoint_id", "checkpoint", "channel_values", "channel_blobs",
        "metadata", "pending_writes"}``; ``checkpoint`` is the checkpoint without
        its channel values (``v``, ``id``, ``ts``, ``channel_versions``,
        ``versions_seen``, ...), encoded; ``channel_blobs`` maps a channel to the
        version of the blob record holding its value.
    """
    configurable = tup.config["configurable"]
    parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    checkpoint = dict(tup.checkpoint)
    values = dict(checkpoint.pop("channel_values", None) or {})
    ns = configurable.get("checkpoint_ns", ns)
    versions = checkpoint.get("channel_versions") or {}
    refs: dict[str, Any] = {}
    if blobs is not None:
        for channel, value in list(values.items()):
            version = versions.get(channel)
            if version is None or is_inline(value):
                continue
            if blobs.reference(thread_id, ns, str(channel), version, value):
                refs[str(channel)] = version
                del values[channel]
    return {
        "kind": "checkpoint",
        "thread_id": thread_id,
        "checkpoint_ns": ns,
        "checkpoint_id": configurable["checkpoint_id"],
        "parent_checkpoint_id": parent,
        "checkpoint": dump_encode(checkpoint),
        "channel_values": {str(k): dump_encode(v) for k, v in values.items()},
        "channel_blobs": refs,
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


def _scanned(record: dict[str, Any], where: str, types: set[str], errors: list[str]) -> str:
    """The record's JSON line; its tagged classes and error markers collected.

    The walks only run when the text holds a tag or a marker at all (most
    checkpoint records of plain data do not).
    """
    line = json.dumps(record, ensure_ascii=False) + "\n"
    if f'"{TYPE_KEY}"' in line:
        inventory(record, types)
    if '"__error__"' in line:
        _errors_in(record.get("value", record), where, errors)
    return line


def read_thread(
    saver: Any, conn: Any, thread_id: str, has_task_path: bool
) -> list[tuple[str, dict[str, dict[str, str]], list[Any]]]:
    """Every namespace of a thread as the saver reads it.

    Returns:
        Per namespace: its name, ``checkpoint_id -> task_id -> task_path`` (empty
        where the version has no ``task_path`` column) and its checkpoint tuples.
    """
    out = []
    for row in conn.execute(LIST_NAMESPACES_SQL, (thread_id,)).fetchall():
        ns = row["checkpoint_ns"]
        all_paths: dict[str, dict[str, str]] = {}
        if has_task_path:  # one query per namespace, not per checkpoint
            for r in conn.execute(TASK_PATHS_SQL, (thread_id, ns)).fetchall():
                all_paths.setdefault(r["checkpoint_id"], {})[r["task_id"]] = r["task_path"]
        out.append((ns, all_paths, list(_tuples(saver, thread_id, ns))))
    return out


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
    blob_count = 0
    tmp = f"{path}.partial"
    with (
        open_connection(request["dsn"]) as conn,
        open_connection(request["dsn"]) as read_conn,
        ThreadPoolExecutor(max_workers=1) as reader,
    ):
        from langgraph.checkpoint.postgres import PostgresSaver

        saver = PostgresSaver(read_conn)  # used by the reader thread only
        inner_serde = saver.serde
        has_task_path = conn.execute(HAS_TASK_PATH_SQL).fetchone() is not None
        thread_ids = _threads(conn, request)

        def _fetch(thread_id: str) -> list[tuple[str, dict[str, dict[str, str]], list[Any]]]:
            saver.serde = CachingSerde(inner_serde)  # one memo per thread
            return read_thread(saver, read_conn, thread_id, has_task_path)

        # The next thread is read (queries, deserialization) while this one is encoded.
        pending = reader.submit(_fetch, thread_ids[0]) if thread_ids else None
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=4) as out:
            header = {"kind": "header", "format": DUMP_FORMAT, "versions": versions}
            out.write(json.dumps(header, ensure_ascii=False) + "\n")
            for i, thread_id in enumerate(thread_ids):
                assert pending is not None
                namespaces = pending.result()
                pending = (
                    reader.submit(_fetch, thread_ids[i + 1]) if i + 1 < len(thread_ids) else None
                )
                blobs = BlobTable()
                counts = {"checkpoints": 0, "writes": 0, "namespaces": len(namespaces)}
                for ns, all_paths, tuples in namespaces:
                    for tup in tuples:
                        cid = tup.config["configurable"]["checkpoint_id"]
                        paths = all_paths.get(cid, {})
                        try:
                            record = checkpoint_record(tup, thread_id, ns, paths, blobs)
                        except Exception as exc:  # noqa: BLE001 - reported in the manifest
                            errors.append(f"{thread_id}/{ns}/{cid}: {error_entry(exc)}")
                            continue
                        found: list[str] = []
                        for blob in blobs.take():  # before the first record using them
                            where = f"{thread_id}/{ns}/{cid}.channel_values.{blob['channel']}"
                            out.write(_scanned(blob, where, types, found))
                            blob_count += 1
                        out.write(_scanned(record, f"{thread_id}/{ns}/{cid}", types, found))
                        errors.extend(found)
                        records += 1
                        counts["checkpoints"] += 1
                        counts["writes"] += len(record["pending_writes"])
                threads[thread_id] = counts
            end = {"kind": "end", "records": records, "blobs": blob_count}
            out.write(json.dumps(end) + "\n")
    os.replace(tmp, path)
    return {
        "format": MANIFEST_FORMAT,
        "dump_format": DUMP_FORMAT,
        "file": os.path.basename(path),
        "sha256": _sha256(path),
        "bytes": os.path.getsize(path),
        "records": records,
        "blobs": blob_count,
        "threads": threads,
        "types": sorted(types),
        "errors": errors,
        "shard": request.get("shard"),
        "versions": versions,
    }
