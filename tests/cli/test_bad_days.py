"""Issue 12 B-D: bad inputs and bad days through ``migrator.cli.main``.

Each case asserts the exit code, a one-line message, that no password shows and
that nothing changed in the database (its catalog and every table's rows).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrator import fixtures

pytestmark = [pytest.mark.timeout(600)]

FIXTURE = Path(__file__).resolve().parents[2] / "canary_fixtures" / "3.0.1"
SECRET = "s3cret-Pw-1234"

CATALOG_SQL = """
    SELECT n.nspname, c.relname, c.relkind,
           coalesce(string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod),
                               ',' ORDER BY a.attnum), '')
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
    GROUP BY 1, 2, 3 ORDER BY 1, 2
"""
ROWS_SQL = "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"


def db_state(dsn: str) -> dict[str, Any]:
    """The catalog (schemas, relations, columns) and a checksum of every table's rows."""
    state: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema, name, kind, columns in conn.execute(CATALOG_SQL).fetchall():
            entry: Any = (kind, columns)
            if kind in ("r", "p"):
                query = sql.SQL(ROWS_SQL).format(sql.Identifier(schema, name))
                entry = (kind, columns, tuple(conn.execute(query).fetchone() or ()))
            state[f"{schema}.{name}"] = entry
    return state


def with_password(dsn: str) -> str:
    """``dsn`` with a password the server ignores (trust auth), to check it never shows."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["password"] = SECRET
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed (progress lines start with '…')."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("…")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    return lines[0]


@pytest.fixture
def loaded(pg_default: Any) -> Any:
    """A fresh database holding the 3.0.1 fixture's checkpoint tables."""
    from migrator.postgres import scratch_database

    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, FIXTURE)
        yield dsn


# ----------------------------------------------------------------- 11: --raiseerr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["backup", "--dsn", f"postgresql://u:{SECRET}@127.0.0.1:1/db", "--out", "{tmp}/b"], 3),
        (["upgrade-check", "--from", "langgraph-checkpoint-postgres==9.9.9", "--pg", "x"], 2),
    ],
    ids=["environment", "usage"],
)
def test_raiseerr_never_changes_the_exit_code(tmp_path: Path, args: list[str], code: int) -> None:
    """Issue 12 #11: --raiseerr adds a traceback, never another exit code."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    plain = run_cli(*argv)
    traced = run_cli("--raiseerr", *argv)
    assert plain.returncode == traced.returncode == code, (plain.stderr, traced.stderr)
    error_line(plain)
    assert "Traceback" in traced.stderr or code == 2
    assert traced.stderr.strip().splitlines()[-1] == plain.stderr.strip().splitlines()[-1]
    assert SECRET not in traced.stderr + traced.stdout
    assert not (tmp_path / "b").exists()


# ------------------------------------------------- 6, 8, 9: canaries and the ledger


@pytest.fixture(scope="module")
def seeded_template(pg_default: Any) -> Any:
    """A database set up by the current version with the built-in canaries seeded."""
    from migrator import envs
    from migrator.postgres import scratch_database

    env = envs.ensure_env(envs.parse_version_set("current"))
    with scratch_database(pg_default) as dsn:
        envs.run_worker(env, "setup", {"dsn": dsn}, timeout=300)
        proc = run_cli("canary", "seed", "--dsn", dsn, "--with", "current", "-q")
        assert proc.returncode == 0, proc.stderr
        yield dsn


@pytest.fixture
def seeded(pg_default: Any, seeded_template: str) -> Any:
    """A fresh copy of ``seeded_template``."""
    import uuid

    from migrator.postgres.dsn import with_dbname

    name = f"test_{uuid.uuid4().hex}"
    template = psycopg.conninfo.conninfo_to_dict(seeded_template)["dbname"]
    with psycopg.connect(pg_default.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(str(template))
            )
        )
    try:
        yield with_dbname(pg_default.dsn, name)
    finally:
        with psycopg.connect(pg_default.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _execute(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """An app checkout with canary modules that fail in each way."""
    (tmp_path / "broken_canaries.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "empty_canaries.py").write_text("OTHER = []\n")
    return tmp_path


BAD_CANARIES = ["no_such_module:CANARIES", "empty_canaries:CANARIES", "broken_canaries:CANARIES"]


@pytest.mark.slow
@pytest.mark.parametrize("spec", BAD_CANARIES, ids=["missing-module", "no-attribute", "raises"])
def test_reseed_with_canaries_that_do_not_load_deletes_nothing(
    seeded: str, app_dir: Path, spec: str
) -> None:
    """Issue 12 #6: the canaries load (and seed) before the old canary threads go."""
    before = db_state(seeded)
    proc = run_cli(
        "canary", "seed", "--dsn", with_password(seeded), "--with", "current",
        "--reseed", "--canaries", spec, "-q", cwd=app_dir,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "canaries could not be loaded" in error_line(proc)
    assert db_state(seeded) == before


@pytest.mark.slow
def test_reseed_with_a_damaged_ledger_deletes_nothing(seeded: str) -> None:
    """Issue 12 #6 and #8: a damaged ledger is found before anything is deleted."""
    _execute(seeded, "ALTER TABLE langgraph_migrator.goldens DROP COLUMN versions")
    before = db_state(seeded)
    proc = run_cli(
        "canary", "seed", "--dsn", with_password(seeded), "--with", "current", "--reseed", "-q"
    )
    assert proc.returncode == 3, proc.stderr
    line = error_line(proc)
    assert "the ledger is damaged" in line and "goldens.versions" in line
    assert "Hint:" in line and "RENAME TO" in line
    assert db_state(seeded) == before


@pytest.mark.slow
def test_reseed_replaces_the_canaries_in_one_transaction(seeded: str) -> None:
    """Issue 12 #6: the new canary rows come in with the old ones' delete; no shadow stays."""
    before = db_state(seeded)
    proc = run_cli("canary", "seed", "--dsn", seeded, "--with", "current", "--reseed", "-q")
    assert proc.returncode == 0, proc.stderr
    after = db_state(seeded)
    assert after.keys() == before.keys()  # no seeding schema left behind
    for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
        assert after[f"public.{table}"][2][0] == before[f"public.{table}"][2][0]
    proc = run_cli("verify", "--dsn", seeded, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage",
    [
        "ALTER TABLE langgraph_migrator.goldens DROP COLUMN snapshot",
        "ALTER TABLE langgraph_migrator.canaries DROP COLUMN user_canaries",
        "ALTER TABLE langgraph_migrator.migrator_ledger_version RENAME COLUMN version_num TO v",
    ],
    ids=["golden-column", "canary-column", "version-table"],
)
def test_verify_with_a_damaged_ledger_exits_3_with_the_fix(seeded: str, damage: str) -> None:
    """Issue 12 #8: not exit 70 with UndefinedColumn."""
    _execute(seeded, damage)
    before = db_state(seeded)
    proc = run_cli("verify", "--dsn", with_password(seeded), "-q")
    assert proc.returncode == 3, proc.stderr
    line = error_line(proc)
    assert "the ledger is damaged" in line and "Hint:" in line and "--reseed" in line
    assert "Traceback" not in proc.stderr
    assert db_state(seeded) == before


@pytest.mark.slow
@pytest.mark.parametrize("spec", BAD_CANARIES, ids=["missing-module", "no-attribute", "raises"])
def test_verify_with_canaries_that_do_not_load_exits_2_without_drift(
    seeded: str, app_dir: Path, spec: str
) -> None:
    """Issue 12 #9: a configuration error, not 20 breaking differences."""
    before = db_state(seeded)
    proc = run_cli("verify", "--dsn", with_password(seeded), "--canaries", spec, "-q", cwd=app_dir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "canaries could not be loaded" in error_line(proc)
    assert "breaking" not in proc.stdout
    assert db_state(seeded) == before


# ------------------------------------------------------------- 16: read-only session


@pytest.fixture
def set_up(pg_default: Any) -> Any:
    """A fresh database with the current version's checkpoint tables and no ledger."""
    from migrator import envs
    from migrator.postgres import scratch_database

    env = envs.ensure_env(envs.parse_version_set("current"))
    with scratch_database(pg_default) as dsn:
        envs.run_worker(env, "setup", {"dsn": dsn}, timeout=300)
        yield dsn


@pytest.mark.slow
def test_a_read_only_session_is_told_so(set_up: str) -> None:
    """Issue 12 #16: not "the role needs CREATE on the database"."""
    before = db_state(set_up)
    read_only = psycopg.conninfo.make_conninfo(
        with_password(set_up), options="-c default_transaction_read_only=on"
    )
    proc = run_cli("canary", "seed", "--dsn", read_only, "--with", "current", "-q")
    assert proc.returncode == 3, proc.stderr
    line = error_line(proc)
    assert "read-only" in line.partition("Hint:")[2], line
    assert "needs CREATE" not in line
    assert db_state(set_up) == before


# ------------------------------------------------------ 10: broken requirements file


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("garbage line here\n", "reqs.txt line 3: 'garbage line here' is not a requirement"),
        ("-r missing.txt\n", "reqs.txt line 3: -r missing.txt: no such file"),
    ],
    ids=["garbage", "missing-include"],
)
def test_a_broken_requirements_file_exits_2_naming_the_line(
    loaded: str, tmp_path: Path, extra: str, fragment: str
) -> None:
    """Issue 12 #10: not accepted silently (another langgraph got installed)."""
    reqs = tmp_path / "reqs.txt"
    reqs.write_text("langgraph-checkpoint-postgres==2.0.25\nlanggraph==0.6.9\n" + extra)
    before = db_state(loaded)
    proc = run_cli("canary", "seed", "--dsn", with_password(loaded), "--with", str(reqs), "-q")
    assert proc.returncode == 2, proc.stderr
    assert fragment in error_line(proc)
    assert db_state(loaded) == before


# ------------------------------------------------- 17: wrong type in the settings file


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('[tool.langgraph-migrator.backup]\njobs = "many"\n', "jobs = 'many'"),
        ("[tool.langgraph-migrator]\nwait = [1, 2]\n", "wait = [1, 2]"),
        ('[tool.langgraph-migrator.verify]\ntimeout = "soon"\n', "timeout = 'soon'"),
    ],
    ids=["command-table", "top-level", "float"],
)
def test_a_wrong_type_in_pyproject_names_the_file_and_key(
    loaded: str, tmp_path: Path, table: str, key: str
) -> None:
    """Issue 12 #17: not "Invalid value for '--timeout'" without saying where it came from."""
    (tmp_path / "pyproject.toml").write_text(table)
    before = db_state(loaded)
    proc = run_cli("backup", "--dsn", with_password(loaded), "--out", "b", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert "pyproject.toml" in line and key in line, line
    assert not (tmp_path / "b").exists()
    assert db_state(loaded) == before


# ------------------------------------------ 7: read-only path, full disk; 14; 15


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


@pytest.fixture
def bad_disks(tmp_path: Path) -> Any:
    """``(read_only, full)``: a read-only file system and an almost full one."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small or read-only file system needs root")
    read_only, full = tmp_path / "ro", tmp_path / "full"
    _mount_tmpfs(read_only, "ro,size=1m")
    try:
        _mount_tmpfs(full, "size=12k")
        try:
            yield read_only, full
        finally:
            subprocess.run(["umount", str(full)], check=False)
    finally:
        subprocess.run(["umount", str(read_only)], check=False)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("disk", ["read-only", "full"])
def test_backup_to_a_bad_disk_exits_3_and_leaves_nothing(
    loaded: str, bad_disks: Any, disk: str
) -> None:
    """Issue 12 #7: not exit 70 with a traceback."""
    root = bad_disks[0] if disk == "read-only" else bad_disks[1]
    before = db_state(loaded)
    proc = run_cli("backup", "--dsn", with_password(loaded), "--out", str(root / "b"), "-q")
    assert proc.returncode == 3, proc.stderr
    line = error_line(proc)
    reason = "read-only" if disk == "read-only" else "no space left"
    assert f"cannot write {root / 'b'}" in line and reason in line, line
    assert _files(root) == []
    assert db_state(loaded) == before


@pytest.mark.slow
@pytest.mark.parametrize("disk", ["read-only", "full"])
def test_dump_to_a_bad_disk_exits_3_and_leaves_no_partial_file(
    loaded: str, bad_disks: Any, disk: str
) -> None:
    """Issue 12 #7: a ``*.lgdump.partial`` stayed after a full disk."""
    root = bad_disks[0] if disk == "read-only" else bad_disks[1]
    out = root / "d.lgdump"
    before = db_state(loaded)
    proc = run_cli("dump", "--dsn", with_password(loaded), "--from", "current", "--out", str(out))
    assert proc.returncode == 3, proc.stderr
    line = error_line(proc)
    reason = "read-only" if disk == "read-only" else "no space left"
    assert f"cannot write {out}" in line and reason in line, line
    assert _files(root) == []
    assert db_state(loaded) == before


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["--json", "--junit"])
def test_verify_report_to_a_full_disk_exits_3(seeded: str, bad_disks: Any, fmt: str) -> None:
    """Issue 12 #7: report writing."""
    _, full = bad_disks
    with (full / "filler").open("wb", buffering=0) as filler:  # the disk is full now
        with contextlib.suppress(OSError):
            while True:
                filler.write(b"x" * 1024)
    before = db_state(seeded)
    report = full / "report.out"
    proc = run_cli("verify", "--dsn", with_password(seeded), fmt, str(report), "-q")
    assert proc.returncode == 3, proc.stderr
    line = error_line(proc)
    assert f"cannot write {report}" in line and "no space left" in line, line
    assert _files(full) == ["filler"]
    assert db_state(seeded) == before


@pytest.mark.parametrize("command", ["backup", "dump"])
def test_no_checkpoint_tables_is_the_same_exit_2_for_backup_and_dump(
    pg_default: Any, tmp_path: Path, command: str
) -> None:
    """Issue 12 #15: dump said exit 3 with a raw SQL error."""
    from migrator.postgres import scratch_database

    with scratch_database(pg_default) as empty:
        before = db_state(empty)
        out = ["--out", str(tmp_path / "b")]
        if command == "dump":
            out = ["--from", "current", "--out", str(tmp_path / "d.lgdump")]
        proc = run_cli(command, "--dsn", with_password(empty), *out, "-q")
        assert proc.returncode == 2, proc.stderr
        line = error_line(proc)
        assert "no checkpoint tables in" in line and "(searched:" in line, line
        assert "Hint: point --dsn at the database" in line
        assert _files(tmp_path) == []
        assert db_state(empty) == before


def test_backup_jobs_are_capped_by_the_threads_there_are(loaded: str, tmp_path: Path) -> None:
    """Issue 12 #14: ``backup --jobs 300`` used up the server's connections."""
    proc = run_cli("backup", "--dsn", loaded, "--out", str(tmp_path / "b"), "--jobs", "300")
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if "note: --jobs 300 lowered to" in ln]
    assert len(notes) == 1, proc.stderr
    manifest = (tmp_path / "b" / "manifest.json").read_text()
    import json

    jobs = json.loads(manifest)["jobs"]
    with psycopg.connect(loaded) as conn:
        threads = conn.execute("SELECT count(DISTINCT thread_id) FROM checkpoints").fetchone()
    assert threads is not None and jobs == threads[0] < 300


@pytest.mark.slow
def test_dump_jobs_are_capped_by_the_threads_there_are(loaded: str, tmp_path: Path) -> None:
    """Issue 12 #14: ``dump --jobs 16`` started 16 workers for 10 threads."""
    with psycopg.connect(loaded) as conn:
        row = conn.execute("SELECT count(DISTINCT thread_id) FROM checkpoints").fetchone()
    assert row is not None and row[0] < 16
    out = tmp_path / "d.lgdump"
    proc = run_cli("dump", "--dsn", loaded, "--from", "current", "--out", str(out), "--jobs", "16")
    assert proc.returncode == 0, proc.stderr
    assert f"note: --jobs 16 lowered to {row[0]}: there are only {row[0]} thread(s)" in (
        proc.stderr
    )
    import json

    parts = json.loads((tmp_path / "d.lgdump.manifest.json").read_text()).get("parts") or []
    assert len(parts) == row[0]


def test_jobs_are_capped_by_the_connections_the_server_can_spare() -> None:
    from migrator.postgres.capacity import Capacity, cap_jobs

    capacity = Capacity(max_connections=100, free=40, spare=30)
    assert cap_jobs(300, capacity=capacity)[0] == 30
    assert cap_jobs(300, capacity=capacity, per_job=2, work=1000)[0] == 15
    jobs, note = cap_jobs(8, capacity=capacity, work=3)
    assert jobs == 3 and note is not None and "only 3 thread(s)" in note
    assert cap_jobs(4, capacity=capacity, work=10) == (4, None)
    assert cap_jobs(4, capacity=Capacity(100, 0, 0))[0] == 1


# ------------------------------------------------- 12: interrupted restore-backup


BIG_BLOBS_SQL = (
    "INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)"
    " SELECT 'big', '', 'c', g::text, 'bytes', decode(repeat(md5(g::text), 64), 'hex')"
    " FROM generate_series(1, 60000) AS g"
)


@pytest.mark.parametrize("phase", ["loading", "swap"])
@pytest.mark.parametrize(
    ("sig", "code", "line"),
    [
        (signal.SIGINT, 130, "interrupted; nothing changed"),
        (signal.SIGTERM, 143, "terminated (SIGTERM): interrupted; nothing changed"),
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_interrupted_restore_backup_exits_130_or_143_and_changes_nothing(
    loaded: str, tmp_path: Path, sig: int, code: int, line: str, phase: str
) -> None:
    """Issue 12 #12: it said exit 3, "current transaction is aborted"."""
    from migrator import backup

    if phase == "loading":
        _execute(loaded, BIG_BLOBS_SQL)  # ~60 MB: the signal comes while it loads
    backup.create_backup(loaded, tmp_path / "b")
    _execute(loaded, "DELETE FROM checkpoint_writes")  # something for the restore to undo
    before = db_state(loaded)
    with psycopg.connect(loaded) as holder:  # the app reads: the swap waits for its lock
        holder.execute("SELECT 1 FROM checkpoints LIMIT 1")
        proc = subprocess.Popen(
            [sys.executable, "-c", "from migrator.cli import main; main()", "restore-backup"]
            + ["--dsn", with_password(loaded), str(tmp_path / "b")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A suite started in the background (`make test &`) inherits SIGINT ignored,
            # and Python then never turns it into KeyboardInterrupt: give the CLI the
            # disposition a terminal gives it.
            preexec_fn=_sigint_default,
        )
        try:
            if phase == "loading":
                _wait_for_stderr(proc, "loading checkpoint_blobs")
            else:
                _wait_for_lock_wait(loaded, proc)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("…")]
    assert len(lines) == 1 and lines[0].startswith(line), err
    assert SECRET not in out + err and "Traceback" not in err
    assert db_state(loaded) == before


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_stderr(proc: subprocess.Popen[str], needle: str) -> None:
    assert proc.stderr is not None
    for got in proc.stderr:
        if needle in got:
            return
    raise AssertionError(f"restore-backup ended before {needle!r}: {proc.communicate()}")


def _wait_for_lock_wait(dsn: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until some session of this database waits for a lock (the restore's swap)."""
    import time

    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(query).fetchone()
            if row and row[0]:
                return
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
    raise AssertionError("restore-backup never waited for the lock")


def test_an_interrupt_hidden_behind_a_failed_statement_is_found() -> None:
    """Issue 12 #12: Ctrl-C in a COPY aborts the transaction; the next statement's error
    (``current transaction is aborted``) must not turn the interrupt into exit 3."""
    from migrator.backup.restore import INTERRUPTED_NOTE, _interrupt_in, _rolled_back

    interrupt = KeyboardInterrupt()
    try:
        try:
            raise interrupt
        except KeyboardInterrupt:
            raise psycopg.errors.InFailedSqlTransaction("current transaction is aborted")  # noqa: B904
    except psycopg.Error as exc:
        assert _interrupt_in(exc) is interrupt
    assert _interrupt_in(psycopg.errors.QueryCanceled("x")) is None
    assert _rolled_back(interrupt).__notes__ == [INTERRUPTED_NOTE]
    assert _rolled_back(interrupt).__notes__ == [INTERRUPTED_NOTE]  # noted once


@pytest.mark.slow
def test_a_canary_whose_thread_id_an_app_thread_uses_is_refused(
    seeded: str, tmp_path: Path
) -> None:
    """Seeding in a shadow copy must not lose the old guard: an app's thread is never
    replaced by a canary's."""
    _execute(
        seeded,
        "INSERT INTO checkpoints SELECT 'app:order-1', checkpoint_ns, checkpoint_id,"
        " parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints"
        " WHERE thread_id = 'canary:messages'",
    )
    (tmp_path / "clashing.py").write_text(
        "from migrator.worker.canaries.flow import MessagesCanary\n\n"
        "class Clash(MessagesCanary):\n"
        "    name = 'clash'\n\n"
        "    @property\n"
        "    def thread_id(self):\n"
        "        return 'app:order-1'\n\n"
        "CANARIES = [Clash()]\n"
    )
    before = db_state(seeded)
    proc = run_cli(
        "canary", "seed", "--dsn", with_password(seeded), "--with", "current",
        "--canaries", "clashing:CANARIES", "--canary", "clash", "--reseed", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "app:order-1 already exist" in error_line(proc)
    assert db_state(seeded) == before
