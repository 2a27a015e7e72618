"""An environment's ``info`` is asked once and kept (``migrator.envs.info``).

Real workers (the tool's own interpreter); the kept files are read back and altered to
prove which answer a call used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg
import pytest

from migrator import envs
from migrator.envs import VersionEnv, current_version_set, env_info
from migrator.envs.info import KEPT_DIR

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("LANGGRAPH_MIGRATOR_CACHE", str(root))
    return root


def _kept(cache: Path) -> Path:
    found = sorted((cache / KEPT_DIR).glob("*/info.json"))
    assert len(found) == 1, found
    return found[0]


def test_current_is_asked_once_then_read_from_the_cache(cache: Path) -> None:
    env = envs.ensure_env(current_version_set())
    first = env_info(env)
    assert first["migrations"] and first["versions"]["langgraph"]
    path = _kept(cache)
    kept = json.loads(path.read_text())
    assert kept["answer"] == first
    # the next call reads the file, not the worker: an altered answer comes back as is
    kept["answer"]["migrations"] = ["-- kept"]
    path.write_text(json.dumps(kept))
    assert env_info(env)["migrations"] == ["-- kept"]
    # an answer from other tool code is asked again (and replaced)
    kept["code"] = "older"
    path.write_text(json.dumps(kept))
    assert env_info(env)["migrations"] == first["migrations"]
    assert json.loads(path.read_text())["code"] != "older"


def test_a_corrupt_kept_answer_is_asked_again(cache: Path) -> None:
    env = envs.ensure_env(current_version_set())
    first = env_info(env)
    _kept(cache).write_text("{not json")
    assert env_info(env) == first
    assert json.loads(_kept(cache).read_text())["answer"] == first


def test_a_built_environment_keeps_its_answer_beside_its_marker(
    cache: Path, tmp_path: Path
) -> None:
    root = tmp_path / "env"
    root.mkdir()
    env = VersionEnv(python=Path(sys.executable), version_set=current_version_set(), path=root)
    info = env_info(env)
    assert json.loads((root / KEPT_DIR / "info.json").read_text())["answer"] == info
    assert not (cache / KEPT_DIR).exists()


def test_a_cache_that_cannot_be_written_only_costs_time(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "env"
    not_a_dir.write_text("a file where the environment directory should be")
    env = VersionEnv(python=Path(sys.executable), version_set=current_version_set(), path=not_a_dir)
    assert env_info(env)["migrations"]
    assert not_a_dir.read_text().startswith("a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env"]  # no stray temporary file


def test_the_reference_schema_is_kept_per_environment_and_major(cache: Path, pg_default) -> None:
    """plan's reference (what the target's setup() builds on an empty database) is built
    by a worker once per environment and server major, then read from the kept answer."""
    from migrator.plan import live

    env = envs.ensure_env(current_version_set())
    with psycopg.connect(pg_default.dsn) as conn:
        major = int(conn.info.server_version) // 10000
    live._REFERENCES.clear()
    built = live.build_reference(env, pg_default.dsn)
    assert "checkpoints" in built.tables
    path = cache / KEPT_DIR
    kept_files = sorted(p.name for p in path.glob("*/*.json"))
    assert f"reference-pg{major}.json" in kept_files, kept_files
    kept_path = next(path.glob(f"*/reference-pg{major}.json"))
    kept = json.loads(kept_path.read_text())
    kept["answer"]["tables"] = [t for t in kept["answer"]["tables"] if t["name"] != "checkpoints"]
    kept_path.write_text(json.dumps(kept))
    live._REFERENCES.clear()
    again = live.build_reference(env, pg_default.dsn)
    assert "checkpoints" not in again.tables  # read from the kept answer, no worker ran
    live._REFERENCES.clear()
