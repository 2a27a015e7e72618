"""Requirements files: every line is a pin, something pip knows, or an error naming it
(issue 12 #10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.envs import parse_requirements_text, parse_version_set
from migrator.errors import ConfigError

PINS = "langgraph-checkpoint-postgres==2.0.8\nlanggraph==0.2.56\n"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (PINS + "this is not a requirement\n", 3, "is not a requirement"),
        (PINS + "langgraph-checkpoint=2.0.8\n", 3, "is not a requirement"),
        ("langgraph>=0.2\n" + PINS, 1, "does not pin langgraph"),
        (PINS + "--frobnicate yes\n", 3, "is not a requirement or an option pip knows"),
        ("# a comment\n\n" + PINS + "-r\n", 5, "-r names no file"),
        (PINS + "langgraph==not.a.version!\n", 3, "langgraph"),
    ],
    ids=["garbage", "single-equals", "range-of-a-key-package", "unknown-option", "empty-r", "bad"],
)
def test_a_line_that_is_not_understood_is_an_error_naming_it(
    text: str, line: int, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_requirements_text(text, name="reqs.txt")
    assert fragment in str(info.value)
    if fragment != "langgraph":
        assert f"reqs.txt line {line}" in str(info.value)
    assert info.value.exit_code == 2


def test_missing_include_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(PINS + "-r missing.txt\n")
    with pytest.raises(ConfigError) as info:
        parse_version_set(str(path))
    assert "requirements.txt line 3: -r missing.txt: no such file" in str(info.value)


def test_includes_are_followed(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("langgraph==0.2.56\n")
    (tmp_path / "constraints.txt").write_text("langchain-core==0.3.22\n")
    path = tmp_path / "requirements.txt"
    path.write_text(
        "-r base.txt\n--constraint=constraints.txt\nlanggraph-checkpoint-postgres==2.0.8\n"
    )
    vs = parse_version_set(str(path))
    assert dict(vs.pins) == {
        "langchain-core": "0.3.22",
        "langgraph": "0.2.56",
        "langgraph-checkpoint-postgres": "2.0.8",
    }


def test_an_include_that_contradicts_is_refused(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("langgraph==0.2.60\n")
    path = tmp_path / "requirements.txt"
    path.write_text(PINS + "-rbase.txt\n")
    with pytest.raises(ConfigError, match="pins langgraph twice"):
        parse_version_set(str(path))


def test_an_include_loop_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(PINS + "-r requirements.txt\n")
    with pytest.raises(ConfigError, match="includes itself"):
        parse_version_set(str(path))


def test_includes_in_plain_text_are_refused() -> None:
    with pytest.raises(ConfigError, match="cannot follow an include"):
        parse_requirements_text(PINS + "-r other.txt\n")
