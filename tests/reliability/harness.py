"""Drive the CLI into a fault and look at what it left: pauses, kills, checksums, processes.

A run started by :func:`start` carries a tag in its environment (its workers,
and any server it starts, inherit it), so :func:`strays` finds whatever outlived
it. Pauses use :mod:`migrator.worker.faults`: the run stops at a named point and
waits while the test kills it, restarts the server or ends its connection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from migrator.postgres.local import process_alive
from migrator.worker.faults import PAUSE_AT_ENV, PAUSE_FILE_ENV

TAG_ENV = "LGM_RELIABILITY_TAG"
DATA_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
CLI = [sys.executable, "-c", "from migrator.cli import main; main()"]

COLUMNS_SQL = (
    "SELECT column_name FROM information_schema.columns"
    " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position"
)


@dataclass
class Run:
    """A CLI process started by :func:`start`."""

    proc: subprocess.Popen[str]
    tag: str
    pause_file: Path
    log: Path
    paused: list[str] = field(default_factory=list)

    def wait_pause(
        self, where: str | None = None, timeout: float = 300.0, *, where_prefix: str | None = None
    ) -> tuple[int, str]:
        """Wait until a process of this run pauses; returns (pid, point).

        With ``where`` (a database name), pauses elsewhere (the plan's rehearsal
        on a scratch database) are let go; with ``where_prefix``, pauses whose
        place does not start with it (a swap of another shadow schema).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pause_file.exists():
                pid, name, *at = self.pause_file.read_text().split(" ")
                if (where is not None and at and at[0] != where) or (
                    where_prefix is not None and not (at and at[0].startswith(where_prefix))
                ):
                    self.release()
                    continue
                self.paused.append(name)
                return int(pid), name
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"exited {self.proc.returncode} before pausing:\n{self.output()[-4000:]}"
                )
            time.sleep(0.02)
        raise AssertionError(f"no pause within {timeout}s:\n{self.output()[-4000:]}")

    def release(self) -> None:
        """Let the paused process go on."""
        self.pause_file.unlink()

    def kill9(self) -> None:
        """``kill -9`` of the tool's own process (not its process group): what an OOM kill does."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def finish(self, timeout: float = 600.0) -> int:
        """Wait for the run to end, releasing any pause; returns the exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if self.pause_file.exists():
                self.paused.append(self.pause_file.read_text().split(" ")[1])
                self.release()
            time.sleep(0.02)
        return self.proc.wait(timeout=5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start(args: list[str], cwd: Path, *, pause_at: str | None = None) -> Run:
    """Start ``langgraph-migrator ARGS`` with a tag and (optionally) armed pause points."""
    tag = uuid.uuid4().hex
    pause_file = cwd / f"pause-{tag[:8]}"
    log = cwd / f"run-{tag[:8]}.log"
    env = {**os.environ, TAG_ENV: tag}
    env.pop(PAUSE_AT_ENV, None)
    if pause_at:
        env[PAUSE_AT_ENV] = pause_at
        env[PAUSE_FILE_ENV] = str(pause_file)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*CLI, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
            env=env,
        )
    return Run(proc, tag, pause_file, log)


def cli(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The CLI run to its end, untagged and unpaused."""
    env = {k: v for k, v in os.environ.items() if k not in (PAUSE_AT_ENV, PAUSE_FILE_ENV)}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def tagged(tag: str) -> list[int]:
    """Live processes whose environment carries this run's tag."""
    found = []
    needle = f"{TAG_ENV}={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def strays(run: Run, grace: float = 10.0) -> list[str]:
    """What still runs of ``run`` after ``grace`` seconds: ``pid cmdline`` lines."""
    deadline = time.monotonic() + grace
    while tagged(run.tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = []
    for pid in tagged(run.tag):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        lines.append(f"{pid} {cmd[:200]}")
    return lines


def reap(run: Run) -> None:
    """Kill whatever of ``run`` is left (after the assertion that found it)."""
    for pid in tagged(run.tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ----------------------------------------------------------------- database state


def columns(dsn: str, table: str, schema: str = "public") -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute(COLUMNS_SQL, (schema, table)).fetchall()]


def checksums(dsn: str, cols: dict[str, list[str]] | None = None) -> dict[str, str]:
    """md5 of each checkpoint table's rows (of ``cols[table]`` columns, default all), sorted."""
    out: dict[str, str] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in DATA_TABLES:
            names = (cols or {}).get(table) or [
                r[0] for r in conn.execute(COLUMNS_SQL, ("public", table)).fetchall()
            ]
            row_sql = sql.SQL("md5(row({})::text)").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in names)
            )
            query = sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(h, ',' ORDER BY h)), '') "
                "FROM (SELECT {} AS h FROM {}) t"
            ).format(row_sql, sql.Identifier("public", table))
            n, digest = conn.execute(query).fetchone()  # type: ignore[misc]
            out[table] = f"{n}:{digest}"
    return out


def data_columns(dsn: str) -> dict[str, list[str]]:
    return {t: columns(dsn, t) for t in DATA_TABLES}


SCHEMA_SQL = """
SELECT c.relname, c.relkind::text,
       coalesce((SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod)
                 || ':' || a.attnotnull || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
                 ',' ORDER BY a.attnum)
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), ''),
       coalesce((SELECT i.indisvalid::text || ' ' || pg_get_indexdef(i.indexrelid)
        FROM pg_index i WHERE i.indexrelid = c.oid), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'i', 'p')
ORDER BY 1
"""
SCHEMAS_SQL = (
    "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'"
    " AND nspname <> 'information_schema' ORDER BY 1"
)


def schema_state(dsn: str) -> dict[str, Any]:
    """The checkpoint schema's tables/columns/indexes (validity included), the
    checkpoint ledger and the names of the other schemas, timestamps folded."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        public = [tuple(r) for r in conn.execute(SCHEMA_SQL, ("public",)).fetchall()]
        ledger = None
        if conn.execute("SELECT to_regclass('public.checkpoint_migrations')").fetchone()[0]:  # type: ignore[index]
            ledger = [r[0] for r in conn.execute("SELECT v FROM checkpoint_migrations ORDER BY v")]
        schemas = [r[0] for r in conn.execute(SCHEMAS_SQL)]
    folded = sorted(_fold(s) for s in schemas)
    return {"public": public, "ledger": ledger, "schemas": folded}


def _fold(schema: str) -> str:
    """``langgraph_migrator_old_20261204_...`` -> ``langgraph_migrator_old_*``."""
    head, sep, _ = schema.partition("_2")
    return head + "_*" if sep and schema[len(head) + 1 : len(head) + 4].isdigit() else schema


def runs(dsn: str) -> list[tuple[str, str]]:
    """(command, verdict) of each run in the tool ledger, oldest first."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('langgraph_migrator.runs')").fetchone()[0]:  # type: ignore[index]
            return []
        return [
            (r[0], r[1])
            for r in conn.execute(
                "SELECT command, verdict FROM langgraph_migrator.runs ORDER BY id"
            )
        ]
