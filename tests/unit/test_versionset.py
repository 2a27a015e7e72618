"""Version-set parsing and the era registry (pure: no installs, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator import envs
from migrator.envs import (
    CHECKPOINT_POSTGRES,
    ConfigError,
    VersionSet,
    known_eras,
    load_eras,
    parse_lock_text,
    parse_requirements_text,
    parse_spec,
    parse_version_set,
)

REPO = Path(__file__).resolve().parents[2]
ERAS = {e.name: e for e in known_eras()}


def test_packaged_copy_is_identical_to_canary_fixtures() -> None:
    canonical = (REPO / "canary_fixtures" / "versions.toml").read_bytes()
    packaged = (REPO / "migrator" / "data" / "versions.toml").read_bytes()
    assert packaged == canonical, "run: cp canary_fixtures/versions.toml migrator/data/"


def test_every_era_pins_the_key_packages_and_has_a_cap() -> None:
    assert {"1.0.0", "1.0.1", "2.0.8", "2.0.10", "2.0.12", "2.0.13", "3.2.0"} <= set(ERAS)
    for era in ERAS.values():
        pins = dict(era.pins)
        assert pins[CHECKPOINT_POSTGRES] == era.name
        for name in (*envs.KEY_PACKAGES, "psycopg"):
            assert name in pins, (era.name, name)
        assert era.exclude_newer and era.exclude_newer.endswith("Z")
    assert [e.name for e in known_eras()][:2] == ["1.0.0", "1.0.1"]
    assert known_eras()[-1].name == "3.2.0"


def test_bare_spec_picks_the_era() -> None:
    vs = parse_spec("langgraph-checkpoint-postgres==2.0.8", ERAS)
    assert vs.pin("langgraph") == "0.2.56"
    assert vs.pin("langchain-core") == "0.3.22"
    assert vs.exclude_newer == ERAS["2.0.8"].exclude_newer
    assert vs.era == "2.0.8" and vs.source == "era"
    assert vs.label == "checkpoint-postgres==2.0.8 / langgraph==0.2.56"
    assert "psycopg[binary]==3.2.3" in vs.requirements()


@pytest.mark.parametrize(
    "spec",
    [
        "langgraph-checkpoint-postgres==2.0.8",
        "checkpoint-postgres==2.0.8",
        "langgraph_checkpoint_postgres == 2.0.8",
        "2.0.8",
        "Langgraph-Checkpoint-Postgres==2.0.8 langgraph==0.2.56",
        "langgraph==0.2.56, checkpoint-postgres==2.0.8",
    ],
)
def test_spellings_give_the_same_set(spec: str) -> None:
    assert parse_spec(spec, ERAS) == parse_spec("langgraph-checkpoint-postgres==2.0.8", ERAS)


def test_langgraph_override_drops_companions_and_keeps_cap() -> None:
    vs = parse_spec("checkpoint-postgres==2.0.8, langgraph==0.2.62", ERAS)
    assert vs.pin("langgraph") == "0.2.62"
    assert vs.pin("langgraph-checkpoint") is None
    assert vs.pin("langchain-core") is None
    assert vs.pin("psycopg") == "3.2.3"
    assert vs.exclude_newer == ERAS["2.0.8"].exclude_newer
    assert vs.source == "spec"
    assert vs.label == "checkpoint-postgres==2.0.8 / langgraph==0.2.62"
    explicit = parse_spec(
        "checkpoint-postgres==2.0.8 langgraph==0.2.62 langchain-core==0.3.29", ERAS
    )
    assert explicit.pin("langchain-core") == "0.3.29"


def test_version_outside_the_table_is_capped_by_the_next_era() -> None:
    vs = parse_spec("checkpoint-postgres==2.0.9", ERAS)
    assert vs.pins == (("langgraph-checkpoint-postgres", "2.0.9"),)
    assert vs.exclude_newer == ERAS["2.0.10"].exclude_newer
    assert vs.era is None
    assert vs.requirements() == [
        "langgraph-checkpoint-postgres==2.0.9",
        "langgraph",
        "psycopg[binary]",
    ]
    newest = parse_spec("checkpoint-postgres==99.0.0", ERAS)
    assert newest.exclude_newer is None


def test_key_is_stable_and_order_independent() -> None:
    a = VersionSet(pins=(("a", "1"), ("b", "2")), exclude_newer="2024-01-01T00:00:00Z")
    b = VersionSet(pins=(("b", "2"), ("a", "1")), exclude_newer="2024-01-01T00:00:00Z", label="x")
    assert a.key == b.key
    assert len(a.key) == 16
    assert a.key != VersionSet(pins=(("a", "1"), ("b", "2"))).key
    assert a.key != VersionSet(pins=(("a", "1"), ("b", "3")), exclude_newer=a.exclude_newer).key
    one = parse_spec("langgraph==0.2.56 checkpoint-postgres==2.0.8", ERAS)
    two = parse_spec("checkpoint-postgres==2.0.8,langgraph==0.2.56", ERAS)
    assert one.key == two.key
    # Pinned here so that an accidental change to the hash recipe is noticed.
    assert one.key == parse_spec("2.0.8", ERAS).key


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty"),
        ("   ,  ", "empty"),
        ("langgraph>=0.2", "not name==version"),
        ("hello world", "not name==version"),
        ("langgraph==0.2.56", "does not name langgraph-checkpoint-postgres"),
        ("checkpoint-postgres==2.0.8 checkpoint-postgres==2.0.9", "twice"),
        ("checkpoint-postgres==banana", "not a valid version"),
        ("langgraph==0.0.0.nonexistent checkpoint-postgres==2.0.8", "not a valid version"),
    ],
)
def test_garbage_specs_are_config_errors(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(spec, ERAS)
    assert fragment in str(info.value)
    assert "\n" not in info.value.message
    assert info.value.exit_code == 2


REQUIREMENTS = """\
# This file was autogenerated by uv via the following command:
#    uv pip compile requirements.in
langchain-core==0.3.22 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
    # via langgraph
langgraph==0.2.56
langgraph-checkpoint==2.0.8      # via langgraph
langgraph_checkpoint_postgres==2.0.8
psycopg[binary]==3.2.3
pywin32==306 ; sys_platform == "win32"
tomli==2.0.1 ; python_version < "3.11"
typing-extensions==4.12.2 ; python_version >= "3.8"
-e ./myapp
myapp @ file:///somewhere/myapp
--index-url https://example.invalid/simple
requests>=2
"""


def test_requirements_text() -> None:
    pins = parse_requirements_text(REQUIREMENTS)
    assert pins == {
        "langchain-core": "0.3.22",
        "langgraph": "0.2.56",
        "langgraph-checkpoint": "2.0.8",
        "langgraph-checkpoint-postgres": "2.0.8",
        "psycopg": "3.2.3",
        "typing-extensions": "4.12.2",
    }


def test_requirements_file_is_not_completed_from_the_era(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("langgraph-checkpoint-postgres==2.0.8\nlanggraph==0.2.56\n")
    vs = parse_version_set(str(path), eras=ERAS)
    assert vs.pins == (("langgraph", "0.2.56"), ("langgraph-checkpoint-postgres", "2.0.8"))
    assert vs.exclude_newer == ERAS["2.0.8"].exclude_newer
    assert vs.source == "file:requirements.txt"
    assert vs.label.endswith("(file:requirements.txt)")


def test_requirements_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pins langgraph twice"):
        parse_requirements_text("langgraph==0.2.1\nlanggraph==0.2.2\n")
    no_cp = tmp_path / "requirements.txt"
    no_cp.write_text("langgraph==0.2.56\n")
    with pytest.raises(ConfigError, match="does not pin langgraph-checkpoint-postgres"):
        parse_version_set(str(no_cp), eras=ERAS)
    with pytest.raises(ConfigError, match="version file not found"):
        parse_version_set(str(tmp_path / "missing.txt"), eras=ERAS)
    binary = tmp_path / "reqs.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_version_set(str(binary), eras=ERAS)


UV_LOCK = """\
version = 1
requires-python = ">=3.11"

[[package]]
name = "langgraph"
version = "0.2.62"
source = { registry = "https://example.invalid/simple" }

[[package]]
name = "langgraph-checkpoint-postgres"
version = "2.0.12"
source = { registry = "https://example.invalid/simple" }

[[package]]
name = "pywin32"
version = "306"
source = { registry = "https://example.invalid/simple" }

[[package]]
name = "myapp"
version = "0.1.0"
source = { editable = "." }
"""

POETRY_LOCK = """\
[[package]]
name = "langchain-core"
version = "0.3.29"
description = "x"
optional = false

[[package]]
name = "langgraph-checkpoint-postgres"
version = "2.0.13"
description = "x"
optional = false

[metadata]
lock-version = "2.0"
"""


def test_lock_files(tmp_path: Path) -> None:
    assert parse_lock_text(UV_LOCK) == {
        "langgraph": "0.2.62",
        "langgraph-checkpoint-postgres": "2.0.12",
    }
    (tmp_path / "uv.lock").write_text(UV_LOCK)
    vs = parse_version_set(str(tmp_path / "uv.lock"), eras=ERAS)
    assert vs.pin("langgraph") == "0.2.62" and vs.pin("pywin32") is None
    (tmp_path / "poetry.lock").write_text(POETRY_LOCK)
    vs = parse_version_set(str(tmp_path / "poetry.lock"), eras=ERAS)
    assert dict(vs.pins) == {"langchain-core": "0.3.29", CHECKPOINT_POSTGRES: "2.0.13"}
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_lock_text("[[package]\nname=")


def test_current() -> None:
    vs = parse_version_set("current")
    assert vs.current and vs.source == "current"
    assert vs.pin(CHECKPOINT_POSTGRES) is not None
    assert vs.label.startswith("current (checkpoint-postgres==")
    env = envs.ensure_env(vs)
    assert env.current and env.path is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("eras = [", "not valid TOML"),
        ('[eras."2.0.8"]\nexclude_newer = "2024-01-01"\n', "has no pins"),
        ('[eras."2.0.8"]\npins = { langgraph-checkpoint-postgres = "2.0.9" }\n', "must pin"),
        ('[eras."2.0.8"]\npins = { langgraph-checkpoint-postgres = "2.0.8" }\n', "does not pin"),
    ],
)
def test_load_eras_rejects_malformed_tables(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_eras(text)


def test_load_eras_minimal() -> None:
    text = """
[eras."9.9.9"]
exclude_newer = "2030-01-01T00:00:00Z"
migrations = 3

[eras."9.9.9".pins]
langgraph-checkpoint-postgres = "9.9.9"
langgraph = "9.0"
langgraph_checkpoint = "9.1"
langchain-core = "9.2"
psycopg = "3.9"
"""
    (era,) = load_eras(text).values()
    assert era.name == "9.9.9" and era.migrations == 3
    assert dict(era.pins)["langgraph-checkpoint"] == "9.1"
    vs = parse_spec("9.9.9", load_eras(text))
    assert vs.pin("langgraph") == "9.0" and vs.exclude_newer == "2030-01-01T00:00:00Z"


def test_cache_dir_env_vars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LANGGRAPH_MIGRATOR_CACHE", str(tmp_path / "c"))
    assert envs.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LANGGRAPH_MIGRATOR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert envs.cache_dir() == tmp_path / "x" / "langgraph-migrator"
    vs = parse_spec("2.0.8", ERAS)
    assert envs.env_dir(vs).parent == tmp_path / "x" / "langgraph-migrator" / "envs"
