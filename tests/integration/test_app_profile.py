"""The app profile reaches every version environment: an app's own types never become null.

orderbot (``tests/apps/orderbot``) is seeded by real langgraph-checkpoint-postgres
2.0.8; the tool reads it through the old version's saver, once with the app profile
its pyproject.toml declares and once without it (H-UNDECODABLE-NULL).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator import envs
from migrator.app.profile import load_profile
from migrator.cli import main
from migrator.compare import compare_snapshots
from migrator.postgres import Server, scratch_database
from tests.integration.orderbot import run_orderbot
from tests.integration.test_plan import catalog_state

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "orderbot"
APP_SRC = APP_DIR / "src"
OLD = "langgraph-checkpoint-postgres==2.0.8"
APP_TYPES = {"orderbot.models.Order", "orderbot.models.Status", "orderbot.models.Shipment"}
COUNTS_SQL = (
    "SELECT (SELECT count(*) FROM checkpoints), (SELECT count(*) FROM checkpoint_writes),"
    " (SELECT count(*) FROM checkpoint_blobs)"
)


def _env(spec: str) -> envs.VersionEnv:
    return envs.ensure_env(envs.parse_version_set(spec))


def seed_app(env: envs.VersionEnv, *args: str) -> dict[str, Any]:
    """``python -m orderbot.seed ARGS`` in ``env`` (the app's own code, as the app runs it)."""
    return run_orderbot(env, *args)


@pytest.fixture(scope="module")
def old_env() -> envs.VersionEnv:
    return _env(OLD)


@pytest.fixture
def app_db(pg_default: Server, old_env: envs.VersionEnv, tmp_path: Path) -> Iterator[str]:
    with scratch_database(pg_default) as dsn:
        seed_app(old_env, dsn, str(tmp_path / "seed.trace"))
        yield dsn


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``langgraph-migrator ARGS`` through ``main`` (the one exit-code translation)."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out + out.err


def _counts(dsn: str) -> tuple[int, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(COUNTS_SQL).fetchone()
    assert row is not None
    return tuple(int(x) for x in row)


def test_dump_with_the_profile_keeps_every_app_type(
    app_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(APP_DIR)  # the profile comes from the app's pyproject.toml
    out = tmp_path / "app.lgdump"
    code, output = run_cli(capsys, "dump", "--dsn", app_db, "--from", OLD, "--out", str(out), "-q")
    assert code == 0, output
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["errors"] == []
    assert APP_TYPES <= set(manifest["types"])


def test_dump_without_the_profile_refuses_and_names_the_types(
    app_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no pyproject.toml: the app's code is not known
    out = tmp_path / "app.lgdump"
    before = _counts(app_db)
    code, output = run_cli(capsys, "dump", "--dsn", app_db, "--from", OLD, "--out", str(out), "-q")
    assert code == 2, output
    assert "orderbot.models." in output
    assert "does not rebuild" in output
    assert "[tool.langgraph-migrator.app]" in output
    assert not out.exists()
    assert not list(tmp_path.glob("app.lgdump*"))
    assert _counts(app_db) == before


def test_an_app_module_that_raises_at_import_is_a_configuration_error(
    app_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = tmp_path / "broken_src"
    (broken / "orderbot").mkdir(parents=True)
    for name in ("__init__.py", "graphs.py", "seed.py"):
        (broken / "orderbot" / name).write_text((APP_SRC / "orderbot" / name).read_text())
    (broken / "orderbot" / "models.py").write_text("raise RuntimeError('models refuse to load')\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "app.lgdump"
    before = _counts(app_db)
    code, output = run_cli(
        capsys,
        "dump",
        "--app-path",
        str(broken),
        "--graph",
        "orders=orderbot.graphs:build_orders",
        "--dsn",
        app_db,
        "--from",
        OLD,
        "--out",
        str(out),
        "-q",
    )
    assert code == 2, output
    assert "models refuse to load" in output
    assert "2.0.8" in output  # the environment is named
    assert not out.exists()
    assert _counts(app_db) == before


# --------------------------------------------------------------------------- the cure


APP_THREADS = ["order-1", "order-2", "return-1"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def _app_snapshot(env: envs.VersionEnv, dsn: str) -> dict[str, Any]:
    request = {
        "dsn": dsn,
        "threads": [{"thread_id": t, "canary": None} for t in APP_THREADS],
        "user_canaries": None,
        "include_history": False,
    }
    return envs.run_worker(env, "snapshot", request, timeout=600, app=load_profile(APP_DIR))


def _resume_trace(env: envs.VersionEnv, dsn: str, thread: str, tmp_path: Path) -> list[str]:
    trace = tmp_path / f"resume-{thread}.trace"
    seed_app(env, "--resume", dsn, thread, str(trace))
    return trace.read_text().split() if trace.exists() else []


def test_migrate_fallback_cures_the_apps_threads(
    pg_default: Server, old_env: envs.VersionEnv, tmp_path: Path
) -> None:
    """2.0.8 -> newest with the profile from pyproject.toml: values equal, resumes run only
    what had not run (H-TASK-ID cured per thread, with the graph each thread belongs to)."""
    new_env = _env("current")
    with scratch_database(pg_default) as dsn:
        seed_app(old_env, dsn, str(tmp_path / "seed.trace"))
        proc = _cli("canary", "seed", "--dsn", dsn, "--with", OLD, "-q", cwd=APP_DIR)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        before = _app_snapshot(old_env, dsn)
        for tid in APP_THREADS:
            assert before["threads"][tid]["graph"] == ("returns" if tid == "return-1" else "orders")
        out = tmp_path / "migrate.json"
        proc = _cli(
            "migrate",
            "--dsn",
            dsn,
            "--scratch-dsn",
            pg_default.dsn,
            "--from",
            OLD,
            "--fallback",
            "dump-restore",
            "--json",
            str(out),
            "--backup-dir",
            str(tmp_path / "backups"),
            "-q",
            cwd=APP_DIR,
        )
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr
        after = _app_snapshot(new_env, dsn)
        diff = compare_snapshots(before, after)
        breaking = [d.summary() for d in diff.differences if d.severity == "breaking"]
        assert breaking == []
        # every value of the app's own types rebuilt, under both versions
        text = json.dumps(after)
        for name in ("Order", "Status", "Shipment"):
            assert f"orderbot.models.{name}" in text
        assert '{"__error__"' not in text  # no value failed to load
        # plan knows the cure from the ledger: the next deploy's plan is not UNSAFE for it
        proc = _cli(
            "plan", "--dsn", dsn, "--scratch-dsn", pg_default.dsn, "--json", "-q", cwd=APP_DIR
        )  # fmt: skip
        task_id = [
            r for r in json.loads(proc.stdout)["data"]["reaches"] if r["hazard"] == "H-TASK-ID"
        ]  # fmt: skip
        assert task_id and not any(r["breaking"] for r in task_id), task_id
        assert "cured by the dump/restore" in task_id[0]["what"]
        assert _resume_trace(new_env, dsn, "order-1", tmp_path) == ["stock", "ship"]
        assert _resume_trace(new_env, dsn, "return-1", tmp_path) == ["approve", "notify"]
        assert _resume_trace(new_env, dsn, "order-2", tmp_path) == []


# --------------------------------------------------------------------------- the gate


def _gate(source: str, from_spec: str, tmp_path: Path) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / f"gate-{from_spec.rpartition('=')[2]}.json"
    threads = [a for t in APP_THREADS for a in ("--thread", t)]
    proc = _cli(
        "upgrade-check",
        "--from",
        from_spec,
        "--to",
        "current",
        "--pg",
        "local",
        "--threads-from",
        source,
        *threads,
        "--fallback",
        "none",
        "--json",
        str(out),
        cwd=APP_DIR,
    )
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.returncode, json.loads(out.read_text()), proc.stdout + proc.stderr


def _thread_findings(report: dict[str, Any], thread: str) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c.get("thread_id") == thread and c["status"] == "fail"]


def test_gate_judges_real_threads_through_the_apps_graphs(app_db: str, tmp_path: Path) -> None:
    code, report, output = _gate(app_db, OLD, tmp_path)
    assert code == 1, output[-4000:]
    assert report["verdict"] == "fail"
    for thread in ("order-1", "return-1"):
        failed = _thread_findings(report, thread)
        assert failed, (thread, output[-4000:])
        assert any("H-TASK-ID" in json.dumps(c) for c in failed), failed
    # The completed thread has nothing to resume: only the metadata hazard reaches it.
    hazards = {
        d.get("hazard")
        for c in _thread_findings(report, "order-2")
        for d in c["differences"]
        if d["severity"] == "breaking"
    }
    assert hazards <= {"H-METADATA-WRITES"}, hazards


def test_gate_on_a_clean_pair_with_custom_types_passes(pg_default: Server, tmp_path: Path) -> None:
    spec = "langgraph-checkpoint-postgres==3.0.1"
    with scratch_database(pg_default) as dsn:
        seed_app(_env(spec), dsn, str(tmp_path / "seed.trace"))
        code, report, output = _gate(dsn, spec, tmp_path)
    assert code == 0, output[-4000:]
    for thread in APP_THREADS:
        mine = [c for c in report["checks"] if c.get("thread_id") == thread]
        checked = [c for c in mine if c["check"] != "resume"]  # real threads: never resumed
        assert checked and all(c["status"] == "pass" for c in checked), mine
        (resume,) = [c for c in mine if c["check"] == "resume"]
        assert resume["status"] == "skip" and resume["summary"].startswith("not resumed: ")


def test_app_requirements_are_installed_into_a_spec_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile's own packages land in every env built from a bare spec."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.langgraph-migrator.app]\nrequirements = ["six==1.16.0"]\n'
    )
    monkeypatch.setenv("LANGGRAPH_MIGRATOR_CACHE", str(tmp_path / "cache"))
    from migrator.app.profile import use_profile

    with use_profile(load_profile(tmp_path)):
        env = _env(OLD)
    assert env.version_set.app_requirements == ("six==1.16.0",)
    proc = subprocess.run(
        [str(env.python), "-c", "import six; print(six.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.strip() == "1.16.0", proc.stderr


def test_a_typo_in_a_graph_is_exit_2_naming_it_not_a_silent_skip(
    app_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A graph the profile names but that does not load would disable the task-id cure."""
    monkeypatch.chdir(APP_DIR)
    out = tmp_path / "app.lgdump"
    code, output = run_cli(
        capsys,
        "dump",
        "--graph",
        "returns=orderbot.graphs:build_retruns",
        "--dsn",
        app_db,
        "--from",
        OLD,
        "--out",
        str(out),
        "-q",
    )
    assert code == 2, output
    assert "graph returns" in output and "build_retruns" in output
    assert ". Hint: check [tool.langgraph-migrator.app]" in output
    assert not out.exists()


@pytest.mark.parametrize("fallback", ["none", "accept", "dump-restore"])
def test_migrate_without_canaries_never_leaves_threads_at_risk_under_pass(
    pg_default: Server, old_env: envs.VersionEnv, tmp_path: Path, fallback: str
) -> None:
    """No canary seeded: the plan's blast radius decides (found by new-user trials).

    Without a cure or an accepted risk, migrate stops before it changes anything;
    it used to PASS and leave ``order-1`` and ``return-1`` to resume wrongly.
    """
    new_env = _env("current")
    with scratch_database(pg_default) as dsn:
        seed_app(old_env, dsn, str(tmp_path / "seed.trace"))
        before = _counts(dsn)
        catalog = catalog_state(dsn)
        args = ["--fallback", "none", "--accept-hazard", "h-task-id"]
        proc = _cli(
            "migrate",
            "--dsn",
            dsn,
            "--scratch-dsn",
            pg_default.dsn,
            "--from",
            OLD,
            *(
                args[:2]
                if fallback == "none"
                else args
                if fallback == "accept"
                else ["--fallback", "dump-restore"]
            ),
            "--backup-dir",
            str(tmp_path / "backups"),
            "--json",
            str(tmp_path / "migrate.json"),
            "-q",
            cwd=APP_DIR,
        )
        output = proc.stdout + proc.stderr
        if fallback == "none":  # refused up front: nothing changed, and it says what to do
            assert proc.returncode == 1, output[-4000:]
            assert "verdict: FAIL" in output
            assert "2 stored thread(s) are at risk (H-TASK-ID: 2 thread(s)" in output
            assert "Nothing was changed." in output
            assert "--fallback dump-restore" in output and "--accept-hazard H-TASK-ID" in output
            assert catalog_state(dsn) == catalog  # not even the ledger schema
            assert _counts(dsn) == before
            assert not (tmp_path / "backups").exists()
            return
        if fallback == "accept":  # the operator's call: in place, and the report says so
            assert proc.returncode == 0, output[-4000:]
            assert "accepted with --accept-hazard" in output and "H-TASK-ID" in output
            assert _counts(dsn) == before  # same rows; only the schema was migrated
            return
        assert proc.returncode == 0, output[-4000:]
        # With no golden, the cure is judged by reads of the threads at risk: the old
        # version's before, the new one's after (it used to say "cured" on no evidence).
        flat = " ".join(output.split())  # the terminal report wraps lines
        assert (
            "the 2 at risk (H-TASK-ID: 2 thread(s) (order-1, return-1)) read under the new "
            "version as under the old one" in flat
        )
        assert "cured" not in flat.replace("uncured", "")
        # a rollback of the app now needs the data rolled back too (a trial had to find out)
        assert "every stored thread was rewritten by the new version's saver" in flat
        report = json.loads((tmp_path / "migrate.json").read_text())
        judged = [c for c in report["checks"] if c["check"] == "fallback"]
        assert {c["thread_id"] for c in judged} == {"order-1", "return-1"}
        assert all(c["status"] == "pass" for c in judged), judged
        assert _resume_trace(new_env, dsn, "order-1", tmp_path) == ["stock", "ship"]
        assert _resume_trace(new_env, dsn, "return-1", tmp_path) == ["approve", "notify"]
