"""Worker op ``restore``: rebuild a dump through this (new) version's saver in a shadow schema.

Runs in the NEW version environment. The host has checked the dump's sha256 and
the type allowlist and holds the migrator lock; it created the shadow schema
and swaps it in afterwards. This op:

1. connects with ``search_path=<shadow>`` so ``setup()``'s unqualified names
   land there, and runs the version's own ``setup()``;
2. decodes each record (:func:`decode`), importing only allow-listed classes;
3. per thread: applies the built-in ``task-id`` transform (H-TASK-ID, needs
   the thread's graph) and the user transform, per checkpoint;
4. writes through the saver's ``put`` (``new_versions`` = the checkpoint's
   ``channel_versions``, so every blob is written) and ``put_writes`` (one call
   per task, stored task path kept), committing in batches;
5. reads every thread back through the saver and compares it with the records
   it wrote (counts and encoded values).

Request::

    {"dsn", "schema", "path", "allow_types": [...], "transform": "m:f" | null,
     "task_id": bool, "graph": "m:attr" | null, "dry_run": bool, "batch": int}

With ``dry_run`` nothing is written: the result lists what the transforms
would change.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import gzip
import importlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

from migrator.worker import compat
from migrator.worker.encode import TYPE_KEY, encode
from migrator.worker.op_dump import BUILTIN_CLASSES, DUMP_FORMAT, MESSAGE_MODULE
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
LIST_NAMESPACES_SQL = (
    "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_ns"
)


class DumpFormatError(Exception):
    """The dump file is not a complete, well-formed dump."""


class DisallowedTypeError(Exception):
    """A value names a class outside the allowlist, or cannot be rebuilt."""


class RestoreVerificationError(Exception):
    """What the new saver reads back differs from what the dump holds."""


# --------------------------------------------------------------------------- decoding


class Decoder:
    """Rebuilds Python values from the type-tagged encoding.

    Args:
        allow_types: ``module.Qualname`` of every class that may be imported
            (messages, ``Send`` and ``Interrupt`` are always allowed).
    """

    def __init__(self, allow_types: list[str] | tuple[str, ...] = ()) -> None:
        self.allowed = set(allow_types) | set(BUILTIN_CLASSES)
        self._classes: dict[str, Any] = {}

    def _cls(self, name: str) -> Any:
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
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"__error__"}:
            raise DisallowedTypeError(f"the old version could not read it: {value['__error__']}")
        tag = value.get(TYPE_KEY)
        if tag is None:
            return {k: self.decode(v) for k, v in value.items()}
        return self._tagged(str(tag), value)

    def _tagged(self, tag: str, v: dict[str, Any]) -> Any:  # noqa: C901 - one branch per tag
        d = self.decode
        if tag == "float":
            return float(v["value"])
        if tag == "dict":
            return {_hashable(d(k)): d(val) for k, val in v["items"]}
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
        if tag == "message":
            cls = self._cls(f"{MESSAGE_MODULE}.{v['class']}")
            return cls(**{k: d(x) for k, x in v["fields"].items()})
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


def decode_record(decoder: Decoder, raw: dict[str, Any]) -> dict[str, Any]:
    """The Python form of one dump record (see :mod:`migrator.worker.transforms`)."""
    checkpoint = decoder.decode(raw["checkpoint"])
    checkpoint["channel_values"] = {k: decoder.decode(v) for k, v in raw["channel_values"].items()}
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


def read_dump(path: str) -> Iterator[dict[str, Any]]:
    """Raw records of a dump, header and trailer checked.

    Raises:
        DumpFormatError: not gzip/JSON lines, wrong format, no trailer, wrong count.
    """
    count = 0
    ended = False
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            first = json.loads(fh.readline() or "null")
            if not isinstance(first, dict) or first.get("format") != DUMP_FORMAT:
                raise DumpFormatError(f"not a {DUMP_FORMAT} file")
            for line in fh:
                if ended:
                    raise DumpFormatError("data after the end record")
                record = json.loads(line)
                if record.get("kind") == "end":
                    if record.get("records") != count:
                        raise DumpFormatError(
                            f"end record says {record.get('records')} records, read {count}"
                        )
                    ended = True
                    continue
                count += 1
                yield record
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise DumpFormatError(f"unreadable dump: {type(exc).__name__}: {exc}") from exc
    if not ended:
        raise DumpFormatError("the dump has no end record (truncated)")


def by_thread(records: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Group consecutive records of one thread (the dump writes threads contiguously)."""
    batch: list[dict[str, Any]] = []
    for record in records:
        if batch and record["thread_id"] != batch[0]["thread_id"]:
            yield batch
            batch = []
        batch.append(record)
    if batch:
        yield batch


# --------------------------------------------------------------------------- writing


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


def write_record(saver: Any, record: dict[str, Any]) -> None:
    """Write one checkpoint and its pending writes through the saver's public API."""
    parent = {"thread_id": record["thread_id"], "checkpoint_ns": record["checkpoint_ns"]}
    if record["parent_checkpoint_id"] is not None:
        parent["checkpoint_id"] = record["parent_checkpoint_id"]
    checkpoint = record["checkpoint"]
    versions = dict(checkpoint.get("channel_versions") or {})
    config = saver.put({"configurable": parent}, checkpoint, record["metadata"], versions)
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


def _expected(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "parent": record["parent_checkpoint_id"],
        "values": {k: encode(v) for k, v in record["checkpoint"]["channel_values"].items()},
        "writes": sorted(
            (w["task_id"], w["channel"], json.dumps(encode(w["value"]), sort_keys=True))
            for w in record["pending_writes"]
        ),
    }


def verify_thread(saver: Any, conn: Any, records: list[dict[str, Any]]) -> list[str]:
    """Read a restored thread back through the saver; describe every mismatch."""
    thread_id = records[0]["thread_id"]
    want = {(r["checkpoint_ns"], r["checkpoint_id"]): _expected(r) for r in records}
    got: dict[tuple[str, str], dict[str, Any]] = {}
    for row in conn.execute(LIST_NAMESPACES_SQL, (thread_id,)).fetchall():
        ns = row["checkpoint_ns"]
        for tup in saver.list({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}):
            cid = tup.config["configurable"]["checkpoint_id"]
            got[(ns, cid)] = {
                "parent": (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id"),
                "values": {
                    k: encode(v) for k, v in (tup.checkpoint.get("channel_values") or {}).items()
                },
                "writes": sorted(
                    (str(w[0]), str(w[1]), json.dumps(encode(w[2]), sort_keys=True))
                    for w in tup.pending_writes or []
                ),
            }
    problems: list[str] = []
    for key in sorted(set(want) | set(got)):
        where = f"{thread_id}/{key[0] or '(root)'}/{key[1]}"
        if key not in got:
            problems.append(f"{where}: missing after restore")
            continue
        if key not in want:
            problems.append(f"{where}: not in the dump")
            continue
        w, g = want[key], got[key]
        if w["parent"] != g["parent"]:
            problems.append(f"{where}: parent {g['parent']} != {w['parent']}")
        for channel, value in w["values"].items():
            if g["values"].get(channel) != value:
                problems.append(f"{where}: channel {channel} reads back differently")
        if w["writes"] != g["writes"]:
            problems.append(f"{where}: pending writes read back differently")
    return problems


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


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Restore a dump into ``request["schema"]`` (see the module docstring).

    Returns:
        ``{"threads": {tid: {"checkpoints", "writes"}}, "changes": [...],
        "problems": [...], "dry_run": bool, "versions": {...}}``.

    Raises:
        DumpFormatError, DisallowedTypeError, TransformError: nothing is swapped;
            the host drops the shadow schema.
    """
    decoder = Decoder(request.get("allow_types") or ())
    user = load_callable(request["transform"], "transform") if request.get("transform") else None
    graph = load_callable(request["graph"], "graph") if request.get("graph") else None
    task_id = bool(request.get("task_id"))
    dry_run = bool(request.get("dry_run"))
    batch = int(request.get("batch") or 500)
    threads: dict[str, dict[str, int]] = {}
    changes: list[str] = []
    problems: list[str] = []

    def _prepared() -> Iterator[list[dict[str, Any]]]:
        for raw_thread in by_thread(read_dump(str(request["path"]))):
            decoded = []
            for raw in raw_thread:
                try:
                    decoded.append(decode_record(decoder, raw))
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
            yield records

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
    with _connect(request["dsn"], schema, autocommit=True) as setup_conn:
        PostgresSaver(setup_conn).setup()
    with _connect(request["dsn"], schema, autocommit=False) as conn:
        saver = PostgresSaver(conn)
        pending = 0
        written: list[list[dict[str, Any]]] = []
        for records in _prepared():
            for record in records:
                write_record(saver, record)
                pending += 1
            written.append(records)
            if pending >= batch:
                conn.commit()
                pending = 0
                problems += _verify_all(saver, conn, written)
                written = []
        conn.commit()
        problems += _verify_all(saver, conn, written)
        conn.commit()
    return {
        "threads": threads,
        "changes": changes,
        "problems": problems,
        "dry_run": False,
        "versions": compat.installed_versions(),
    }


def _verify_all(saver: Any, conn: Any, written: list[list[dict[str, Any]]]) -> list[str]:
    problems: list[str] = []
    for records in written:
        problems += verify_thread(saver, conn, records)
    return problems
