"""``plan``'s thread scan next to one sequential scan of ``checkpoints``, same run.

One provisioned local cluster (on disk), one generated database (``bench/generate.py``,
``--checkpoints 1000000`` for the 1 M tier). Per round, in alternating order:

- ``seq scan``: ``SELECT count(*) FROM checkpoints`` with index scans off (one
  sequential scan, no parallel workers: what "reading the table once" costs);
- ``thread scan``: :func:`migrator.plan.live.read_data`, the read-only SQL ``plan``
  runs for the data hazards' blast radius;
- ``plan``: the whole ``plan --to current`` in this process (introspection, the thread
  scan, the reference and rehearsal on the same server as ``--scratch-dsn``);
- ``plan process``: the same as a new ``langgraph-migrator plan`` process (Python's
  start and imports included; the environment's kept answers already written).

``--old-format`` first rewrites every generated row into the shape langgraph 0.2.x
wrote (format v1, an empty ``pending_sends``, ``metadata.writes``): the era where
every row passes the scan's filter and every thread gets the per-thread lookups. The
rows are synthetic (real 0.2.x rows are in ``canary_fixtures/``, too few to time).

Run: ``.venv/bin/python bench/bench_plan.py [--checkpoints 1000000] [--rounds 3]``, or
``--dsn DSN`` to measure a database ``bench/generate.py`` already filled (its server is
the scratch server; generating 1 M checkpoints takes about 5 minutes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

HERE = Path(__file__).resolve().parent
SEQ_SCAN_SQL = "SELECT count(*) FROM checkpoints"
SEQ_ONLY = (
    "SET enable_indexscan = off",
    "SET enable_indexonlyscan = off",
    "SET enable_bitmapscan = off",
    "SET max_parallel_workers_per_gather = 0",
)


def seq_scan(dsn: str) -> float:
    """Seconds for one sequential scan of ``checkpoints``."""
    with psycopg.connect(dsn) as conn:
        for statement in SEQ_ONLY:
            conn.execute(statement)
        started = time.perf_counter()
        conn.execute(SEQ_SCAN_SQL).fetchone()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=1_000_000)
    parser.add_argument("--kb", type=float, default=12.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--major", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="where the cluster goes (on disk)")
    parser.add_argument("--dsn", default=None, help="a database generate.py already filled")
    parser.add_argument(
        "--old-format", action="store_true", help="rewrite the rows as langgraph 0.2.x wrote them"
    )
    args = parser.parse_args()
    if args.dsn:
        settle(args.dsn)
        if args.old_format:
            old_format(args.dsn)
        measure(args.dsn, make_conninfo(args.dsn, dbname="postgres"), args.rounds, None)
        return

    work = Path(tempfile.mkdtemp(prefix="lgm-bench-plan-", dir=args.workdir))
    work.chmod(0o755)  # the cluster may run as another user (when we are root)
    os.environ["LANGGRAPH_MIGRATOR_PG_CLUSTERS"] = str(work / "clusters")
    (work / "clusters").mkdir()
    sys.path.insert(0, str(HERE))
    from generate import generate

    from migrator.postgres import provision, scratch_database

    server = provision("local", args.major)
    try:
        with scratch_database(server) as dsn:
            stats = generate(dsn, checkpoints=args.checkpoints, kb=args.kb, progress=lambda _: None)
            settle(dsn)
            if args.old_format:
                old_format(dsn)
            measure(dsn, server.dsn, args.rounds, stats)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


OLD_FORMAT_SQL = (
    "UPDATE checkpoints SET checkpoint = checkpoint - 'updated_channels' "
    """|| '{"v": 1, "pending_sends": []}', metadata = metadata || """
    """'{"writes": {"agent": {"messages": [{"lc": 1, "type": "constructor"}]}}}'"""
)


def old_format(dsn: str) -> None:
    """Rewrite every row into langgraph 0.2.x's shape (v1, ``pending_sends``, ``writes``)."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        done = conn.execute("SELECT count(*) FROM checkpoints WHERE checkpoint ->> 'v' = '1'")
        row = done.fetchone()
        if row is None or not row[0]:
            conn.execute(OLD_FORMAT_SQL)
            conn.execute("VACUUM (FULL) checkpoints")  # no dead copies in the scans
            conn.execute("VACUUM (ANALYZE) checkpoints")  # the visibility map FULL drops
    print(f"rows rewritten as langgraph 0.2.x wrote them in {time.perf_counter() - started:.0f}s")


def settle(dsn: str) -> None:
    """``VACUUM (ANALYZE)`` the generated tables, as autovacuum soon would.

    Freshly copied rows have no visibility map (every index-only scan visits the heap)
    and no statistics: a state a live table leaves within minutes of a bulk load.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) checkpoints, checkpoint_writes, checkpoint_blobs")


def plan_process(dsn: str, server_dsn: str) -> float:
    """Seconds for a new ``langgraph-migrator plan`` process, start to exit."""
    cli = Path(sys.executable).parent / "langgraph-migrator"
    started = time.perf_counter()
    subprocess.run(
        [str(cli), "plan", "--dsn", dsn, "--scratch-dsn", server_dsn, "-q"],
        check=False,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def measure(dsn: str, server_dsn: str, rounds: int, stats: Any) -> None:
    """Print the data, then the three operations' median and range over ``rounds``."""
    from migrator import api
    from migrator.plan.live import read_data

    with psycopg.connect(dsn) as conn:
        major = int(conn.info.server_version) // 10000
    print(
        f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, PostgreSQL {major} (local cluster on "
        f"disk); {dt.date.today().isoformat()}; median of {rounds} rounds; "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    with psycopg.connect(dsn) as conn:
        size = conn.execute(
            "SELECT pg_total_relation_size('checkpoints'), "
            "pg_total_relation_size('checkpoint_writes'), "
            "(SELECT count(*) FROM checkpoints)"
        ).fetchone()
    assert size is not None
    made = (
        f"{stats.threads} threads, {stats.checkpoints} checkpoints, rows "
        + ", ".join(f"{k} {v}" for k, v in stats.rows.items())
        + f"; generated in {stats.seconds:.0f}s"
        if stats
        else f"{size[2]} checkpoints (generated before this run)"
    )
    print(
        f"data: {made}; checkpoints {size[0] / 2**20:.0f} MiB, checkpoint_writes "
        f"{size[1] / 2**20:.0f} MiB"
    )
    seq_scan(dsn)  # warm the cache the same way for every measurement
    plan = api.plan(dsn, "current", scratch_dsn=server_dsn)  # warm: env, reference
    assert plan.data is not None
    # what plan --to current (no --from) looks at
    needs = plan.data.needs
    plan_process(dsn, server_dsn)  # warm: the kept answers
    runs: dict[str, list[float]] = {
        "seq scan": [],
        "thread scan": [],
        "plan": [],
        "plan process": [],
    }
    groups: Any = ()
    for round_ in range(rounds):
        order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        for name in order:
            if name == "seq scan":
                runs[name].append(seq_scan(dsn))
            elif name == "thread scan":
                groups, seconds = read_data(dsn, "public", needs)
                runs[name].append(seconds)
            elif name == "plan process":
                runs[name].append(plan_process(dsn, server_dsn))
            else:
                started = time.perf_counter()
                plan = api.plan(dsn, "current", scratch_dsn=server_dsn)
                runs[name].append(time.perf_counter() - started)
                assert plan.data is not None
    threads = sum(g.threads for g in groups)
    base = statistics.median(runs["seq scan"])
    print(f"thread scan saw {threads} threads; looked at {needs.checked()}")
    print(f"{'operation':<14}{'seconds':>9}{'(min-max)':>16}{'vs seq scan':>13}")
    for name, values in runs.items():
        med = statistics.median(values)
        span = f"({min(values):.2f}-{max(values):.2f})"
        print(f"{name:<14}{med:>9.2f}{span:>16}{med / base:>12.2f}x")
    ratios = [t / s for t, s in zip(runs["thread scan"], runs["seq scan"], strict=True)]
    print(
        f"thread scan / seq scan, round by round: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
