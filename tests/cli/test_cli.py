"""The CLI: every command has help; bad input exits with its code and a one-line error."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from migrator.cli import cli, main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


ALL_COMMANDS = [path for path, _ in _commands(cli)]


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=[" ".join(p) for p in ALL_COMMANDS])
def test_every_command_has_help(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    command = dict(_commands(cli))[path]
    assert command.help and command.help.strip(), f"{' '.join(path)} has no docstring"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_pg_choice_is_a_usage_error():
    proc = _run(
        "upgrade-check", "--from", "langgraph-checkpoint-postgres==2.0.8", "--pg", "nonsense"
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --pg 'nonsense'"), proc.stderr


def test_missing_required_option_exits_2():
    proc = _run("upgrade-check")
    assert proc.returncode == 2
    assert "--from" in proc.stderr


def test_unknown_command_exits_2():
    assert _run("no-such-command").returncode == 2


def test_version_exits_0():
    proc = _run("--version")
    assert proc.returncode == 0 and "langgraph-migrator" in proc.stdout


def test_bug_exits_70(monkeypatch, capsys):
    def boom(*_a, **_k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr("migrator.api.upgrade_check", boom)
    with pytest.raises(SystemExit) as exc:
        main(["upgrade-check", "--from", "langgraph-checkpoint-postgres==2.0.8", "--pg", "local"])
    assert exc.value.code == 70
    assert "kaboom" in capsys.readouterr().err
