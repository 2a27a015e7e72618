"""upgrade-check on bad input: one-line error, documented exit code, nothing left behind.

These run the real CLI in a subprocess against the session's Postgres (``--pg DSN``),
so "nothing left behind" is checked on a real server: no scratch database survives.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

OLD = "langgraph-checkpoint-postgres==2.0.25"


def _databases(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from migrator.cli import main; main()",
            "upgrade-check",
            "-q",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture
def server_dsn(pg_default):
    before = _databases(pg_default.dsn)
    yield pg_default.dsn
    assert _databases(pg_default.dsn) == before, "a scratch database was left behind"


def test_from_equals_to_is_a_usage_error(tmp_path, server_dsn):
    proc = _run(["--from", OLD, "--to", OLD, "--pg", server_dsn], tmp_path)
    assert proc.returncode == 2
    assert "resolve to the same version set" in _error_line(proc)


def test_if_changed_passes_when_no_target_changes_the_versions(tmp_path, server_dsn):
    """CI runs the gate on every lock-file change; one that leaves langgraph's pins alone
    has nothing to upgrade (it was exit 2, failing the pull request)."""
    base, head = tmp_path / "base", tmp_path / "head"
    for d, extra in ((base, "requests==2.31.0"), (head, "requests==2.32.3")):
        d.mkdir()
        (d / "requirements.txt").write_text(
            "langgraph==0.2.56\nlanggraph-checkpoint==2.0.9\n"
            f"langgraph-checkpoint-postgres==2.0.8\nlangchain-core==0.3.28\n{extra}\n"
        )
    args = ["--from", str(base / "requirements.txt"), "--to", str(head / "requirements.txt")]
    proc = _run([*args, "--pg", server_dsn, "--if-changed"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to check (--if-changed)" in proc.stdout
    assert "nothing to upgrade, not checked" in proc.stdout
    # Identical files without --if-changed: still a usage error (a typo, most likely).
    proc = _run(["--from", args[1], "--to", args[1], "--pg", server_dsn], tmp_path)
    assert proc.returncode == 2
    assert "resolve to the same version set" in _error_line(proc)


def test_unknown_version_is_a_usage_error(tmp_path, server_dsn):
    proc = _run(["--from", "langgraph-checkpoint-postgres==9.9.9", "--pg", server_dsn], tmp_path)
    assert proc.returncode == 2
    assert "no such version" in _error_line(proc)


def test_unreadable_policy_file_is_a_usage_error(tmp_path, server_dsn):
    policy = tmp_path / "policy.toml"
    policy.write_text("ignore = [unclosed\n")
    proc = _run(["--from", OLD, "--pg", server_dsn, "--policy", str(policy)], tmp_path)
    assert proc.returncode == 2
    assert "policy.toml" in _error_line(proc)


@pytest.mark.slow
def test_canary_module_that_fails_to_import(tmp_path, server_dsn):
    (tmp_path / "mycanaries.py").write_text("import no_such_dependency_here\nCANARIES = []\n")
    proc = _run(["--from", OLD, "--pg", server_dsn, "--canaries", "mycanaries:CANARIES"], tmp_path)
    assert proc.returncode == 2
    line = _error_line(proc)
    assert "mycanaries" in line and "no_such_dependency_here" in line


@pytest.mark.slow
def test_thread_source_without_checkpoint_tables(tmp_path, server_dsn):
    proc = _run(
        ["--from", OLD, "--pg", server_dsn, "--canary", "messages", "--thread", "no-such-thread"],
        tmp_path,
    )
    assert proc.returncode == 2
    assert "has no langgraph checkpoint tables" in _error_line(proc)


def test_unreachable_database_is_an_environment_error(tmp_path):
    dsn = "postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere"
    proc = _run(["--from", OLD, "--pg", dsn], tmp_path)
    assert proc.returncode == 3
    line = _error_line(proc)
    assert "s3cret-pw" not in proc.stderr + proc.stdout
    assert "127.0.0.1" in line


def test_thread_without_a_source_database(tmp_path):
    proc = _run(["--from", OLD, "--pg", "local", "--thread", "t-1"], tmp_path)
    assert proc.returncode == 2
    assert "--thread needs the database" in _error_line(proc)


def test_if_changed_keeps_a_target_that_moves_a_checkpoint_package(tmp_path):
    from migrator.gate import changed_targets

    pins = (
        "langgraph-checkpoint==2.0.9\nlanggraph-checkpoint-postgres==2.0.8\n"
        "langchain-core==0.3.28\n"
    )
    files = {}
    for name, langgraph in (("base", "0.2.56"), ("same", "0.2.56"), ("bump", "0.2.60")):
        (tmp_path / name).mkdir()
        files[name] = tmp_path / name / "requirements.txt"
        files[name].write_text(f"langgraph=={langgraph}\n{pins}")
    kept, same = changed_targets(str(files["base"]), [str(files["same"]), str(files["bump"])])
    assert kept == [str(files["bump"])]
    assert len(same) == 1 and str(files["same"]) in same[0]
    unpinned = tmp_path / "unpinned.txt"  # cannot tell: checked
    unpinned.write_text("langgraph==0.2.56\nlanggraph-checkpoint-postgres==2.0.8\n")
    assert changed_targets(str(files["base"]), [str(unpinned)])[0] == [str(unpinned)]


def test_an_unknown_accepted_hazard_is_a_usage_error(tmp_path, server_dsn):
    proc = _run(["--from", OLD, "--pg", server_dsn, "--accept-hazard", "H-NOPE"], tmp_path)
    assert proc.returncode == 2
    line = _error_line(proc)
    assert "'H-NOPE' is not a data hazard" in line and "H-METADATA-WRITES" in line
