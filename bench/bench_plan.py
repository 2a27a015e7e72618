"""``plan``'s thread scan next to one sequential scan of ``checkpoints``, same run.

One provisioned local cluster (on disk), one generated database (``bench/generate.py``,
``--checkpoints 1000000`` for the 1 M tier). Per round, in alternating order:

- ``seq scan``: ``SELECT count(*) FROM checkpoints`` with index scans off (one
  sequential scan, no parallel workers: what "reading the table once" costs);
- ``thread scan``: :func:`migrator.plan.live.read_data`, the read-only SQL ``plan``
  runs for the data hazards' blast radius;
- ``plan``: the whole ``plan --to current`` (introspection, the thread scan, the
  reference and rehearsal on the same server as ``--scratch-dsn``).

Run: ``.venv/bin/python bench/bench_plan.py [--checkpoints 1000000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

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
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lgm-bench-plan-", dir=args.workdir))
    work.chmod(0o755)  # the cluster may run as another user (when we are root)
    os.environ["LANGGRAPH_MIGRATOR_PG_CLUSTERS"] = str(work / "clusters")
    (work / "clusters").mkdir()
    sys.path.insert(0, str(HERE))
    from generate import generate

    from migrator import api
    from migrator.plan.live import read_data
    from migrator.postgres import provision, scratch_database

    server = provision("local", args.major)
    try:
        with scratch_database(server) as dsn:
            print(
                f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
                f"Python {platform.python_version()}, PostgreSQL {server.major} (local cluster on "
                f"disk); {dt.date.today().isoformat()}; median of {args.rounds} rounds"
            )
            stats = generate(dsn, checkpoints=args.checkpoints, kb=args.kb, progress=lambda _: None)
            with psycopg.connect(dsn) as conn:
                size = conn.execute(
                    "SELECT pg_total_relation_size('checkpoints'), "
                    "pg_total_relation_size('checkpoint_writes')"
                ).fetchone()
            assert size is not None
            print(
                f"data: {stats.threads} threads, {stats.checkpoints} checkpoints, rows "
                + ", ".join(f"{k} {v}" for k, v in stats.rows.items())
                + f"; checkpoints {size[0] / 2**20:.0f} MiB, checkpoint_writes "
                f"{size[1] / 2**20:.0f} MiB; generated in {stats.seconds:.0f}s"
            )
            seq_scan(dsn)  # warm the cache the same way for every measurement
            api.plan(dsn, "current", scratch_dsn=server.dsn)  # warm: env, reference
            runs: dict[str, list[float]] = {"seq scan": [], "thread scan": [], "plan": []}
            groups = ()
            for round_ in range(args.rounds):
                order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
                for name in order:
                    if name == "seq scan":
                        runs[name].append(seq_scan(dsn))
                    elif name == "thread scan":
                        groups, seconds = read_data(dsn, "public")
                        runs[name].append(seconds)
                    else:
                        started = time.perf_counter()
                        plan = api.plan(dsn, "current", scratch_dsn=server.dsn)
                        runs[name].append(time.perf_counter() - started)
                        assert plan.data is not None
            threads = sum(g.threads for g in groups)
            base = statistics.median(runs["seq scan"])
            print(f"thread scan saw {threads} threads")
            print(f"{'operation':<14}{'seconds':>9}{'(min-max)':>16}{'vs seq scan':>13}")
            for name, values in runs.items():
                med = statistics.median(values)
                span = f"({min(values):.2f}-{max(values):.2f})"
                print(f"{name:<14}{med:>9.2f}{span:>16}{med / base:>12.2f}x")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
