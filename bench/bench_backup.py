"""backup / restore-backup throughput and peak RSS next to raw binary COPY, same data.

One run, one provisioned local cluster (on disk), one generated database
(``bench/generate.py``): every operation runs in its own child process, which
reports its wall time (around the work, not the interpreter start) and its peak
RSS (``VmHWM``). Throughput is binary COPY bytes of the data / seconds.

- raw COPY TO (psql): ``\\copy t TO file (FORMAT binary)`` per table, the C client:
  the physical limit of getting the rows out on this machine;
- raw COPY TO (psycopg): the same stream through psycopg into a file, no hashing;
- backup --jobs 1 / --jobs 2 / --jobs 1 --compress;
- raw COPY FROM (psycopg): one transaction: CREATE TABLE, COPY the files, indexes;
- restore-backup: verify, load into a shadow schema, count, swap with the live tables.

Run: ``.venv/bin/python bench/bench_backup.py [--checkpoints 100000] [--major 18]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
TABLES = ("checkpoint_migrations", "checkpoints", "checkpoint_blobs", "checkpoint_writes")
CHUNK = 1 << 20


# ------------------------------------------------------------------ children


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    from migrator import backup

    op, dsn, work = spec["op"], spec["dsn"], Path(spec["work"])
    start = time.perf_counter()
    if op == "raw-out-psycopg":
        out = work / "raw-psycopg"
        out.mkdir()
        with psycopg.connect(dsn) as conn:
            for table in TABLES:
                query = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(sql.Identifier(table))
                with (
                    open(out / table, "wb", buffering=CHUNK) as fh,
                    conn.cursor().copy(query) as cp,
                ):
                    for chunk in cp:
                        fh.write(chunk)
    elif op == "backup":
        backup.create_backup(
            dsn, work / spec["out"], jobs=spec["jobs"], compress=spec.get("compress", False)
        )
    elif op == "raw-in-psycopg":
        manifest = backup.verify_backup(work / spec["src"])  # only to read the DDL
        start = time.perf_counter()
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE SCHEMA raw_load")
            conn.execute("SET search_path TO raw_load")
            for t in manifest.checkpoint_tables():
                conn.execute(t.ddl[0])
                query = sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(sql.Identifier(t.name))
                for f in t.files:
                    with (
                        open(work / spec["src"] / f.file, "rb") as fh,
                        conn.cursor().copy(query) as cp,
                    ):
                        while data := fh.read(CHUNK):
                            cp.write(data)
                for statement in t.ddl[1:]:
                    conn.execute(statement)
    elif op == "restore":
        backup.restore_backup(dsn, work / spec["src"])
    else:
        raise SystemExit(f"unknown op {op}")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "maxrss_kb": _peak_rss_kb()}


def _peak_rss_kb() -> int:
    # VmHWM, not ru_maxrss: ru_maxrss survives execve, so a child would report its
    # parent's peak from before the fork.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"{spec['op']} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _raw_out_psql(bin_dir: Path, dsn: str, work: Path) -> dict[str, Any]:
    out = work / "raw-psql"
    out.mkdir()
    psql = str(bin_dir / "psql")
    start = time.perf_counter()
    for table in TABLES:
        command = f"\\copy {table} TO '{out / table}' (FORMAT binary)"
        subprocess.run([psql, "-X", "-q", "-d", dsn, "-c", command], check=True)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "maxrss_kb": None}  # a C client: not ours to measure


# -------------------------------------------------------------------- main


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.name != "manifest.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=100_000)
    parser.add_argument("--major", type=int, default=18)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return

    work = Path(tempfile.mkdtemp(prefix="lgm-bench-backup-", dir=args.workdir))
    work.chmod(0o755)  # the cluster may run as another user (when we are root)
    # The cluster on disk, like the backup files: /dev/shm would flatter the database side.
    os.environ["LANGGRAPH_MIGRATOR_PG_CLUSTERS"] = str(work / "clusters")
    (work / "clusters").mkdir()
    sys.path.insert(0, str(HERE))
    from generate import generate

    from migrator.postgres import provision, scratch_database

    server = provision("local", args.major)
    try:
        with scratch_database(server) as dsn:
            print(
                f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
                f"Python {platform.python_version()}, PostgreSQL {server.major} (local cluster on "
                f"disk); {dt.date.today().isoformat()}"
            )
            stats = generate(dsn, checkpoints=args.checkpoints, progress=lambda _: None)
            print(
                f"data: {stats.threads} threads, {stats.checkpoints} checkpoints, rows "
                + ", ".join(f"{k} {v}" for k, v in stats.rows.items())
                + f"; generated in {stats.seconds:.0f}s"
            )
            results: list[tuple[str, dict[str, Any]]] = []
            results.append(("raw COPY TO (psql)", _raw_out_psql(server.bin_dir, dsn, work)))
            base = {"dsn": dsn, "work": str(work)}
            results.append(("raw COPY TO (psycopg)", _run_child({**base, "op": "raw-out-psycopg"})))
            for label, extra in (
                ("backup --jobs 1", {"out": "b1", "jobs": 1}),
                ("backup --jobs 2", {"out": "b2", "jobs": 2}),
                ("backup --jobs 1 --compress", {"out": "gz", "jobs": 1, "compress": True}),
            ):
                results.append((label, _run_child({**base, "op": "backup", **extra})))
            results.append(
                (
                    "raw COPY FROM (psycopg)",
                    _run_child({**base, "op": "raw-in-psycopg", "src": "b1"}),
                )
            )
            results.append(
                ("restore-backup (swap)", _run_child({**base, "op": "restore", "src": "b1"}))
            )
            data_bytes = _dir_bytes(work / "b1")
            print(
                f"binary COPY data: {data_bytes / 2**20:.0f} MiB "
                f"({data_bytes / stats.checkpoints / 1024:.1f} KB/checkpoint); "
                f"--compress files: {_dir_bytes(work / 'gz') / 2**20:.0f} MiB"
            )
            raw_out = results[0][1]["seconds"]
            raw_in = next(r for name, r in results if name.startswith("raw COPY FROM"))["seconds"]
            print(f"{'operation':<28} {'seconds':>8} {'MiB/s':>8} {'vs raw':>7} {'peak RSS':>9}")
            for name, r in results:
                baseline = raw_in if ("FROM" in name or "restore" in name) else raw_out
                mib_s = data_bytes / 2**20 / r["seconds"]
                ratio = baseline / r["seconds"]
                print(
                    f"{name:<28} {r['seconds']:>8.2f} {mib_s:>8.0f} {ratio:>6.2f}x "
                    + (f"{r['maxrss_kb'] / 1024:>7.0f} MB" if r["maxrss_kb"] else f"{'-':>9}")
                )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
