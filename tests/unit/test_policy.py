"""policy.py: parsing the user's drift policy and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.errors import ConfigError
from migrator.policy import Policy, load_policy, match_path, parse_policy

P = 'threads["canary:messages"].checkpoints[ns="",id="1ef"].channel_values.messages[2]'


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_match_path_only_star_and_question_mark_are_special() -> None:
    assert match_path(P, P)  # a path copied from a report matches itself
    assert match_path('threads["canary:messages"].*', P)
    assert match_path("*.channel_values.messages[?]", P)
    assert not match_path("*.channel_values.messages[1]", P)
    assert not match_path('threads["canary:messages"]', P)  # whole path, not a prefix
    assert not match_path("threads[c]*", 'threads["canary:messages"]')  # [ ] are literal


def test_load_from_pyproject(tmp_path: Path) -> None:
    pyproject = write(
        tmp_path,
        "pyproject.toml",
        """
[project]
name = "app"

[tool.langgraph-migrator]
something_else = 1

[tool.langgraph-migrator.policy]
ignore = ['threads["canary:large_state"].*']
benign = ["*.metadata.my_app_*"]
hazards_ignore = ["H-STRICT-MSGPACK"]
""",
    )
    policy = load_policy(pyproject, None)
    assert policy.ignore == ('threads["canary:large_state"].*',)
    assert policy.benign == ("*.metadata.my_app_*",)
    assert policy.hazards_ignore == ("H-STRICT-MSGPACK",)
    assert policy.source == str(pyproject)
    assert not policy.empty


def test_pyproject_without_our_table_is_an_empty_policy(tmp_path: Path) -> None:
    pyproject = write(tmp_path, "pyproject.toml", '[project]\nname = "app"\n')
    assert load_policy(pyproject, None).empty
    assert load_policy(None, None) == Policy()


def test_policy_file_top_level_keys_and_precedence(tmp_path: Path) -> None:
    pyproject = write(
        tmp_path, "pyproject.toml", '[tool.langgraph-migrator.policy]\nignore = ["a"]\n'
    )
    policy_file = write(tmp_path, "policy.toml", 'benign = ["b"]\n')
    policy = load_policy(pyproject, policy_file)
    assert (policy.ignore, policy.benign) == ((), ("b",))
    # a pyproject passed as --policy is read from its tool table
    assert load_policy(None, pyproject).ignore == ("a",)


def test_classify_order() -> None:
    policy = Policy(ignore=("x.*",), benign=("x.*", "y"), hazards_ignore=("H-TASK-ID",))
    assert policy.classify("x.a") == ("ignored", "policy:ignore:x.*")
    assert policy.classify("y") == ("benign", "policy:benign:y")
    assert policy.classify("y", "H-TASK-ID") == ("ignored", "policy:hazards_ignore:H-TASK-ID")
    assert policy.classify("z") is None
    assert policy.to_dict()["hazards_ignore"] == ["H-TASK-ID"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ignore = [", "not valid TOML"),
        ('ignored = ["a"]', "unknown policy key(s) ignored"),
        ('ignore = "a"', "'ignore' must be a list of non-empty strings"),
        ("benign = [1]", "'benign' must be a list of non-empty strings"),
        ('benign = [""]', "'benign' must be a list of non-empty strings"),
        ('hazards_ignore = ["strict"]', "hazards_ignore entries must be hazard ids"),
        ("[tool]\nlanggraph-migrator = 1", "[tool.langgraph-migrator] must be a table"),
        (
            '[tool.langgraph-migrator]\npolicy = "x"',
            "[tool.langgraph-migrator.policy] must be a table",
        ),
    ],
)
def test_invalid_policy_file_is_a_config_error_naming_the_file(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, "policy.toml", text)
    with pytest.raises(ConfigError) as info:
        load_policy(None, path)
    assert info.value.exit_code == 2
    message = str(info.value)
    assert message.startswith(str(path))
    assert problem in message
    assert "\n" not in message


def test_missing_files_are_config_errors(tmp_path: Path) -> None:
    for kwargs in (
        {"policy_file": tmp_path / "nope.toml"},
        {"pyproject_path": tmp_path / "no.toml"},
    ):
        with pytest.raises(ConfigError, match="not found"):
            load_policy(**kwargs)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(None, tmp_path)  # a directory


def test_parse_policy_defaults() -> None:
    assert parse_policy({}) == Policy(source="policy")
