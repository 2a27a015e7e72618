"""``upgrade-check`` with several ``--to`` targets, on real released versions.

One real run seeds with checkpoint-postgres 3.0.1 (langgraph 1.0.2) and checks two
targets: ``current`` (passes) and a requirements file pinning the 2.0.8 era
(langgraph 0.2.56), which cannot read what 3.0.1 wrote (H-ROLLBACK-NULL). Each
target gets its own table, summary line, JSON entry and JUnit testsuite; the exit
code is the worst target's. Bad targets stop before anything runs: exit 2, one line,
no report, no scratch database left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import psycopg
import pytest

FROM = "langgraph-checkpoint-postgres==3.0.1"
#: The 2.0.8 era's pins (canary_fixtures/versions.toml): the env cache is shared.
PINS_2_0_8 = (
    "langgraph-checkpoint-postgres==2.0.8\nlanggraph==0.2.56\nlanggraph-checkpoint==2.0.8\n"
    "langchain-core==0.3.22\npsycopg==3.2.3\n"
)
LABEL_2_0_8 = "checkpoint-postgres==2.0.8 / langgraph==0.2.56 (file:requirements.txt)"


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", "upgrade-check", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


def _databases(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_targets_each_get_their_own_verdict_and_the_worst_exit_code(pg_default, tmp_path):
    (tmp_path / "requirements.txt").write_text(PINS_2_0_8)
    before = _databases(pg_default.dsn)
    proc = _run(
        [
            "--from", FROM, "--to", "current", "--to", "requirements.txt",
            "--canary", "messages", "--canary", "interrupt_fn", "--fallback", "none",
            "--pg", pg_default.dsn, "--json", "r.json", "--junit", "r.xml",
        ],
        tmp_path,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert _databases(pg_default.dsn) == before, "a scratch database was left behind"

    # Text: a table per target, then one summary line per target.
    assert "→ current (checkpoint-postgres==" in out
    assert "→ checkpoint-postgres==2.0.8 / langgraph==0.2.56" in out
    summary = out[out.rindex("targets") :]
    current_line = next(line for line in summary.splitlines() if line.startswith("ok   current"))
    assert "PASS (exit 0)" in current_line
    old_line = next(line for line in summary.splitlines() if LABEL_2_0_8 in line)
    assert "FAIL (exit 1)" in old_line and "H-ROLLBACK-NULL" in old_line
    assert "verdict: FAIL — exit 1, the worst of 2 target(s)" in summary
    # Progress names the running target.
    assert "target 2/2: " + LABEL_2_0_8 + " (--to requirements.txt)" in proc.stderr
    assert "[target 1/2] snapshot under current" in proc.stderr

    # JSON: a per-target list, each check tagged with its target.
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["verdict"], report["exit_code"]) == ("fail", 1)
    by_label = {t["target"]: t for t in report["targets"]}
    assert [t["spec"] for t in report["targets"]] == ["current", "requirements.txt"]
    current = next(t for label, t in by_label.items() if label.startswith("current ("))
    assert (current["verdict"], current["exit_code"], current["hazards"]) == ("pass", 0, [])
    old = by_label[LABEL_2_0_8]
    assert (old["verdict"], old["exit_code"]) == ("fail", 1)
    assert old["versions"]["to"]["langgraph"] == "0.2.56"
    drift = {
        (c["target"], c["canary"]): c["status"] for c in report["checks"] if c["check"] == "drift"
    }
    assert drift == {
        (current["target"], "messages"): "pass",
        (current["target"], "interrupt_fn"): "pass",
        (LABEL_2_0_8, "messages"): "fail",
        (LABEL_2_0_8, "interrupt_fn"): "fail",
    }
    # Both targets judge the same seeding (once): the same seed checks, the same golden.
    seeds = [c for c in report["checks"] if c["check"] == "seed"]
    assert len(seeds) == 4 and all(c["status"] == "pass" for c in seeds)

    # JUnit: a testsuite per target.
    suites = ET.parse(tmp_path / "r.xml").getroot().findall("testsuite")
    assert len(suites) == 2
    assert suites[0].get("failures") == "0" and int(suites[1].get("failures")) >= 2
    assert suites[1].get("name").endswith(f"[{LABEL_2_0_8}]")


UV_LOCK_NO_LANGGRAPH = """version = 1
[[package]]
name = "langgraph-checkpoint-postgres"
version = "3.0.1"
[[package]]
name = "psycopg"
version = "3.2.3"
"""


@pytest.mark.parametrize(
    ("files", "targets", "message"),
    [
        ({"uv.lock": UV_LOCK_NO_LANGGRAPH}, ["uv.lock"], "uv.lock pins no langgraph"),
        (
            {"uv.lock": 'version = 1\n[[package]]\nname = "requests"\nversion = "2.32.3"\n'},
            ["uv.lock"],
            "uv.lock does not pin langgraph-checkpoint-postgres",
        ),
        ({"requirements.txt": b"langgraph==1.0.2\n\xff\n"}, ["requirements.txt"], "cannot read"),
        ({}, ["missing/requirements.txt"], "version file not found"),
        ({}, ["current", "current"], "--to current is given twice"),
        (
            {"requirements.txt": PINS_2_0_8},
            ["requirements.txt", "./requirements.txt", FROM],
            "--from and --to",
        ),
    ],
    ids=["lock-without-langgraph", "lock-without-checkpoint-postgres", "unreadable",
         "missing", "duplicate", "target-equals-from"],
)  # fmt: skip
def test_bad_targets_are_one_line_exit_2_and_nothing_runs(tmp_path, files, targets, message):
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    args = [
        "--from",
        FROM,
        "-q",
        "--pg",
        "postgresql://nobody@127.0.0.1:1/none",
        "--json",
        "r.json",
    ]
    for target in targets:
        args += ["--to", target]
    proc = _run(args, tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "r.json").exists()
