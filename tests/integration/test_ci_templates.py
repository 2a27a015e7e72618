"""The CI templates under ``ci/``: YAML that parses and lints, and a deploy hook that works.

The GitHub workflow and GitLab job are checked for the structure that makes them a
gate (lock-file paths, a Postgres 13-18 matrix, ``upgrade-check --junit``, report
upload). ``ci/deploy/pre-deploy-migrate.sh`` runs for real against a local cluster:
a database left by checkpoint-postgres 2.0.8 comes out repaired; a bad DSN, and a
lock held by another migrator, stop the deploy with the mapped message and no
password in the output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from migrator import fixtures
from migrator.lock import advisory_lock
from migrator.postgres import Server, scratch_database

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "ci"
WORKFLOW = CI / "github" / "langgraph-upgrade-check.yml"
GITLAB = CI / "gitlab" / "langgraph-upgrade-check.gitlab-ci.yml"
SCRIPT = CI / "deploy" / "pre-deploy-migrate.sh"
K8S_JOB = CI / "deploy" / "k8s-migrate-job.yaml"
YAML_FILES = (WORKFLOW, GITLAB, K8S_JOB)
VENV_BIN = Path(sys.executable).parent
MAJORS = {"13", "14", "15", "16", "17", "18"}
LOCK_FILES = {"uv.lock", "poetry.lock", "requirements*.txt"}
YAMLLINT_CONFIG = "{extends: relaxed, rules: {line-length: {max: 120}}}"

TASK_PATH_SQL = (
    "SELECT count(*) FROM information_schema.columns "
    "WHERE table_schema = 'public' AND table_name = 'checkpoint_writes' "
    "AND column_name = 'task_path'"
)
LEDGER_MAX_SQL = "SELECT max(v) FROM checkpoint_migrations"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def steps_running(job: dict[str, Any], needle: str) -> list[str]:
    return [s["run"] for s in job.get("steps", []) if needle in s.get("run", "")]


# --- YAML ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_yaml_parses(path: Path) -> None:
    data = load(path)
    assert isinstance(data, dict) and data, f"{path.name} is empty or not a mapping"


def test_yamllint_relaxed() -> None:
    exe = shutil.which("yamllint", path=str(VENV_BIN)) or shutil.which("yamllint")
    if exe is None:
        pytest.skip("yamllint is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [exe, "-f", "parsable", "-d", YAMLLINT_CONFIG, *map(str, YAML_FILES)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[error]" not in result.stdout, result.stdout


def test_github_workflow_is_a_lock_file_gate_on_pg_13_to_18() -> None:
    wf = load(WORKFLOW)
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert set(on["pull_request"]["paths"]) == LOCK_FILES
    jobs = wf["jobs"]
    checks = [j for j in jobs.values() if steps_running(j, "langgraph-migrator upgrade-check")]
    assert checks, "no job runs `langgraph-migrator upgrade-check`"
    for job in checks:
        assert {str(m) for m in job["strategy"]["matrix"]["postgres"]} == MAJORS
        assert job["strategy"]["fail-fast"] is False
        assert "${{ matrix.postgres }}" in job["services"]["postgres"]["image"]
        run = " ".join(steps_running(job, "langgraph-migrator upgrade-check"))
        for flag in ("--junit", "--json", "--html", "--from", "--to", "--pg"):
            assert flag in run, f"upgrade-check step lacks {flag}"
        locks = " ".join(steps_running(job, "git show"))
        assert "origin/${BASE_REF}" in locks and "github.base_ref" in str(job)
        # Two targets: the merge result's lock and the pull request head's own pins.
        assert run.count("--to ") == 2 and "steps.locks.outputs.head" in run
        assert "--if-changed" in run  # a lock change that leaves langgraph alone passes
        assert '"${HEAD_SHA}:${lock}"' in locks and "pull_request.head.sha" in str(job)
        uploads = [
            s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")
        ]
        assert uploads and uploads[0]["if"] == "always()", "reports must upload on failure too"
        assert job["steps"][0]["with"]["fetch-depth"] == 0


def test_gitlab_job_is_a_lock_file_gate_on_pg_13_to_18() -> None:
    job = load(GITLAB)["langgraph-upgrade-check"]
    rule = job["rules"][0]
    assert "merge_request_event" in rule["if"] and set(rule["changes"]) == LOCK_FILES
    assert {str(m) for m in job["parallel"]["matrix"][0]["PG_MAJOR"]} == MAJORS
    assert job["services"][0]["name"] == "postgres:$PG_MAJOR"
    script = "\n".join(job["script"])
    assert "langgraph-migrator upgrade-check" in script and "--junit" in script
    assert "CI_MERGE_REQUEST_TARGET_BRANCH_NAME" in script
    # Two targets: the lock checked out and the merge request head's own pins.
    assert script.count("--to ") == 2 and '--to "head/${LOCK}"' in script
    assert "--if-changed" in script
    assert "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA" in script and '"${HEAD_SHA}:${LOCK}"' in script
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"].endswith(".xml")


def test_k8s_job_runs_the_hook_once_with_a_secret_dsn() -> None:
    job = load(K8S_JOB)
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] <= 3
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert "pre-deploy-migrate.sh" in " ".join(container["command"])
    env = {e["name"]: e for e in container["env"]}
    ref = env["LANGGRAPH_MIGRATOR_DSN"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] and ref["key"]
    assert "value" not in env["LANGGRAPH_MIGRATOR_DSN"], "the DSN must come from a Secret"


# --- the deploy hook ------------------------------------------------------------------


def test_shellcheck() -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck is not installed (Debian: apt-get install -y shellcheck)")
    result = subprocess.run([exe, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def run_hook(dsn: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LANGGRAPH_MIGRATOR_") and k != "GITHUB_ACTIONS"
    }
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        LANGGRAPH_MIGRATOR_DSN=dsn,
        MIGRATOR_REPORT_DIR=str(tmp_path / "reports"),
        **extra,
    )
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )


def task_path_columns(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(TASK_PATH_SQL).fetchone()
    assert row is not None
    return int(row[0])


#: The 2.0.8 fixture's threads that H-TASK-ID reaches: plan calls a database holding
#: them UNSAFE, and the hook stops there (test_hook_stops_on_threads_at_risk).
AT_RISK_208 = ("canary:failed_node", "canary:interrupt_fn", "canary:subgraph")


@pytest.fixture
def era_2_0_8(pg_default: Server) -> Any:
    """A fresh database holding what checkpoint-postgres 2.0.8 left (no task_path),
    without the threads a data hazard reaches: the schema migration the hook runs."""
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, REPO / "canary_fixtures" / "2.0.8")
        with psycopg.connect(dsn, autocommit=True) as conn:
            for table in ("checkpoint_writes", "checkpoint_blobs", "checkpoints"):
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE thread_id = ANY(%s)").format(
                        sql.Identifier(table)
                    ),
                    (list(AT_RISK_208),),
                )
        yield dsn


@pytest.mark.slow
def test_hook_stops_on_threads_at_risk(pg_default: Server, tmp_path: Path) -> None:
    """Paused 2.0.8 threads H-TASK-ID reaches: plan is UNSAFE, nothing is migrated."""
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, REPO / "canary_fixtures" / "2.0.8")
        result = run_hook(dsn, tmp_path, LANGGRAPH_MIGRATOR_SCRATCH_DSN=pg_default.dsn)
        out = result.stdout + result.stderr
        assert result.returncode == 1, out
        assert "H-TASK-ID" in out and "DEPLOY STOPPED" in out
        assert task_path_columns(dsn) == 0  # nothing changed


@pytest.mark.slow
def test_hook_migrates_a_2_0_8_database(era_2_0_8: str, pg_default: Server, tmp_path: Path):
    assert task_path_columns(era_2_0_8) == 0
    result = run_hook(era_2_0_8, tmp_path, LANGGRAPH_MIGRATOR_SCRATCH_DSN=pg_default.dsn)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for step in ("step plan", "step migrate", "done: the checkpoint tables match current"):
        assert step in out
    assert "verify skipped: no canary was seeded" in out  # the fixture holds no goldens
    assert task_path_columns(era_2_0_8) == 1
    with psycopg.connect(era_2_0_8) as conn:
        row = conn.execute(LEDGER_MAX_SQL).fetchone()
    assert row is not None and row[0] >= 9
    assert (tmp_path / "reports" / "migrate.json").stat().st_size > 0


@pytest.mark.slow
def test_hook_requires_goldens_when_asked(era_2_0_8: str, pg_default: Server, tmp_path: Path):
    result = run_hook(
        era_2_0_8,
        tmp_path,
        LANGGRAPH_MIGRATOR_SCRATCH_DSN=pg_default.dsn,
        MIGRATOR_REQUIRE_GOLDENS="1",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DEPLOY STOPPED (exit 1): no canary was seeded" in result.stderr


def test_hook_bad_dsn_stops_with_exit_3_and_no_password(tmp_path: Path) -> None:
    secret = "s3cret-Pa55word"
    dsn = f"postgresql://migrator:{secret}@127.0.0.1:1/app"
    result = run_hook(dsn, tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 3, out
    assert "DEPLOY STOPPED (exit 3): database or environment error in plan" in out
    assert secret not in out
    assert not (tmp_path / "reports" / "migrate.json").exists()


def test_hook_without_dsn_exits_2(tmp_path: Path) -> None:
    result = run_hook("", tmp_path)
    assert result.returncode == 2
    assert "LANGGRAPH_MIGRATOR_DSN is not set" in result.stderr


@pytest.mark.slow
def test_hook_lock_busy_exits_4_safe_to_retry(era_2_0_8: str, pg_default: Server, tmp_path: Path):
    with advisory_lock(era_2_0_8, wait=5):
        result = run_hook(
            era_2_0_8, tmp_path, LANGGRAPH_MIGRATOR_SCRATCH_DSN=pg_default.dsn, MIGRATOR_WAIT="0"
        )
    out = result.stdout + result.stderr
    assert result.returncode == 4, out
    assert "DEPLOY STOPPED (exit 4)" in out and "safe to retry" in out
    assert task_path_columns(era_2_0_8) == 0  # nothing changed
