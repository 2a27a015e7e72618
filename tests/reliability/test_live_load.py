"""``migrate`` yields the CPU to the application it runs beside: itself and its workers niced.

``bench/bench_load.py`` found the writers' tail latency during ``migrate`` to be
CPU contention (no writer was ever seen waiting for a lock), so ``migrate`` runs
at ``--nice`` (10 by default). Its workers start sessions of their own; with
autogroup scheduling a nice value counts only inside a session, so each worker
also gives its autogroup its nice value, or it would compete at full weight.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psycopg
import pytest

from migrator import fixtures
from migrator.postgres import Server, scratch_database
from migrator.worker.priority import autogroup_nice, current_nice
from tests.reliability import harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ERA = Path(__file__).resolve().parents[2] / "canary_fixtures" / "1.0.0"


def _nice(pid: int) -> int:
    # /proc/PID/stat: field 19 is the nice value; the command name (field 2) may hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[16])


def _autogroup(pid: int) -> int | None:
    return autogroup_nice(f"/proc/{pid}/autogroup")


@pytest.mark.parametrize("nice", [7, 0])
def test_migrate_and_its_setup_worker_run_at_the_nice_value(
    pg_default: Server, tmp_path: Path, nice: int
) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.fail("needs Linux /proc to read another process's nice value")
    expected = max(nice, current_nice())  # never lower than what the test runs at
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, ERA)
        with psycopg.connect(dsn, autocommit=True) as conn:  # the 1.0.0 tables, no thread at risk
            conn.execute("TRUNCATE checkpoints, checkpoint_blobs, checkpoint_writes")
        dbname = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
        args = ["migrate", "--dsn", dsn, "--scratch-dsn", pg_default.dsn]
        args += ["--backup-dir", str(tmp_path / "b"), "--nice", str(nice), "-q"]
        run = harness.start(args, tmp_path, pause_at="lock.held,setup.done")
        try:
            pid, point = run.wait_pause()
            assert (pid, point) == (run.proc.pid, "lock.held")
            assert _nice(pid) == expected
            run.release()
            pid, point = run.wait_pause(dbname)  # the live database's setup(), not a rehearsal
            assert point == "setup.done"
            assert pid != run.proc.pid
            assert _nice(pid) == expected
            assert os.getsid(pid) == pid  # a session (and autogroup) of its own ...
            group = _autogroup(pid)
            if group is not None:  # ... given the same nice value (kernels with autogroups)
                assert group == (expected if expected > 0 else 0)
            code = run.finish()
            assert code == 0, run.output()[-3000:]
        finally:
            harness.reap(run)


WRITE_SQL = (
    "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx,"
    " channel, type, blob) VALUES ('app', '', 'c1', 't1', %s, 'messages', 'json', '\\x7b7d')"
)


def test_a_blocked_alter_table_holds_the_application_up_only_briefly(
    pg_default: Server, tmp_path: Path
) -> None:
    """``setup()``'s ``ALTER TABLE`` behind a long app transaction: retried, not waited out.

    While an ``ALTER TABLE`` waits for its lock, every later query of the table
    queues behind it. Before, it waited up to ``--lock-timeout`` (here 10 s, the
    transaction in the way lasted 3 s): the application's writes stood still for
    3 s. Now it gives up after ``blocking_lock_timeout`` (1 s), the queue drains,
    and ``setup()`` is retried until the transaction has ended.
    """
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, ERA)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE checkpoints, checkpoint_blobs, checkpoint_writes")
        dbname = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
        args = ["migrate", "--dsn", dsn, "--scratch-dsn", pg_default.dsn, "--lock-timeout", "10"]
        args += ["--backup-dir", str(tmp_path / "b"), "--json", str(tmp_path / "r.json"), "-q"]
        # v9: ALTER TABLE checkpoint_writes ADD COLUMN task_path (ACCESS EXCLUSIVE)
        run = harness.start(args, tmp_path, pause_at="setup.v9")
        waits: list[float] = []
        stop = threading.Event()

        def writer() -> None:  # the application
            with psycopg.connect(dsn, autocommit=True) as conn:
                n = 0
                while not stop.is_set():
                    t0 = time.monotonic()
                    conn.execute(WRITE_SQL, (n,))
                    waits.append(time.monotonic() - t0)
                    n += 1
                    time.sleep(0.02)

        holder = psycopg.connect(dsn)
        thread = threading.Thread(target=writer)
        try:
            run.wait_pause(dbname)  # the live setup() is about to run v9
            holder.execute("SELECT count(*) FROM checkpoint_writes")  # a long app transaction
            thread.start()
            time.sleep(0.2)
            run.release()
            time.sleep(3.0)
            holder.commit()
            code = run.finish()
        finally:
            stop.set()
            if thread.is_alive():
                thread.join()
            holder.close()
            harness.reap(run)
        assert code == 0, run.output()[-3000:]
        assert waits, "the writer never wrote"
        assert max(waits) < 2.0, f"a write waited {max(waits):.1f}s behind setup()'s ALTER TABLE"
        report = json.loads((tmp_path / "r.json").read_text())
        setup = next(c for c in report["checks"] if c["check"] == "setup")
        assert setup["details"]["lock_retries"] >= 1
        assert "task_path" in harness.columns(dsn, "checkpoint_writes")
