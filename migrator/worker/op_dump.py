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

Threads are read a few ahead on ``READERS`` connections, each in its own
thread, while the main thread encodes (collecting the type inventory as it
goes); a third thread compresses.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import gzip
import hashlib
import json
import os
import queue
import threading
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from migrator.worker import compat
from migrator.worker.encode import (
    MAX_DEPTH,
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

#: Classes every restore may rebuild without an explicit allowlist entry.
BUILTIN_CLASSES = ("langgraph.types.Send", "langgraph.types.Interrupt")
MESSAGE_MODULE = "langchain_core.messages"


class _DumpEncoder(_Encoder):
    """The snapshot encoding, keeping every field of an ``Interrupt``.

    The snapshot keeps only ``Interrupt.value`` (the other fields change between
    releases); a restore needs all of them to rebuild the object the way the
    new version's own serializer would.

    While encoding it collects in ``found`` what :func:`inventory` would find in
    its output (so the output need not be walked again).
    """

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.deepest = 0  # the deepest level a non-scalar was encoded at
        self.failures = 0  # values that became an error marker

    def encode_found(self, value: Any) -> tuple[Any, list[str]]:
        """``value`` encoded, and what :func:`inventory` finds in it (unsorted, repeats)."""
        self.found = []
        self.deepest = self.failures = 0
        return self.encode(value, 0), self.found

    def encode(self, value: Any, depth: int) -> Any:
        vtype = type(value)
        if vtype is str or vtype is int or vtype is bool or value is None:
            return value  # the common case, without the generic dispatch
        if depth > self.deepest:
            self.deepest = depth
        found = self.found
        mark = len(found)
        try:
            out = self._encode(value, depth)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a marker
            del found[mark:]  # the marker replaces everything encoded below
            self.failures += 1
            return error_entry(exc)
        if type(out) is dict and (TYPE_KEY in out or "class" in out):
            self._note(out, mark)  # nothing to note for a plain dict
        return out

    def _note(self, out: dict[str, Any], mark: int) -> None:
        """Collect the class ``out``'s tag names (its contents are collected already)."""
        fields = out.get("fields")
        if ("class" in out and TYPE_KEY not in out) or (
            type(fields) is dict and ("class" in fields or TYPE_KEY in fields)
        ):
            # inventory() skips what a "class" key holds and reads a dict with a
            # TYPE_KEY key as a tag: rare keys, so let inventory() itself decide.
            del self.found[mark:]
            names: set[str] = set()
            inventory(out, names)
            self.found.extend(names)
            return
        entry = tag_entry(out)
        if entry is not None:
            self.found.append(entry)

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
        # (type, length, head, tail) -> [(bytes, value)]: hashing a short key and
        # comparing equal-looking bytes costs less than hashing every blob whole.
        self._memo: dict[tuple[str, int, bytes, bytes], list[tuple[bytes, Any]]] = {}
        self._longest: _LoadedArray | None = None

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
        buf = bytes(raw)
        key = (str(type_), len(buf), buf[:32], buf[-32:])
        bucket = self._memo.get(key)
        if bucket is None:
            bucket = self._memo[key] = []
        for seen, value in bucket:
            if seen == buf:
                return value
        value = None
        if type_ == "msgpack":
            value = self._load_array(buf)
        if value is None:
            value = self.inner.loads_typed(data)
        bucket.append((buf, value))
        return value

    def _load_array(self, buf: bytes) -> list[Any] | None:
        """``buf`` as a list of memoized elements, or None when it is no msgpack array.

        Versions of a growing list share their leading elements' bytes: an
        array whose elements start, or are the start of, the longest array
        loaded so far reuses that array's elements without splitting or hashing
        them again (``list()`` returns the versions newest first).
        """
        head = msgpack_array_head(buf)
        if head is None:
            return None
        count, start = head
        longest = self._longest
        if longest is not None:
            have = len(longest.items)
            body = memoryview(longest.raw)[longest.start :]
            if count <= have:
                size = longest.ends[count - 1] if count else 0
                if size == len(buf) - start and longest.raw.startswith(
                    memoryview(buf)[start:], longest.start
                ):
                    return longest.items[:count]
            elif buf.startswith(body, start):
                spans = _spans(buf, start + len(body), count - have)
                if spans is not None:
                    items = longest.items + self._elements(buf, spans)
                    ends = longest.ends + [b - start for _, b in spans]
                    self._longest = _LoadedArray(buf, start, items, ends)
                    return items
        spans = _spans(buf, start, count)
        if spans is None:
            return None
        items = self._elements(buf, spans)
        if longest is None or count > len(longest.items):
            self._longest = _LoadedArray(buf, start, items, [b - start for _, b in spans])
        return items

    def _elements(self, buf: bytes, spans: list[tuple[int, int]]) -> list[Any]:
        return [self.loads_typed(("msgpack", buf[a:b])) for a, b in spans]

    def clear(self) -> None:
        """Forget every memoized value (call between threads)."""
        self._memo.clear()
        self._longest = None

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
    head = msgpack_array_head(buf)
    return None if head is None else _spans(buf, head[1], head[0])


def msgpack_array_head(buf: bytes) -> tuple[int, int] | None:
    """(element count, header length) when ``buf`` starts with a whole msgpack array header."""
    if not buf:
        return None
    b = buf[0]
    if 0x90 <= b <= 0x9F:
        return b & 0x0F, 1
    if b in (0xDC, 0xDD):
        width = 2 if b == 0xDC else 4
        if len(buf) < 1 + width:
            return None
        return int.from_bytes(buf[1 : 1 + width], "big"), 1 + width
    return None


def _spans(buf: bytes, pos: int, count: int) -> list[tuple[int, int]] | None:
    """``(start, end)`` of ``count`` objects from ``pos``; None unless they end ``buf``."""
    spans = []
    try:
        for _ in range(count):
            end = _skip(buf, pos)
            spans.append((pos, end))
            pos = end
    except (ValueError, IndexError):
        return None
    return spans if pos == len(buf) else None


@dataclasses.dataclass
class _LoadedArray:
    """A loaded msgpack array: its bytes, header length, elements, and where each
    element ends (offsets from the end of the header)."""

    raw: bytes
    start: int
    items: list[Any]
    ends: list[int]


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


#: Encoded values by ``id``: (the value, what :func:`inventory` finds in it).
Known = dict[int, tuple[Any, list[str]]]


def tag_entry(value: dict[str, Any]) -> str | None:
    """The class a tagged dict names for the inventory, else None."""
    tag = value.get(TYPE_KEY)
    if tag == "message":
        return f"{MESSAGE_MODULE}.{value.get('class')}"
    if tag in ("Send", "Interrupt"):
        return f"langgraph.types.{tag}"
    if isinstance(tag, str) and isinstance(value.get("class"), str):
        return str(value["class"])
    return None


def inventory(value: Any, found: set[str], known: Known | None = None) -> None:
    """Add every class named by a tag inside ``value`` to ``found``.

    Args:
        value: Encoded data.
        found: Collects ``module.Qualname`` strings.
        known: Parts of ``value`` whose classes are known already (by ``id``):
            they are not walked.
    """
    if known:
        hit = known.get(id(value))
        if hit is not None and hit[0] is value:
            found.update(hit[1])
            return
    # Only lists and dicts can hold a tag: the checks spare a call per scalar.
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (list, dict)):
                inventory(item, found, known)
        return
    if not isinstance(value, dict):
        return
    if TYPE_KEY in value:
        entry = tag_entry(value)
        if entry is not None:
            found.add(entry)
    for key, item in value.items():
        if isinstance(item, (list, dict)) and key not in (TYPE_KEY, "class"):
            inventory(item, found, known)


def _remember(encoded: Any, found: list[str], known: Known) -> None:
    if type(encoded) is dict or type(encoded) is list:  # nothing else holds a tag
        known[id(encoded)] = (encoded, found)


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
        self.encoder = _DumpEncoder()
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
            _remember(part, found, known)
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
    encode_found = blobs.encode if blobs is not None else _DumpEncoder().encode_found

    def encode(value: Any) -> Any:
        encoded, found = encode_found(value)
        if known is not None:
            _remember(encoded, found, known)
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


class _GzipLines:
    """Text into a gzip file, as ``gzip.open(path, "wt", encoding="utf-8")`` writes it.

    The text is handed over in chunks of about ``chunk`` characters to a thread
    that compresses and writes them: zlib releases the GIL, so compression
    overlaps the encoding, and a few large writes cost less than many small ones.
    """

    def __init__(self, path: str, compresslevel: int, chunk: int = 1 << 20) -> None:
        self._file = gzip.open(path, "wb", compresslevel=compresslevel)
        self._chunk = chunk
        self._parts: list[str] = []
        self._size = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="dump-gzip", daemon=True)
        self._thread.start()

    def write(self, text: str) -> None:
        """Queue ``text`` for the file."""
        self._parts.append(text)
        self._size += len(text)
        if self._size >= self._chunk:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._error is not None:
            raise self._error
        text = "".join(self._parts)
        self._parts = []
        self._size = 0
        if os.linesep != "\n":
            text = text.replace("\n", os.linesep)
        self._queue.put(text.encode("utf-8"))

    def _drain(self) -> None:
        try:
            while (data := self._queue.get()) is not None:
                self._file.write(data)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the writing thread
            self._error = exc
            while self._queue.get() is not None:  # keep the writer from blocking
                pass

    def __enter__(self) -> _GzipLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                self._hand_over()
        finally:
            self._queue.put(None)
            self._thread.join()
            self._file.close()
        if self._error is not None and exc_info[0] is None:
            raise self._error


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
    out: _GzipLines,
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
            null) and ``threads`` (thread ids, or null for every thread).

    Returns:
        The manifest (``docs/dump-restore.md``).
    """
    path = str(request["path"])
    versions = compat.installed_versions()
    tally = _Tally()
    tmp = f"{path}.partial"
    with contextlib.ExitStack() as stack:
        stack.enter_context(_gc_frozen())
        conns = [stack.enter_context(open_connection(request["dsn"])) for _ in range(READERS)]
        from langgraph.checkpoint.postgres import PostgresSaver

        has_task_path = conns[0].execute(HAS_TASK_PATH_SQL).fetchone() is not None
        thread_ids = _threads(conns[0], request)
        # From here on each connection serves one reader thread only.
        readers = [(PostgresSaver(conn), conn) for conn in conns]
        reads = stack.enter_context(
            contextlib.closing(_read_ahead(readers, thread_ids, has_task_path, READ_AHEAD))
        )
        with _GzipLines(tmp, compresslevel=COMPRESSLEVEL) as out:
            header = {"kind": "header", "format": DUMP_FORMAT, "versions": versions}
            out.write(json.dumps(header, ensure_ascii=False) + "\n")
            for thread_id, namespaces in reads:
                _dump_thread(thread_id, namespaces, out, tally)
            end = {"kind": "end", "records": tally.records, "blobs": tally.blobs}
            out.write(json.dumps(end) + "\n")
    os.replace(tmp, path)
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
    }
