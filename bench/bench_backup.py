"""backup / restore-backup throughput, CPU and peak RSS next to raw binary COPY, same data.

One provisioned local cluster (on disk), one generated database (``bench/generate.py``),
then ``--rounds`` rounds; each round runs every operation once, in an order rotated
per round, so background load on a shared machine hits all of them alike. The table
shows the median of the rounds. Every operation runs in its own child process,
which reports its wall time (around the work, not the interpreter start), its own
CPU time (all threads) and its peak RSS (``VmHWM``); the parent adds the server's
CPU time (postmaster and all its processes) over the same interval.

- raw COPY TO (psql): ``\\copy t TO file (FORMAT binary)`` per table, the C client;
- raw COPY TO (psycopg): one connection, ``COPY t TO STDOUT (FORMAT binary)`` per
  table streamed message by message into a 1 MiB-buffered file: no snapshot export,
  no hashing, no manifest. The faster of the two raw rows is the backup baseline
  ("vs raw"): the cost of getting the bytes out of the server into files here.
- backup --jobs 1 / --jobs 2 / --jobs 1 --compress (and ``--compare-with FILE``: an
  older ``migrator/backup.py`` measured the same way, for A/B);
- raw COPY FROM (psycopg): one transaction: CREATE TABLE, ``COPY ... (FORMAT binary,
  FREEZE)`` of the files, secondary indexes: the restore baseline;
- restore-backup: verify (SHA-256 of every file), load into a shadow schema, count,
  swap with the live tables.

Run: ``.venv/bin/python bench/bench_backup.py [--checkpoints 100000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
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
CLK_TCK = os.sysconf("SC_CLK_TCK")
OLD_SCHEMAS_SQL = (
    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'langgraph\\_migrator\\_old\\_%'"
)


# ------------------------------------------------------------------ children


def _backup_module(spec: dict[str, Any]) -> Any:
    if not spec.get("module"):
        from migrator import backup

        return backup
    loader = importlib.util.spec_from_file_location("bench_compared_backup", spec["module"])
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    sys.modules[loader.name] = module  # dataclasses look their module up
    loader.loader.exec_module(module)
    return module


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    op, dsn, work = spec["op"], spec["dsn"], Path(spec["work"])
    backup = _backup_module(spec)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if op == "raw-out-psycopg":
        out = work / spec["out"]
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
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE SCHEMA raw_load")
            conn.execute("SET search_path TO raw_load")
            for t in manifest.checkpoint_tables():
                conn.execute(t.ddl[0])
                query = sql.SQL("COPY {} FROM STDIN (FORMAT binary, FREEZE)").format(
                    sql.Identifier(t.name)
                )
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
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    return {"seconds": seconds, "client_cpu": cpu, "maxrss_kb": _peak_rss_kb()}


def _peak_rss_kb() -> int:
    # VmHWM, not ru_maxrss: ru_maxrss survives execve, so a child would report its
    # parent's peak from before the fork.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# -------------------------------------------------------------------- parent


def _server_cpu(postmaster: int | None) -> float:
    """CPU seconds of the postmaster, its live processes and those it has reaped."""
    if postmaster is None:
        return 0.0
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile: its time is in the postmaster's cutime now
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def _run_child(spec: dict[str, Any], postmaster: int | None) -> dict[str, Any]:
    server0 = _server_cpu(postmaster)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"{spec['op']} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    # Includes the child's connect and exit: a few ms next to seconds of COPY.
    result["server_cpu"] = _server_cpu(postmaster) - server0
    return result


def _raw_out_psql(bin_dir: Path, dsn: str, out: Path, postmaster: int | None) -> dict[str, Any]:
    out.mkdir()
    psql = str(bin_dir / "psql")
    server0 = _server_cpu(postmaster)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for table in TABLES:
        command = f"\\copy {table} TO '{out / table}' (FORMAT binary)"
        subprocess.run([psql, "-X", "-q", "-d", dsn, "-c", command], check=True)
    seconds = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "seconds": seconds,
        "client_cpu": cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime,
        "server_cpu": _server_cpu(postmaster) - server0,
        "maxrss_kb": None,  # a C client: not ours to measure
    }


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.name != "manifest.json")


def _cleanup(dsn: str, work: Path, out: str | None) -> None:
    """Drop what an operation left (untimed): its files, kept old tables, raw_load."""
    if out:
        shutil.rmtree(work / out, ignore_errors=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        schemas = [r[0] for r in conn.execute(OLD_SCHEMAS_SQL).fetchall()] + ["raw_load"]
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _operations(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    ops: list[tuple[str, dict[str, Any]]] = [
        ("raw COPY TO (psql)", {"op": "raw-out-psql", "out": "out"}),
        ("raw COPY TO (psycopg)", {"op": "raw-out-psycopg", "out": "out"}),
        ("backup --jobs 1", {"op": "backup", "out": "out", "jobs": 1}),
        ("backup --jobs 2", {"op": "backup", "out": "out", "jobs": 2}),
        ("backup --jobs 1 --compress", {"op": "backup", "out": "out", "jobs": 1, "compress": True}),
        ("raw COPY FROM (psycopg)", {"op": "raw-in-psycopg", "src": "src"}),
        ("restore-backup (swap)", {"op": "restore", "src": "src"}),
    ]
    if args.compare_with:
        module = str(args.compare_with.resolve())
        ops.insert(
            3,
            (
                "backup --jobs 1 (compared)",
                {"op": "backup", "out": "out", "jobs": 1, "module": module},
            ),
        )
    if args.only:
        ops = [op for op in ops if op[0] in args.only.split(",")]
    return ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=100_000)
    parser.add_argument("--major", type=int, default=18)
    parser.add_argument("--rounds", type=int, default=3, help="median of this many rounds")
    parser.add_argument("--only", default="", help="comma-separated operation names (as printed)")
    parser.add_argument(
        "--compare-with", type=Path, default=None, help="an older backup.py to A/B against"
    )
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

    from migrator import backup
    from migrator.postgres import provision, scratch_database

    server = provision("local", args.major)
    try:
        with scratch_database(server) as dsn:
            print(
                f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
                f"Python {platform.python_version()}, PostgreSQL {server.major} (local cluster on "
                f"disk); {dt.date.today().isoformat()}; median of {args.rounds} rounds"
            )
            stats = generate(dsn, checkpoints=args.checkpoints, progress=lambda _: None)
            print(
                f"data: {stats.threads} threads, {stats.checkpoints} checkpoints, rows "
                + ", ".join(f"{k} {v}" for k, v in stats.rows.items())
                + f"; generated in {stats.seconds:.0f}s"
            )
            backup.create_backup(dsn, work / "src")  # what the restore rows load (untimed)
            data_bytes = _dir_bytes(work / "src")
            ops = _operations(args)
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in ops}
            base = {"dsn": dsn, "work": str(work)}
            for round_ in range(args.rounds):
                shift = round_ % len(ops)
                for name, spec in ops[shift:] + ops[:shift]:
                    if spec["op"] == "raw-out-psql":
                        assert server.bin_dir is not None
                        result = _raw_out_psql(server.bin_dir, dsn, work / "out", server.pid)
                    else:
                        result = _run_child({**base, **spec}, server.pid)
                    if spec.get("compress"):
                        result["bytes"] = _dir_bytes(work / "out")
                    runs[name].append(result)
                    _cleanup(dsn, work, spec.get("out"))
            _print_table(runs, data_bytes, stats.checkpoints)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _print_table(runs: dict[str, list[dict[str, Any]]], data_bytes: int, checkpoints: int) -> None:
    def median(name: str, key: str) -> float:
        return float(statistics.median(float(r[key]) for r in runs[name]))

    gz = [r["bytes"] for rs in runs.values() for r in rs if "bytes" in r]
    print(
        f"binary COPY data: {data_bytes / 2**20:.0f} MiB "
        f"({data_bytes / checkpoints / 1024:.1f} KB/checkpoint)"
        + (f"; --compress files: {gz[0] / 2**20:.0f} MiB" if gz else "")
    )
    raw_out = min((median(n, "seconds") for n in runs if n.startswith("raw COPY TO")), default=None)
    raw_in = next((median(n, "seconds") for n in runs if n.startswith("raw COPY FROM")), None)
    print(
        f"{'operation':<28} {'seconds':>8} {'(min-max)':>13} {'MiB/s':>6} {'vs raw':>7}"
        f" {'CPU client':>10} {'server':>7} {'peak RSS':>9}"
    )
    for name, results in runs.items():
        seconds = median(name, "seconds")
        baseline = raw_in if ("FROM" in name or "restore" in name) else raw_out
        ratio = f"{baseline / seconds:>6.2f}x" if baseline else f"{'-':>7}"
        spread = (
            f"({min(r['seconds'] for r in results):.1f}-{max(r['seconds'] for r in results):.1f})"
        )
        rss = [r["maxrss_kb"] for r in results if r["maxrss_kb"]]
        print(
            f"{name:<28} {seconds:>8.2f} {spread:>13} {data_bytes / 2**20 / seconds:>6.0f} {ratio}"
            f" {median(name, 'client_cpu'):>9.2f}s {median(name, 'server_cpu'):>6.2f}s "
            + (f"{max(rss) / 1024:>7.0f} MB" if rss else f"{'-':>9}")
        )
    print("vs raw: backup rows against the faster raw COPY TO row; restore against raw COPY FROM.")
    print("CPU: client = the operation's process (all threads); server = all server processes.")


if __name__ == "__main__":
    main()
