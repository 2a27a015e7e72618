"""What a version reads for each thread, as canonical, type-tagged JSON.

The worker op ``snapshot`` (``migrator/worker/op_snapshot.py``) produces the
data inside a version environment; this module is the host side: the
:class:`Snapshot` value type, canonical serialization, hashing, files, and
iteration helpers for ``migrator.compare``. Everything here is pure except
:func:`load_snapshot` and :func:`save_snapshot`. The format is specified in
``docs/snapshot-format.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from migrator.errors import ConfigError
from migrator.worker.privatefiles import write_private

FORMAT = "langgraph-migrator/snapshot@1"
TYPE_KEY = "__type__"
ERROR_KEY = "__error__"

PathPart = str | int


def dumps(value: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, UTF-8 kept, NaN refused.

    The worker uses the same settings (``migrator.worker.encode.canonical_dumps``),
    so a value dumped on either side gives the same text.

    Args:
        value: JSON-compatible data (for example a snapshot or one tagged value).

    Returns:
        The canonical text.

    Raises:
        ValueError: ``value`` holds a non-finite float.
        TypeError: ``value`` is not JSON-compatible.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def short_hash(value: Any) -> str:
    """First 12 hex digits of the SHA-256 of ``dumps(value)``.

    Args:
        value: JSON-compatible data.

    Returns:
        A short, stable fingerprint, for reports and for cheap equality checks.
    """
    return hashlib.sha256(dumps(value).encode("utf-8")).hexdigest()[:12]


def is_error(value: Any) -> bool:
    """Whether ``value`` is an ``{"__error__": "..."}`` marker."""
    return isinstance(value, dict) and len(value) == 1 and ERROR_KEY in value


def type_of(value: Any) -> str:
    """A short type label for a tagged value, for "changed type" messages.

    Args:
        value: One type-tagged value.

    Returns:
        ``"str"``, ``"int"``, ``"float"``, ``"bool"``, ``"null"``, ``"list"``,
        ``"object"`` for plain JSON; ``"error"`` for an error marker; the tag,
        plus ``:class`` when the tag carries one (``"pydantic:app.models.User"``,
        ``"message:AIMessage"``), for tagged values.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        if is_error(value):
            return "error"
        tag = value.get(TYPE_KEY)
        if isinstance(tag, str):
            cls = value.get("class")
            return f"{tag}:{cls}" if isinstance(cls, str) else tag
        return "object"
    return type(value).__name__


def format_path(parts: Sequence[PathPart]) -> str:
    """Render a JSON path such as ``$.threads["t-1"].checkpoints[0].metadata``.

    Args:
        parts: Keys (str) and list indexes (int), from the snapshot root.

    Returns:
        The path text; keys that are not identifiers are quoted.
    """
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


class CheckpointRef(NamedTuple):
    """One checkpoint of a snapshot, with where it sits in the JSON."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    path: tuple[PathPart, ...]
    record: Mapping[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """A version's reading of some threads (see ``docs/snapshot-format.md``).

    Attributes:
        versions: Package versions of the environment that produced it
            (``langgraph``, ``langgraph-checkpoint``, ``langgraph-checkpoint-postgres``,
            ``langchain-core``, ``pydantic``, ``psycopg``, ``python``).
        threads: Thread id -> thread entry, exactly as the worker wrote it.
        format: The format tag, ``langgraph-migrator/snapshot@1``.
    """

    versions: Mapping[str, str | None]
    threads: Mapping[str, Mapping[str, Any]]
    format: str = field(default=FORMAT)

    @classmethod
    def from_json(cls, data: Any) -> Snapshot:
        """Build a snapshot from its JSON object, checking the top-level shape.

        Args:
            data: The parsed JSON (the worker op's result, or a file's content).

        Returns:
            The snapshot.

        Raises:
            ConfigError: ``data`` is not a snapshot of a format this tool reads.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"not a snapshot: expected a JSON object, got {type(data).__name__}.")
        fmt = data.get("format")
        if fmt != FORMAT:
            raise ConfigError(
                f"unsupported snapshot format {fmt!r}; this tool reads {FORMAT!r}.",
                hint="Take the snapshot again with this version of langgraph-migrator.",
            )
        versions, threads = data.get("versions"), data.get("threads")
        if not isinstance(versions, dict) or not isinstance(threads, dict):
            raise ConfigError("not a snapshot: 'versions' and 'threads' must be JSON objects.")
        for thread_id, entry in threads.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("checkpoints"), list):
                raise ConfigError(
                    f"not a snapshot: thread {thread_id!r} has no 'checkpoints' list."
                )
        return cls(versions=versions, threads=threads, format=FORMAT)

    def to_json(self) -> dict[str, Any]:
        """The snapshot as its JSON object (``format``, ``versions``, ``threads``)."""
        return {
            "format": self.format,
            "versions": dict(self.versions),
            "threads": dict(self.threads),
        }

    def dumps(self) -> str:
        """Canonical JSON text of the whole snapshot."""
        return dumps(self.to_json())

    @property
    def thread_ids(self) -> list[str]:
        """Thread ids, sorted."""
        return sorted(self.threads)

    def thread_errors(self) -> dict[str, str]:
        """Threads that could not be read at all: thread id -> ``"ExcType: message"``."""
        out: dict[str, str] = {}
        for thread_id in self.thread_ids:
            error = self.threads[thread_id].get("error")
            if isinstance(error, dict) and is_error(error):
                out[thread_id] = str(error[ERROR_KEY])
        return out


def iter_checkpoints(snapshot: Snapshot) -> Iterator[CheckpointRef]:
    """Every checkpoint record, threads sorted, checkpoints in file order.

    Args:
        snapshot: The snapshot to walk.

    Yields:
        One :class:`CheckpointRef` per checkpoint; ``path`` addresses the record,
        e.g. ``("threads", "t1", "checkpoints", 3)``.
    """
    for thread_id in snapshot.thread_ids:
        for index, record in enumerate(snapshot.threads[thread_id].get("checkpoints") or ()):
            yield CheckpointRef(
                thread_id=thread_id,
                checkpoint_ns=str(record.get("checkpoint_ns", "")),
                checkpoint_id=str(record.get("checkpoint_id", "")),
                path=("threads", thread_id, "checkpoints", index),
                record=record,
            )


def checkpoint_index(
    snapshot: Snapshot, thread_id: str
) -> dict[tuple[str, str], Mapping[str, Any]]:
    """One thread's checkpoints keyed by ``(checkpoint_ns, checkpoint_id)``.

    Args:
        snapshot: The snapshot.
        thread_id: A thread id present in it.

    Returns:
        The records by key (empty when the thread is absent).
    """
    entry = snapshot.threads.get(thread_id) or {}
    return {
        (str(r.get("checkpoint_ns", "")), str(r.get("checkpoint_id", ""))): r
        for r in entry.get("checkpoints") or ()
    }


def iter_errors(
    value: Any, path: tuple[PathPart, ...] = ()
) -> Iterator[tuple[tuple[PathPart, ...], str]]:
    """Every ``__error__`` marker inside ``value``, depth first.

    Args:
        value: A snapshot's JSON (or any part of it).
        path: The path of ``value`` itself.

    Yields:
        ``(path, "ExcType: message")`` for each marker.
    """
    stack: list[tuple[tuple[PathPart, ...], Any]] = [(path, value)]
    while stack:
        here, item = stack.pop()
        if is_error(item):
            yield here, str(item[ERROR_KEY])
        elif isinstance(item, dict):
            for key in sorted(item, reverse=True):
                stack.append(((*here, key), item[key]))
        elif isinstance(item, list):
            for index in range(len(item) - 1, -1, -1):
                stack.append(((*here, index), item[index]))


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Read a snapshot file.

    Args:
        path: A file written by :func:`save_snapshot` (or the op's JSON result).

    Returns:
        The snapshot.

    Raises:
        ConfigError: The file is missing, unreadable, not JSON, or not a snapshot.
    """
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read snapshot file {where}: {exc}.",
            hint="Check the path, or take the snapshot again.",
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"snapshot file {where} is not valid JSON ({exc.msg} at line {exc.lineno},"
            f" column {exc.colno}).",
            hint="The file is corrupt or truncated; take the snapshot again.",
        ) from exc
    try:
        return Snapshot.from_json(data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from exc


def save_snapshot(snapshot: Snapshot, path: str | os.PathLike[str]) -> Path:
    """Write a snapshot file atomically, as canonical JSON plus a newline, owner-only (0600).

    Args:
        snapshot: The snapshot.
        path: Destination; its directory must exist.

    Returns:
        The path written.

    Raises:
        ConfigError: The file cannot be written.
    """
    where = Path(path)
    partial = where.with_name(f".{where.name}.partial")
    try:
        write_private(partial, snapshot.dumps() + "\n")  # owner-only: it holds state values
        os.replace(partial, where)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"cannot write snapshot file {where}: {exc}.") from exc
    return where
