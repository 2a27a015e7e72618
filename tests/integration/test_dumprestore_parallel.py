"""Dump and restore with several workers: ``--jobs``, shard dumps restored together.

Real old versions write the data (the per-era fixtures), real old environments
dump it, the newest restores it, on real Postgres. Several workers must write
exactly the rows one worker writes; a set of shard dumps restores only whole.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from migrator import dumprestore, envs, fixtures
from migrator.dumprestore import manifest as dump_manifest
from migrator.errors import ConfigError, MigrationError
from migrator.output import progress as partprogress
from migrator.postgres import Server, scratch_database
from tests.integration.test_dumprestore import _env, _schemas
from tests.integration.test_dumprestore import _table_rows as _rows

pytestmark = [pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2] / "canary_fixtures"
FAIL_ONE_THREAD = """
def explode(record):
    if record["thread_id"] == "canary:time_travel":
        raise ValueError("planned failure in one part")
    return record
"""


@pytest.fixture(scope="module")
def new_env() -> envs.VersionEnv:
    return _env("current")


def _hash_shard(thread_id: str, count: int, dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT (hashtext(%s) & 2147483647) %% %s", (thread_id, count))
        found = row.fetchone()
    assert found is not None
    return int(found[0])


@pytest.fixture
def era_2_0_8(pg_default: Server) -> Iterator[str]:
    """The 2.0.8 fixture: subgraph namespaces, pending writes with task paths, sends."""
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, ROOT / "2.0.8")
        yield dsn


def _progress_lines(lines: list[str], what: str, total: int) -> None:
    """The parts' progress, summed: whole lines, counts that only grow, never past ``total``."""
    pattern = re.compile(rf"{what}: ([\d,]+)(?:/([\d,]+) threads \([\d.]+%\)| threads), ")
    seen = [pattern.match(line) for line in lines if line.startswith(f"{what}: ")]
    assert seen and all(seen), lines
    done = [int(m.group(1).replace(",", "")) for m in seen if m]
    assert done == sorted(done) and done[-1] <= total, lines
    assert {int(m.group(2).replace(",", "")) for m in seen if m and m.group(2)} <= {total}


def test_two_workers_write_exactly_what_one_writes(
    era_2_0_8: str,
    pg_default: Server,
    new_env: envs.VersionEnv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(partprogress, "REPORT_EVERY_S", 0.05)
    lines: list[str] = []
    old_env = _env("langgraph-checkpoint-postgres==2.0.8")
    one = dumprestore.dump_threads(era_2_0_8, old_env, tmp_path / "one.lgdump")
    two = dumprestore.dump_threads(
        era_2_0_8, old_env, tmp_path / "two.lgdump", jobs=2, progress=lines.append
    )
    _progress_lines(lines, "dump", len(two.threads))
    assert len(one.parts) == 1 and len(two.parts) == 2
    assert [p.shard for p in two.parts] == [(0, 2), (1, 2)]
    assert (two.records, two.threads, two.types) == (one.records, one.threads, one.types)
    assert sum(p.records for p in two.parts) == two.records
    for part in two.parts:  # each part holds exactly its shard's threads
        assert part.threads == sum(
            1
            for t in two.threads
            if _hash_shard(t, 2, era_2_0_8) == part.shard[0]  # type: ignore[index]
        )
    assert dump_manifest.load_manifest(two.path) == two  # the written manifest reads back
    with scratch_database(pg_default) as serial, scratch_database(pg_default) as parallel:
        fixtures.import_tables(serial, ROOT / "2.0.8")
        fixtures.import_tables(parallel, ROOT / "2.0.8")
        seed = {"PYTHONHASHSEED": "0"}  # set/frozenset msgpack bytes follow the hash seed
        allow = list(one.types)
        a = dumprestore.restore_dump(serial, new_env, one.path, allow_types=allow, extra_env=seed)
        lines.clear()
        b = dumprestore.restore_dump(
            parallel,
            new_env,
            two.path,
            allow_types=allow,
            jobs=2,
            extra_env=seed,
            progress=lines.append,
        )
        _progress_lines(lines, "restore", len(two.threads))
        assert a.swapped and b.swapped and a.threads == b.threads
        assert _rows(serial) == _rows(parallel)
        assert len(_rows(parallel)["checkpoints"]) == one.records


def test_shard_dumps_restore_only_together(
    pg_default: Server, new_env: envs.VersionEnv, tmp_path: Path
) -> None:
    old_env = _env("langgraph-checkpoint-postgres==2.0.25")
    rich = [
        "migrator.worker.canaries.rich.CanaryColor",
        "migrator.worker.canaries.rich.CanaryModel",
        "migrator.worker.canaries.rich.CanaryRecord",
    ]
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, ROOT / "2.0.25")
        before = _rows(dsn)
        shards = [
            dumprestore.dump_threads(dsn, old_env, tmp_path / f"s{i}.lgdump", shard=(i, 2))
            for i in range(2)
        ]
        assert not set(shards[0].threads) & set(shards[1].threads)
        assert shards[0].threads and shards[1].threads
        with pytest.raises(ConfigError, match=r"shard\(s\) 1/2 are missing") as err:
            dumprestore.restore_dump(dsn, new_env, shards[0].path, allow_types=rich)
        assert err.value.exit_code == 2
        assert _rows(dsn) == before and _schemas(dsn) == []
        result = dumprestore.restore_dump(
            dsn, new_env, [s.path for s in shards], allow_types=rich, jobs=2
        )
        assert result.swapped and set(result.threads) == {t for s in shards for t in s.threads}
        after = _rows(dsn)
        assert {t: len(r) for t, r in after.items()} == {t: len(r) for t, r in before.items()}


def test_a_failing_part_drops_the_shadow_and_leaves_live_untouched(
    era_2_0_8: str, new_env: envs.VersionEnv, tmp_path: Path
) -> None:
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / "failone.py").write_text(FAIL_ONE_THREAD)
    extra = {"PYTHONPATH": f"{envs.worker_source_dir()}:{folder}"}
    dump = dumprestore.dump_threads(
        era_2_0_8, _env("langgraph-checkpoint-postgres==2.0.8"), tmp_path / "d.lgdump", jobs=3
    )
    before = _rows(era_2_0_8)
    digest = hashlib.sha256(repr(before).encode()).hexdigest()
    with pytest.raises(MigrationError, match="planned failure in one part") as err:
        dumprestore.restore_dump(
            era_2_0_8,
            new_env,
            dump.path,
            transform="failone:explode",
            allow_types=dump.types,
            jobs=3,
            extra_env=extra,
        )
    assert err.value.exit_code == 5
    assert hashlib.sha256(repr(_rows(era_2_0_8)).encode()).hexdigest() == digest
    assert _schemas(era_2_0_8) == []


def test_a_worker_waiting_for_setup_does_not_deadlock_the_index_build(pg_dsn: str) -> None:
    """The waiter must not hold a snapshot: the holder's setup() builds indexes CONCURRENTLY.

    Found by CI: two restore workers on one shadow schema, the second blocked in
    ``pg_advisory_lock`` while the first's ``CREATE INDEX CONCURRENTLY`` waited for
    the second's snapshot; Postgres cancelled one with "deadlock detected".
    """
    from concurrent.futures import ThreadPoolExecutor

    from psycopg.rows import dict_row

    from migrator.worker import op_restore

    schema = "setup_lock_test"
    with psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as holder:
        holder.execute("SET deadlock_timeout = '100ms'")
        holder.execute("SET statement_timeout = '20s'")
        holder.execute("CREATE TABLE t (x int)")
        op_restore.take_setup_lock(holder, schema)
        with (
            psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as waiter,
            ThreadPoolExecutor(max_workers=1) as pool,
        ):
            # A blocking waiter would fail here rather than hang the suite.
            waiter.execute("SET statement_timeout = '30s'")
            waiting = pool.submit(op_restore.take_setup_lock, waiter, schema, poll_s=0.01)
            # The waiter is polling; an index build must still finish while it waits.
            holder.execute("CREATE INDEX CONCURRENTLY t_x ON t (x)")
            assert not waiting.done()
            holder.execute(
                "SELECT pg_advisory_unlock(hashtext('langgraph_migrator.restore_setup:' || %s))",
                (schema,),
            )
            waiting.result(timeout=20)
            held = waiter.execute(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = pg_backend_pid()"
            ).fetchone()
            assert held is not None and held["n"] == 1
