"""Config precedence: flag > LANGGRAPH_MIGRATOR_* env > [tool.langgraph-migrator] > default."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from migrator.cli import cli
from migrator.errors import ConfigError
from migrator.settings_file import build_default_map, envvar_names, iter_commands

PYPROJECT = """\
[project]
name = "app"

[tool.langgraph-migrator]
timeout = 42
dsn = "postgresql://app:hunter2@db.internal/app"

[tool.langgraph-migrator.upgrade-check]
from = "langgraph-checkpoint-postgres==2.0.8"
canary = ["messages", "subgraph"]
threads-from = "host=db password=s3cret dbname=app"

[tool.langgraph-migrator.pg.up]
major = 16

[tool.langgraph-migrator.policy]
ignore = ["threads.*.metadata.writes"]
"""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LANGGRAPH_MIGRATOR_")}


def _run(args, cwd, **env):
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env() | env,
        timeout=120,
    )


def _show(cwd, *args, **env) -> dict[str, dict]:
    proc = _run(["config", "show", "--json", *args], cwd, **env)
    assert proc.returncode == 0, proc.stderr
    return {f"{r['command']} {r['option']}": r for r in json.loads(proc.stdout)}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    return tmp_path


def test_precedence_flag_over_env_over_file_over_default(project):
    rows = _show(project, "upgrade-check", "--timeout", "9")
    assert rows["upgrade-check --timeout"]["value"] == 9.0
    assert rows["upgrade-check --timeout"]["source"] == "flag"
    assert rows["upgrade-check --from"] == {
        "command": "upgrade-check",
        "option": "--from",
        "value": "langgraph-checkpoint-postgres==2.0.8",
        "source": "file",
        "origin": "pyproject.toml [tool.langgraph-migrator.upgrade-check] from",
    }
    assert rows["upgrade-check --to"]["source"] == "default"
    assert rows["upgrade-check --to"]["value"] == ["current"]  # repeatable: several targets
    assert rows["upgrade-check --canary"]["value"] == ["messages", "subgraph"]

    rows = _show(project, "upgrade-check", LANGGRAPH_MIGRATOR_UPGRADE_CHECK_TIMEOUT="7")
    assert (
        rows["upgrade-check --timeout"]["value"],
        rows["upgrade-check --timeout"]["source"],
    ) == (
        7.0,
        "env",
    )
    assert rows["upgrade-check --timeout"]["origin"] == "LANGGRAPH_MIGRATOR_UPGRADE_CHECK_TIMEOUT"

    rows = _show(project, "upgrade-check")
    assert rows["upgrade-check --timeout"]["value"] == 42.0  # top-level key of the file
    assert (
        rows["upgrade-check --timeout"]["origin"]
        == "pyproject.toml [tool.langgraph-migrator] timeout"
    )


def test_long_env_name_wins_over_short_one(project):
    rows = _show(
        project,
        "upgrade-check",
        LANGGRAPH_MIGRATOR_TO="langgraph-checkpoint-postgres==3.0.0",
        LANGGRAPH_MIGRATOR_UPGRADE_CHECK_TO="langgraph-checkpoint-postgres==3.0.1",
    )
    assert rows["upgrade-check --to"]["value"] == ["langgraph-checkpoint-postgres==3.0.1"]
    rows = _show(
        project, "upgrade-check", LANGGRAPH_MIGRATOR_TO="langgraph-checkpoint-postgres==3.0.0"
    )
    assert rows["upgrade-check --to"]["value"] == ["langgraph-checkpoint-postgres==3.0.0"]
    assert rows["upgrade-check --to"]["origin"] == "LANGGRAPH_MIGRATOR_TO"


def test_nested_commands_and_all_commands(project):
    rows = _show(project, LANGGRAPH_MIGRATOR_PG_UP_PROVIDER="local")
    assert rows["pg up --major"]["value"] == 16 and rows["pg up --major"]["source"] == "file"
    assert (
        rows["pg up --provider"]["value"] == "local" and rows["pg up --provider"]["source"] == "env"
    )
    commands = {r.split(" --")[0] for r in rows}
    assert {"upgrade-check", "pg up", "pg down", "env info"} <= commands


def test_passwords_are_masked_everywhere(project):
    proc = _run(["config", "show"], project, LANGGRAPH_MIGRATOR_PG="postgresql://u:envpass@h/db")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for secret in ("hunter2", "s3cret", "envpass"):
        assert secret not in out
    assert "postgresql://app:***@db.internal/app" in out
    assert "password=***" in out


def test_env_and_file_values_reach_the_real_command(project):
    """Not only `config show`: the command itself runs with the resolved values."""
    bad = project / "pyproject.toml"
    bad.write_text(PYPROJECT.replace("canary = [", 'pg = "nonsense"\ncanary = ['))
    proc = _run(["upgrade-check", "--json", "out.json"], project)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --pg 'nonsense'"), proc.stderr
    assert not (project / "out.json").exists()
    # The environment beats the file; the flag beats the environment.
    proc = _run(["upgrade-check"], project, LANGGRAPH_MIGRATOR_PG="bogus-env")
    assert "--pg 'bogus-env'" in proc.stderr and proc.returncode == 2
    proc = _run(["upgrade-check", "--pg", "bogus-flag"], project, LANGGRAPH_MIGRATOR_PG="bogus-env")
    assert "--pg 'bogus-flag'" in proc.stderr and proc.returncode == 2


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[tool.langgraph-migrator.upgrade-check]\nfrm = "x"\n', "unknown key(s) frm"),
        ("[tool.langgraph-migrator.no-such-command]\nx = 1\n", "no command 'no-such-command'"),
        (
            "[tool.langgraph-migrator]\nnot_an_option = 1\n",
            "no command has an option not_an_option",
        ),
        ("[tool.langgraph-migrator\n", "cannot read"),
    ],
)
def test_bad_config_is_a_one_line_usage_error(tmp_path, table, message):
    (tmp_path / "pyproject.toml").write_text(table)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = _run(["config", "show"], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert "Hint:" in lines[0] or "cannot read" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unknown_command_for_show_exits_2(tmp_path):
    proc = _run(["config", "show", "no-such"], tmp_path)
    assert proc.returncode == 2 and "no command 'no-such'" in proc.stderr


def test_policy_table_is_not_a_flag_source(project):
    rows = _show(project, "upgrade-check")
    assert rows["upgrade-check --policy"]["source"] == "default"


def test_mechanism_is_generic_over_commands_added_later():
    """A command nobody told settings_file about gets file keys and env names too."""
    group = click.Group("root")

    @group.group("newgroup")
    def newgroup():
        pass

    @newgroup.command("act")
    @click.option("--target-dsn", required=True)
    @click.option("--dry-run", is_flag=True)
    @click.pass_context
    def act(ctx, target_dsn, dry_run):
        click.echo(f"{target_dsn} {dry_run} {ctx.get_parameter_source('target_dsn').name}")

    assert [p for p, _ in iter_commands(group)] == [("newgroup", "act")]
    option = act.params[0]
    assert envvar_names(("newgroup", "act"), option) == [
        "LANGGRAPH_MIGRATOR_NEWGROUP_ACT_TARGET_DSN",
        "LANGGRAPH_MIGRATOR_TARGET_DSN",
    ]
    assert envvar_names(("newgroup", "act"), act.params[1]) == [
        "LANGGRAPH_MIGRATOR_NEWGROUP_ACT_DRY_RUN"
    ]  # on/off flags have no short form
    table = {"target-dsn": "top", "newgroup": {"act": {"dry_run": True}}}
    assert build_default_map(group, table) == {
        "newgroup": {"act": {"target_dsn": "top", "dry_run": True}}
    }
    with pytest.raises(ConfigError, match="unknown key"):
        build_default_map(group, {"newgroup": {"act": {"nope": 1}}})


def test_every_command_of_the_real_cli_is_covered():
    """Each option of each command gets env names (run through the real group callback)."""
    result = CliRunner().invoke(cli, ["config", "show", "--json"], env={"LANGGRAPH_MIGRATOR_X": ""})
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    shown = {r["command"] for r in rows}
    for path, command in iter_commands(cli):
        if any(isinstance(p, click.Option) and not p.hidden for p in command.params):
            assert " ".join(path) in shown
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.envvar, f"{' '.join(path)} {param.opts} has no env var"


APP_PYPROJECT = """\
[project]
name = "shop"

[tool.langgraph-migrator.app]
paths = ["src"]
graphs = { orders = "shop.graphs:orders" }
serde = "shop.persistence:make_serde"
key_env = "SHOP_AES_KEY"
"""


def test_config_show_reports_the_app_table_as_the_command_resolves_it(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "pyproject.toml").write_text(APP_PYPROJECT)
    rows = _show(tmp_path, "upgrade-check")
    assert rows["upgrade-check --app-path"]["value"] == ["src"]  # relative: no machine path
    assert rows["upgrade-check --graph"] == {
        "command": "upgrade-check",
        "option": "--graph",
        "value": ["orders=shop.graphs:orders"],
        "source": "file",
        "origin": "pyproject.toml [tool.langgraph-migrator.app] graphs",
    }
    assert rows["upgrade-check --serde"]["source"] == "file"
    assert rows["upgrade-check --key-env"]["value"] == "SHOP_AES_KEY"
    assert rows["upgrade-check --thread-graph"]["source"] == "default"

    # A flag adds a graph to the file's (as the command does) and replaces the serde.
    rows = _show(tmp_path, "verify", "--graph", "returns=shop.graphs:returns", "--serde", "x:y")
    graph = rows["verify --graph"]
    assert graph["value"] == ["orders=shop.graphs:orders", "returns=shop.graphs:returns"]
    assert (graph["source"], graph["origin"]) == (
        "flag",
        "merged with pyproject.toml [tool.langgraph-migrator.app] graphs",
    )
    assert (rows["verify --serde"]["value"], rows["verify --serde"]["source"]) == ("x:y", "flag")


def test_config_show_without_an_app_table_shows_defaults(tmp_path):
    rows = _show(tmp_path, "migrate")
    assert rows["migrate --graph"]["source"] == "default"
    assert rows["migrate --graph"]["value"] == []
    assert rows["migrate --app-path"]["value"] == []


def test_config_show_adds_the_app_profiles_allow_types_to_allow_type(tmp_path):
    """restore allows --allow-type plus the app table's allow_types: config show says both."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.langgraph-migrator.app]\nallow_types = ["shop.models.Order"]\n'
    )
    row = _show(tmp_path, "restore")["restore --allow-type"]
    assert row["value"] == ["shop.models.Order"]
    assert (row["source"], row["origin"]) == (
        "file",
        "pyproject.toml [tool.langgraph-migrator.app] allow_types",
    )
    row = _show(tmp_path, "restore", "--allow-type", "a.B")["restore --allow-type"]
    assert row["value"] == ["a.B", "shop.models.Order"]
    assert row["origin"].endswith("plus pyproject.toml [tool.langgraph-migrator.app] allow_types")
    assert _show(tmp_path / "..", "restore")["restore --allow-type"]["source"] == "default"
