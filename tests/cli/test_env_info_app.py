"""``env info`` with an app profile: the app's code is imported in that environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ORDERBOT = Path(__file__).resolve().parents[1] / "apps" / "orderbot"


def _env_info(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGGRAPH_MIGRATOR_")}
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", "env", "info", *args],
        capture_output=True,
        text=True,
        cwd=ORDERBOT,
        env=env,
        timeout=300,
    )


def test_env_info_imports_the_app_profile_in_the_environment():
    proc = _env_info("current", "--json")
    assert proc.returncode == 0, proc.stderr
    app = json.loads(proc.stdout)["app"]
    assert app["graphs"] == {
        "orders": "orderbot.graphs:build_orders",
        "returns": "orderbot.graphs:build_returns",
    }
    assert app["imports"] == "ok"

    assert json.loads(proc.stdout)["env"]["python"] == sys.executable
    text = _env_info("current")
    assert "app profile from pyproject.toml: orders, returns: imports ok" in text.stdout
    # the interpreter to run a script in the environment (a trial had to read the code)
    assert f"  python: {sys.executable}" in text.stdout.splitlines()


def test_env_info_names_a_graph_that_does_not_import():
    proc = _env_info("current", "--graph", "broken=orderbot.nope:build")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "graph broken" in proc.stderr
    assert "orderbot.nope" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
