"""Worker op ``restore``: rebuild a dump through this (new) version's saver in a shadow schema.

Runs in the NEW version environment. The host has checked the dump's sha256 and
the type allowlist and holds the migrator lock; it created the shadow schema
and swaps it in afterwards. This op:

1. connects with ``search_path=<shadow>`` so ``setup()``'s unqualified names
   land there, and runs the version's own ``setup()``;
2. decodes each thread's blob records once and its checkpoint records
   (:func:`decode_record`), importing only allow-listed classes; a value many
   checkpoints reference is one object;
3. per thread: applies the built-in ``task-id`` transform (H-TASK-ID, needs
   the thread's graph) and the user transform, per checkpoint;
4. writes through the saver's own ``put`` and ``put_writes`` (one call per
   task, stored task path kept). ``write_mode`` ``"bulk"`` (default) runs them
   on a recording cursor and loads the captured rows with COPY
   (:class:`BulkWriter`: the same rows, no round trip per checkpoint);
   ``"put"`` sends every call to the database (``new_versions`` = the
   checkpoint's ``channel_versions``, so every blob is written). Committed in
   batches;
5. reads every thread back through the saver (``list`` per namespace, once,
   deserializer memoized: :class:`ReadBackSerde`) and compares parents,
   values and pending writes with the records it wrote (:class:`Sameness`:
   ``==`` memoized per pair of objects, canonical digests where ``==`` says
   different). ``verify`` ``"sample"`` reads back only the threads
   :class:`ReadBack` picks (every tag or class at least once, and a fixed
   ~5 % lot); the result's ``verified`` says how many.

Request::

    {"dsn", "schema", "path", "allow_types": [...], "transform": "m:f" | null,
     "task_id": bool, "graph": "m:attr" | null, "dry_run": bool, "batch": int,
     "write_mode": "bulk" | "put", "verify": "full" | "sample"}

With ``dry_run`` nothing is written: the result lists what the transforms
would change.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import gc
import gzip
import hashlib
import importlib
import io
import json
import math
import operator
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import compress, starmap
from typing import Any

from migrator.worker import compat
from migrator.worker.encode import ERROR_KEY, TYPE_KEY, encode
from migrator.worker.op_dump import (
    BUILTIN_CLASSES,
    DUMP_FORMAT,
    MESSAGE_MODULE,
    READABLE_FORMATS,
    is_inline,
    version_key,
)
from migrator.worker.serde_cache import ListEncodingSerde, ReadBackSerde
from migrator.worker.transforms import (
    TransformError,
    apply_user,
    canary_graph_source,
    cure_task_ids,
    load_callable,
)

SEARCH_PATH_OPTION = "-c search_path={schema}"
COUNT_WRITES_SQL = "SELECT count(*) AS n FROM checkpoint_writes WHERE thread_id = %s"
TASKS = "__pregel_tasks"
WRITE_MODES = ("bulk", "put")
VERIFY_MODES = ("full", "sample")
SETUP_TRY_LOCK_SQL = (
    "SELECT pg_try_advisory_lock(hashtext('langgraph_migrator.restore_setup:' || %s)) AS got"
)
SETUP_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('langgraph_migrator.restore_setup:' || %s))"
#: A ``"sample"`` verification reads about one in this many threads back by lot.
SAMPLE_ONE_IN = 20
#: Net allocations between two collections of the youngest generation during a restore.
GC_YOUNG_THRESHOLD = 50_000
BLOBS_TABLE = "checkpoint_blobs"
COPY_SQL = "COPY {} ({}) FROM STDIN{}"
COLUMN_TYPES_SQL = (
    "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
    " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped"
)
#: The savers' upserts: ``INSERT INTO t (cols) VALUES (...) ON CONFLICT (keys) ...``.
INSERT_RE = re.compile(
    r"\s*INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*\([^)]*\)\s*"
    r"ON\s+CONFLICT\s*\(([^)]*)\)",
    re.IGNORECASE,
)
LIST_NAMESPACES_SQL = (
    "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_ns"
)
BATCH_NAMESPACES_SQL = (
    "SELECT DISTINCT thread_id, checkpoint_ns FROM checkpoints WHERE thread_id = ANY(%s)"
    " ORDER BY thread_id, checkpoint_ns"
)


class DumpFormatError(Exception):
    """The dump file is not a complete, well-formed dump."""


class DisallowedTypeError(Exception):
    """A value names a class outside the allowlist, or cannot be rebuilt."""


class RestoreVerificationError(Exception):
    """What the new saver reads back differs from what the dump holds."""


# --------------------------------------------------------------------------- decoding


#: JSON primitives: decoded as themselves.
_PLAIN = frozenset({str, int, float, bool, type(None)})


class Decoder:
    """Rebuilds Python values from the type-tagged encoding.

    Args:
        allow_types: ``module.Qualname`` of every class that may be imported
            (messages, ``Send`` and ``Interrupt`` are always allowed).
    """

    def __init__(self, allow_types: list[str] | tuple[str, ...] = ()) -> None:
        self.allowed = set(allow_types) | set(BUILTIN_CLASSES)
        self._classes: dict[str, Any] = {}
        #: Every tag and class rebuilt since the caller last cleared it.
        self.seen: set[str] = set()

    def _cls(self, name: str) -> Any:
        self.seen.add(name)
        if name in self._classes:
            return self._classes[name]
        if name not in self.allowed and not name.startswith(MESSAGE_MODULE + "."):
            raise DisallowedTypeError(f"class {name} is not in the allowlist")
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            try:
                module = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            obj: Any = module
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                continue
            self._classes[name] = obj
            return obj
        raise DisallowedTypeError(f"class {name} cannot be imported here")

    def decode(self, value: Any) -> Any:
        """Rebuild one encoded value.

        Raises:
            DisallowedTypeError: a class outside the allowlist, an ``object``
                (repr only) or an ``__error__`` marker.
        """
        kind = type(value)
        if kind in _PLAIN:  # most values: no call per JSON primitive below either
            return value
        if kind is not list and kind is not dict:
            if not isinstance(value, (list, dict)):
                return value
            kind = list if isinstance(value, list) else dict
        d = self.decode
        if kind is list:
            return [v if type(v) in _PLAIN else d(v) for v in value]
        if len(value) == 1 and ERROR_KEY in value:
            raise DisallowedTypeError(f"the old version could not read it: {value[ERROR_KEY]}")
        tag = value.get(TYPE_KEY)
        if tag is None:
            return {k: v if type(v) in _PLAIN else d(v) for k, v in value.items()}
        return self._tagged(str(tag), value)

    def _tagged(self, tag: str, v: dict[str, Any]) -> Any:  # noqa: C901 - one branch per tag
        d = self.decode
        self.seen.add(tag)
        if tag == "message":  # the most frequent tag first
            cls = self._cls(f"{MESSAGE_MODULE}.{v['class']}")
            return cls(**{k: x if type(x) in _PLAIN else d(x) for k, x in v["fields"].items()})
        if tag == "float":
            return float(v["value"])
        if tag == "dict":  # checkpoints' versions: str keys, str or number values
            return {
                (k if type(k) in _PLAIN else _hashable(d(k))): (x if type(x) in _PLAIN else d(x))
                for k, x in v["items"]
            }
        if tag == "tuple":
            return tuple(d(i) for i in v["items"])
        if tag in ("set", "frozenset"):
            items = [_hashable(d(i)) for i in v["items"]]
            return set(items) if tag == "set" else frozenset(items)
        if tag in ("bytes", "bytearray", "memoryview"):
            raw = base64.b64decode(v["base64"])
            return bytearray(raw) if tag == "bytearray" else raw
        if tag == "datetime":
            return _with_tz(_dt.datetime.fromisoformat(v["iso"]), v.get("tz"))
        if tag == "date":
            return _dt.date.fromisoformat(v["iso"])
        if tag == "time":
            return _with_tz(_dt.time.fromisoformat(v["iso"]), v.get("tz"))
        if tag == "timedelta":
            return _dt.timedelta(
                days=v["days"], seconds=v["seconds"], microseconds=v["microseconds"]
            )
        if tag == "Decimal":
            return decimal.Decimal(v["value"])
        if tag == "UUID":
            return uuid.UUID(v["value"])
        if tag == "enum":
            return self._cls(v["class"])(d(v["value"]))
        if tag == "str":
            return self._cls(v["class"])(v["value"])
        if tag == "number":
            text = str(v["repr"])
            cls = self._cls(v["class"])
            return cls(float(text) if any(c in text for c in ".eEn") else int(text))
        if tag == "namedtuple":
            return self._cls(v["class"])(**{k: d(x) for k, x in v["fields"].items()})
        if tag == "Send":
            return compat.send_class()(d(v["node"]), d(v["arg"]))
        if tag == "Interrupt":
            from langgraph.types import Interrupt

            fields = {k: d(x) for k, x in (v.get("fields") or {"value": v["value"]}).items()}
            return _construct(Interrupt, fields)
        if tag == "pydantic":
            return _construct(self._cls(v["class"]), {k: d(x) for k, x in v["fields"].items()})
        if tag == "dataclass":
            return _construct(self._cls(v["class"]), {k: d(x) for k, x in v["fields"].items()})
        if tag == "object":
            raise DisallowedTypeError(
                f"class {v.get('class')} was dumped as its repr only and cannot be rebuilt"
            )
        raise DisallowedTypeError(f"unknown tag {tag!r}")


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _with_tz(value: Any, tz: str | None) -> Any:
    if tz is None or value.tzinfo is None or str(value.tzinfo) == tz:
        return value
    try:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(tz)
    except Exception:  # noqa: BLE001 - keep the fixed offset the ISO text carries
        return value
    if isinstance(value, _dt.datetime):
        return value.astimezone(zone)
    return value.replace(tzinfo=zone)


def _construct(cls: Any, fields: dict[str, Any]) -> Any:
    """``cls(**fields)``, as the savers' own serializers rebuild dataclasses and models."""
    try:
        return cls(**fields)
    except Exception:  # noqa: BLE001 - e.g. a validator; rebuild without validation
        construct = getattr(cls, "model_construct", None) or getattr(cls, "construct", None)
        if construct is None:
            raise
        return construct(**fields)


def decode_record(
    decoder: Decoder,
    raw: dict[str, Any],
    blobs: dict[tuple[str, str, str], Any] | None = None,
) -> dict[str, Any]:
    """The Python form of one dump record (see :mod:`migrator.worker.transforms`).

    Args:
        decoder: Decodes tagged values (allowlist enforced).
        raw: The checkpoint record as read from the dump.
        blobs: The thread's decoded blob records by ``(ns, channel, version key)``;
            a value referenced from several checkpoints is one shared object.

    Raises:
        DumpFormatError: a referenced blob record is missing.
    """
    checkpoint = decoder.decode(raw["checkpoint"])
    values = {k: decoder.decode(v) for k, v in raw["channel_values"].items()}
    for channel, version in (raw.get("channel_blobs") or {}).items():
        key = (raw["checkpoint_ns"], channel, version_key(version))
        if blobs is None or key not in blobs:
            raise DumpFormatError(
                f"{raw['thread_id']}/{raw['checkpoint_ns'] or '(root)'}/{raw['checkpoint_id']}: "
                f"no blob record for channel {channel} version {version}"
            )
        if channel in values:
            raise DumpFormatError(f"channel {channel} is both inline and a blob reference")
        values[channel] = blobs[key]
    checkpoint["channel_values"] = values
    return {
        "thread_id": raw["thread_id"],
        "checkpoint_ns": raw["checkpoint_ns"],
        "checkpoint_id": raw["checkpoint_id"],
        "parent_checkpoint_id": raw["parent_checkpoint_id"],
        "checkpoint": checkpoint,
        "metadata": decoder.decode(raw["metadata"]),
        "pending_writes": [
            {
                "task_id": w["task_id"],
                "task_path": w.get("task_path", ""),
                "channel": w["channel"],
                "value": decoder.decode(w["value"]),
            }
            for w in raw["pending_writes"]
        ],
    }


# --------------------------------------------------------------------------- reading


class _Window(io.RawIOBase):
    """``length`` bytes of a file from its current position (one part of a dump)."""

    def __init__(self, fh: Any, length: int) -> None:
        self._fh, self._left = fh, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._fh.read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


@contextmanager
def _open_text(path: str, offset: int, length: int | None) -> Iterator[Any]:
    """The dump's text: the whole file, or the gzip member at ``offset`` (``length`` bytes)."""
    if length is None:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            yield fh
        return
    with open(path, "rb") as raw:
        raw.seek(offset)
        window = io.BufferedReader(_Window(raw, length), 1 << 20)
        with gzip.GzipFile(fileobj=window) as gz, io.TextIOWrapper(gz, encoding="utf-8") as fh:
            yield fh


def _json_loads() -> Callable[[str], Any]:
    """``orjson.loads`` where it is installed (langgraph's SDK brings it), else ``json.loads``.

    Whatever orjson rejects (integers beyond 64 bits, ``NaN``) is parsed by
    ``json.loads``, which also raises for malformed lines as before.
    """
    try:
        import orjson
    except ImportError:
        return json.loads

    def loads(line: str) -> Any:
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            return json.loads(line)

    return loads


def read_dump(path: str, offset: int = 0, length: int | None = None) -> Iterator[dict[str, Any]]:
    """Raw records of a dump (``blob`` and ``checkpoint``), header and trailer checked.

    Args:
        path: The dump file.
        offset: Where the part to read starts (a dump made with ``--jobs`` has
            one gzip member per part; the manifest lists them).
        length: The part's length in bytes (None: the whole file, one part).

    Raises:
        DumpFormatError: not gzip/JSON lines, unknown format or record kind, blob
            records in a ``@1`` dump, no trailer, wrong counts.
    """
    count = 0
    blobs = 0
    ended = False
    loads = _json_loads()
    try:
        with _open_text(path, offset, length) as fh:
            first = json.loads(fh.readline() or "null")
            if not isinstance(first, dict) or first.get("format") not in READABLE_FORMATS:
                raise DumpFormatError(f"not a {DUMP_FORMAT} file")
            kinds = ("checkpoint", "blob") if first["format"] == DUMP_FORMAT else ("checkpoint",)
            for line in fh:
                if ended:
                    raise DumpFormatError("data after the end record")
                record = loads(line)
                kind = record.get("kind") if isinstance(record, dict) else None
                if kind == "end":
                    if record.get("records") != count or record.get("blobs", 0) != blobs:
                        raise DumpFormatError(
                            f"end record says {record.get('records')} records and "
                            f"{record.get('blobs', 0)} blobs, read {count} and {blobs}"
                        )
                    ended = True
                    continue
                if kind not in kinds:
                    raise DumpFormatError(f"unexpected record kind {kind!r}")
                if kind == "blob":
                    blobs += 1
                else:
                    count += 1
                yield record
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise DumpFormatError(f"unreadable dump: {type(exc).__name__}: {exc}") from exc
    if not ended:
        raise DumpFormatError("the dump has no end record (truncated)")


def by_thread(records: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Group the records of one thread (the dump writes each thread contiguously).

    Raises:
        DumpFormatError: a thread's records are not contiguous.
    """
    batch: list[dict[str, Any]] = []
    done: set[str] = set()
    for record in records:
        if batch and record["thread_id"] != batch[0]["thread_id"]:
            done.add(batch[0]["thread_id"])
            yield batch
            batch = []
        if not batch and record["thread_id"] in done:
            raise DumpFormatError(f"thread {record['thread_id']} is not contiguous in the dump")
        batch.append(record)
    if batch:
        yield batch


def split_blobs(
    decoder: Decoder, raw_thread: list[dict[str, Any]]
) -> tuple[dict[tuple[str, str, str], Any], list[dict[str, Any]]]:
    """A thread's decoded blob records (each decoded once) and its checkpoint records.

    Raises:
        DumpFormatError: a blob record appears twice.
        DisallowedTypeError: a blob names a class outside the allowlist.
    """
    blobs: dict[tuple[str, str, str], Any] = {}
    checkpoints: list[dict[str, Any]] = []
    for raw in raw_thread:
        if raw["kind"] != "blob":
            checkpoints.append(raw)
            continue
        key = (raw["checkpoint_ns"], raw["channel"], version_key(raw["version"]))
        if key in blobs:
            raise DumpFormatError(f"{raw['thread_id']}: blob {key} appears twice")
        try:
            if "base" in raw:  # a list: the first ``keep`` elements of the base blob + these
                base_key = (raw["checkpoint_ns"], raw["channel"], version_key(raw["base"]))
                base = blobs.get(base_key)
                keep = raw["keep"]
                if (
                    type(base) is not list
                    or type(keep) is not int
                    or not 0 < keep <= len(base)
                    or type(raw["value"]) is not list
                ):
                    raise DumpFormatError(f"{raw['thread_id']}: blob {key} has a bad base")
                blobs[key] = base[:keep] + [decoder.decode(v) for v in raw["value"]]
            else:
                blobs[key] = decoder.decode(raw["value"])
        except DisallowedTypeError as exc:
            raise DisallowedTypeError(
                f"{raw['thread_id']}/{raw['checkpoint_ns'] or '(root)'}/"
                f"channel {raw['channel']}: {exc}"
            ) from exc
    return blobs, checkpoints


# --------------------------------------------------------------------------- writing


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


def write_record(
    saver: Any, record: dict[str, Any], new_versions: dict[str, Any] | None = None
) -> None:
    """Write one checkpoint and its pending writes through the saver's public API.

    Args:
        saver: The new version's saver.
        record: A decoded (and transformed) record.
        new_versions: The ``new_versions`` passed to ``put`` (default: every
            channel version of the checkpoint, so every blob is written).
    """
    parent = {"thread_id": record["thread_id"], "checkpoint_ns": record["checkpoint_ns"]}
    if record["parent_checkpoint_id"] is not None:
        parent["checkpoint_id"] = record["parent_checkpoint_id"]
    checkpoint = record["checkpoint"]
    if new_versions is None:
        new_versions = dict(checkpoint.get("channel_versions") or {})
    config = saver.put({"configurable": parent}, checkpoint, record["metadata"], new_versions)
    tasks: dict[str, tuple[str, list[tuple[str, Any]]]] = {}
    for w in record["pending_writes"]:
        tasks.setdefault(w["task_id"], (w.get("task_path") or "", []))[1].append(
            (w["channel"], w["value"])
        )
    for task_id, (task_path, writes) in tasks.items():
        try:
            saver.put_writes(config, writes, task_id, task_path)
        except TypeError:  # versions before put_writes took a task path
            saver.put_writes(config, writes, task_id)


class _Statement:
    """An ``INSERT INTO t (cols) VALUES ... ON CONFLICT (keys) ...`` the saver issued."""

    def __init__(self, query: str) -> None:
        self.query = query
        match = INSERT_RE.match(query)
        self.table = match.group(1) if match else None
        self.columns = [c.strip() for c in match.group(2).split(",")] if match else []
        keys = [c.strip() for c in match.group(3).split(",")] if match else []
        self.key_index = [self.columns.index(k) for k in keys if k in self.columns]
        if len(self.key_index) != len(keys):
            self.table = None

    def key(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(row[i] for i in self.key_index)


class _RecordingCursor:
    """Stands in for the saver's cursor: keeps each statement's rows instead of sending them."""

    def __init__(self, sink: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        self._sink = sink

    def execute(self, query: Any, params: Any = None, **_: Any) -> None:
        self._sink.append((str(query), [tuple(params or ())]))

    def executemany(self, query: Any, params_seq: Any, **_: Any) -> None:
        self._sink.append((str(query), [tuple(p) for p in params_seq]))


class BulkWriter:
    """Writes exactly the rows the saver's ``put``/``put_writes`` write, in bulk.

    The saver's own ``put``/``put_writes`` run unchanged (its serializer and
    row helpers, whatever this version has), but on a cursor that records
    their statements and parameters; :meth:`flush` loads the rows with COPY.
    Two things make that equal to the ``put()`` path's tables:

    * a blob row is captured once per (thread, ns, channel, version): later
      checkpoints pass ``new_versions`` without the keys already written, where
      the ``put()`` path's repeated insert is ``ON CONFLICT DO NOTHING``
      (the first row stays either way) — and this skips re-serializing values;
    * a statement whose rows repeat a conflict key within a flush is run with
      ``executemany`` instead of COPY, so its own ``ON CONFLICT`` decides.

    The saver's serializer gets a :class:`ListEncodingSerde` in front (same
    bytes; a message shared by later versions of a list is serialized once).

    Args:
        saver: The new version's saver (its ``_cursor`` and ``serde`` are
            replaced on this instance).
        conn: The connection the rows are loaded on (in a transaction).
    """

    def __init__(self, saver: Any, conn: Any) -> None:
        self.saver = saver
        self.conn = conn
        self.captured: list[tuple[str, list[tuple[Any, ...]]]] = []
        self.blob_keys: set[tuple[Any, ...]] = set()
        self._statements: dict[str, _Statement] = {}
        self._types: dict[str, list[str]] = {}
        saver._cursor = self._cursor
        self.serde: ListEncodingSerde | None = None
        if ListEncodingSerde.supports(saver.serde):
            self.serde = saver.serde = ListEncodingSerde(saver.serde)

    @staticmethod
    def available(saver: Any) -> bool:
        """The saver writes through ``_cursor`` (every checkpoint-postgres 1.0 … 3.x)."""
        return callable(getattr(saver, "_cursor", None))

    @contextmanager
    def _cursor(self, *, pipeline: bool = False) -> Iterator[_RecordingCursor]:
        yield _RecordingCursor(self.captured)

    def _statement(self, query: str) -> _Statement:
        if query not in self._statements:
            self._statements[query] = _Statement(query)
        return self._statements[query]

    def write(self, record: dict[str, Any]) -> None:
        """Capture one record's rows (blobs not written yet for this thread only)."""
        thread_id, ns = record["thread_id"], record["checkpoint_ns"]
        versions = {
            channel: version
            for channel, version in (record["checkpoint"].get("channel_versions") or {}).items()
            if (thread_id, ns, channel, version) not in self.blob_keys
        }
        start = len(self.captured)
        write_record(self.saver, record, versions)
        for query, rows in self.captured[start:]:
            statement = self._statement(query)
            if statement.table == BLOBS_TABLE:
                self.blob_keys.update(statement.key(row) for row in rows)

    def take(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """The statements captured since the last call (for :meth:`load`)."""
        captured, self.captured = self.captured, []
        return captured

    def load(self, captured: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """Load captured rows (COPY per statement) on the connection and commit.

        Only this touches the connection, so it may run in another thread
        while the next batch is decoded and captured.
        """
        from psycopg import sql as psycopg_sql

        grouped: dict[str, list[tuple[Any, ...]]] = {}
        for query, rows in captured:
            grouped.setdefault(query, []).extend(rows)
        for query, rows in grouped.items():
            statement = self._statement(query)
            if statement.table is None or len({statement.key(r) for r in rows}) != len(rows):
                with self.conn.pipeline(), self.conn.cursor() as cur:
                    cur.executemany(query, rows)
                continue
            types = self._binary_types(statement, rows)
            copy_sql = psycopg_sql.SQL(COPY_SQL).format(
                psycopg_sql.Identifier(statement.table),
                psycopg_sql.SQL(", ").join(map(psycopg_sql.Identifier, statement.columns)),
                psycopg_sql.SQL(" (FORMAT binary)" if types else ""),
            )
            with self.conn.cursor() as cur, cur.copy(copy_sql) as copy:
                if types:
                    copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        self.conn.commit()

    def _binary_types(self, statement: _Statement, rows: list[tuple[Any, ...]]) -> list[str]:
        """The columns' type names when every value has the Python type binary COPY
        dumps as that column's type (else ``[]``: text COPY, where Postgres parses
        each value as ``INSERT`` does)."""
        from psycopg.rows import tuple_row
        from psycopg.types.json import Jsonb

        assert statement.table is not None
        if statement.table not in self._types:
            # a tuple row factory: the restore's connections return dicts
            with self.conn.cursor(row_factory=tuple_row) as cur:
                found = dict(cur.execute(COLUMN_TYPES_SQL, (statement.table,)).fetchall())
            self._types[statement.table] = [str(found.get(c, "")) for c in statement.columns]
        types = self._types[statement.table]
        expected = {"text": str, "bytea": bytes, "int4": int, "jsonb": Jsonb}
        wanted = [expected.get(t) for t in types]
        if None in wanted:
            return []
        for row in rows:
            for value, cls in zip(row, wanted, strict=True):
                if value is not None and type(value) is not cls:
                    return []
        return types

    def forget_thread(self, thread_id: str) -> None:
        """Drop a finished thread's blob keys and memoized encodings (threads never
        come back: by_thread)."""
        self.blob_keys = {k for k in self.blob_keys if k[0] != thread_id}
        if self.serde is not None:
            self.serde.clear()


class Digests:
    """SHA-256 of a value's canonical encoding, memoized per object.

    Values a thread shares between checkpoints (one decoded blob record; one
    memoized load when reading back) are encoded once. A list's digest is the
    tuple of its elements' digests, built with C-level ``map``: a message shared
    by every later version of a message list is encoded once, not once per list.
    """

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Any, Any]] = {}
        self._items: dict[int, str] = {}
        self._alive: list[Any] = []  # keeps every memoized element's id valid
        self._prims: dict[tuple[type, Any], str] = {}

    def __call__(self, value: Any) -> Any:
        hit = self._memo.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        if type(value) is list:
            ids = list(map(id, value))
            if not self._items.keys() >= set(ids):
                for item in value:
                    if id(item) not in self._items:
                        self._items[id(item)] = self._digest(item)
                        self._alive.append(item)
            digest: Any = ("list", *map(self._items.__getitem__, ids))
        else:
            digest = self._digest(value)
        if not is_inline(value):
            self._memo[id(value)] = (value, digest)
        return digest

    def _digest(self, value: Any) -> str:
        if not is_inline(value) or type(value) is float:  # 0.0 == -0.0: no memo
            return self._encoded_digest(value)
        key = (type(value), value)
        found = self._prims.get(key)
        if found is None:
            found = self._prims[key] = self._encoded_digest(value)
        return found

    @staticmethod
    def _encoded_digest(value: Any) -> str:
        text = json.dumps(encode(value), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Sameness:
    """Whether a value the dump holds and the value read back are the same, memoized.

    ``==`` decides first, memoized per pair of objects: the decoded records
    share a value between checkpoints (and a message between versions of a
    list), and reading back loads each distinct blob and list element once
    (:class:`ReadBackSerde`), so a message is compared once per thread, and a
    list whose element pairs were all compared before costs C-level lookups
    only. Plain containers are compared element by element and types must
    match (``1``, ``1.0`` and ``True`` differ; so do ``0.0`` and ``-0.0``);
    other objects (messages, models, sets) use their ``__eq__`` (inside them,
    numbers equal by value count as the same: the serializers keep their
    types). When that says different (NaN, an identity ``__eq__``, fields the
    canonical encoding ignores), the canonical digests (:class:`Digests`)
    decide: a value is only reported when its digest differs too.
    """

    def __init__(self) -> None:
        self.digest = Digests()
        self._same: set[tuple[int, int]] = set()
        self._alive: list[tuple[Any, Any]] = []  # keeps every memoized pair's ids valid

    def __call__(self, want: Any, got: Any) -> bool:
        if want is got:
            return True
        key = (id(want), id(got))
        if key in self._same:
            return True
        try:
            equal = self._equal(want, got)
        except RecursionError:  # nested too deep for the walk: the digests decide
            equal = False
        if not (equal or self.digest(want) == self.digest(got)):
            return False
        self._same.add(key)
        self._alive.append((want, got))
        return True

    def _equal(self, want: Any, got: Any) -> bool:
        kind = type(want)
        if kind is not type(got):
            return False
        if kind is list or kind is tuple:
            if len(want) != len(got):
                return False
            known = map(self._same.__contains__, zip(map(id, want), map(id, got), strict=True))
            # C-level over the pairs compared before; only new pairs reach Python code
            pairs = zip(want, got, strict=True)
            return all(starmap(self, compress(pairs, map(operator.not_, known))))
        if kind is dict:
            if want.keys() != got.keys() or not all(type(k) is str for k in want):
                return False
            return all(self(value, got[k]) for k, value in want.items())
        if kind is float:
            return bool(want == got) and math.copysign(1.0, want) == math.copysign(1.0, got)
        try:
            return bool(want == got)
        except Exception:  # noqa: BLE001 - an odd __eq__: the digests decide
            return False

    def writes(self, want: list[tuple[Any, Any, Any]], got: list[tuple[Any, Any, Any]]) -> bool:
        """The same pending writes (task, channel, value), in any order."""
        if len(want) != len(got):
            return False

        def key(write: tuple[Any, Any, Any]) -> tuple[str, str]:
            return str(write[0]), str(write[1])

        paired = zip(sorted(want, key=key), sorted(got, key=key), strict=True)
        if all(key(w) == key(g) and self(w[2], g[2]) for w, g in paired):
            return True
        digest = self.digest  # writes in another order within a task and channel
        return sorted((*key(w), digest(w[2])) for w in want) == sorted(
            (*key(g), digest(g[2])) for g in got
        )


def _parent_id(tup: Any) -> Any:
    return (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")


def _checkpoint_problems(same: Sameness, where: str, record: dict[str, Any], tup: Any) -> list[str]:
    """How one checkpoint read back (``tup``) differs from its record."""
    problems: list[str] = []
    parent = _parent_id(tup)
    if record["parent_checkpoint_id"] != parent:
        problems.append(f"{where}: parent {parent} != {record['parent_checkpoint_id']}")
    got = {str(k): v for k, v in (tup.checkpoint.get("channel_values") or {}).items()}
    for channel, value in record["checkpoint"]["channel_values"].items():
        name = str(channel)
        if name not in got or not same(value, got[name]):
            problems.append(f"{where}: channel {name} reads back differently")
    writes = [(w["task_id"], w["channel"], w["value"]) for w in record["pending_writes"]]
    if not same.writes(writes, list(tup.pending_writes or [])):
        problems.append(f"{where}: pending writes read back differently")
    return problems


def verify_thread(
    saver: Any, conn: Any, records: list[dict[str, Any]], namespaces: list[str] | None = None
) -> list[str]:
    """Read a restored thread back through the saver (``list`` per namespace, once).

    Compares each checkpoint's parent, every channel value the dump holds and
    the pending writes (task, channel, value) with the records written
    (:class:`Sameness`); describes every mismatch, a missing and an extra
    checkpoint.

    Args:
        saver: The new version's saver.
        conn: Its connection.
        records: The thread's records as written.
        namespaces: The thread's namespaces in the database (None: queried here).
    """
    thread_id = records[0]["thread_id"]
    want = {(r["checkpoint_ns"], r["checkpoint_id"]): r for r in records}
    got: dict[tuple[str, str], Any] = {}
    if namespaces is None:
        rows = conn.execute(LIST_NAMESPACES_SQL, (thread_id,)).fetchall()
        namespaces = [row["checkpoint_ns"] for row in rows]
    for ns in namespaces:
        for tup in saver.list({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}):
            got[(ns, tup.config["configurable"]["checkpoint_id"])] = tup
    same = Sameness()
    problems: list[str] = []
    for key in sorted(set(want) | set(got)):
        where = f"{thread_id}/{key[0] or '(root)'}/{key[1]}"
        if key not in got:
            problems.append(f"{where}: missing after restore")
        elif key not in want:
            problems.append(f"{where}: not in the dump")
        else:
            problems.extend(_checkpoint_problems(same, where, want[key], got[key]))
    return problems


@dataclass(frozen=True)
class PreparedThread:
    """One thread ready to write: its records, the tags and classes decoded for it,
    and whether a transform changed it."""

    records: list[dict[str, Any]]
    classes: frozenset[str]
    changed: bool

    @property
    def thread_id(self) -> str:
        return str(self.records[0]["thread_id"])


def sampled(thread_id: str) -> bool:
    """Whether a ``"sample"`` verification reads ``thread_id`` back by lot (about 1 in
    :data:`SAMPLE_ONE_IN`, by a hash of the id: the same threads on every run)."""
    digest = hashlib.sha256(thread_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % SAMPLE_ONE_IN == 0


class ReadBack:
    """Reads restored threads back through the saver and collects the problems.

    Called once per batch, after the batch's load is committed (the next batch
    loads in the background meanwhile).

    Args:
        reader: The new version's saver on its own autocommit connection (it
            reads what is committed); its serializer gets a :class:`ReadBackSerde`.
        conn: That connection.
        mode: One of :data:`VERIFY_MODES`. ``"full"``: every thread.
            ``"sample"``: the first thread, every thread holding a tag or class
            that no thread read back so far holds, every thread a transform
            changed, and about one in :data:`SAMPLE_ONE_IN` of the others
            (:func:`sampled`).
    """

    def __init__(self, reader: Any, conn: Any, mode: str) -> None:
        self.reader, self.conn, self.mode = reader, conn, mode
        self.cache = reader.serde = ReadBackSerde(reader.serde)
        self.problems: list[str] = []
        self.seconds = {"flush": 0.0, "verify": 0.0}
        self.read = 0
        self.total = 0
        self._classes: set[str] = set()  # held by the threads read back

    def wanted(self, thread: PreparedThread) -> bool:
        """Whether ``thread`` is read back (see the class docstring)."""
        if self.mode == "full" or self.read == 0 or thread.changed:
            return True
        return not thread.classes <= self._classes or sampled(thread.thread_id)

    def batch(self, loaded: Future[None], threads: list[PreparedThread]) -> None:
        """Verify a batch once ``loaded`` (its load) is done; raises the load's error."""
        t0 = time.perf_counter()
        loaded.result()
        t1 = time.perf_counter()
        chosen = [thread for thread in threads if self._choose(thread)]
        self.total += len(threads)
        namespaces: dict[str, list[str]] = {t.thread_id: [] for t in chosen}
        if chosen:  # one round trip for the batch, not one per thread
            for row in self.conn.execute(BATCH_NAMESPACES_SQL, (list(namespaces),)).fetchall():
                namespaces[row["thread_id"]].append(row["checkpoint_ns"])
        for thread in chosen:
            self.cache.clear()
            found = namespaces[thread.thread_id]
            self.problems.extend(verify_thread(self.reader, self.conn, thread.records, found))
        self.seconds["flush"] += t1 - t0
        self.seconds["verify"] += time.perf_counter() - t1

    def _choose(self, thread: PreparedThread) -> bool:
        if not self.wanted(thread):
            return False
        self.read += 1
        self._classes |= thread.classes
        return True

    def summary(self) -> dict[str, Any]:
        """``{"threads": read back, "of": written, "mode"}``."""
        return {"threads": self.read, "of": self.total, "mode": self.mode}


# --------------------------------------------------------------------------- op


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


def _transform_thread(
    records: list[dict[str, Any]],
    user: Any,
    task_id: bool,
    graph: Any,
) -> tuple[list[dict[str, Any]], list[str]]:
    changes: list[str] = []
    if task_id:
        source = canary_graph_source(records[0]["thread_id"]) or graph
        if source is not None:
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
    decoder = Decoder(request.get("allow_types") or ())
    user = load_callable(request["transform"], "transform") if request.get("transform") else None
    graph = load_callable(request["graph"], "graph") if request.get("graph") else None
    task_id = bool(request.get("task_id"))
    dry_run = bool(request.get("dry_run"))
    batch = int(request.get("batch") or 500)
    threads: dict[str, dict[str, int]] = {}
    changes: list[str] = []

    def _prepared() -> Iterator[PreparedThread]:
        stream = read_dump(
            str(request["path"]), int(request.get("offset") or 0), request.get("length")
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
            records, changed = _transform_thread(decoded, user, task_id, graph)
            changes.extend(changed)
            tid = records[0]["thread_id"]
            threads[tid] = {
                "checkpoints": len(records),
                "writes": sum(len(r["pending_writes"]) for r in records),
            }
            yield PreparedThread(records, frozenset(decoder.seen), bool(changed))

    if dry_run:
        for _ in _prepared():
            pass
        return {
            "threads": threads,
            "changes": changes,
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
        saver = PostgresSaver(conn)
        check = ReadBack(PostgresSaver(read_conn), read_conn, verify_mode)
        writer = BulkWriter(saver, conn) if mode == "bulk" and BulkWriter.available(saver) else None
        if writer is None:
            mode = "put"
        pending = 0
        batch_threads: list[PreparedThread] = []
        loading: tuple[Future[None], list[PreparedThread]] | None = None

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
                    check.batch(*previous)
                pending = 0
        previous, loading = loading, _end_batch()
        for loaded in (previous, loading):
            if loaded is not None:
                check.batch(*loaded)
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
