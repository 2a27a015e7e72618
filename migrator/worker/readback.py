"""Reading every restored thread back through the new saver and comparing it with the dump.

:class:`Sameness` compares values with ``==`` memoized per pair of objects (plain
values' types checked) and falls back to canonical digests (:class:`Digests`)
where ``==`` says different, so a report names what changed. :class:`ReadBack`
chooses the threads (all of them, or a sample) and reads them in batches.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import time
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import compress, starmap
from typing import Any

from migrator.worker.dumpencode import is_inline
from migrator.worker.encode import encode
from migrator.worker.serde_cache import ReadBackSerde

#: A ``"sample"`` verification reads about one in this many threads back by lot.
SAMPLE_ONE_IN = 20
VERIFY_MODES = ("full", "sample")
LIST_NAMESPACES_SQL = (
    "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_ns"
)
BATCH_NAMESPACES_SQL = (
    "SELECT DISTINCT thread_id, checkpoint_ns FROM checkpoints WHERE thread_id = ANY(%s)"
    " ORDER BY thread_id, checkpoint_ns"
)


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
