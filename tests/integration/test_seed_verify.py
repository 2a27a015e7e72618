"""``canary seed`` under a real old version, then ``verify`` with the current one (CLI, exit codes).

Each database is first prepared the way the app would have done it: the old
version's own ``setup()`` (worker op ``setup`` in that version's env).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrator import envs, ledger
from migrator.postgres import Server, scratch_database
from migrator.postgres.dsn import with_dbname

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SPEC_2025 = "langgraph-checkpoint-postgres==2.0.25"
SPEC_208 = "langgraph-checkpoint-postgres==2.0.8"
CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _one(dsn: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return None if row is None else row[0]


def _counts(dsn: str) -> dict[str, int]:
    return {t: _one(dsn, f"SELECT count(*) FROM {t}") for t in CHECKPOINT_TABLES}


def _setup(spec: str, dsn: str) -> None:
    env = envs.ensure_env(envs.parse_version_set(spec))
    envs.run_worker(env, "setup", {"dsn": dsn}, timeout=300)


@pytest.fixture(scope="module")
def seeded_2025(pg_default: Server) -> Iterator[str]:
    """A template database: 2.0.25's setup(), a real app thread, canaries seeded by the CLI."""
    with scratch_database(pg_default) as dsn:
        _setup(SPEC_2025, dsn)
        proc = _cli("canary", "seed", "--dsn", dsn, "--with", SPEC_2025, "--json", "-")
        assert proc.returncode == 0, proc.stderr
        report = _json(proc)
        assert report["command"] == "canary seed" and report["verdict"] == "pass"
        # An app thread that is not a canary (a copy of one, under another id).
        with psycopg.connect(dsn, autocommit=True) as conn:
            for table in CHECKPOINT_TABLES:
                cols = [
                    r[0]
                    for r in conn.execute(
                        "SELECT column_name FROM information_schema.columns"
                        " WHERE table_name = %s AND column_name <> 'thread_id'"
                        " ORDER BY ordinal_position",
                        (table,),
                    )
                ]
                ident = sql.SQL(", ").join(map(sql.Identifier, cols))
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {t} (thread_id, {c}) SELECT 'app-thread-1', {c} FROM {t}"
                        " WHERE thread_id = 'canary:messages'"
                    ).format(t=sql.Identifier(table), c=ident)
                )
        yield dsn


@pytest.fixture
def clone(pg_default: Server, seeded_2025: str) -> Iterator[str]:
    """A fresh copy of the seeded database (tests may change it)."""
    name = f"test_{uuid.uuid4().hex}"
    template = psycopg.conninfo.conninfo_to_dict(seeded_2025)["dbname"]
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


def test_seed_stores_canaries_and_goldens(clone: str) -> None:
    canaries = ledger.list_canaries(clone)
    goldens = ledger.load_goldens(clone)
    assert len(canaries) == 10 and len(goldens) == 10
    assert {c.thread_id for c in canaries} == {g.thread_id for g in goldens}
    assert all(c.thread_id == f"canary:{c.canary}" for c in canaries)
    assert {c.versions["langgraph-checkpoint-postgres"] for c in canaries} == {"2.0.25"}
    assert all(g.snapshot["checkpoints"] and g.snapshot["error"] is None for g in goldens)
    (run,) = ledger.list_runs(clone)
    assert (run.command, run.verdict) == ("canary seed", "pass")
    assert run.from_versions["langgraph"] == "0.6.9"

    listing = _cli("canary", "list", "--dsn", clone, "--json")
    assert listing.returncode == 0, listing.stderr
    data = _json(listing)
    assert len(data["builtin"]) == 10 and all(c["covers"] for c in data["builtin"])
    assert {c["thread_id"] for c in data["seeded"]} == {c.thread_id for c in canaries}


def test_verify_with_current_passes(clone: str) -> None:
    before = _counts(clone)
    proc = _cli("verify", "--dsn", clone, "--json", "-")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    report = _json(proc)
    assert report["command"] == "verify" and report["verdict"] == "pass"
    assert [c["status"] for c in report["checks"]] == ["pass"] * 10
    assert report["versions"]["golden"]["langgraph-checkpoint-postgres"] == "2.0.25"
    assert report["versions"]["now"]["langgraph-checkpoint-postgres"].startswith("3.")
    assert _counts(clone) == before  # verify is read only


def test_seeding_twice_refuses_and_reseed_replaces_only_canaries(clone: str) -> None:
    counts = _counts(clone)
    seeded_at = {g.thread_id: g.seeded_at for g in ledger.load_goldens(clone)}
    app_rows = _one(clone, "SELECT count(*) FROM checkpoints WHERE thread_id = 'app-thread-1'")
    assert app_rows > 0

    proc = _cli("canary", "seed", "--dsn", clone, "--with", SPEC_2025)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("error: canary threads already exist") and "--reseed" in err
    assert "canary:messages" in err
    assert _counts(clone) == counts
    assert {g.thread_id: g.seeded_at for g in ledger.load_goldens(clone)} == seeded_at

    proc = _cli("canary", "seed", "--dsn", clone, "--with", SPEC_2025, "--reseed", "-q")
    assert proc.returncode == 0, proc.stderr
    assert _counts(clone) == counts  # same canaries again, the app thread untouched
    assert (
        _one(clone, "SELECT count(*) FROM checkpoints WHERE thread_id = 'app-thread-1'") == app_rows
    )
    after = {g.thread_id: g.seeded_at for g in ledger.load_goldens(clone)}
    assert after.keys() == seeded_at.keys()
    assert all(after[t] > seeded_at[t] for t in after)
    assert [r.command for r in ledger.list_runs(clone)] == ["canary seed", "canary seed"]


def test_verify_fails_when_a_golden_thread_is_gone(clone: str) -> None:
    with psycopg.connect(clone, autocommit=True) as conn:
        for table in CHECKPOINT_TABLES:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE thread_id = 'canary:send'").format(
                    sql.Identifier(table)
                )
            )
    proc = _cli("verify", "--dsn", clone, "--json", "-")
    assert proc.returncode == 1, proc.stderr
    checks = {c["canary"]: c for c in _json(proc)["checks"]}
    assert checks["send"]["status"] == "fail" and "is gone" in checks["send"]["summary"]
    assert [n for n, c in checks.items() if c["status"] == "fail"] == ["send"]


def test_seed_under_208_then_current_setup_verify_fails(pg_default: Server, tmp_path: Any) -> None:
    with scratch_database(pg_default) as dsn:
        _setup(SPEC_208, dsn)
        seed = _cli("canary", "seed", "--dsn", dsn, "--with", SPEC_208, "-q")
        assert seed.returncode == 0, seed.stderr
        _setup("current", dsn)  # what `migrate` (or the app's own setup()) does

        out = tmp_path / "verify.json"
        proc = _cli("verify", "--dsn", dsn, "--with", "current", "--json", str(out))
        assert proc.returncode == 1, proc.stderr
        assert "FAIL" in proc.stdout  # the human report is printed as well
        report = json.loads(out.read_text())
        assert report["verdict"] == "fail"
        assert {"H-TASK-ID", "H-METADATA-WRITES"} <= set(report["hazards"])
        failed = {c["canary"] for c in report["checks"] if c["status"] == "fail"}
        assert {"failed_node", "subgraph", "messages"} <= failed
        assert all(c["check"] == "verify" for c in report["checks"])


def test_seed_without_checkpoint_tables_exits_2_and_writes_nothing(pg_default: Server) -> None:
    with scratch_database(pg_default) as dsn:
        proc = _cli("canary", "seed", "--dsn", dsn, "--with", SPEC_2025)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: ") and "no checkpoint tables" in lines[0]
        assert "Hint:" in lines[0] and "migrate" in lines[0]
        assert (
            _one(
                dsn,
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
            )
            == 0
        )
        assert _one(dsn, "SELECT to_regnamespace('langgraph_migrator')") is None


def test_seed_with_a_version_newer_than_the_schema_refuses(pg_default: Server) -> None:
    with scratch_database(pg_default) as dsn:
        _setup(SPEC_208, dsn)  # ledger v0..v8: 2.0.25 expects v9
        proc = _cli("canary", "seed", "--dsn", dsn, "--with", SPEC_2025)
        assert proc.returncode == 2
        assert "older version" in proc.stderr and "Hint:" in proc.stderr
        assert _counts(dsn) == {t: 0 for t in CHECKPOINT_TABLES}
        assert _one(dsn, "SELECT to_regnamespace('langgraph_migrator')") is None


def test_verify_without_goldens_exits_2(pg_default: Server) -> None:
    with scratch_database(pg_default) as dsn:
        _setup("current", dsn)
        proc = _cli("verify", "--dsn", dsn)
        assert proc.returncode == 2
        assert "holds no goldens" in proc.stderr and "canary seed" in proc.stderr
        assert _one(dsn, "SELECT to_regnamespace('langgraph_migrator')") is None


def test_passwords_never_printed(pg_default: Server) -> None:
    secret = "s3cr3t-Pw"
    with scratch_database(pg_default) as dsn:
        bad = f"{dsn} password={secret}"
        proc = _cli("canary", "seed", "--dsn", bad, "--with", SPEC_2025)
        assert proc.returncode in (2, 3)
        assert secret not in proc.stderr + proc.stdout


def _cli_env(
    *args: str, env: dict[str, str], umask: int = 0o022
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
        preexec_fn=lambda: os.umask(umask) and None,
    )


def test_verify_reports_never_show_a_secret_without_show_values(clone: str, tmp_path: Path) -> None:
    """A secret in the metadata of a canary's checkpoints: no report holds it, unless asked."""
    secret = "sk-live-5ecret-" + uuid.uuid4().hex[:12]
    with psycopg.connect(clone, autocommit=True) as conn:
        conn.execute(
            "UPDATE checkpoints SET metadata = metadata || jsonb_build_object('api_key', %s::text)"
            " WHERE thread_id = 'canary:messages'",
            (secret,),
        )
    for show in (False, True):
        out = tmp_path / ("shown" if show else "hidden")
        out.mkdir()
        (out / "verify.json").write_text("{}")  # a permissive file already there
        (out / "verify.json").chmod(0o644)
        flags = ["--show-values"] if show else []
        files = ["--json", str(out / "verify.json"), "--junit", str(out / "reports/verify.xml")]
        summary = {"GITHUB_STEP_SUMMARY": str(out / "summary.md")}
        proc = _cli_env("verify", "--dsn", clone, *files, *flags, env=summary)
        assert proc.returncode == 1, proc.stderr  # the metadata drifted: breaking
        stdout = _cli_env("verify", "--dsn", clone, "--json", "-", *flags, env=summary)
        assert stdout.returncode == 1, stdout.stderr
        outputs = {
            "text": proc.stdout + proc.stderr,
            "json": (out / "verify.json").read_text(),
            "junit": (out / "reports/verify.xml").read_text(),
            "markdown": (out / "summary.md").read_text(),
            "json-stdout": stdout.stdout + stdout.stderr,
        }
        report = json.loads(outputs["json"])
        assert [c["canary"] for c in report["checks"] if c["status"] == "fail"] == ["messages"]
        paths = [d["path"] for c in report["checks"] for d in c["differences"]]
        assert any(p.endswith(".metadata.api_key") for p in paths)
        if show:
            for name in ("text", "json", "json-stdout", "junit"):
                assert secret in outputs[name], name
            assert secret not in outputs["markdown"]  # check summaries only, always
        else:
            found = {name: text.count(secret) for name, text in outputs.items()}
            assert found == dict.fromkeys(outputs, 0)
        # Owner-only whatever the umask, the pre-existing permissive file too.
        assert stat.S_IMODE((out / "verify.json").stat().st_mode) == 0o600
        assert stat.S_IMODE((out / "reports/verify.xml").stat().st_mode) == 0o600
        assert stat.S_IMODE((out / "reports").stat().st_mode) == 0o700
        assert stat.S_IMODE((out / "summary.md").stat().st_mode) == 0o600
