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

    {"dsn": str, "path": str, "shard": [i, n] | null, "threads": [str] | null,
     "progress_path": str | null}

The dump is gzip-compressed JSON lines (``docs/dump-restore.md``): a header, one
``blob`` record per distinct non-primitive channel value of a thread
(``thread_id``, ``checkpoint_ns``, ``channel``, ``version``), one record per
checkpoint referencing its blobs by version, a trailer. A channel version is
read, encoded and written once however many checkpoints share it (the old
saver's deserializer is memoized per thread for the same reason). The result is
the manifest: record and per-thread counts, the type inventory (every class
named in a tag) and the file's sha256.

Threads are read a few ahead on ``READERS`` connections, each in its own
thread, while the main thread encodes (collecting the type inventory as it
goes); a third thread compresses. When the app's serializer encrypts, the
file is encrypted with its cipher (:mod:`migrator.worker.cipher`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import hashlib
import json
import os
import queue
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from migrator.worker import compat, faults
from migrator.worker.cipher import cipher_of
from migrator.worker.dumpencode import (
    DumpEncoder,
    Known,
    inventory,
    is_inline,
    remember,
    version_key,
)
from migrator.worker.dumpfile import DUMP_FORMAT, MANIFEST_FORMAT, GzipLines
from migrator.worker.encode import (
    MAX_DEPTH,
    error_entry,
)
from migrator.worker.progressfile import ProgressFile
from migrator.worker.saver import make_saver, open_connection
from migrator.worker.serde_cache import CachingSerde

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
#: The namespaces of a thread (ordered), each with its writes' task paths (one
#: row of NULLs for a namespace without any): one round trip for both.
NAMESPACE_TASK_PATHS_SQL = (
    "SELECT n.checkpoint_ns, w.checkpoint_id, w.task_id, w.task_path"
    " FROM (SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = %(t)s) n"
    " LEFT JOIN (SELECT DISTINCT checkpoint_ns, checkpoint_id, task_id, task_path"
    " FROM checkpoint_writes WHERE thread_id = %(t)s AND task_path <> '') w"
    " ON w.checkpoint_ns = n.checkpoint_ns ORDER BY n.checkpoint_ns"
)

#: Connections reading threads at once (each in its own thread), and threads
#: read ahead of the encoding.
READERS = 2
READ_AHEAD = 3
#: zlib's fast strategy: compared with level 4, about 40 % less CPU for about
#: 13 % more bytes on message-heavy dumps (level 1 saves no more and adds 20 %).
COMPRESSLEVEL = 2


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
        self.last: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self.new: list[tuple[dict[str, Any], Known]] = []
        self.encoder = DumpEncoder()
        #: id -> (element, its encoding, what inventory() finds in it, whether the
        #: encoding holds inside a list too: no error marker, not near MAX_DEPTH)
        self._items: dict[int, tuple[Any, Any, list[str], bool]] = {}

    def _encode(self, value: Any) -> tuple[Any, list[tuple[Any, list[str]]]]:
        """``value`` encoded, and its parts (a list's elements, else the whole)
        each with what :func:`inventory` finds in it."""
        encoder = self.encoder
        if type(value) is not list:
            encoded, found = encoder.encode_found(value)
            return encoded, [(encoded, found)]
        out = []
        parts = []
        for item in value:
            hit = self._items.get(id(item))
            if hit is None or hit[0] is not item:
                encoded, found = encoder.encode_found(item)
                portable = encoder.failures == 0 and encoder.deepest < MAX_DEPTH
                hit = (item, encoded, found, portable)
                if not is_inline(item):
                    self._items[id(item)] = hit
            out.append(hit[1])
            parts.append((hit[1], hit[2]))
        return out, parts

    def encode(self, value: Any) -> tuple[Any, list[str]]:
        """``dump_encode(value)``, and what :func:`inventory` finds in it.

        A list of JSON scalars and elements already encoded for a blob (a node's
        new messages, written to a message channel) reuses those encodings. An
        element encodes alone as it does inside the list (one level deeper, the
        list on the path) unless it came near ``MAX_DEPTH`` or holds an error
        marker (a cycle through the list, say): such lists are encoded anew.
        """
        if type(value) is list:
            out = []
            found: list[str] = []
            for item in value:
                itype = type(item)
                if item is None or itype is str or itype is int or itype is bool:
                    out.append(item)
                    continue
                hit = self._items.get(id(item))
                if hit is None or hit[0] is not item or not hit[3]:
                    break
                out.append(hit[1])
                found.extend(hit[2])
            else:
                return out, found
        return self.encoder.encode_found(value)

    def reference(self, thread_id: str, ns: str, channel: str, version: Any, value: Any) -> bool:
        """Reference (recording a new blob record if needed); False: keep it inline."""
        key = (ns, channel, version_key(version))
        first = self.seen.get(key)
        if first is not None:
            return first[0] is value or self._encode(value)[0] == first[1]
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
        if keep and base is not None:
            # The kept elements are base's very objects: their encodings are base's.
            tail, parts = self._encode(value[keep:])
            encoded = base[2][:keep] + tail
            record.update(base=base[0], keep=keep, value=tail)
        else:
            encoded, parts = self._encode(value)
            record["value"] = encoded
        known: Known = {}
        for part, found in parts:
            remember(part, found, known)
        self.seen[key] = (value, encoded)
        self.last[(ns, channel)] = (version, value, encoded)
        self.new.append((record, known))
        return True

    def take(self) -> list[tuple[dict[str, Any], Known]]:
        """The blob records not handed out yet, each with its encoded parts' classes."""
        new, self.new = self.new, []
        return new


def checkpoint_record(
    tup: Any,
    thread_id: str,
    ns: str,
    task_paths: dict[str, str],
    blobs: BlobTable | None = None,
    known: Known | None = None,
) -> dict[str, Any]:
    """One dump record for a ``CheckpointTuple`` as this version read it.

    Args:
        tup: The tuple from ``list``/``get_tuple``.
        thread_id: Its thread.
        ns: Its namespace.
        task_paths: ``task_id -> task_path`` of its writes (empty where the
            version has no ``task_path`` column).
        blobs: The thread's blob table; None keeps every value inline.
        known: Collects the record's encoded parts with their classes (for
            :func:`inventory`).

    Returns:
        ``{"kind": "checkpoint", "thread_id", "checkpoint_ns", "checkpoint_id",
        "parent_checkpoint_id", "checkpoint", "channel_values", "channel_blobs",
        "metadata", "pending_writes"}``; ``checkpoint`` is the checkpoint without
        its channel values (``v``, ``id``, ``ts``, ``channel_versions``,
        ``versions_seen``, ...), encoded; ``channel_blobs`` maps a channel to the
        version of the blob record holding its value.
    """
    encode_found = blobs.encode if blobs is not None else DumpEncoder().encode_found

    def encode(value: Any) -> Any:
        encoded, found = encode_found(value)
        if known is not None:
            remember(encoded, found, known)
        return encoded

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
        "checkpoint": encode(checkpoint),
        "channel_values": {str(k): encode(v) for k, v in values.items()},
        "channel_blobs": refs,
        "metadata": encode(tup.metadata),
        "pending_writes": [
            {
                "task_id": str(w[0]),
                "task_path": task_paths.get(str(w[0]), ""),
                "channel": str(w[1]),
                "value": encode(w[2]),
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


# json.dumps(record, ensure_ascii=False) without its cycle check: a record is
# acyclic (the encoder refuses cycles; versions passed version_key's check).
_JSON = json.JSONEncoder(ensure_ascii=False, check_circular=False)


def _scanned(
    record: dict[str, Any], known: Known, where: str, types: set[str], errors: list[str]
) -> str:
    """The record's JSON line; its tagged classes and error markers collected.

    The classes of the parts in ``known`` are known already: only the rest of
    the record is walked. The error walk only runs when the text holds a marker
    at all (most records do not).
    """
    line = _JSON.encode(record) + "\n"
    inventory(record, types, known)
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
    paths: dict[str, dict[str, dict[str, str]]] = {}  # ns -> checkpoint -> task -> path
    if has_task_path:
        for r in conn.execute(NAMESPACE_TASK_PATHS_SQL, {"t": thread_id}).fetchall():
            ns_paths = paths.setdefault(r["checkpoint_ns"], {})
            if r["checkpoint_id"] is not None:
                ns_paths.setdefault(r["checkpoint_id"], {})[r["task_id"]] = r["task_path"]
    else:
        for r in conn.execute(LIST_NAMESPACES_SQL, (thread_id,)).fetchall():
            paths[r["checkpoint_ns"]] = {}
    return [(ns, all_paths, list(_tuples(saver, thread_id, ns))) for ns, all_paths in paths.items()]


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


def _read_ahead(
    readers: list[tuple[Any, Any]], thread_ids: list[str], has_task_path: bool, ahead: int
) -> Generator[tuple[str, list[tuple[str, dict[str, dict[str, str]], list[Any]]]]]:
    """Each thread with :func:`read_thread`'s result, in order, read ahead of the caller.

    Every reader (a saver and its connection) serves one worker thread, so as
    many threads are read (queries, deserialization) at once, the server's time
    of one overlapping the other's, while the caller encodes.
    """
    free: queue.SimpleQueue[tuple[Any, Any, Any]] = queue.SimpleQueue()
    for saver, conn in readers:
        free.put((saver, conn, saver.serde))

    def fetch(thread_id: str) -> list[tuple[str, dict[str, dict[str, str]], list[Any]]]:
        saver, conn, inner = free.get()
        try:
            saver.serde = CachingSerde(inner)  # one memo per thread
            return read_thread(saver, conn, thread_id, has_task_path)
        finally:
            free.put((saver, conn, inner))

    pool = ThreadPoolExecutor(max_workers=len(readers), thread_name_prefix="dump-read")
    try:
        pending = collections.deque(pool.submit(fetch, t) for t in thread_ids[:ahead])
        for i, thread_id in enumerate(thread_ids):
            namespaces = pending.popleft().result()
            if i + ahead < len(thread_ids):
                pending.append(pool.submit(fetch, thread_ids[i + ahead]))
            yield thread_id, namespaces
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclasses.dataclass
class _Tally:
    """What the manifest counts, collected while dumping."""

    threads: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    types: set[str] = dataclasses.field(default_factory=set)
    errors: list[str] = dataclasses.field(default_factory=list)
    records: int = 0
    blobs: int = 0


def _dump_thread(
    thread_id: str,
    namespaces: list[tuple[str, dict[str, dict[str, str]], list[Any]]],
    out: GzipLines,
    tally: _Tally,
) -> None:
    """Write one thread's blob and checkpoint records; count them in ``tally``."""
    blobs = BlobTable()
    counts = {"checkpoints": 0, "writes": 0, "namespaces": len(namespaces)}
    for ns, all_paths, tuples in namespaces:
        for tup in tuples:
            cid = tup.config["configurable"]["checkpoint_id"]
            paths = all_paths.get(cid, {})
            known: Known = {}
            try:
                record = checkpoint_record(tup, thread_id, ns, paths, blobs, known)
            except Exception as exc:  # noqa: BLE001 - reported in the manifest
                tally.errors.append(f"{thread_id}/{ns}/{cid}: {error_entry(exc)}")
                continue
            found: list[str] = []
            for blob, blob_known in blobs.take():  # before the first record using them
                where = f"{thread_id}/{ns}/{cid}.channel_values.{blob['channel']}"
                out.write(_scanned(blob, blob_known, where, tally.types, found))
                tally.blobs += 1
            out.write(_scanned(record, known, f"{thread_id}/{ns}/{cid}", tally.types, found))
            tally.errors.extend(found)
            tally.records += 1
            counts["checkpoints"] += 1
            counts["writes"] += len(record["pending_writes"])
    tally.threads[thread_id] = counts


@contextlib.contextmanager
def _gc_frozen() -> Iterator[None]:
    """Leave the objects that exist now (imported modules, mostly) out of garbage
    collections until the end: a full collection need not walk them again and
    again while millions of short-lived values come and go."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Dump the requested threads to ``request["path"]`` and return the manifest.

    Args:
        request: ``dsn``, ``path`` (the file to write), ``shard`` (``[i, n]`` or
            null), ``threads`` (thread ids, or null for every thread) and
            ``progress_path`` (a :class:`ProgressFile`, optional).

    Returns:
        The manifest (``docs/dump-restore.md``).
    """
    faults.pause_point("dump.start")
    path = str(request["path"])
    versions = compat.installed_versions()
    tally = _Tally()
    meter = ProgressFile(request.get("progress_path"))
    tmp = f"{path}.partial"
    with contextlib.ExitStack() as stack:
        stack.enter_context(_gc_frozen())
        conns = [stack.enter_context(open_connection(request["dsn"])) for _ in range(READERS)]
        has_task_path = conns[0].execute(HAS_TASK_PATH_SQL).fetchone() is not None
        thread_ids = _threads(conns[0], request)
        meter.total(len(thread_ids))
        # From here on each connection serves one reader thread only.
        readers = [(make_saver(conn), conn) for conn in conns]
        cipher = cipher_of(readers[0][0].serde)  # an encrypted database: an encrypted dump
        reads = stack.enter_context(
            contextlib.closing(_read_ahead(readers, thread_ids, has_task_path, READ_AHEAD))
        )
        try:
            with GzipLines(tmp, compresslevel=COMPRESSLEVEL, cipher=cipher) as out:
                header = {"kind": "header", "format": DUMP_FORMAT, "versions": versions}
                out.write(json.dumps(header, ensure_ascii=False) + "\n")
                for thread_id, namespaces in reads:
                    _dump_thread(thread_id, namespaces, out, tally)
                    meter.advance(1, tally.threads[thread_id]["checkpoints"])
                end = {"kind": "end", "records": tally.records, "blobs": tally.blobs}
                out.write(json.dumps(end) + "\n")
        except BaseException:
            with contextlib.suppress(OSError):  # a failed dump leaves no file behind
                os.unlink(tmp)
            raise
    os.replace(tmp, path)
    meter.finish()
    return {
        "format": MANIFEST_FORMAT,
        "dump_format": DUMP_FORMAT,
        "file": os.path.basename(path),
        "sha256": _sha256(path),
        "bytes": os.path.getsize(path),
        "records": tally.records,
        "blobs": tally.blobs,
        "threads": tally.threads,
        "types": sorted(tally.types),
        "errors": tally.errors,
        "shard": request.get("shard"),
        "versions": versions,
        "encrypted": cipher is not None,
    }
