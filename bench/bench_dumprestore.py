"""Logical dump + restore vs. the naive ``list()`` + ``put()`` loop, on the same data.

Data: ``bench/generate.py`` (the backup bench's generator: real rows written by
the newest saver, cloned). Three databases on one ephemeral server:

- naive: for every thread, ``src.list()`` and ``dst.put()`` + ``dst.put_writes()``
  on an autocommit connection (what a hand-written migration script does);
- ``dump_threads`` (worker, current env) + ``restore_dump`` (worker, current env:
  setup in a shadow schema, the saver's rows loaded in bulk — or, with
  ``--write-mode put``, every ``put()`` sent — read-back verification, swap).

Peak RSS: the bench process itself, and the largest of its finished child
processes (the dump and restore workers; the naive loop runs in-process).

Run: ``.venv/bin/python bench/bench_dumprestore.py [--checkpoints 5000] [--kb 4]
[--write-mode bulk|put] [--jobs 1,2] [--verify full|sample] [--no-naive]``
(``--no-naive`` skips the loop, for throughput and memory at the 1 M tier, where
the loop alone takes about 20 minutes).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import generate  # noqa: E402

from migrator import dumprestore, envs  # noqa: E402
from migrator.postgres import provision, scratch_database  # noqa: E402

THREADS_SQL = "SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id"
COUNT_SQL = "SELECT count(*) FROM checkpoints"


def naive_copy(src_dsn: str, dst_dsn: str) -> int:
    """The loop a hand-written script would run; returns checkpoints copied."""
    count = 0
    kw: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    with psycopg.connect(src_dsn, **kw) as src_conn, psycopg.connect(dst_dsn, **kw) as dst_conn:
        src, dst = PostgresSaver(src_conn), PostgresSaver(dst_conn)
        dst.setup()
        threads = [r["thread_id"] for r in src_conn.execute(THREADS_SQL)]
        for thread_id in threads:
            for tup in src.list({"configurable": {"thread_id": thread_id}}):
                ns = tup.config["configurable"]["checkpoint_ns"]
                parent = {"thread_id": thread_id, "checkpoint_ns": ns}
                if tup.parent_config:
                    parent["checkpoint_id"] = tup.parent_config["configurable"]["checkpoint_id"]
                versions = dict(tup.checkpoint["channel_versions"])
                config = dst.put({"configurable": parent}, tup.checkpoint, tup.metadata, versions)
                by_task: dict[str, list[tuple[str, Any]]] = {}
                for task_id, channel, value in tup.pending_writes or []:
                    by_task.setdefault(task_id, []).append((channel, value))
                for task_id, writes in by_task.items():
                    dst.put_writes(config, writes, task_id)
                count += 1
    return count


def _dump_restore(
    src: str,
    dst: str,
    env: envs.VersionEnv,
    tmp: Path,
    jobs: int,
    copied: int,
    naive: float | None,
    args: argparse.Namespace,
) -> None:
    """One dump + restore with ``jobs`` workers; prints its line next to the naive loop's."""
    started = time.perf_counter()
    dump = tmp / f"bench-{jobs}.lgdump"
    manifest = dumprestore.dump_threads(src, env, dump, jobs=jobs)
    dumped = time.perf_counter() - started
    restored = dumprestore.restore_dump(
        dst,
        env,
        dump,
        allow_types=manifest.types,
        write_mode=args.write_mode,
        jobs=jobs,
        verify=args.verify,
    )
    total = time.perf_counter() - started
    assert restored.swapped and sum(t["checkpoints"] for t in restored.threads.values()) == copied
    speed_up = "" if naive is None else f"  speed-up {naive / total:.2f}x;"
    print(
        f"dump+restore --jobs {jobs}: {manifest.records / total:8.0f} checkpoints/s "
        f"({total:.1f}s: dump {dumped:.1f}s, restore {total - dumped:.1f}s, "
        f"{manifest.size / 2**20:.1f} MiB dump){speed_up} "
        f"verified {restored.verified.get('threads')}/{restored.verified.get('of')} threads "
        f"({args.verify})"
    )
    print(
        "  restore phases (s, worker phases summed over workers): "
        + ", ".join(f"{k} {v}" for k, v in restored.timings.items())
    )


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=5000)
    parser.add_argument("--kb", type=float, default=4.0)
    parser.add_argument("--write-mode", choices=dumprestore.WRITE_MODES, default="bulk")
    parser.add_argument("--verify", choices=("full", "sample"), default="full")
    parser.add_argument(
        "--jobs", default="1,2", help="comma-separated worker counts to measure (default 1,2)"
    )
    parser.add_argument(
        "--no-naive", dest="naive", action="store_false", help="skip the naive loop"
    )
    args = parser.parse_args()
    job_counts = [int(j) for j in args.jobs.split(",")]
    env = envs.ensure_env(envs.parse_version_set("current"))
    server = provision("auto")
    try:
        with (
            scratch_database(server) as src,
            scratch_database(server) as naive_dst,
            tempfile.TemporaryDirectory() as tmp,
        ):
            stats = generate(src, checkpoints=args.checkpoints, kb=args.kb, progress=lambda _: None)
            print(f"data: {stats.threads} threads, {stats.checkpoints} checkpoints")
            naive: float | None = None
            if args.naive:
                started = time.perf_counter()
                copied = naive_copy(src, naive_dst)
                naive = time.perf_counter() - started
                print(f"naive list()+put():  {copied / naive:8.0f} checkpoints/s ({naive:.1f}s)")
            else:
                with psycopg.connect(src) as conn:
                    copied = conn.execute(COUNT_SQL).fetchone()[0]  # type: ignore[index]
                print("naive list()+put():  skipped (--no-naive)")
            for jobs in job_counts:
                with scratch_database(server) as restore_dst:
                    _dump_restore(src, restore_dst, env, Path(tmp), jobs, copied, naive, args)
            print(
                f"peak RSS: bench process {_peak_mib(resource.RUSAGE_SELF):.0f} MiB, "
                f"largest worker {_peak_mib(resource.RUSAGE_CHILDREN):.0f} MiB"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
