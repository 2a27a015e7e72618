"""Logical dump/restore with real old versions, and the built-in H-TASK-ID cure.

Old data comes from real old environments (seeded live) or from the committed
per-era fixtures (written by those same old versions); the restore always runs
in the tool's own (newest) environment, on real Postgres.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrator import dumprestore, envs, fixtures
from migrator.compare import compare_resumes, compare_snapshots
from migrator.dumprestore import manifest as dump_manifest
from migrator.errors import ConfigError, MigrationError
from migrator.postgres import Server, scratch_database
from migrator.postgres.dsn import with_dbname

pytestmark = [pytest.mark.pg_core, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2] / "canary_fixtures"
RICH_TYPES = (
    "migrator.worker.canaries.rich.CanaryColor",
    "migrator.worker.canaries.rich.CanaryModel",
    "migrator.worker.canaries.rich.CanaryRecord",
)
TASK_ID_CANARIES = ["subgraph", "failed_node"]
COUNTS_SQL = (
    "SELECT (SELECT count(*) FROM checkpoints), (SELECT count(*) FROM checkpoint_writes),"
    " (SELECT count(*) FROM checkpoint_blobs)"
)
SCHEMAS_SQL = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'langgraph_migrator_%'"


def _env(spec: str) -> envs.VersionEnv:
    return envs.ensure_env(envs.parse_version_set(spec))


@pytest.fixture(scope="module")
def new_env() -> envs.VersionEnv:
    return _env("current")


def _era_env(era: str) -> envs.VersionEnv:
    return _env(f"langgraph-checkpoint-postgres=={era}")


@contextmanager
def _copy_of(server: Server, source_dsn: str) -> Iterator[str]:
    """A new database created from ``source_dsn``'s database as template."""
    name = f"test_copy_{uuid.uuid4().hex[:12]}"
    source = psycopg.conninfo.conninfo_to_dict(source_dsn)["dbname"]
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(str(source))
            )
        )
    try:
        yield with_dbname(server.dsn, name)
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _threads(golden: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"thread_id": t, "canary": th["canary"]} for t, th in golden["threads"].items()]


def _snapshot(env: envs.VersionEnv, dsn: str, threads: list[dict[str, Any]]) -> dict[str, Any]:
    request = {"dsn": dsn, "threads": threads, "user_canaries": None, "include_history": False}
    return envs.run_worker(env, "snapshot", request, timeout=600)


def _counts(dsn: str) -> tuple[int, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(COUNTS_SQL).fetchone()
    assert row is not None
    return tuple(int(x) for x in row)


def _schemas(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return sorted(r[0] for r in conn.execute(SCHEMAS_SQL).fetchall())


def _breaking(diff: Any) -> list[str]:
    return [d.summary() for d in diff.differences if d.severity == "breaking"]


def _traces(resumed: dict[str, Any]) -> dict[str, list[str]]:
    return {
        t["canary"]: [h["node"] for h in t["trace"]]
        for t in resumed["threads"]
        if t["canary"] in TASK_ID_CANARIES
    }


# --------------------------------------------------------------------------- H-TASK-ID


@pytest.mark.slow
def test_task_id_cure_on_live_2_0_8_canaries(
    pg_default: Server, new_env: envs.VersionEnv, tmp_path: Path
) -> None:
    """The centerpiece: seed with 2.0.8, dump with 2.0.8, restore with the newest + task-id.

    The newest version's resume must run exactly what 2.0.8's own resume runs
    (subgraph resumes at step_2, failed_node does not re-run sibling); without
    the transform the traces differ (the test reproduces the hazard).
    """
    old_env = _era_env("2.0.8")
    request = {"canaries": TASK_ID_CANARIES, "user_canaries": None}
    with scratch_database(pg_default) as seeded:
        envs.run_worker(old_env, "setup", {"dsn": seeded}, timeout=300)
        result = envs.run_worker(old_env, "seed", {"dsn": seeded, **request}, timeout=300)
        assert {t["canary"]: t["status"] for t in result["threads"]} == {
            "subgraph": "seeded",
            "failed_node": "seeded",
        }
        with (
            _copy_of(pg_default, seeded) as old_copy,
            _copy_of(pg_default, seeded) as cured,
            _copy_of(pg_default, seeded) as uncured,
        ):
            old_resume = envs.run_worker(old_env, "resume", {"dsn": old_copy, **request})
            assert _traces(old_resume) == {
                "subgraph": ["step_2", "done"],
                "failed_node": ["flaky", "join"],
            }

            restored = dumprestore.run_fallback(cured, old_env, new_env, work_dir=tmp_path)
            assert restored.swapped
            assert any("namespace child:" in c for c in restored.changes), restored.changes
            cured_resume = envs.run_worker(new_env, "resume", {"dsn": cured, **request})
            assert _traces(cured_resume) == _traces(old_resume)
            assert _breaking(compare_resumes(old_resume, cured_resume)) == []

            dumprestore.run_fallback(uncured, old_env, new_env, work_dir=tmp_path, transform=None)
            uncured_resume = envs.run_worker(new_env, "resume", {"dsn": uncured, **request})
            traces = _traces(uncured_resume)
            assert traces["subgraph"][0] == "step_1"  # re-ran the child's first node
            assert "sibling" in traces["failed_node"]  # re-ran the completed sibling
            breaking = _breaking(compare_resumes(old_resume, uncured_resume))
            assert any("node_reexecuted" in b for b in breaking), breaking


def test_task_id_cure_dry_run_reports_and_writes_nothing(
    pg_default: Server, new_env: envs.VersionEnv, tmp_path: Path
) -> None:
    """2.0.8 fixture (written by 2.0.8): --dry-run lists the renames, the database is unchanged."""
    old_env = _era_env("2.0.8")
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, ROOT / "2.0.8")
        before = _counts(dsn)
        dump = tmp_path / "d.lgdump"
        manifest = dumprestore.dump_threads(dsn, old_env, dump)
        result = dumprestore.restore_dump(
            dsn, new_env, dump, transform="task-id", allow_types=manifest.types, dry_run=True
        )
        assert result.dry_run and not result.swapped
        assert any(c.startswith("namespace child:") for c in result.changes)
        assert any("canary:failed_node" in c and "__error__" in c for c in result.changes)
        assert _counts(dsn) == before
        assert _schemas(dsn) == []


# --------------------------------------------------------------------------- round trips


@pytest.mark.slow
@pytest.mark.parametrize("era", ["1.0.0", "2.0.8", "2.0.25"])
def test_round_trip_keeps_every_thread(
    era: str, pg_server: Server, new_env: envs.VersionEnv, tmp_path: Path
) -> None:
    """Old era -> dump (old env) -> restore (newest): counts equal, values equal the golden.

    For 2.0.25 (in-place is clean) the restored database must read exactly like
    an in-place-migrated copy of the same data.
    """
    old_env = _era_env(era)
    golden = fixtures.load_golden(ROOT / era)
    threads = _threads(golden)
    with scratch_database(pg_server) as dsn, scratch_database(pg_server) as in_place:
        fixtures.import_tables(dsn, ROOT / era)
        fixtures.import_tables(in_place, ROOT / era)
        before = _counts(dsn)
        dump = tmp_path / f"{era}.lgdump"
        manifest = dumprestore.dump_threads(dsn, old_env, dump)
        assert manifest.records == before[0]
        assert sum(t["checkpoints"] for t in manifest.threads.values()) == before[0]
        assert set(manifest.threads) == {t["thread_id"] for t in threads}
        result = dumprestore.restore_dump(
            dsn, new_env, dump, transform=None, allow_types=manifest.types
        )
        assert result.swapped and result.old_schema is not None
        after = _counts(dsn)
        assert after[:2] == before[:2]  # checkpoints and writes, thread by thread below
        assert result.threads == {
            t: {"checkpoints": c["checkpoints"], "writes": c["writes"]}
            for t, c in manifest.threads.items()
        }
        restored = _snapshot(new_env, dsn, threads)
        envs.run_worker(new_env, "setup", {"dsn": in_place}, timeout=300)
        migrated = _snapshot(new_env, in_place, threads)
        value_diff = compare_snapshots(golden, restored)
        if era == "2.0.25":
            assert _breaking(value_diff) == []
            assert restored["threads"] == migrated["threads"]
        else:
            # What the old layout causes may differ from the golden (H-TASK-ID ids,
            # H-METADATA-WRITES envelopes); every value is there.
            for d in value_diff.differences:
                if d.severity == "breaking":
                    assert d.hazard in ("H-TASK-ID", "H-METADATA-WRITES") or _kept_sends(d.path), (
                        d.summary()
                    )
            # The new version reads the restore as it reads an in-place upgrade, except
            # that its put() drops the deprecated metadata.writes (as it does for every
            # checkpoint it writes), and where in-place loses what the old version read
            # (1.0.0's Send packets, H-SEND-DROPPED): there the restore keeps the old value.
            off_golden = {d.path for d in value_diff.differences if d.severity == "breaking"}
            for d in compare_snapshots(migrated, restored).differences:
                dropped = d.path.endswith(".metadata.writes") and d.kind == "key_missing"
                kept = era == "1.0.0" and (_kept_sends(d.path) or d.path not in off_golden)
                assert d.severity == "benign" or dropped or kept, d.summary()
        assert _schemas(dsn) == [result.old_schema]
        assert dumprestore.cleanup(dsn) == [result.old_schema]
        assert _schemas(dsn) == []
        assert _counts(dsn)[:2] == before[:2]


def _kept_sends(path: str) -> bool:
    return path.endswith(".channel_values.__pregel_tasks") or ".state." in path


# --------------------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def dumped_2_0_25(pg_default: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2.0.25 dump of the 2.0.25 fixture (rich values included)."""
    out = tmp_path_factory.mktemp("dump") / "d.lgdump"
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, ROOT / "2.0.25")
        dumprestore.dump_threads(dsn, _era_env("2.0.25"), out)
    return out


@pytest.fixture
def live_db(pg_default: Server) -> Iterator[str]:
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, ROOT / "2.0.25")
        yield dsn


def _copy_dump(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    dst.write_bytes(src.read_bytes())
    mpath = dump_manifest.manifest_path(src)
    dump_manifest.manifest_path(dst).write_bytes(mpath.read_bytes())
    return dst


def _untouched(dsn: str, before: tuple[int, ...]) -> None:
    assert _counts(dsn) == before
    assert _schemas(dsn) == []


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "tampered", "no-manifest"])
def test_damaged_dump_is_rejected_before_any_write(
    damage: str,
    dumped_2_0_25: Path,
    live_db: str,
    new_env: envs.VersionEnv,
    tmp_path: Path,
) -> None:
    dump = _copy_dump(dumped_2_0_25, tmp_path)
    data = dump.read_bytes()
    if damage == "truncated":
        dump.write_bytes(data[: len(data) // 2])
    elif damage == "corrupt":
        dump.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "tampered":
        # A valid gzip with one value changed, and a manifest edited to match the size.
        lines = gzip.decompress(data).decode().splitlines()
        lines[1] = lines[1].replace('"log"', '"LOG"', 1)
        dump.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
        mpath = dump_manifest.manifest_path(dump)
        manifest = json.loads(mpath.read_text())
        manifest["bytes"] = dump.stat().st_size
        mpath.write_text(json.dumps(manifest))
    else:
        dump_manifest.manifest_path(dump).unlink()
    before = _counts(live_db)
    with pytest.raises(ConfigError) as err:
        dumprestore.restore_dump(live_db, new_env, dump, allow_types=RICH_TYPES)
    assert err.value.exit_code == 2
    assert "Hint:" in str(err.value)
    _untouched(live_db, before)


def _rename_classes(src: Path, dst_dir: Path, renames: dict[str, str]) -> Path:
    """``src`` with classes renamed in its values and manifest, checksums redone: a dump
    of an app whose own classes are on no built-in allowlist (the canaries' are)."""
    dump = _copy_dump(src, dst_dir)
    text = gzip.decompress(dump.read_bytes()).decode()
    for old, new in renames.items():
        assert f'"{old}"' in text, old
        text = text.replace(f'"{old}"', f'"{new}"')
    dump.write_bytes(gzip.compress(text.encode()))
    mpath = dump_manifest.manifest_path(dump)
    manifest = json.loads(mpath.read_text())
    manifest["bytes"] = dump.stat().st_size
    manifest["sha256"] = dump_manifest.file_sha256(dump)
    manifest.pop("parts", None)  # one part, the whole file
    manifest["types"] = sorted({renames.get(t, t) for t in manifest["types"]})
    mpath.write_text(json.dumps(manifest))
    return dump


#: The app's own classes in :func:`_rename_classes` dumps (``shop`` is not importable).
APP_TYPES = {RICH_TYPES[1]: "shop.models.Order", RICH_TYPES[2]: "shop.models.Parcel"}


def test_the_tools_canary_classes_need_no_allowlist_entry(
    dumped_2_0_25: Path, live_db: str, new_env: envs.VersionEnv
) -> None:
    """A database holding seeded canary threads dumps the tool's own classes: a restore
    rebuilds them without --allow-type (the trial had to list them by hand)."""
    assert set(RICH_TYPES) <= set(dump_manifest.load_manifest(dumped_2_0_25).types)
    result = dumprestore.restore_dump(live_db, new_env, dumped_2_0_25, dry_run=True)
    assert result.dry_run and result.threads


def test_type_outside_allowlist_is_refused_with_the_list(
    dumped_2_0_25: Path, live_db: str, new_env: envs.VersionEnv, tmp_path: Path
) -> None:
    dump = _rename_classes(dumped_2_0_25, tmp_path, APP_TYPES)
    before = _counts(live_db)
    with pytest.raises(ConfigError) as err:
        dumprestore.restore_dump(live_db, new_env, dump, allow_types=["shop.models.Order"])
    message = str(err.value)
    listed = message.split("Hint:")[0]
    assert "shop.models.Parcel" in listed
    assert "shop.models.Order" not in listed and RICH_TYPES[0] not in listed
    assert "--allow-type" in message and "allow_types" in message
    _untouched(live_db, before)


def test_worker_refuses_a_class_the_host_did_not_allow(
    dumped_2_0_25: Path, live_db: str, new_env: envs.VersionEnv, tmp_path: Path
) -> None:
    """Defence in depth: a manifest edited to hide a type still cannot smuggle it in."""
    dump = _rename_classes(dumped_2_0_25, tmp_path, APP_TYPES)
    mpath = dump_manifest.manifest_path(dump)
    manifest = json.loads(mpath.read_text())
    manifest["types"] = [t for t in manifest["types"] if not t.startswith("shop.")]
    mpath.write_text(json.dumps(manifest))
    before = _counts(live_db)
    with pytest.raises(ConfigError, match="not in the allowlist"):
        dumprestore.restore_dump(live_db, new_env, dump)
    _untouched(live_db, before)


APP_MODELS = """
import dataclasses


@dataclasses.dataclass
class Parcel:
    label: str
    weight: float
"""


def test_the_app_profile_allows_the_apps_own_classes(
    dumped_2_0_25: Path, live_db: str, tmp_path: Path
) -> None:
    """``allow_types`` in [tool.langgraph-migrator.app]: restore rebuilds the app's own
    classes (imported from the profile's paths) without a flag; without it, exit 2
    naming the key."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "shopmodels.py").write_text(APP_MODELS)
    dump = _rename_classes(dumped_2_0_25, tmp_path, {RICH_TYPES[2]: "shopmodels.Parcel"})
    table = '[tool.langgraph-migrator.app]\npaths = ["."]\n'
    cli = [sys.executable, "-c", "from migrator.cli import main; main()"]
    args = [*cli, "restore", "--dsn", live_db, str(dump), "--dry-run", "-q"]
    (app / "pyproject.toml").write_text(table)
    refused = subprocess.run(args, cwd=app, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2, refused.stderr
    assert "shopmodels.Parcel" in refused.stderr and "allow_types" in refused.stderr
    (app / "pyproject.toml").write_text(table + 'allow_types = ["shopmodels.Parcel"]\n')
    done = subprocess.run(args, cwd=app, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


#: A class path that walks from a message module through modules it imported
#: (``ai`` imports ``logging``, which imports ``os``) to a function.
CRAFTED_CLASS = "ai.logging.os.system"


def _craft_dump(src: Path, dst_dir: Path, marker: Path, *, list_in_manifest: bool) -> Path:
    """``src`` with its first message replaced by a call of ``os.system``, checksums redone."""
    dump = _copy_dump(src, dst_dir)
    lines = gzip.decompress(dump.read_bytes()).decode().splitlines()
    done = False

    def _poison(value: Any) -> Any:
        nonlocal done
        if isinstance(value, dict):
            if not done and value.get("__type__") == "message":
                done = True
                return {
                    "__type__": "message",
                    "class": CRAFTED_CLASS,
                    "fields": {"command": f"touch {marker}"},
                }
            return {k: _poison(v) for k, v in value.items()}
        if isinstance(value, list):
            return [_poison(v) for v in value]
        return value

    for i, line in enumerate(lines):
        record = json.loads(line)
        lines[i] = json.dumps(_poison(record))
        if done:
            break
    assert done, "the fixture dump holds no message to poison"
    dump.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    mpath = dump_manifest.manifest_path(dump)
    manifest = json.loads(mpath.read_text())
    manifest["bytes"] = dump.stat().st_size
    manifest["sha256"] = dump_manifest.file_sha256(dump)
    manifest.pop("parts", None)  # one part, the whole file
    if list_in_manifest:
        manifest["types"] = sorted({*manifest["types"], f"langchain_core.messages.{CRAFTED_CLASS}"})
    mpath.write_text(json.dumps(manifest))
    return dump


@pytest.mark.parametrize("listed", [True, False], ids=["listed-in-manifest", "hidden"])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "restore"])
def test_crafted_class_path_never_runs_code(
    listed: bool,
    dry_run: bool,
    dumped_2_0_25: Path,
    live_db: str,
    new_env: envs.VersionEnv,
    tmp_path: Path,
) -> None:
    """A message class path through modules to ``os.system`` is refused, never followed."""
    marker = tmp_path / "pwned"
    dump = _craft_dump(dumped_2_0_25, tmp_path, marker, list_in_manifest=listed)
    manifest = json.loads(dump_manifest.manifest_path(dump).read_text())
    assert manifest["sha256"] == dump_manifest.file_sha256(dump)  # passes the checksum
    before = _counts(live_db)
    with pytest.raises(ConfigError) as err:
        dumprestore.restore_dump(
            live_db,
            new_env,
            dump,
            allow_types=[*RICH_TYPES, *(t for t in manifest["types"] if "os.system" not in t)],
            dry_run=dry_run,
        )
    assert err.value.exit_code == 2
    assert f"langchain_core.messages.{CRAFTED_CLASS}" in str(err.value)
    assert not marker.exists(), "the crafted dump ran a command"
    _untouched(live_db, before)


USER_TRANSFORMS = """
def explode(record):
    if record["checkpoint_ns"] == "" and record["thread_id"] == "canary:time_travel":
        raise ValueError("planned failure")

def tag(record):
    record["metadata"]["migrated"] = "yes"
    return record
"""


@pytest.fixture
def transform_env(tmp_path: Path) -> dict[str, str]:
    """A user transform module importable in the worker (``usertx``)."""
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / "usertx.py").write_text(USER_TRANSFORMS)
    return {"PYTHONPATH": f"{envs.worker_source_dir()}:{folder}"}


def test_raising_transform_leaves_live_tables_untouched(
    dumped_2_0_25: Path,
    live_db: str,
    new_env: envs.VersionEnv,
    transform_env: dict[str, str],
) -> None:
    before = _counts(live_db)
    with pytest.raises(MigrationError) as err:
        dumprestore.restore_dump(
            live_db,
            new_env,
            dumped_2_0_25,
            transform="usertx:explode",
            allow_types=RICH_TYPES,
            extra_env=transform_env,
        )
    assert err.value.exit_code == 5
    assert "untouched" in str(err.value) and "planned failure" in str(err.value)
    _untouched(live_db, before)


def test_user_transform_changes_values_and_swap_keeps_old_tables(
    dumped_2_0_25: Path,
    live_db: str,
    new_env: envs.VersionEnv,
    transform_env: dict[str, str],
) -> None:
    golden = fixtures.load_golden(ROOT / "2.0.25")
    threads = [t for t in _threads(golden) if t["thread_id"] == "canary:time_travel"]
    before = _counts(live_db)
    result = dumprestore.restore_dump(
        live_db,
        new_env,
        dumped_2_0_25,
        transform="usertx:tag",
        allow_types=RICH_TYPES,
        extra_env=transform_env,
    )
    assert result.changes
    snap = _snapshot(new_env, live_db, threads)
    values = [
        c["metadata"].get("migrated") for c in snap["threads"]["canary:time_travel"]["checkpoints"]
    ]
    assert values and set(values) == {"yes"}
    assert result.old_schema is not None
    old_dsn_counts = _counts_in(live_db, result.old_schema)
    assert old_dsn_counts == before
    dumprestore.cleanup(live_db)


def _counts_in(dsn: str, schema: str) -> tuple[int, ...]:
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        row = conn.execute(COUNTS_SQL).fetchone()
    assert row is not None
    return tuple(int(x) for x in row)


# --------------------------------------------------------------------------- bulk == put()

TABLE_ROWS_SQL = {
    "checkpoint_migrations": "SELECT * FROM checkpoint_migrations ORDER BY v",
    "checkpoints": "SELECT * FROM checkpoints ORDER BY thread_id, checkpoint_ns, checkpoint_id",
    "checkpoint_blobs": (
        "SELECT * FROM checkpoint_blobs ORDER BY thread_id, checkpoint_ns, channel, version"
    ),
    "checkpoint_writes": (
        "SELECT * FROM checkpoint_writes"
        " ORDER BY thread_id, checkpoint_ns, checkpoint_id, task_id, idx"
    ),
}


def _table_rows(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(q).fetchall() for t, q in TABLE_ROWS_SQL.items()}


@pytest.mark.slow
@pytest.mark.parametrize("era", ["2.0.8", "2.0.25"])
def test_bulk_write_equals_put_write(
    era: str, pg_server: Server, new_env: envs.VersionEnv, tmp_path: Path
) -> None:
    """One dump restored with write_mode="bulk" (COPY) and "put" (a put() per checkpoint).

    Every row of every checkpoint table is equal, no column excluded, and the new
    saver reads both the same. The one legitimately nondeterministic value is the
    msgpack bytes of a ``set``/``frozenset`` (in ``checkpoint_blobs.blob`` and
    ``checkpoint_writes.blob``): their element order follows the worker process's
    string hash seed, so both restores run with the same ``PYTHONHASHSEED``.
    The 2.0.8 data has pending writes (task paths, __pregel_tasks sends, errors)
    and subgraph namespaces; 2.0.25 has rich values (enums, models, dataclasses).
    """
    golden = fixtures.load_golden(ROOT / era)
    with (
        scratch_database(pg_server) as src,
        scratch_database(pg_server) as bulk,
        scratch_database(pg_server) as put,
    ):
        fixtures.import_tables(src, ROOT / era)
        dump = tmp_path / f"{era}.lgdump"
        manifest = dumprestore.dump_threads(src, _era_env(era), dump)
        assert manifest.blobs > 0
        results = {
            mode: dumprestore.restore_dump(
                dsn,
                new_env,
                dump,
                allow_types=manifest.types,
                write_mode=mode,
                extra_env={"PYTHONHASHSEED": "0"},
            )
            for mode, dsn in (("bulk", bulk), ("put", put))
        }
        assert {m: r.write_mode for m, r in results.items()} == {"bulk": "bulk", "put": "put"}
        assert results["bulk"].threads == results["put"].threads
        bulk_rows, put_rows = _table_rows(bulk), _table_rows(put)
        for table in TABLE_ROWS_SQL:
            assert bulk_rows[table] == put_rows[table], table
        assert len(bulk_rows["checkpoints"]) == manifest.records
        assert bulk_rows["checkpoint_writes"] and bulk_rows["checkpoint_blobs"]
        threads = _threads(golden)
        assert _snapshot(new_env, bulk, threads) == _snapshot(new_env, put, threads)


def test_restore_records_kept_schema_in_ledger_and_cleanup_marks_it(
    dumped_2_0_25: Path, live_db: str, new_env: envs.VersionEnv
) -> None:
    from migrator import ledger

    result = dumprestore.restore_dump(live_db, new_env, dumped_2_0_25, allow_types=RICH_TYPES)
    kept = [b for b in ledger.list_backups(live_db) if b.kind == "shadow-tables"]
    assert [(b.location, b.status) for b in kept] == [(result.old_schema, "kept")]
    assert kept[0].details["shadow_schema"] == result.shadow_schema
    assert kept[0].manifest["sha256"] == dump_manifest.load_manifest(dumped_2_0_25).sha256
    assert dumprestore.cleanup(live_db) == [result.old_schema]
    after = [b for b in ledger.list_backups(live_db) if b.kind == "shadow-tables"]
    assert [b.status for b in after] == ["deleted"]
    assert _schemas(live_db) == []


def test_dump_stores_each_channel_version_once(dumped_2_0_25: Path) -> None:
    """Blob records are unique per (thread, ns, channel, version) and referenced by version."""
    lines = [json.loads(x) for x in gzip.decompress(dumped_2_0_25.read_bytes()).splitlines()]
    assert lines[0]["format"] == "langgraph-migrator/dump@2"
    blobs = [r for r in lines if r["kind"] == "blob"]
    keys = [
        (r["thread_id"], r["checkpoint_ns"], r["channel"], json.dumps(r["version"])) for r in blobs
    ]
    assert blobs and len(keys) == len(set(keys))
    refs = {
        (r["thread_id"], r["checkpoint_ns"], ch, json.dumps(v))
        for r in lines
        if r["kind"] == "checkpoint"
        for ch, v in r["channel_blobs"].items()
    }
    assert refs <= set(keys)
    assert lines[-1] == {"kind": "end", "records": len(lines) - 2 - len(blobs), "blobs": len(blobs)}


# --------------------------------------------------------------------------- fast paths


def _decoded_threads(dump: Path, allow_types: list[str]) -> list[list[dict[str, Any]]]:
    """The dump's records as the restore op decodes them (no transform)."""
    from migrator.worker import decode, dumpfile

    decoder = decode.Decoder(allow_types)
    out = []
    for raw_thread in dumpfile.by_thread(dumpfile.read_dump(str(dump))):
        blobs, raw = decode.split_blobs(decoder, raw_thread)
        out.append([decode.decode_record(decoder, r, blobs) for r in raw])
    return out


def test_list_encoding_writes_the_serializers_exact_bytes(dumped_2_0_25: Path) -> None:
    """Every row the bulk writer captures for a real dump is the same with the
    element-wise list encoding and with the new saver's plain serializer."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.types.json import Jsonb

    from migrator.worker.bulkwrite import BulkWriter
    from migrator.worker.serde_cache import SELF_CHECKS

    manifest = dump_manifest.load_manifest(dumped_2_0_25)
    threads = _decoded_threads(dumped_2_0_25, manifest.types)

    def captured(elementwise: bool) -> tuple[list[Any], BulkWriter]:
        writer = BulkWriter(PostgresSaver(None), None)
        assert writer.serde is not None
        if not elementwise:
            writer.saver.serde, writer.serde = writer.serde.inner, None
        rows = []
        for records in threads:
            for record in records:
                writer.write(record)
            writer.forget_thread(records[0]["thread_id"])
        for query, batch in writer.take():
            plain = [tuple(v.obj if isinstance(v, Jsonb) else v for v in row) for row in batch]
            rows.append((query, plain))
        return rows, writer

    (joined, writer), (plain, _) = captured(True), captured(False)
    assert joined == plain
    assert writer.serde is not None and writer.serde.enabled
    assert writer.serde.checks_left < SELF_CHECKS  # lists were joined from their elements


def test_restore_verification_catches_a_value_that_reads_back_differently(
    dumped_2_0_25: Path, pg_default: Server
) -> None:
    """In-process restore (verify full, then sample); then one stored blob and one
    stored write are changed behind the saver's back and read back again."""
    from langgraph.checkpoint.postgres import PostgresSaver

    from migrator.worker import op_restore, readback

    manifest = dump_manifest.load_manifest(dumped_2_0_25)
    with scratch_database(pg_default) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA full_check")
            conn.execute("CREATE SCHEMA sample_check")
        request = {"dsn": dsn, "path": str(dumped_2_0_25), "allow_types": manifest.types}
        full = op_restore.run({**request, "schema": "full_check"})
        total = len(manifest.threads)
        assert full["problems"] == []
        assert full["verified"] == {"threads": total, "of": total, "mode": "full"}
        sample = op_restore.run({**request, "schema": "sample_check", "verify": "sample"})
        assert sample["problems"] == []
        assert sample["verified"]["mode"] == "sample"
        assert 1 <= sample["verified"]["threads"] <= total == sample["verified"]["of"]
        with pytest.raises(ValueError, match="verify must be one of"):
            op_restore.run({**request, "schema": "sample_check", "verify": "some"})

        with op_restore._connect(dsn, "full_check", autocommit=True) as conn:
            saver = PostgresSaver(conn)
            blob = conn.execute(
                "SELECT thread_id, checkpoint_ns, channel, version, type, blob"
                " FROM checkpoint_blobs WHERE type = 'msgpack' ORDER BY 1, 2, 3, 4 LIMIT 1"
            ).fetchone()
            write = conn.execute(
                "SELECT thread_id, checkpoint_id, task_id, idx, type, blob"
                " FROM checkpoint_writes WHERE type = 'msgpack' ORDER BY 1, 2, 3, 4 LIMIT 1"
            ).fetchone()
            assert blob is not None and write is not None
            changed = saver.serde.dumps_typed(
                _tampered(saver.serde.loads_typed((blob["type"], blob["blob"])))
            )
            conn.execute(
                "UPDATE checkpoint_blobs SET blob = %s WHERE thread_id = %s"
                " AND checkpoint_ns = %s AND channel = %s AND version = %s",
                (
                    changed[1],
                    blob["thread_id"],
                    blob["checkpoint_ns"],
                    blob["channel"],
                    blob["version"],
                ),
            )
            changed = saver.serde.dumps_typed(
                _tampered(saver.serde.loads_typed((write["type"], write["blob"])))
            )
            conn.execute(
                "UPDATE checkpoint_writes SET blob = %s WHERE thread_id = %s"
                " AND checkpoint_id = %s AND task_id = %s AND idx = %s",
                (
                    changed[1],
                    write["thread_id"],
                    write["checkpoint_id"],
                    write["task_id"],
                    write["idx"],
                ),
            )
            check = readback.ReadBack(PostgresSaver(conn), conn, "full")
            problems = {
                tid: readback.verify_thread(check.reader, conn, records)
                for records in _decoded_threads(dumped_2_0_25, manifest.types)
                for tid in [records[0]["thread_id"]]
            }
    blob_problems = [p for p in problems[blob["thread_id"]] if "reads back differently" in p]
    assert any(f"channel {blob['channel']} reads back differently" in p for p in blob_problems)
    assert any(
        f"/{write['checkpoint_id']}: pending writes read back differently" in p
        for p in problems[write["thread_id"]]
    )
    untouched = set(problems) - {blob["thread_id"], write["thread_id"]}
    assert untouched and all(problems[t] == [] for t in untouched)


def _tampered(value: Any) -> Any:
    """``value`` with one visible change (a restore must report it)."""
    if isinstance(value, list):
        return [*value, "tampered"]
    if isinstance(value, dict):
        return {**value, "tampered": True}
    return ["tampered", value]


def test_bulk_writer_loads_real_rows_with_binary_copy(
    dumped_2_0_25: Path, pg_default: Server
) -> None:
    """Every table's captured rows go through binary COPY (the column types are read
    on the restore's own dict-row connection)."""
    from langgraph.checkpoint.postgres import PostgresSaver

    from migrator.worker import bulkwrite, op_restore

    manifest = dump_manifest.load_manifest(dumped_2_0_25)
    with scratch_database(pg_default) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA binary_check")
        with op_restore._connect(dsn, "binary_check", autocommit=True) as conn:
            PostgresSaver(conn).setup()
        with op_restore._connect(dsn, "binary_check", autocommit=False) as conn:
            writer = bulkwrite.BulkWriter(PostgresSaver(conn), conn)
            for records in _decoded_threads(dumped_2_0_25, manifest.types):
                for record in records:
                    writer.write(record)
            grouped: dict[str, list[tuple[Any, ...]]] = {}
            for query, rows in writer.take():
                grouped.setdefault(query, []).extend(rows)
            tables = {}
            for query, rows in grouped.items():
                statement = writer._statement(query)
                tables[statement.table] = writer._binary_types(statement, rows)
    assert set(tables) == {"checkpoints", "checkpoint_blobs", "checkpoint_writes"}
    assert all(tables.values()), tables
