"""docs/cli.md is the click help of every command, regenerated and compared in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from migrator.cli import cli

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "ci" / "gen_cli_docs.py"
CLI_MD = REPO / "docs" / "cli.md"


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[str]:
    names = []
    for name, command in group.commands.items():
        names.append(" ".join((*prefix, name)))
        if isinstance(command, click.Group):
            names.extend(all_commands(command, (*prefix, name)))
    return names


def generate(out: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGGRAPH_MIGRATOR_")}
    subprocess.run([sys.executable, str(GENERATOR), str(out)], check=True, env=env, cwd=REPO)
    return out.read_text(encoding="utf-8")


def test_checked_in_cli_reference_is_current(tmp_path: Path) -> None:
    fresh = generate(tmp_path / "cli.md")
    assert CLI_MD.read_text(encoding="utf-8") == fresh, (
        "docs/cli.md is out of date: run `python ci/gen_cli_docs.py`"
    )


def test_every_command_has_a_section_with_its_usage() -> None:
    text = CLI_MD.read_text(encoding="utf-8")
    names = all_commands(cli)
    expected = {
        "upgrade-check", "plan", "migrate", "verify", "canary seed", "canary list",
        "backup", "restore-backup", "dump", "restore", "cleanup", "pg up", "pg down",
        "pg list", "env info", "config show",
    }  # fmt: skip
    assert expected <= set(names)
    for name in names:
        assert f"## `langgraph-migrator {name}`" in text, f"{name} has no docs entry"
        assert f"Usage: langgraph-migrator {name}" in text, f"{name} help lacks its usage"


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "cli.md"
    stale.write_text("# CLI reference\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check", str(stale)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "out of date" in result.stderr
    assert stale.read_text(encoding="utf-8") == "# CLI reference\n"  # --check writes nothing
