"""Worker op ``scan_types``: every type stored in the checkpoint tables, read-only.

Runs in the TARGET version environment (whose strict mode is being planned for).
Rows are streamed with plain SQL (server-side cursors, read-only): every blob and
write (``type``, ``blob``), and every checkpoint's JSON and metadata (inline
values, ``lc`` envelopes). Nothing is constructed: msgpack values are walked for
the classes their ext records name (module, class, constructor kind), JSON for
``{"lc": ..., "id": [...]}`` envelopes; pickle rows are counted. Encrypted rows
(``<type>+<cipher>``) are counted per cipher suffix and, with the app's cipher
(the profile's serde; a wrong key fails the op), scanned after decryption.

For each class the result says whether it imports here (a class that does not
would read as ``None`` or a raw payload, H-UNDECODABLE-NULL) and how this
version's strict mode treats it: ``safe`` (langgraph's built-in allowlist),
``allowlist`` (degraded to a dict or raw value unless allowed), ``blocked`` (a
method call strict mode refuses whatever the allowlist says).

Request::

    {"dsn": str, "shard": [i, n] | null}
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

from migrator.worker.cipher import CipherKeyError, cipher_of, decrypt
from migrator.worker.saver import make_saver, open_connection

#: msgpack ext code -> how the serializer rebuilds the class.
EXT_KINDS = {
    0: "constructor(arg)",
    1: "constructor(*args)",
    2: "constructor(**kwargs)",
    3: "method(arg)",
    4: "pydantic v1",
    5: "pydantic v2",
}
SHARD = " WHERE (hashtext(thread_id) & 2147483647) %% %(n)s = %(i)s"
BLOBS_SQL = "SELECT thread_id, type, blob FROM checkpoint_blobs"
WRITES_SQL = "SELECT thread_id, type, blob FROM checkpoint_writes"
CHECKPOINTS_SQL = "SELECT thread_id, checkpoint, metadata FROM checkpoints"
BATCH = 500
#: langchain-core's tables from serializable ids to import paths (``langchain_core.load.mapping``).
LC_MAPPINGS = ("SERIALIZABLE_MAPPING", "_OG_SERIALIZABLE_MAPPING", "OLD_CORE_NAMESPACES_MAPPING")


class _Tally:
    """Counts per class, encrypted rows, undecodable values."""

    def __init__(self) -> None:
        self.types: dict[str, dict[str, Any]] = {}
        self.encrypted: dict[str, int] = {}
        self.undecodable: dict[str, dict[str, Any]] = {}
        self.rows = 0
        self.plaintext_rows = 0

    def add(self, module: str, name: str, kind: str, source: str, thread: str, method: str) -> None:
        key = f"{module}.{name}" + (f".{method}" if method else "")
        entry = self.types.get(key)
        if entry is None:
            entry = self.types[key] = {
                "type": key,
                "module": module,
                "name": name,
                "method": method or None,
                "kind": kind,
                "source": source,
                "count": 0,
                "threads": set(),
                "example_thread": thread,
            }
        entry["count"] += 1
        entry["threads"].add(thread)
        if thread < entry["example_thread"]:
            entry["example_thread"] = thread

    def bad(self, what: str, problem: str, thread: str) -> None:
        entry = self.undecodable.setdefault(
            what, {"type": what, "error": problem, "count": 0, "example_thread": thread}
        )
        entry["count"] += 1
        entry["example_thread"] = min(entry["example_thread"], thread)


def _unpacker() -> Callable[[bytes, Callable[[int, bytes], Any]], Any]:
    try:
        import ormsgpack

        opt = ormsgpack.OPT_NON_STR_KEYS
        return lambda data, hook: ormsgpack.unpackb(data, ext_hook=hook, option=opt)
    except ImportError:
        msgpack: Any = importlib.import_module("msgpack")
        return lambda data, hook: msgpack.unpackb(
            data, ext_hook=hook, strict_map_key=False, raw=False
        )


def _scan_msgpack(unpack: Any, data: bytes, tally: _Tally, thread: str, source: str) -> None:
    def hook(code: int, payload: bytes) -> None:
        inner = unpack(payload, hook)
        if code in EXT_KINDS and isinstance(inner, (list, tuple)) and len(inner) >= 2:
            module, name = inner[0], inner[1]
            method = inner[3] if code == 3 and len(inner) > 3 else ""
            if isinstance(module, str) and isinstance(name, str):
                tally.add(module, name, EXT_KINDS[code], source, thread, str(method or ""))
        elif code == 7:
            tally.add("langgraph", "DeltaSnapshot", "delta snapshot (ext 7)", source, thread, "")
        return None

    unpack(data, hook)


def _scan_json(value: Any, tally: _Tally, thread: str, source: str) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ident = item.get("id")
            if (
                item.get("lc") in (1, 2)
                and isinstance(ident, list)
                and len(ident) >= 2
                and all(isinstance(p, str) for p in ident)
            ):
                kind = f"lc:{item.get('lc')} {item.get('type', '')}".strip()
                tally.add(".".join(ident[:-1]), ident[-1], kind, source, thread, "")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _scan_value(
    unpack: Any, cipher: Any, type_: str, blob: Any, tally: _Tally, thread: str, source: str
) -> None:
    tally.rows += 1
    if blob is None or type_ in ("empty", "null"):
        return
    data = bytes(blob)
    if "+" in type_:
        suffix = type_.partition("+")[2]
        tally.encrypted[suffix] = tally.encrypted.get(suffix, 0) + 1
        type_, data = decrypt(cipher, type_, data)  # CipherKeyError: no cipher / wrong key
    else:
        tally.plaintext_rows += 1
    try:
        if type_ == "msgpack":
            _scan_msgpack(unpack, data, tally, thread, source)
        elif type_ == "json":
            _scan_json(json.loads(data), tally, thread, source)
        elif type_ == "pickle":
            tally.add("pickle", "<pickled value>", "pickle fallback", source, thread, "")
    except CipherKeyError:
        raise
    except Exception as exc:  # noqa: BLE001 - a value that does not parse is a finding
        tally.bad(f"<{type_} value>", f"{type(exc).__name__}: {exc}", thread)


def _rows(conn: Any, query: str, shard: Any) -> Any:
    params: dict[str, Any] = {}
    if shard:
        query += SHARD
        params = {"i": int(shard[0]), "n": int(shard[1])}
    with conn.transaction(), conn.cursor(name="scan_types") as cur:
        cur.itersize = BATCH
        cur.execute(query, params)
        yield from cur


def _strict_rules() -> tuple[frozenset[tuple[str, ...]] | None, frozenset[tuple[str, ...]]]:
    """This version's built-in safe types and methods (None: no strict mode here)."""
    try:
        from langgraph.checkpoint.serde import _msgpack
    except ImportError:
        return None, frozenset()
    safe = getattr(_msgpack, "SAFE_MSGPACK_TYPES", None)
    methods: Any = getattr(_msgpack, "SAFE_MSGPACK_METHODS", frozenset())
    return (frozenset(safe) if safe is not None else None), frozenset(methods)


def _lc_target(module: str, name: str) -> tuple[str, str] | None:
    """Where langchain-core's loader maps a serializable id (``lc:1`` envelopes name
    ids such as ``langchain.schema.messages.AIMessage``, not import paths), or None."""
    try:
        from langchain_core.load import mapping
    except ImportError:
        return None
    key = (*module.split("."), name)
    for table in (
        "SERIALIZABLE_MAPPING",
        "_OG_SERIALIZABLE_MAPPING",
        "OLD_CORE_NAMESPACES_MAPPING",
    ):
        target = getattr(mapping, table, {}).get(key)
        if target:
            return ".".join(target[:-1]), str(target[-1])
    return None


def _import_problem(module: str, name: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
        return f"{type(exc).__name__}: {exc}"
    return None if hasattr(mod, name) else f"module {module} has no attribute {name}"


def _classify(entry: dict[str, Any], safe: Any, methods: Any) -> str:
    if entry["source"].startswith("json") or entry["kind"].startswith("lc:"):
        return "json"  # JSON envelopes: langgraph's allowed_json_modules, not msgpack
    if entry["module"] == "pickle" or entry["kind"].startswith("delta"):
        return "n/a"
    if safe is None:
        return "no strict mode"
    if entry["method"]:
        key = (entry["module"], entry["name"], entry["method"])
        return "safe" if key in methods else "blocked"
    return "safe" if (entry["module"], entry["name"]) in safe else "allowlist"


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Scan the tables (or one ``shard``) and return the per-type inventory."""
    tally = _Tally()
    unpack = _unpacker()
    shard = request.get("shard")
    with open_connection(request["dsn"]) as conn:
        conn.read_only = True
        cipher = cipher_of(make_saver(conn).serde)  # proves the key first
        for table, query in (("checkpoint_blobs", BLOBS_SQL), ("checkpoint_writes", WRITES_SQL)):
            for row in _rows(conn, query, shard):
                source = "blob" if table == "checkpoint_blobs" else "write"
                _scan_value(
                    unpack, cipher, row["type"], row["blob"], tally, row["thread_id"], source
                )
        for row in _rows(conn, CHECKPOINTS_SQL, shard):
            _scan_json(row["checkpoint"], tally, row["thread_id"], "json checkpoint")
            _scan_json(row["metadata"], tally, row["thread_id"], "json metadata")
    safe, methods = _strict_rules()
    types = []
    for entry in sorted(tally.types.values(), key=lambda e: e["type"]):
        module, name = entry["module"], entry["name"]
        if entry["kind"].startswith("lc:1"):
            module, name = _lc_target(module, name) or (module, name)
        problem = (
            None
            if module == "pickle" or entry["kind"].startswith("delta")
            else _import_problem(module, name)
        )
        entry["imports"] = problem is None
        entry["strict"] = _classify(entry, safe, methods)
        entry["threads"] = len(entry["threads"])
        types.append(entry)
        if problem:
            tally.bad(entry["type"], problem, entry["example_thread"])
    return {
        "types": types,
        "encrypted": tally.encrypted,
        "plaintext_rows": tally.plaintext_rows,
        "rows": tally.rows,
        "undecodable": sorted(tally.undecodable.values(), key=lambda e: e["type"]),
        "strict_supported": safe is not None,
        "cipher": cipher is not None,
    }
