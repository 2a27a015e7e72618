"""The 1.0.0 era is cured by ``migrate --fallback dump-restore``, judged by behaviour.

checkpoint-postgres 1.0.0 / langgraph 0.2.0 named a subgraph's namespace ``child``
(no ``:<task id>``) and kept paused Sends in the checkpoint JSON. Before the fix the
task-id transform renamed only ``<node>:<id>`` namespaces, so the new version
restarted the child's first node and paused again; and the fallback called the
paused-sends thread "not cured" for the ``__pregel_tasks`` key its restore adds,
although it resumes correctly (work x3, then reduce), and rolled everything back
(exit 5). Real 1.0.0 seeds the canaries; the newest version resumes them afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from migrator import envs
from migrator.postgres import Server, scratch_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CLI = str(Path(sys.executable).parent / "langgraph-migrator")
SPEC_100 = "langgraph-checkpoint-postgres==1.0.0"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=800, cwd=cwd, check=False
    )


def _nodes(entry: dict) -> list[str]:
    return [t["node"] for t in entry["trace"]]


def test_1_0_0_subgraph_and_paused_sends_cured_by_fallback(
    pg_default: Server, tmp_path: Path
) -> None:
    with scratch_database(pg_default) as dsn:
        old = envs.ensure_env(envs.parse_version_set(SPEC_100))
        envs.run_worker(old, "setup", {"dsn": dsn}, timeout=300)
        proc = _cli("canary", "seed", "--dsn", dsn, "--with", SPEC_100, "-q", cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        out = tmp_path / "report.json"
        proc = _cli(
            "migrate", "--dsn", dsn, "--scratch-dsn", pg_default.dsn, "-q",
            "--from", SPEC_100, "--fallback", "dump-restore", "--json", str(out),
            cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr
        report = json.loads(out.read_text())
        assert report["verdict"] == "pass"
        fallback = {c["canary"]: c for c in report["checks"] if c["check"] == "fallback"}
        for name in ("subgraph", "send_paused"):
            assert fallback[name]["status"] == "pass", fallback[name]
        new = envs.ensure_env(envs.parse_version_set("current"))
        resumed = envs.run_worker(
            new, "resume", {"dsn": dsn, "canaries": ["subgraph", "send_paused"]}, timeout=300
        )
        by = {t["canary"]: t for t in resumed["threads"]}
        # the child resumes where it paused: step_1 is not run again
        assert by["subgraph"]["outcome"] == "completed", by["subgraph"]
        assert _nodes(by["subgraph"]) == ["step_2", "done"], by["subgraph"]
        assert by["send_paused"]["outcome"] == "completed", by["send_paused"]
        work = _nodes(by["send_paused"])
        assert sorted(work[:3]) == ["work:alpha", "work:beta", "work:gamma"] and work[3:] == [
            "reduce"
        ], work
