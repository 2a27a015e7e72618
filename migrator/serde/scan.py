"""``scan-types``: every type stored in a database, and the strict-msgpack setting it needs.

Read-only. The worker op ``scan_types`` (:mod:`migrator.worker.op_scan_types`) runs
in the target version's environment, ``jobs`` of them at once on disjoint
``thread_id`` hash shards; this module merges their inventories and works out
the ``allowed_msgpack_modules`` setting that keeps every stored type loading
under that version's strict mode (H-STRICT-MSGPACK), and what would be degraded
or blocked without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from migrator import envs

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclasses.dataclass(frozen=True)
class TypeScan:
    """What ``scan-types`` found.

    Attributes:
        version: The target environment's label.
        types: Per stored class: ``type``, ``kind``, ``source``, ``count``,
            ``threads``, ``example_thread``, ``imports``, ``strict``.
        encrypted: Encrypted rows per cipher suffix (``aes``).
        plaintext_rows: Blob and write rows stored without encryption.
        rows: Blob and write rows read.
        undecodable: Values that would not rebuild here (type, error, count, example).
        strict_supported: The target version has a strict mode.
    """

    version: str
    types: tuple[Mapping[str, Any], ...]
    encrypted: Mapping[str, int]
    plaintext_rows: int
    rows: int
    undecodable: tuple[Mapping[str, Any], ...]
    strict_supported: bool

    @property
    def allowlist(self) -> list[tuple[str, str]]:
        """The ``(module, class)`` pairs the app's strict mode needs allowed (sorted).

        The tool's own canary classes are left out: the ``rich_values`` canary
        stores them on purpose, to show what strict mode does to custom types; they
        are not the app's to allow.
        """
        return sorted(
            {
                (t["module"], t["name"])
                for t in self.types
                if t["strict"] == "allowlist" and not _is_tool_type(t)
            }
        )

    @property
    def tool_types(self) -> list[str]:
        """The tool's canary classes found in the rows (sorted)."""
        return sorted({str(t["type"]) for t in self.types if _is_tool_type(t)})

    @property
    def blocked(self) -> list[str]:
        """Method calls strict mode refuses whatever the allowlist says."""
        return sorted(str(t["type"]) for t in self.types if t["strict"] == "blocked")

    def allowed_msgpack_modules(self) -> str:
        """The setting, as Python (for ``JsonPlusSerializer(allowed_msgpack_modules=...)``)."""
        pairs = ", ".join(f"({m!r}, {n!r})" for m, n in self.allowlist)
        return f"allowed_msgpack_modules=[{pairs}]"

    def allow_flags(self) -> str:
        """The same list as ``--allow-module`` flags for ``upgrade-check`` / ``verify``."""
        return " ".join(f"--allow-module {m}.{n}" for m, n in self.allowlist)

    @property
    def ok(self) -> bool:
        """Nothing is undecodable and nothing would be blocked."""
        return not self.undecodable and not self.blocked

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``--json``)."""
        return {
            "command": "scan-types",
            "version": self.version,
            "types": [dict(t) for t in self.types],
            "encrypted": dict(self.encrypted),
            "plaintext_rows": self.plaintext_rows,
            "rows": self.rows,
            "undecodable": [dict(u) for u in self.undecodable],
            "strict_supported": self.strict_supported,
            "allowed_msgpack_modules": [list(p) for p in self.allowlist],
            "allowed_msgpack_modules_setting": self.allowed_msgpack_modules(),
            "allow_flags": self.allow_flags(),
            "degraded_without_allowlist": [
                t["type"] for t in self.types if t["strict"] == "allowlist" and not _is_tool_type(t)
            ],
            "tool_canary_types": self.tool_types,
            "blocked": self.blocked,
            "ok": self.ok,
        }

    def render_text(self) -> str:
        """The human report."""
        lines = [f"stored types in {self.rows} blob/write rows (read as {self.version}):"]
        width = max((len(str(t["type"])) for t in self.types), default=10)
        for t in self.types:
            mark = "" if t["imports"] else "  DOES NOT IMPORT"
            lines.append(
                f"  {str(t['type']):<{width}}  {t['kind']:<22} {t['source']:<16} "
                f"{t['count']:>7} in {t['threads']} thread(s), e.g. {t['example_thread']}  "
                f"strict: {t['strict']}{mark}"
            )
        if self.encrypted:
            enc = ", ".join(f"{n} {suffix}" for suffix, n in sorted(self.encrypted.items()))
            lines.append(f"encrypted rows: {enc}; plaintext rows: {self.plaintext_rows}")
        for u in self.undecodable:
            lines.append(
                f"undecodable: {u['type']} x{u['count']} (e.g. thread {u['example_thread']}): "
                f"{u['error']}"
            )
        if not self.strict_supported:
            lines.append("this version has no strict msgpack mode: nothing to allow")
        elif self.allowlist:
            names = ", ".join(f"{m}.{n}" for m, n in self.allowlist)
            lines.append(
                f"under strict msgpack without an allowlist these degrade to dicts or raw "
                f"values (H-STRICT-MSGPACK): {names}"
            )
            lines.append(f"setting that keeps them loading: {self.allowed_msgpack_modules()}")
            lines.append(f"rehearse it: langgraph-migrator upgrade-check ... {self.allow_flags()}")
        else:
            lines.append("every stored type loads under strict msgpack as it is")
        if self.blocked:
            lines.append(
                "blocked under strict msgpack whatever the allowlist: " + ", ".join(self.blocked)
            )
        if self.tool_types:
            lines.append(
                f"{len(self.tool_types)} type(s) belong to langgraph-migrator's canary threads "
                "(stored on purpose to show strict mode's effect; not part of your setting)"
            )
        return "\n".join(lines)


#: Module of the tool's canary classes (stored by ``canary seed``).
_TOOL_MODULE_PREFIX = "migrator."


def _is_tool_type(t: Mapping[str, Any]) -> bool:
    return str(t.get("module", "")).startswith(_TOOL_MODULE_PREFIX)


def merge(version: str, results: Sequence[Mapping[str, Any]]) -> TypeScan:
    """One scan from the shards' results (threads are disjoint between shards)."""
    types: dict[str, dict[str, Any]] = {}
    encrypted: dict[str, int] = {}
    undecodable: dict[str, dict[str, Any]] = {}
    for result in results:
        for t in result.get("types", []):
            have = types.get(t["type"])
            if have is None:
                types[t["type"]] = dict(t)
                continue
            have["count"] += t["count"]
            have["threads"] += t["threads"]
            have["example_thread"] = min(have["example_thread"], t["example_thread"])
        for suffix, n in (result.get("encrypted") or {}).items():
            encrypted[suffix] = encrypted.get(suffix, 0) + int(n)
        for u in result.get("undecodable", []):
            have = undecodable.get(u["type"])
            if have is None:
                undecodable[u["type"]] = dict(u)
            else:
                have["count"] += u["count"]
                have["example_thread"] = min(have["example_thread"], u["example_thread"])
    return TypeScan(
        version=version,
        types=tuple(types[k] for k in sorted(types)),
        encrypted=encrypted,
        plaintext_rows=sum(int(r.get("plaintext_rows", 0)) for r in results),
        rows=sum(int(r.get("rows", 0)) for r in results),
        undecodable=tuple(undecodable[k] for k in sorted(undecodable)),
        strict_supported=all(bool(r.get("strict_supported")) for r in results),
    )


def scan_types(
    dsn: str,
    to_spec: str = "current",
    *,
    jobs: int = 1,
    progress: Progress = _quiet,
    timeout: float = 3600.0,
) -> TypeScan:
    """List every stored type of ``dsn`` as the ``to_spec`` version would load it.

    Args:
        dsn: The database (only read).
        to_spec: The version set whose strict mode is planned for.
        jobs: Workers scanning disjoint thread shards at once.
        progress: One-line progress messages.
        timeout: Seconds one worker may take.

    Raises:
        ConfigError: bad spec; AppCodeError: a wrong or missing key (exit 2).
        WorkerError: the scan failed (exit 3).
    """
    env = envs.ensure_env(envs.parse_version_set(to_spec), progress=progress)
    jobs = max(1, jobs)
    shards = [None] if jobs == 1 else [[i, jobs] for i in range(jobs)]
    progress(f"scanning stored types with {env.label} ({jobs} worker(s))")

    def one(shard: list[int] | None) -> dict[str, Any]:
        return envs.run_worker(env, "scan_types", {"dsn": dsn, "shard": shard}, timeout=timeout)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, shards))
    return merge(env.label, results)
