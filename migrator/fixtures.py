"""Canary fixtures: the checkpoint tables an old version wrote, in a portable form.

``make fixtures`` seeds the built-in canaries under each old era listed in
``canary_fixtures/versions.toml`` (real old versions, in their own environments),
and stores, per era (``canary_fixtures/<era>/``):

- ``manifest.json``: format, era, the versions that wrote it, per table its DDL
  as the old ``setup()`` left it, row count and the SHA-256 of its rows, and the
  SHA-256 of every other file;
- ``<table>.copy.gz``: the rows as gzip-compressed ``COPY ... (FORMAT text)``,
  portable across Postgres majors (gzip mtime 0: same rows, same bytes);
- ``golden.json``: the old version's snapshot, canonical JSON;
- ``seed.json``: the seed result, node traces included.

Fast tests load a fixture into a fresh database and need no old environment.
Checkpoint ids are time-based, so a regenerated fixture never has the same
bytes: :func:`fixture_signature` is what a live regeneration must reproduce.
Files are never edited by hand::

    python -m migrator.fixtures generate --out canary_fixtures [--era 2.0.8 ...]
    python -m migrator.fixtures check --out canary_fixtures [--era 2.0.8 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from migrator import envs
from migrator.errors import ConfigError, ConnectError, MigratorError
from migrator.snapshot import dumps

if TYPE_CHECKING:
    from migrator.backup.ddl import TableDdl
    from migrator.postgres import Server

FIXTURE_FORMAT = "langgraph-migrator/fixture@1"
MANIFEST = "manifest.json"
GOLDEN = "golden.json"
SEED = "seed.json"

#: The checkpoint tables, in load order. Not all exist in every version.
CHECKPOINT_TABLES = (
    "checkpoint_migrations",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
)

#: Eras ``make fixtures`` generates by default.
DEFAULT_ERAS = ("1.0.0", "2.0.8", "2.0.12", "2.0.25", "3.0.1")

#: Canaries left out of fixtures: ``large_state`` alone would be megabytes per era,
#: and the live upgrade-check tier still covers it.
DEFAULT_EXCLUDED_CANARIES = ("large_state",)

_WORKER_TIMEOUT = 900.0

COLUMNS_SQL = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default_expr
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

# Only primary key, unique, check and foreign key constraints: Postgres 18 also
# lists NOT NULL constraints here, whose syntax older majors do not accept (the
# columns carry NOT NULL themselves).
CONSTRAINTS_SQL = """
SELECT conname, pg_get_constraintdef(oid) AS def
FROM pg_constraint
WHERE conrelid = %s::regclass AND contype IN ('p', 'u', 'c', 'f')
ORDER BY conname
"""

INDEXES_SQL = """
SELECT pg_get_indexdef(i.indexrelid) AS def
FROM pg_index i
WHERE i.indrelid = %s::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY 1
"""

#: `` ON [ONLY] schema.table USING `` in an index definition (names quoted or not).
_NAME = r'(?:"(?:[^"]|"")+"|[^\s."]+)'
_INDEX_ON_RE = re.compile(rf" ON (?:ONLY )?{_NAME}\.{_NAME} USING ")

EXISTS_SQL = "SELECT to_regclass(%s) IS NOT NULL"

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TableDump:
    """One table of a fixture: its DDL statements and its data file."""

    name: str
    ddl: tuple[str, ...]
    file: str
    rows: int
    sha256: str


# ------------------------------------------------------------------ tables


def _table_ddl(conn: psycopg.Connection[Any], table: str) -> tuple[str, ...]:
    cols = []
    for name, type_, not_null, default in conn.execute(COLUMNS_SQL, (table,)).fetchall():
        col = f"{sql.Identifier(name).as_string(conn)} {type_}"
        if default is not None:
            col += f" DEFAULT {default}"
        if not_null:
            col += " NOT NULL"
        cols.append(col)
    for conname, definition in conn.execute(CONSTRAINTS_SQL, (table,)).fetchall():
        cols.append(f"CONSTRAINT {sql.Identifier(conname).as_string(conn)} {definition}")
    ident = sql.Identifier(table).as_string(conn)
    statements = [f"CREATE TABLE {ident} (\n  " + ",\n  ".join(cols) + "\n)"]
    for (definition,) in conn.execute(INDEXES_SQL, (table,)).fetchall():
        # pg_get_indexdef qualifies the table; the fixture loads into any schema.
        statements.append(_INDEX_ON_RE.sub(f" ON {ident} USING ", definition, count=1))
    return tuple(statements)


#: Public name of the portable DDL capture (``migrator.backup`` compares DDL with it).
table_ddl = _table_ddl


def _copy_out_sql(conn: psycopg.Connection[Any], table: str) -> sql.Composed:
    ncols = len(conn.execute(COLUMNS_SQL, (table,)).fetchall())
    # Every column: a total order, so the same rows always give the same bytes.
    order = sql.SQL(", ").join(sql.Literal(i) for i in range(1, ncols + 1))
    return sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT").format(
        sql.Identifier(table), order
    )


def export_tables(dsn: str, out_dir: Path) -> list[TableDump]:
    """Write each existing checkpoint table's DDL and rows (gzip COPY text) to ``out_dir``.

    Args:
        dsn: The database holding the checkpoint tables.
        out_dir: Where ``<table>.copy.gz`` files go (created if missing).

    Returns:
        One entry per table found, in load order.

    Raises:
        ConnectError: The database cannot be reached.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    dumps_: list[TableDump] = []
    try:
        with psycopg.connect(dsn) as conn:
            for table in CHECKPOINT_TABLES:
                row = conn.execute(EXISTS_SQL, (table,)).fetchone()
                if not row or not row[0]:
                    continue
                ddl = _table_ddl(conn, table)
                path = out_dir / f"{table}.copy.gz"
                digest = hashlib.sha256()
                rows = 0
                # mtime=0: the same rows give the same bytes.
                with (
                    open(path, "wb") as raw,
                    gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as fh,
                    conn.cursor().copy(_copy_out_sql(conn, table)) as copy,
                ):
                    for chunk in copy:
                        data = bytes(chunk)
                        digest.update(data)
                        rows += data.count(b"\n")  # COPY text escapes newlines in values
                        fh.write(data)
                dumps_.append(TableDump(table, ddl, path.name, rows, digest.hexdigest()))
    except psycopg.OperationalError as exc:
        raise ConnectError(f"cannot export checkpoint tables: {_first_line(exc)}") from exc
    return dumps_


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_payload(fixture_dir: Path, table: Mapping[str, Any]) -> bytes:
    path = fixture_dir / str(table["file"])
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error, ValueError) as exc:  # BadGzipFile is an OSError
        raise ConfigError(f"fixture file {path.name} is unreadable: {exc}") from exc
    if hashlib.sha256(data).hexdigest() != table["sha256"]:
        raise ConfigError(
            f"fixture file {path.name} does not match its manifest checksum.",
            hint="fixtures are generated by `make fixtures`, never edited by hand.",
        )
    if data.count(b"\n") != table["rows"]:
        raise ConfigError(f"fixture file {path.name} does not hold {table['rows']} rows.")
    return data


def _recognised(fixture_dir: Path, table: dict[str, Any]) -> TableDdl:
    """The fixture's recorded DDL as statements the tool writes (refused otherwise)."""
    # Imported here: migrator.backup imports this module (CHECKPOINT_TABLES, table_ddl).
    from migrator.backup.ddl import DdlRefused, parse_table_ddl

    try:
        return parse_table_ddl(table["name"], table["ddl"])
    except DdlRefused as exc:
        raise ConfigError(
            f"fixture {fixture_dir.name}: {table['name']}: {exc}; nothing was loaded.",
            hint="regenerate the fixtures with `make fixtures`; never edit them by hand",
        ) from exc


def import_tables(dsn: str, fixture_dir: Path) -> dict[str, int]:
    """Create the fixture's tables in the (empty) database ``dsn`` and load its rows.

    Every file is checked against the manifest before anything is written, and
    everything loads in one transaction: all tables or none.

    Args:
        dsn: A database without checkpoint tables.
        fixture_dir: ``canary_fixtures/<era>``.

    Returns:
        Rows loaded per table.

    Raises:
        ConfigError: The fixture is missing, incomplete or corrupt, or the database
            already has checkpoint tables.
        ConnectError: The database cannot be reached.
    """
    manifest = load_manifest(fixture_dir)
    tables: list[dict[str, Any]] = manifest["tables"]
    payloads = {t["name"]: _read_payload(fixture_dir, t) for t in tables}
    loaded: dict[str, int] = {}
    try:
        with psycopg.connect(dsn) as conn:  # one transaction: all tables or none
            present = [
                t["name"]
                for t in tables
                if (row := conn.execute(EXISTS_SQL, (t["name"],)).fetchone()) and row[0]
            ]
            if present:
                raise ConfigError(
                    f"cannot load fixture {fixture_dir.name}: the database already has "
                    f"{', '.join(present)}.",
                    hint="load fixtures into a fresh database.",
                )
            # The tool's own statements for the recorded DDL, never the file's text.
            ddl = {t["name"]: _recognised(fixture_dir, t) for t in tables}
            for t in tables:
                try:
                    conn.execute(ddl[t["name"]].create_table())
                    for index in ddl[t["name"]].create_indexes():
                        conn.execute(index)
                    query = sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(t["name"]))
                    with conn.cursor().copy(query) as copy:
                        copy.write(payloads[t["name"]])
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as exc:
                    raise ConfigError(
                        f"fixture {fixture_dir.name}: loading {t['file']} failed: "
                        f"{_first_line(exc)}"
                    ) from exc
                loaded[t["name"]] = t["rows"]
    except psycopg.OperationalError as exc:
        raise ConnectError(f"cannot load fixture {fixture_dir.name}: {_first_line(exc)}") from exc
    return loaded


# ---------------------------------------------------------------- manifest


def _tables_digest(tables: Any) -> str:
    return hashlib.sha256(dumps(tables).encode("utf-8")).hexdigest()


def _check_manifest(fixture_dir: Path, manifest: Any) -> dict[str, Any]:
    where = f"fixture {fixture_dir.name}: {MANIFEST}"
    if not isinstance(manifest, dict):
        raise ConfigError(f"{where} is not a JSON object")
    if manifest.get("format") != FIXTURE_FORMAT:
        raise ConfigError(f"{where} has unknown format {manifest.get('format')!r}")
    tables = manifest.get("tables")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{where} lists no tables")
    for t in tables:
        ok = (
            isinstance(t, dict)
            and t.get("name") in CHECKPOINT_TABLES
            and t.get("file") == f"{t.get('name')}.copy.gz"
            and isinstance(t.get("rows"), int)
            and isinstance(t.get("sha256"), str)
            and _SHA256_RE.match(t["sha256"]) is not None
            and isinstance(t.get("ddl"), list)
            and all(isinstance(s, str) for s in t["ddl"])
        )
        if not ok:
            raise ConfigError(f"{where} has a malformed table entry: {str(t)[:200]}")
    # The DDL is covered by the checksum too; it is recognised, never executed as text.
    if manifest.get("tables_sha256") != _tables_digest(tables):
        raise ConfigError(
            f"{where} does not match its own checksum (tables_sha256).",
            hint="fixtures are generated by `make fixtures`, never edited by hand.",
        )
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(
        isinstance(v, str) and _SHA256_RE.match(v) for v in files.values()
    ):
        raise ConfigError(f"{where} has a malformed files table")
    return manifest


def load_manifest(fixture_dir: Path) -> dict[str, Any]:
    """The fixture's ``manifest.json``, checked for format and integrity.

    Raises:
        ConfigError: It is missing, not JSON, or malformed.
    """
    path = fixture_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"fixture {fixture_dir.name}: cannot read {MANIFEST}: {exc}") from exc
    return _check_manifest(fixture_dir, manifest)


def write_manifest(
    fixture_dir: Path,
    tables: Iterable[TableDump],
    *,
    era: str,
    versions: Mapping[str, Any],
    files: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Record what the fixture holds and which versions wrote it.

    Args:
        fixture_dir: The fixture directory.
        tables: From :func:`export_tables`.
        era: The era name.
        versions: Installed versions of the environment that wrote it.
        files: SHA-256 of the other files (``golden.json``, ``seed.json``).
        extra: More top-level fields (e.g. ``canaries``).
    """
    table_list = [dataclasses.asdict(t) | {"ddl": list(t.ddl)} for t in tables]
    manifest = {
        "format": FIXTURE_FORMAT,
        "era": era,
        "versions": dict(versions),
        "generated_by": "make fixtures",
        "tables": table_list,
        "tables_sha256": _tables_digest(table_list),
        "files": dict(files or {}),
        **dict(extra or {}),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (fixture_dir / MANIFEST).write_text(text, encoding="utf-8")


def _read_checked_json(fixture_dir: Path, name: str) -> Any:
    manifest = load_manifest(fixture_dir)
    path = fixture_dir / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"fixture {fixture_dir.name}: cannot read {name}: {exc}") from exc
    expected = manifest["files"].get(name)
    if expected is None or hashlib.sha256(data).hexdigest() != expected:
        raise ConfigError(
            f"fixture file {name} of {fixture_dir.name} does not match its manifest checksum."
        )
    return json.loads(data.decode("utf-8"))


def load_golden(fixture_dir: Path) -> dict[str, Any]:
    """The fixture's golden snapshot (checked against the manifest)."""
    golden: dict[str, Any] = _read_checked_json(fixture_dir, GOLDEN)
    return golden


def load_seed(fixture_dir: Path) -> dict[str, Any]:
    """The fixture's seed result (checked against the manifest)."""
    seed: dict[str, Any] = _read_checked_json(fixture_dir, SEED)
    return seed


def fixture_dirs(root: Path) -> list[Path]:
    """Every fixture under ``root`` (a directory with a manifest.json), sorted."""
    return sorted(p.parent for p in root.glob(f"*/{MANIFEST}"))


# -------------------------------------------------------------- generation


def _canary_names(excluded: Sequence[str]) -> list[str] | None:
    if not excluded:
        return None  # every built-in canary
    from migrator.worker.canaries import BUILTIN

    known = [c.name for c in BUILTIN]
    unknown = sorted(set(excluded) - set(known))
    if unknown:
        raise ConfigError(f"unknown canary {', '.join(unknown)}; built-in: {', '.join(known)}")
    return [n for n in known if n not in excluded]


def generate_fixture(
    era_spec: str,
    out_root: Path,
    server: Server | str,
    *,
    exclude_canaries: Sequence[str] = DEFAULT_EXCLUDED_CANARIES,
    progress: Progress | None = None,
) -> Path:
    """Seed the canaries under an old era and write ``out_root/<era>/``.

    A fresh database on ``server``; in the era's environment: ``setup``, ``seed``
    (every built-in canary but ``exclude_canaries``), ``snapshot`` (the golden);
    then the tables are exported. The fixture is written to a temporary
    directory beside the target and renamed into place, replacing an older one.

    Args:
        era_spec: An era (``"2.0.8"``) or any version spec naming
            langgraph-checkpoint-postgres.
        out_root: ``canary_fixtures``.
        server: A Postgres server (or a DSN on which databases may be created).
        exclude_canaries: Built-in canaries not to seed.
        progress: Called with one-line status messages.

    Returns:
        The fixture directory.

    Raises:
        ConfigError: Unknown era, version or canary.
        MigratorError: The environment, the worker or the database failed.
    """
    from migrator.postgres import scratch_database

    say = progress or (lambda _msg: None)
    vs = envs.parse_version_set(era_spec)
    era = vs.era or vs.pin(envs.CHECKPOINT_POSTGRES) or era_spec
    if not re.fullmatch(r"[A-Za-z0-9._-]+", era):
        raise ConfigError(f"cannot name a fixture directory after {era!r}")
    canaries = _canary_names(exclude_canaries)
    say(f"{era}: environment {vs.label}")
    env = envs.ensure_env(vs, progress=progress)
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / era
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{era}-", dir=out_root))
    try:
        with scratch_database(server) as dsn:
            say(f"{era}: setup + seed")
            envs.run_worker(env, "setup", {"dsn": dsn}, timeout=_WORKER_TIMEOUT)
            seed = envs.run_worker(
                env,
                "seed",
                {"dsn": dsn, "canaries": canaries, "user_canaries": None},
                timeout=_WORKER_TIMEOUT,
            )
            threads = [
                {"thread_id": t["thread_id"], "canary": t["canary"]}
                for t in seed["threads"]
                if t["status"] == "seeded"
            ]
            say(f"{era}: snapshot of {len(threads)} threads")
            golden = envs.run_worker(
                env,
                "snapshot",
                {"dsn": dsn, "threads": threads, "user_canaries": None},
                timeout=_WORKER_TIMEOUT,
            )
            tables = export_tables(dsn, tmp)
        files = {}
        for name, value in ((GOLDEN, golden), (SEED, seed)):
            data = (dumps(value) + "\n").encode("utf-8")
            (tmp / name).write_bytes(data)
            files[name] = hashlib.sha256(data).hexdigest()
        write_manifest(
            tmp,
            tables,
            era=era,
            versions=seed.get("versions") or {},
            files=files,
            extra={
                "canaries": sorted(t["canary"] for t in threads),
                "excluded_canaries": sorted(exclude_canaries),
                "spec": vs.label,
            },
        )
        os.chmod(tmp, 0o755)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"{era}: wrote {final}")
    return final


# --------------------------------------------------------------- signature

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_ISO_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
#: Keys whose values are ids or times that differ on every run.
_VOLATILE_KEYS = frozenset(
    {"checkpoint_id", "parent_checkpoint_id", "task_id", "id", "ts", "created_at", "run_id"}
)


def _scrub(value: Any) -> Any:
    """``value`` with run-dependent ids and timestamps replaced by placeholders."""
    if isinstance(value, str):
        return _ISO_TS_RE.sub("<ts>", _UUID_RE.sub("<id>", value))
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {
            _scrub(k): "<id>" if k in _VOLATILE_KEYS and v is not None else _scrub(v)
            for k, v in value.items()
        }
    return value


def _canon(value: Any) -> str:
    return dumps(_scrub(value))


def _state_signature(state: Any) -> Any:
    if not isinstance(state, dict) or "__error__" in state:
        return _scrub(state)
    tasks = state.get("tasks")
    return {
        "next": state.get("next"),
        "values": _canon(state.get("values")),
        "interrupts": _canon(state.get("interrupts")),
        "tasks": None
        if tasks is None
        else sorted(
            _canon(
                {
                    "name": t.get("name"),
                    "error": t.get("error"),
                    "interrupts": t.get("interrupts"),
                    "state": _state_signature(t.get("state")),
                }
            )
            for t in tasks
        ),
    }


def _checkpoint_signature(cp: Mapping[str, Any]) -> Any:
    writes = Counter(
        _canon({"channel": w.get("channel"), "value": w.get("value")})
        for w in cp.get("pending_writes") or []
    )
    return {
        "root": cp.get("parent_checkpoint_id") is None,
        "error": _scrub(cp.get("error")),
        "metadata": _canon(cp.get("metadata")),
        "channels": {k: _canon(v) for k, v in sorted((cp.get("channel_values") or {}).items())},
        "pending_writes": sorted(writes.items()),
    }


def snapshot_signature(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The run-independent structure of a snapshot.

    Per thread: per namespace (task ids masked) the checkpoints in id order with
    their channel names and canonical values, metadata and pending writes (ids,
    timestamps masked); the state's ``next``, task names, errors, interrupts and
    values; the history's length and ``next`` sequence.

    Args:
        snapshot: A snapshot (docs/snapshot-format.md).

    Returns:
        JSON-compatible data; equal for two seeds of the same version set.
    """
    threads: dict[str, Any] = {}
    for tid, th in sorted((snapshot.get("threads") or {}).items()):
        by_ns: dict[str, list[Any]] = {}
        for cp in th.get("checkpoints") or []:
            ns = _scrub(cp.get("checkpoint_ns", ""))
            by_ns.setdefault(ns, []).append(_checkpoint_signature(cp))
        history = th.get("history")
        threads[tid] = {
            "canary": th.get("canary"),
            "error": _scrub(th.get("error")),
            "checkpoints": {ns: sorted(map(dumps, cps)) for ns, cps in sorted(by_ns.items())},
            "state": _state_signature(th.get("state")),
            "history": [h.get("next") for h in history]
            if isinstance(history, list)
            else _scrub(history),
        }
    return {"versions": _key_versions(snapshot.get("versions") or {}), "threads": threads}


def _key_versions(versions: Mapping[str, Any]) -> dict[str, Any]:
    return {k: versions.get(k) for k in envs.KEY_PACKAGES}


def fixture_signature(fixture_dir: Path) -> dict[str, Any]:
    """What a live regeneration of a fixture must reproduce (bytes cannot match).

    Args:
        fixture_dir: ``canary_fixtures/<era>``.

    Returns:
        ``{"era", "versions", "tables": {name: {"rows", "ddl"}}, "seed": {canary:
        {"status", "trace"}}, "golden": snapshot_signature(golden)}``.

    Raises:
        ConfigError: The fixture is missing or corrupt.
    """
    manifest = load_manifest(fixture_dir)
    seed = load_seed(fixture_dir)
    golden = load_golden(fixture_dir)
    return {
        "era": manifest["era"],
        "versions": _key_versions(manifest.get("versions") or {}),
        "canaries": manifest.get("canaries"),
        "tables": {t["name"]: {"rows": t["rows"], "ddl": t["ddl"]} for t in manifest["tables"]},
        "seed": {
            t["canary"]: {
                "status": t["status"],
                "reason": _scrub(t.get("reason")),
                "trace": _scrub(t.get("trace")),
            }
            for t in seed.get("threads", [])
        },
        "golden": snapshot_signature(golden),
    }


def signature_differences(old: Any, new: Any, path: str = "$") -> list[str]:
    """Where two signatures differ, as ``path: old != new`` lines (empty when equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            if key not in old or key not in new:
                out.append(f"{path}.{key}: only in {'new' if key in new else 'old'}")
            else:
                out += signature_differences(old[key], new[key], f"{path}.{key}")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += signature_differences(a, b, f"{path}[{i}]")
        return out
    if old != new:
        return [f"{path}: {str(old)[:160]} != {str(new)[:160]}"]
    return []


# --------------------------------------------------------------------- CLI


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m migrator.fixtures generate|check --out DIR [--era X ...]``.

    ``generate`` (re)writes the fixtures; ``check`` regenerates them into a
    temporary directory and compares their signatures with the committed ones
    (exit 1 on a mismatch).
    """
    from migrator.postgres import provision

    parser = argparse.ArgumentParser(prog="python -m migrator.fixtures", description=__doc__)
    parser.add_argument("command", choices=("generate", "check"))
    parser.add_argument("--out", type=Path, default=Path("canary_fixtures"))
    parser.add_argument("--era", action="append", help=f"default: {' '.join(DEFAULT_ERAS)}")
    parser.add_argument("--pg", default="auto", help="Postgres provider (auto, local, docker, url)")
    parser.add_argument("--pg-major", type=int, default=None)
    parser.add_argument(
        "--exclude-canary",
        action="append",
        default=None,
        help=f"default: {' '.join(DEFAULT_EXCLUDED_CANARIES)}",
    )
    parser.add_argument("--all-canaries", action="store_true", help="exclude no canary")
    args = parser.parse_args(argv)
    eras = args.era or list(DEFAULT_ERAS)
    excluded = tuple(args.exclude_canary or DEFAULT_EXCLUDED_CANARIES)
    if args.all_canaries:
        excluded = ()

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    failed = False
    try:
        with provision(args.pg, args.pg_major) as server:
            for era in eras:
                if args.command == "generate":
                    path = generate_fixture(
                        era, args.out, server, exclude_canaries=excluded, progress=say
                    )
                    say(f"{era}: {_du(path) / 1024:.0f} KiB")
                    continue
                committed = args.out / era
                with tempfile.TemporaryDirectory() as tmp:
                    fresh = generate_fixture(
                        era, Path(tmp), server, exclude_canaries=excluded, progress=say
                    )
                    diffs = signature_differences(
                        fixture_signature(committed), fixture_signature(fresh)
                    )
                for line in diffs[:50]:
                    say(f"{era}: {line}")
                say(f"{era}: {'MISMATCH' if diffs else 'matches'}")
                failed = failed or bool(diffs)
    except MigratorError as exc:
        say(f"error: {exc}")
        return exc.exit_code
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
