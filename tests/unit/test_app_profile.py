"""The app profile: read from pyproject.toml upward, flags win, bad shapes are exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrator.app.profile import (
    WORKER_ENV_VAR,
    active_profile,
    find_app_pyproject,
    load_profile,
    use_profile,
)
from migrator.errors import ConfigError

TABLE = """
[project]
name = "shop"

[tool.langgraph-migrator.app]
paths = ["src"]
graphs = { orders = "shop.graphs:build_orders", returns = "shop.graphs:RETURNS" }
serde = "shop.persist:make_serde"
requirements = ["pydantic>=2"]
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "src" / "shop").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(TABLE)
    return tmp_path


def test_found_from_a_subdirectory_and_paths_are_relative_to_the_file(app_dir: Path) -> None:
    deep = app_dir / "src" / "shop"
    assert find_app_pyproject(deep) == app_dir / "pyproject.toml"
    profile = load_profile(deep)
    assert profile.paths == ((app_dir / "src").resolve(),)
    assert dict(profile.graphs) == {
        "orders": "shop.graphs:build_orders",
        "returns": "shop.graphs:RETURNS",
    }
    assert profile.serde == "shop.persist:make_serde"
    assert profile.requirements == ("pydantic>=2",)


def test_flags_override_the_file(app_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("other")
    profile = load_profile(
        app_dir,
        paths=[other],
        graphs=["orders=shop.v2:build", "shop.extra:audit"],
        serde="shop.persist:other",
    )
    assert profile.paths == (other.resolve(),)
    assert profile.graphs["orders"] == "shop.v2:build"
    assert profile.graphs["audit"] == "shop.extra:audit"
    assert profile.graphs["returns"] == "shop.graphs:RETURNS"
    assert profile.serde == "shop.persist:other"


def test_default_paths_are_the_directory_and_src(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[tool.langgraph-migrator.app]\ngraphs = { a = "m:g" }\n'
    )
    assert load_profile(tmp_path).paths == (tmp_path.resolve(), (tmp_path / "src").resolve())


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('paths = ["missing"]', "'missing' is not a directory"),
        ('graphs = { a = "not a spec" }', "graphs.a"),
        ("graphs = 3", "graphs"),
        ('serde = "nocolon"', "serde"),
        ('colour = "red"', "colour: unknown key"),
        ('requirements = ["-r other.txt"]', "'-r other.txt'"),
        ('requirements = "missing.txt"', "cannot read missing.txt"),
        ('allow_types = ["shop.models.*"]', "'shop.models.*' is not module.Qualname"),
        ('allow_types = "shop.models.Order"', "allow_types: must be a list"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, body: str, needle: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.langgraph-migrator.app]\n{body}\n")
    with pytest.raises(ConfigError) as err:
        load_profile(tmp_path)
    assert err.value.exit_code == 2
    assert needle in str(err.value)
    assert "pyproject.toml" in str(err.value) or body.startswith("requirements")


def test_bad_graph_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--graph"):
        load_profile(tmp_path, graphs=["a=b=c"])
    with pytest.raises(ConfigError, match="twice"):
        load_profile(tmp_path, graphs=["a=m:x", "a=m:y"])


def test_workers_receive_the_active_profile(app_dir: Path) -> None:
    profile = load_profile(app_dir)
    assert active_profile() is None
    with use_profile(profile):
        assert active_profile() is profile
        sent = json.loads(profile.worker_env()[WORKER_ENV_VAR])
    assert active_profile() is None
    assert sent["paths"] == [str((app_dir / "src").resolve())]
    assert sent["graphs"]["orders"] == "shop.graphs:build_orders"
    assert "requirements" not in sent


def test_no_table_is_an_empty_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    monkeypatch.chdir(tmp_path)
    profile = load_profile()
    assert profile.empty
    assert profile.worker_env() == {}


def test_app_requirements_go_into_envs_built_from_a_spec(app_dir: Path) -> None:
    from migrator.envs import parse_version_set
    from migrator.envs.build import with_app_requirements

    profile = load_profile(app_dir)
    spec = parse_version_set("langgraph-checkpoint-postgres==2.0.8")
    with_app = with_app_requirements(spec, profile)
    assert with_app.app_requirements == ("pydantic>=2",)
    assert "pydantic>=2" in with_app.requirements()
    assert with_app.key != spec.key  # its own cached environment
    assert with_app.label.endswith("+ app requirements")
    assert with_app_requirements(parse_version_set("current"), profile).app_requirements == ()
    assert with_app_requirements(spec, None) == spec


def test_allow_types_are_the_apps_own_classes_for_restore(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.langgraph-migrator.app]\n"
        'allow_types = ["shop.models.Order", "shop.models.Order", "shop.kinds.Status"]\n'
    )
    profile = load_profile(tmp_path)
    assert profile.allow_types == ("shop.models.Order", "shop.kinds.Status")
    assert "allow_types" not in json.loads(profile.worker_env()[WORKER_ENV_VAR])
