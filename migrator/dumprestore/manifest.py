"""A logical dump's manifest, its parts, and sets of dumps restored together.

A dump file is one or more gzip members ("parts"), each a complete dump stream
(header, records, trailer) of disjoint threads: ``dump --jobs N`` writes N
parts, one per ``thread_id`` hash shard, so N restore workers can each read
one. ``dump --shard i/N`` on N machines writes N files; restoring them together
(``restore A B ...``) is a *dump set*. The manifest (``<dump>.manifest.json``,
``docs/dump-restore.md``) lists the parts' byte ranges; a manifest without
``parts`` (older dumps) is one part covering the file.

Nothing here writes: :func:`load_manifest` checks a dump against its manifest,
:func:`load_dump_set` checks several dumps fit together, and
:func:`swap_refusal` says why a set may not replace the live tables.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.errors import ConfigError
from migrator.worker.classpath import is_allowed
from migrator.worker.dumpencode import BUILTIN_CLASSES

MANIFEST_FORMAT = "langgraph-migrator/dump-manifest@1"
MANIFEST_SUFFIX = ".manifest.json"
#: Classes every restore may rebuild (the worker's own list: one list for both sides).
BUILTIN_ALLOWED = BUILTIN_CLASSES
_HINT = "re-run `langgraph-migrator dump`; never edit a dump or its manifest"
_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class DumpPart:
    """One gzip member of a dump file: a complete dump stream of some threads.

    Attributes:
        offset: Where the member starts in the file.
        size: Its length in bytes.
        shard: ``(i, n)``: the ``thread_id`` hash shard it holds (None: the
            part holds every thread the dump holds).
        records: Checkpoint records in it.
        threads: Threads in it.
    """

    offset: int
    size: int
    shard: tuple[int, int] | None = None
    records: int = 0
    threads: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "offset": self.offset,
            "bytes": self.size,
            "shard": list(self.shard) if self.shard else None,
            "records": self.records,
            "threads": self.threads,
        }


@dataclass(frozen=True)
class DumpManifest:
    """What a dump holds (``<dump>.manifest.json``).

    Attributes:
        path: The dump file.
        sha256: SHA-256 of the dump file's bytes.
        size: Its size in bytes.
        records: Checkpoint records.
        threads: Per thread: ``checkpoints``, ``writes``, ``namespaces``.
        types: Every class named in the dump's type tags.
        errors: Values the old version could not read or encode (path: error).
        versions: The versions that wrote the dump.
        shard: ``(i, n)`` when the dump holds one shard.
        blobs: Blob records (distinct channel values, each stored once).
        parts: The file's gzip members (one unless dumped with ``--jobs``).
        selected: The dump holds only threads named with ``--thread``.
        encrypted: The dump is encrypted with the app's cipher (an encrypted
            database: it never holds plaintext values; restoring needs the key).
    """

    path: Path
    sha256: str
    size: int
    records: int
    threads: dict[str, dict[str, int]]
    types: tuple[str, ...]
    errors: tuple[str, ...]
    versions: dict[str, Any]
    shard: tuple[int, int] | None = None
    blobs: int = 0
    parts: tuple[DumpPart, ...] = ()
    selected: bool = False
    encrypted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The manifest as written next to the dump."""
        return {
            "format": MANIFEST_FORMAT,
            "file": self.path.name,
            "sha256": self.sha256,
            "bytes": self.size,
            "records": self.records,
            "blobs": self.blobs,
            "threads": self.threads,
            "types": list(self.types),
            "errors": list(self.errors),
            "versions": self.versions,
            "shard": list(self.shard) if self.shard else None,
            "selected": self.selected,
            "encrypted": self.encrypted,
            "parts": [p.to_dict() for p in self.parts],
        }


def manifest_path(dump_path: Path) -> Path:
    """Where the manifest of ``dump_path`` lives."""
    return dump_path.with_name(dump_path.name + MANIFEST_SUFFIX)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` -> ``(i, N)`` with ``0 <= i < N``.

    Raises:
        ConfigError: malformed or out of range.
    """
    if text is None:
        return None
    match = _SHARD_RE.match(text)
    if not match or int(match.group(2)) < 1 or int(match.group(1)) >= int(match.group(2)):
        raise ConfigError(
            f"--shard {text!r} is not i/N with 0 <= i < N.", hint="e.g. --shard 0/4 ... 3/4"
        )
    return int(match.group(1)), int(match.group(2))


def sub_shards(shard: tuple[int, int] | None, jobs: int) -> list[tuple[int, int]]:
    """The ``jobs`` shards whose union is ``shard`` (every thread when None).

    ``h mod (n*jobs)`` determines ``h mod n``, so shard ``i`` of ``n`` is the
    union of shards ``i + n*k`` of ``n*jobs`` for ``k < jobs``.
    """
    index, count = shard or (0, 1)
    return [(index + count * k, count * jobs) for k in range(jobs)]


def _pair(value: Any) -> tuple[int, int] | None:
    return (int(value[0]), int(value[1])) if value else None


def manifest_from(path: Path, data: dict[str, Any]) -> DumpManifest:
    """A :class:`DumpManifest` from its JSON form (KeyError/ValueError/TypeError if malformed)."""
    size = int(data["bytes"])
    shard = _pair(data.get("shard"))
    threads = {str(k): {kk: int(vv) for kk, vv in v.items()} for k, v in data["threads"].items()}
    records = int(data["records"])
    parts = tuple(
        DumpPart(
            offset=int(p["offset"]),
            size=int(p["bytes"]),
            shard=_pair(p.get("shard")),
            records=int(p.get("records", 0)),
            threads=int(p.get("threads", 0)),
        )
        for p in data.get("parts") or ()
    ) or (DumpPart(0, size, shard, records, len(threads)),)
    end = 0
    for part in parts:
        if part.offset != end or part.size <= 0:
            raise ValueError(f"parts do not tile the file (a part starts at {part.offset})")
        end += part.size
    if end != size:
        raise ValueError(f"parts cover {end} bytes of {size}")
    return DumpManifest(
        path=path,
        sha256=str(data["sha256"]),
        size=size,
        records=records,
        threads=threads,
        types=tuple(sorted(str(t) for t in data.get("types", []))),
        errors=tuple(str(e) for e in data.get("errors", [])),
        versions=dict(data.get("versions") or {}),
        shard=shard,
        blobs=int(data.get("blobs", 0)),
        parts=parts,
        selected=bool(data.get("selected", False)),
        encrypted=bool(data.get("encrypted", False)),
    )


def merge_parts(path: Path, results: Sequence[dict[str, Any]], **extra: Any) -> DumpManifest:
    """The manifest of a file made of the workers' parts, in order.

    Args:
        path: The dump file (the parts concatenated).
        results: Each part's worker result (``bytes``, ``records``, ``threads``,
            ``types``, ``errors``, ``blobs``, ``shard``, ``versions``).
        extra: ``sha256``, ``shard`` and ``selected`` of the whole file.
    """
    parts, offset = [], 0
    threads: dict[str, dict[str, int]] = {}
    for result in results:
        size = int(result["bytes"])
        parts.append(
            DumpPart(
                offset=offset,
                size=size,
                shard=_pair(result.get("shard")),
                records=int(result["records"]),
                threads=len(result["threads"]),
            )
        )
        offset += size
        threads.update(result["threads"])
    versions = [r.get("versions") or {} for r in results]
    return DumpManifest(
        path=path,
        sha256=str(extra["sha256"]),
        size=offset,
        records=sum(int(r["records"]) for r in results),
        threads=dict(sorted(threads.items())),
        types=tuple(sorted({str(t) for r in results for t in r.get("types", [])})),
        errors=tuple(str(e) for r in results for e in r.get("errors", [])),
        versions=dict(versions[0]) if versions else {},
        shard=extra.get("shard"),
        blobs=sum(int(r.get("blobs", 0)) for r in results),
        parts=tuple(parts),
        selected=bool(extra.get("selected", False)),
        encrypted=any(bool(r.get("encrypted")) for r in results),
    )


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(dump_path: Path) -> DumpManifest:
    """Read a dump's manifest and check the dump file against it (nothing is written).

    Raises:
        ConfigError: the manifest is missing or malformed, or the dump's size or
            sha256 differ from it (corrupt, truncated or tampered).
    """
    dump_path = Path(dump_path).resolve()
    mpath = manifest_path(dump_path)
    if not dump_path.is_file():
        raise ConfigError(f"dump {dump_path.name} does not exist.", hint="pass the dump file")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, not {MANIFEST_FORMAT!r}")
        manifest = manifest_from(dump_path, data)
    except FileNotFoundError:
        raise ConfigError(
            f"dump {dump_path.name} has no manifest {mpath.name}.", hint=_HINT
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"manifest {mpath.name} is malformed: {exc}.", hint=_HINT) from exc
    size = dump_path.stat().st_size
    if size != manifest.size:
        raise ConfigError(
            f"dump {dump_path.name} is {size} bytes, its manifest says {manifest.size} "
            "(truncated or changed); nothing was written.",
            hint=_HINT,
        )
    actual = file_sha256(dump_path)
    if actual != manifest.sha256:
        raise ConfigError(
            f"dump {dump_path.name} has sha256 {actual[:12]}…, its manifest says "
            f"{manifest.sha256[:12]}… (corrupt or tampered); nothing was written.",
            hint=_HINT,
        )
    return manifest


@dataclass(frozen=True)
class DumpSet:
    """Dumps restored together (one file, or one per shard).

    Attributes:
        manifests: Each dump's checked manifest.
        threads: Per thread, its counts (threads are in exactly one dump).
        types: The union of the dumps' type inventories.
        errors: Every dump's unreadable values.
    """

    manifests: tuple[DumpManifest, ...]
    threads: dict[str, dict[str, int]] = field(default_factory=dict)
    types: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def records(self) -> int:
        """Checkpoint records in all the dumps."""
        return sum(m.records for m in self.manifests)

    @property
    def parts(self) -> list[tuple[DumpManifest, DumpPart]]:
        """Every part of every dump, largest first (so parallel workers finish together)."""
        found = [(m, p) for m in self.manifests for p in m.parts]
        return sorted(found, key=lambda mp: -mp[1].size)


def load_dump_set(paths: Sequence[Path]) -> DumpSet:
    """Check each dump against its manifest and that they fit together.

    Raises:
        ConfigError: a dump fails :func:`load_manifest`; a file is given twice;
            a thread is in two dumps; the dumps were written by different versions.
    """
    if not paths:
        raise ConfigError("no dump given.", hint="pass the dump file (or every shard's dump)")
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise ConfigError("a dump is given twice.", hint="pass each dump once")
    manifests = tuple(load_manifest(p) for p in resolved)
    owner: dict[str, str] = {}
    threads: dict[str, dict[str, int]] = {}
    for m in manifests:
        for tid, counts in m.threads.items():
            if tid in owner:
                raise ConfigError(
                    f"thread {tid} is in both {owner[tid]} and {m.path.name}.",
                    hint="restore dumps of disjoint shards (dump --shard i/N) together",
                )
            owner[tid] = m.path.name
            threads[tid] = counts
    first = manifests[0]
    for m in manifests[1:]:
        if m.versions != first.versions:
            raise ConfigError(
                f"{m.path.name} and {first.path.name} were written by different versions.",
                hint="dump every shard with the same --from",
            )
    return DumpSet(
        manifests=manifests,
        threads=threads,
        types=tuple(sorted({t for m in manifests for t in m.types})),
        errors=tuple(e for m in manifests for e in m.errors),
    )


def swap_refusal(dumps: DumpSet) -> str | None:
    """Why these dumps must not replace the live tables (None: they may).

    A swap replaces every thread: dumps of some shards only, or of threads
    chosen with ``--thread``, would hide the others.
    """
    selected = [m.path.name for m in dumps.manifests if m.selected]
    if selected:
        return f"{', '.join(selected)} holds only the threads chosen with --thread"
    shards = [m.shard for m in dumps.manifests]
    if all(s is None for s in shards):
        return None if len(shards) == 1 else "several full dumps cannot be swapped in together"
    if any(s is None for s in shards):
        return "a full dump and shard dumps cannot be restored together"
    counts = {s[1] for s in shards if s is not None}
    if len(counts) != 1:
        return f"the dumps are shards of different splits ({', '.join(map(str, sorted(counts)))})"
    count = counts.pop()
    missing = sorted(set(range(count)) - {s[0] for s in shards if s is not None})
    if missing:
        return f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} are missing"
    return None


def disallowed_types(types: Iterable[str], allow_types: Iterable[str]) -> list[str]:
    """Classes among ``types`` that neither the built-in list nor ``allow_types`` allow.

    Exact names only: a message class is ``langchain_core.messages.<Name>``, one
    identifier, never a longer path below that package (see
    :mod:`migrator.worker.classpath`, which the restore's decoder enforces too).
    """
    allowed = set(BUILTIN_ALLOWED) | set(allow_types)
    return [t for t in types if not is_allowed(t, allowed)]


def read_allow_file(path: Path) -> list[str]:
    """Class names from an allowlist file: one per line, ``#`` comments.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read allowlist {Path(path).name}: {exc.strerror}.") from exc
    return [ln.split("#", 1)[0].strip() for ln in text.splitlines() if ln.split("#", 1)[0].strip()]
