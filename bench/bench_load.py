"""Write latency of a live application while ``migrate`` runs, next to the same load without it.

A bounded pool of writers (``--writers``, default 8; loopback only: the
ephemeral server this script starts, or ``--server-dsn``) writes checkpoints
through the newest ``PostgresSaver`` (the tool's own langgraph), each to its own
new thread, paced at ``--rate`` puts per second per writer. Every ``put()`` is
timed; a failed put is counted with its error. Three phases, one run:

1. **baseline**: the load alone for ``--baseline`` seconds, on the in-place database.
2. **in place**: ``migrate`` of a 1.0.0-era database (``bench/generate.py`` rows,
   reshaped to the 1.0.0 schema: no ledger, no thread_id indexes, no
   ``task_path``, ``blob NOT NULL``) to the current version, so ``setup()``
   runs every statement, the three ``CREATE INDEX CONCURRENTLY`` builds included.
3. **fallback**: ``migrate --from 1.0.0 --fallback dump-restore`` of a database
   seeded by real 1.0.0 canaries (the in-place result drifts, so the fallback
   runs: restore the backup, dump with 1.0.0, restore with current, swap). Writes
   acknowledged during it and missing from the live tables afterwards are
   counted: the fallback is not an online operation.

The writers use ``put()`` only: ``put_writes()`` of the new saver needs the
``task_path`` column, which a 1.0.0 database gets from ``setup()`` itself (the
rolling-deploy hazard the gate reports). The table prints p50/p99/max put
latency per phase, the number of failed puts, the number of puts that waited
longer than migrate's ``lock_timeout``, and the swap's blocking window as
``migrate`` reported it.

Below the table, per migrate phase, what the time went to: the puts slower than
the baseline's p99 grouped by the migrate step (its progress lines) they started
in; what the writers' sessions were seen waiting for (``pg_stat_activity``
polled every 20 ms: ``Lock`` waits name the blocking statement); and the CPU
seconds migrate and its workers used (``RUSAGE_CHILDREN``; the server's work
is not in it). ``--tool-nice N`` passes ``--nice N`` to migrate, to compare.

Run: ``.venv/bin/python bench/bench_load.py [--checkpoints 20000] [--writers 8]
[--rate 20] [--baseline 20] [--lock-timeout 5] [--skip-fallback]`` (``make bench-load``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import generate  # noqa: E402

from migrator import envs  # noqa: E402
from migrator.postgres import Server, connect_url, provision, scratch_database  # noqa: E402

SPEC_100 = "langgraph-checkpoint-postgres==1.0.0"
CLI = [sys.executable, "-c", "from migrator.cli import main; main()"]
#: The 1.0.0 schema: what ``setup()`` of the target then has to build.
TO_1_0_0_SQL = (
    "DROP TABLE IF EXISTS checkpoint_migrations",
    "DROP INDEX IF EXISTS checkpoints_thread_id_idx",
    "DROP INDEX IF EXISTS checkpoint_blobs_thread_id_idx",
    "DROP INDEX IF EXISTS checkpoint_writes_thread_id_idx",
    "ALTER TABLE checkpoint_writes DROP COLUMN IF EXISTS task_path",
    "DELETE FROM checkpoint_blobs WHERE blob IS NULL",
    "ALTER TABLE checkpoint_blobs ALTER COLUMN blob SET NOT NULL",
    "VACUUM ANALYZE",
)
PRESENT_SQL = "SELECT checkpoint_id FROM checkpoints WHERE checkpoint_id = ANY(%s)"
SWAP_RE = re.compile(r"swap: .*")
#: The writers' sessions that are waiting for something right now, and who blocks them.
WAITING_SQL = """
SELECT a.wait_event_type, a.wait_event, extract(epoch FROM now() - a.query_start) AS waited,
       (SELECT string_agg(coalesce(b.application_name, '') || ': ' || left(b.query, 60), ' | ')
        FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(a.pid))) AS blockers
FROM pg_stat_activity a
WHERE a.application_name = 'bench-load-writer' AND a.state = 'active'
  AND a.wait_event_type IS NOT NULL AND a.wait_event_type <> 'Client'
"""


class JsonBlobSerde(JsonPlusSerializer):
    """Blobs as ``json`` (which langgraph 0.2 reads too), not ``msgpack`` (which it cannot):
    the writers of the fallback phase, whose threads the 1.0.0 dump has to read."""

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return "json", json.dumps(obj).encode()


@dataclass
class Sample:
    started: float  # time.monotonic() at the start of the put
    seconds: float
    checkpoint_id: str
    error: str | None = None


@dataclass
class Load:
    """The writer pool: start it, stop it, read its samples."""

    dsn: str
    writers: int
    rate: float
    serde: str = "msgpack"
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._stop.clear()
        run = uuid.uuid4().hex[:8]
        self._threads = [
            threading.Thread(target=self._write, args=(f"load-{run}-{w}",), daemon=True)
            for w in range(self.writers)
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _connect(self) -> tuple[psycopg.Connection[Any], PostgresSaver]:
        conn = psycopg.connect(
            self.dsn, autocommit=True, row_factory=dict_row, application_name="bench-load-writer"
        )
        serde = JsonBlobSerde() if self.serde == "json" else None
        return conn, PostgresSaver(conn, serde=serde)  # type: ignore[arg-type]

    def _write(self, thread_id: str) -> None:
        conn, saver = self._connect()
        interval = 1.0 / self.rate
        tick = time.monotonic()
        parent: str | None = None
        version: Any = None
        n = 0
        try:
            while not self._stop.is_set():
                version = saver.get_next_version(version, None)
                cp = empty_checkpoint()
                # Lists, not primitives: every value goes to checkpoint_blobs (the new saver
                # inlines primitives in the checkpoint, where langgraph 0.2 does not look).
                cp["channel_values"] = {"messages": [f"turn {n} " + "x" * 200], "count": [n]}
                cp["channel_versions"] = {"messages": version, "count": version}
                config: dict[str, Any] = {
                    "configurable": {"thread_id": thread_id, "checkpoint_ns": ""}
                }
                if parent:
                    config["configurable"]["checkpoint_id"] = parent
                t0 = time.monotonic()
                error = None
                try:
                    saver.put(
                        config,  # type: ignore[arg-type]
                        cp,
                        {"source": "loop", "step": n, "parents": {}},  # type: ignore[typeddict-item]
                        {"messages": version, "count": version},
                    )
                    parent = cp["id"]
                except Exception as exc:  # noqa: BLE001 - an application write failed: count it
                    error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    try:
                        conn.close()
                    finally:
                        conn, saver = self._connect()
                with self._lock:
                    self.samples.append(
                        Sample(t0, time.monotonic() - t0, cp["id"] if not error else "", error)
                    )
                n += 1
                tick += interval
                delay = tick - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    tick = time.monotonic()  # behind: do not burst to catch up
        finally:
            conn.close()

    def window(self, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.started <= end]


@dataclass
class Sampler:
    """Polls ``pg_stat_activity`` for the writers' sessions that wait (lock, I/O, LWLock).

    One autocommit connection, one query per ``interval``; the writers' own
    latency is what the table measures, this only says what they waited for.
    """

    dsn: str
    interval: float = 0.02
    waits: dict[str, int] = field(default_factory=dict)
    lock_blockers: dict[str, int] = field(default_factory=dict)
    longest_lock_wait: float = 0.0
    polls: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _poll(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, application_name="bench-load-sampler") as c:
            while not self._stop.wait(self.interval):
                self.polls += 1
                for kind, event, waited, blockers in c.execute(WAITING_SQL).fetchall():
                    key = f"{kind}:{event}"
                    self.waits[key] = self.waits.get(key, 0) + 1
                    if kind == "Lock":
                        self.longest_lock_wait = max(self.longest_lock_wait, float(waited or 0))
                        who = blockers or "?"
                        self.lock_blockers[who] = self.lock_blockers.get(who, 0) + 1

    def summary(self) -> str:
        if not self.waits:
            return f"no writer seen waiting in {self.polls} polls"
        top = sorted(self.waits.items(), key=lambda kv: -kv[1])[:4]
        text = f"writers seen waiting in {self.polls} polls: " + ", ".join(
            f"{k} x{n}" for k, n in top
        )
        if self.lock_blockers:
            text += f"; longest lock wait seen {self.longest_lock_wait * 1000:.0f} ms, behind " + (
                "; ".join(
                    f"[{k}] x{n}"
                    for k, n in sorted(self.lock_blockers.items(), key=lambda kv: -kv[1])[:3]
                )
            )
        return text


@dataclass
class Phase:
    name: str
    seconds: float
    samples: list[Sample]
    exit_code: int | None = None
    lost: int | None = None
    swap: list[str] = field(default_factory=list)
    started: float = 0.0
    lost_window: tuple[float, float] | None = None
    #: (seconds after start, message) of migrate's progress lines: its phases.
    steps: list[tuple[float, str]] = field(default_factory=list)
    sampler: Sampler | None = None
    cpu: float | None = None  # CPU seconds of migrate and its workers (RUSAGE_CHILDREN)

    def slow_by_step(self, threshold: float) -> list[tuple[str, int, float]]:
        """Puts slower than ``threshold``, grouped by the migrate step they started in."""
        groups: dict[str, tuple[int, float]] = {}
        for s in self.samples:
            if s.error is not None or s.seconds <= threshold:
                continue
            at = s.started - self.started
            name = "CLI start-up"
            for when, message in self.steps:
                if when <= at:
                    name = message
            name = re.sub(r" (of|on|into) .*", "", name)[:48]
            n, worst = groups.get(name, (0, 0.0))
            groups[name] = (n + 1, max(worst, s.seconds))
        return sorted(((k, n, w) for k, (n, w) in groups.items()), key=lambda g: -g[1])

    def row(self, lock_timeout: float) -> str:
        ok = sorted(s.seconds for s in self.samples if s.error is None)
        failed = [s for s in self.samples if s.error is not None]
        waited = sum(1 for s in self.samples if s.seconds > lock_timeout)
        p50 = statistics.median(ok) * 1000 if ok else float("nan")
        p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))] * 1000 if ok else float("nan")
        worst = ok[-1] * 1000 if ok else float("nan")
        code = "-" if self.exit_code is None else str(self.exit_code)
        lost = "-" if self.lost is None else str(self.lost)
        return (
            f"{self.name:<22} {self.seconds:6.1f} {code:>4} {len(self.samples):6d} {len(failed):6d}"
            f" {p50:8.1f} {p99:8.1f} {worst:8.1f} {waited:6d} {lost:>5}"
        )


HEADER = (
    f"{'phase':<22} {'secs':>6} {'exit':>4} {'puts':>6} {'failed':>6}"
    f" {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'>lt':>6} {'lost':>5}"
)


def _cli_under_load(load: Load, args: list[str], cwd: Path) -> tuple[Phase, list[str]]:
    """Run the CLI while ``load`` writes; returns the phase and the CLI's output lines."""
    lines: list[str] = []
    steps: list[tuple[float, str]] = []
    load.start()
    sampler = Sampler(load.dsn)
    time.sleep(2.0)  # the writers are warm before migrate starts
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.start()
    start = time.monotonic()
    proc = subprocess.Popen(
        [*CLI, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        at = time.monotonic() - start
        lines.append(f"{at:7.2f}s {line.rstrip()}")
        if line.startswith("… "):
            steps.append((at, line[2:].strip()))
    code = proc.wait()
    end = time.monotonic()
    sampler.stop()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    time.sleep(2.0)
    load.stop()
    phase = Phase("", end - start, load.window(start, end), exit_code=code, started=start)
    phase.steps, phase.sampler, phase.cpu = steps, sampler, cpu
    return phase, lines


def _migrate_args(
    dsn: str, server: Server, work: Path, lock_timeout: float, nice: int | None = None
) -> list[str]:
    return [
        "migrate",
        "--dsn",
        dsn,
        "--scratch-dsn",
        server.dsn,
        "--backup-dir",
        str(work / f"backups-{uuid.uuid4().hex[:6]}"),
        "--lock-timeout",
        f"{lock_timeout:g}",
        *([] if nice is None else ["--nice", str(nice)]),
        "--fallback",
        "none",
    ]


def _era_1_0_0(dsn: str, checkpoints: int) -> None:
    generate(dsn, checkpoints=checkpoints, kb=4.0, progress=lambda _m: None)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in TO_1_0_0_SQL:
            conn.execute(statement)


def _lost(dsn: str, samples: list[Sample]) -> list[Sample]:
    """Acknowledged puts whose checkpoint is not in the live tables."""
    acked = [s for s in samples if s.error is None]
    with psycopg.connect(dsn, autocommit=True) as conn:
        present = {r[0] for r in conn.execute(PRESENT_SQL, ([s.checkpoint_id for s in acked],))}
    return [s for s in acked if s.checkpoint_id not in present]


def _in_place(server: Server, args: argparse.Namespace, work: Path) -> list[Phase]:
    with scratch_database(server) as dsn:
        t0 = time.monotonic()
        _era_1_0_0(dsn, args.checkpoints)
        print(f"in-place database: {args.checkpoints} checkpoints, 1.0.0 schema, "
              f"{time.monotonic() - t0:.0f}s to generate", flush=True)  # fmt: skip
        load = Load(dsn, args.writers, args.rate)
        load.start()
        start = time.monotonic()
        time.sleep(args.baseline)
        end = time.monotonic()
        load.stop()
        baseline = Phase("baseline (no migrate)", end - start, load.window(start, end))
        phase, lines = _cli_under_load(
            load, _migrate_args(dsn, server, work, args.lock_timeout, args.tool_nice), work
        )
        phase.name = "migrate in place"
        if phase.exit_code != 0 or args.verbose:
            print("\n".join(lines[-40:]))
        phase.lost = len(_lost(dsn, load.samples))
        return [baseline, phase]


def _fallback(server: Server, args: argparse.Namespace, work: Path) -> Phase:
    old = envs.ensure_env(envs.parse_version_set(SPEC_100))
    with scratch_database(server) as dsn:
        envs.run_worker(old, "setup", {"dsn": dsn}, timeout=300)
        seeded = subprocess.run(
            [*CLI, "canary", "seed", "--dsn", dsn, "--with", SPEC_100, "-q"],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        if seeded.returncode != 0:
            raise SystemExit(f"canary seed failed: {seeded.stdout[-2000:]}{seeded.stderr[-2000:]}")
        load = Load(dsn, args.writers, args.rate, serde=args.fallback_serde)
        migrate = _migrate_args(dsn, server, work, args.lock_timeout, args.tool_nice)
        migrate[-1] = "dump-restore"
        phase, lines = _cli_under_load(load, [*migrate, "--from", SPEC_100], work)
        phase.name = "migrate --fallback"
        phase.swap = [line for line in lines if SWAP_RE.search(line)]
        if phase.exit_code != 0 or args.verbose:
            print("\n".join(lines[-60:]))
        lost = _lost(dsn, load.samples)
        phase.lost = len(lost)
        if lost:
            times = [s.started - phase.started for s in lost]
            phase.lost_window = (min(times), max(times))
        return phase


@contextmanager
def _server(dsn: str | None) -> Iterator[Server]:
    if dsn:
        yield connect_url(dsn)
        return
    server = provision("local")
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=20_000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=20.0, help="puts per second per writer")
    parser.add_argument("--baseline", type=float, default=20.0, help="seconds of load alone")
    parser.add_argument("--lock-timeout", type=float, default=5.0)
    parser.add_argument("--server-dsn", help="an existing (loopback) server to create DBs on")
    parser.add_argument("--skip-fallback", action="store_true")
    parser.add_argument(
        "--fallback-serde",
        choices=("json", "msgpack"),
        default="json",
        help="blob format of the writers in the fallback phase (msgpack: the new default, "
        "which the 1.0.0 dump cannot read)",
    )
    parser.add_argument(
        "--tool-nice",
        type=int,
        help="pass --nice N to migrate (default: migrate's own default), to compare",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print migrate's output")
    args = parser.parse_args()
    started = time.monotonic()
    print(
        f"machine: {os.cpu_count()} cores; {args.writers} writers x {args.rate:g} puts/s "
        f"(newest PostgresSaver, put() to their own threads); lock_timeout {args.lock_timeout:g}s"
    )
    with _server(args.server_dsn) as server, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        phases = _in_place(server, args, work)
        if not args.skip_fallback:
            phases.append(_fallback(server, args, work))
    print(f"Postgres {server.major}; '>lt' = puts slower than lock_timeout; "
          "'lost' = acknowledged puts missing from the live tables afterwards")  # fmt: skip
    print(HEADER)
    for phase in phases:
        print(phase.row(args.lock_timeout))
    base = phases[0]
    ok_base = sorted(s.seconds for s in base.samples if s.error is None)
    for phase in phases[1:]:
        ok = sorted(s.seconds for s in phase.samples if s.error is None)
        if ok and ok_base:
            base_p99 = ok_base[int(len(ok_base) * 0.99)]
            ratio = ok[int(len(ok) * 0.99)] / base_p99
            print(f"{phase.name}: p99 {ratio:.2f}x baseline")
            slow = phase.slow_by_step(base_p99)
            if slow:
                total = sum(n for _, n, _ in slow)
                print(
                    f"  {phase.name}: {total} of {len(ok)} puts ({100 * total / len(ok):.1f} %;"
                    f" baseline 1 %) slower than the baseline p99 ({base_p99 * 1000:.1f} ms),"
                    " by migrate step: "
                    + "; ".join(f"{name} {n} (max {w * 1000:.0f} ms)" for name, n, w in slow[:6])
                )
        if phase.sampler is not None:
            print(f"  {phase.name}: {phase.sampler.summary()}")
        if phase.cpu is not None:
            print(f"  {phase.name}: migrate and its workers used {phase.cpu:.1f}s of CPU")
        errors = sorted({s.error for s in phase.samples if s.error})
        for error in errors[:5]:
            print(f"  {phase.name} failed put: {error}")
        for line in phase.swap:
            print(f"  {phase.name} {line.strip()}")
        if phase.lost_window:
            first, last = phase.lost_window
            print(
                f"  {phase.name}: {phase.lost} acknowledged puts lost, made between "
                f"{first:.1f}s and {last:.1f}s after migrate started (kept in the old schemas)"
            )
    print(f"total {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
