"""Real version environments: installs from the package index into the cache.

Era envs go to the real cache (``LANGGRAPH_MIGRATOR_CACHE`` or the default), so a
warm run only starts workers. Failure and concurrency tests use a temporary cache.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from migrator import envs
from migrator.envs import (
    ConfigError,
    EnvBuildError,
    VersionEnv,
    WorkerError,
    ensure_env,
    known_eras,
    parse_version_set,
    run_worker,
)
from tests.integration.fakeworker import stage_worker

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ERAS = known_eras()


def _dirs(cache: Path) -> list[str]:
    root = cache / "envs"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


@pytest.mark.parametrize("era", ERAS, ids=[e.name for e in ERAS])
def test_era_installs_imports_and_has_its_migrations(era: envs.Era) -> None:
    vs = parse_version_set(f"langgraph-checkpoint-postgres=={era.name}")
    env = ensure_env(vs)
    info = run_worker(env, "info", {}, timeout=120)
    versions = info["versions"]
    for name, version in era.pins:
        assert versions[name] == version, name
    assert versions["psycopg-binary"] == versions["psycopg"]
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert isinstance(info["libpq_version"], int) and info["libpq_version"] > 0
    assert len(info["migrations"]) == era.migrations, (era.name, len(info["migrations"]))
    assert all(isinstance(sql, str) for sql in info["migrations"])
    if era.migrations == 0:
        assert info["has_ledger"] is False and info["notes"]
        assert len(info["setup_sql"]) == 3
    else:
        assert "CREATE TABLE IF NOT EXISTS checkpoint_migrations" in info["migrations"][0]
    marker = json.loads((env.path / ".migrator-env.json").read_text())  # type: ignore[operator]
    assert marker["migrations"] == era.migrations


def test_h_ledger_shift_is_visible_in_the_migrations() -> None:
    """2.0.8 has an empty statement at index 5 that 2.0.10 dropped (H-LEDGER-SHIFT)."""
    old = run_worker(ensure_env(parse_version_set("2.0.8")), "info", {})["migrations"]
    mid = run_worker(ensure_env(parse_version_set("2.0.10")), "info", {})["migrations"]
    assert old[5].strip() == ""
    assert [m for m in old if m.strip()] == mid


def test_second_ensure_env_is_a_cache_hit() -> None:
    vs = parse_version_set("langgraph-checkpoint-postgres==2.0.8")
    first = ensure_env(vs)
    started = time.monotonic()
    messages: list[str] = []
    second = ensure_env(vs, progress=messages.append)
    assert time.monotonic() - started < 0.5
    assert second.path == first.path and second.python == first.python
    assert messages == []
    assert second.label == "checkpoint-postgres==2.0.8 / langgraph==0.2.56"


def test_unpinned_langgraph_is_resolved_under_the_cap_and_labelled(tmp_path: Path) -> None:
    # 2.0.9 is not an era: capped at the 2.0.10 era's date, langgraph resolved.
    env = ensure_env(parse_version_set("checkpoint-postgres==2.0.9"))
    info = run_worker(env, "info", {})
    assert info["versions"]["langgraph-checkpoint-postgres"] == "2.0.9"
    assert info["versions"]["langgraph"].startswith("0.2.")
    assert env.label == f"checkpoint-postgres==2.0.9 / langgraph=={info['versions']['langgraph']}"
    assert len(info["migrations"]) == 9


def test_concurrent_builds_make_one_env(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    script = textwrap.dedent(
        """
        import json, sys
        from migrator.envs import ensure_env, parse_version_set
        env = ensure_env(parse_version_set("langgraph-checkpoint-postgres==2.0.8"))
        print(json.dumps({"path": str(env.path), "python": str(env.python)}))
        """
    )
    environ = {**os.environ, "LANGGRAPH_MIGRATOR_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environ,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    paths = {json.loads(out)["path"] for out, _ in results}
    assert len(paths) == 1
    assert len(_dirs(cache)) == 1
    assert not [p for p in (cache / "envs").iterdir() if p.name.startswith(".tmp-")]


def test_stale_partial_build_is_replaced(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    vs = parse_version_set("langgraph-checkpoint-postgres==2.0.8")
    final = envs.env_dir(vs, cache=cache)
    final.mkdir(parents=True)  # a dir without a marker: not a finished env
    debris = final.parent / f".tmp-{final.name}-1-dead"
    debris.mkdir()
    env = ensure_env(vs, cache=cache)
    assert env.path == final and (final / ".migrator-env.json").is_file()
    assert not debris.exists()


@pytest.mark.parametrize(
    ("spec", "error", "fragment"),
    [
        (
            "langgraph-checkpoint-postgres==9.9.9",
            ConfigError,
            "no such version: langgraph-checkpoint-postgres==9.9.9",
        ),
        (
            "checkpoint-postgres==2.0.8 langgraph-migrator-no-such-package-zz==1.0",
            ConfigError,
            "no such package: langgraph-migrator-no-such-package-zz",
        ),
        # Both exist, but cannot go together: a build error, not a usage error.
        (
            "checkpoint-postgres==2.0.8 langgraph-checkpoint==1.0.2",
            EnvBuildError,
            "could not install",
        ),
    ],
)
def test_failed_install_leaves_nothing(
    tmp_path: Path, spec: str, error: type[Exception], fragment: str
) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(error) as info:
        ensure_env(parse_version_set(spec), cache=cache)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert _dirs(cache) == []
    assert not list((cache / "envs").iterdir())


def test_requirements_file_with_missing_package(tmp_path: Path) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("langgraph-checkpoint-postgres==2.0.8\nno-such-package-for-migrator-zz==0.1\n")
    with pytest.raises(ConfigError, match="no such package") as info:
        ensure_env(parse_version_set(str(reqs)), cache=tmp_path / "cache")
    assert info.value.exit_code == 2
    assert _dirs(tmp_path / "cache") == []
    bad = tmp_path / "bad.txt"
    bad.write_text("langgraph-checkpoint-postgres==2.0.8\nlanggraph==0.0.0.nonexistent\n")
    with pytest.raises(ConfigError, match="not a valid version"):
        parse_version_set(str(bad))


# ------------------------------------------------------------------ workers


@pytest.fixture(scope="module")
def fake_worker_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the worker package plus test-only ops (production code stays clean)."""
    return stage_worker(tmp_path_factory.mktemp("worker"))


@pytest.fixture(scope="module")
def current_env() -> VersionEnv:
    return ensure_env(parse_version_set("current"))


def test_info_in_current_env(current_env: VersionEnv) -> None:
    info = run_worker(current_env, "info", {})
    assert info["versions"]["langgraph"] == current_env.version_set.pin("langgraph")
    assert len(info["migrations"]) >= 10


def test_what_langgraph_logs_in_a_worker_reaches_the_host_once(
    current_env: VersionEnv, fake_worker_root: Path
) -> None:
    """langgraph's warnings (here a type deserialized without being allowed) come back
    with the op's answer; commands put them in their report's notes."""
    envs.drain_worker_log()
    for _ in range(2):
        got = run_worker(current_env, "langgraph_warns", {}, worker_path=fake_worker_root)
        assert got == {"weight": 3}
    said = envs.drain_worker_log()
    assert len(said) == 1, said
    assert "Deserializing unregistered type" in said[0] and "Parcel" in said[0], said
    assert f"(in env {current_env.label})" in said[0], said
    assert envs.drain_worker_log() == []


def test_the_tools_own_classes_are_not_reported_and_unknown_channels_are_explained() -> None:
    from migrator.envs import workers

    workers._keep_log(
        "in env x",
        [
            "langgraph.checkpoint.serde.jsonplus: Deserializing unregistered type "
            "migrator.worker.canaries.rich.CanaryModel from checkpoint.",
            "langgraph.pregel._algo: Task fetch_a with path ('__pregel_pull', 'fetch_a') "
            "wrote to unknown channel fetch_a, ignoring it.",
        ],
    )
    said = envs.drain_worker_log()
    assert len(said) == 1 and "unknown channel fetch_a" in said[0], said
    assert workers.UNKNOWN_CHANNEL_NOTE in said[0] and said[0].endswith("(in env x)")


def test_unknown_op(current_env: VersionEnv) -> None:
    with pytest.raises(WorkerError) as info:
        run_worker(current_env, "no_such_op", {})
    assert info.value.kind == "UnknownOpError"
    assert str(info.value).startswith("worker op no_such_op failed in env current (")
    assert info.value.exit_code == 3


def test_op_that_raises(current_env: VersionEnv, fake_worker_root: Path) -> None:
    with pytest.raises(WorkerError) as info:
        run_worker(current_env, "boom", {}, worker_path=fake_worker_root)
    err = info.value
    assert err.kind == "ValueError"
    assert "\n" not in str(err)
    assert str(err).endswith(": ValueError: bäd value ✓")
    assert "Traceback" in err.stderr and "op_boom.py" in err.stderr


def test_round_trip_non_ascii_and_large(current_env: VersionEnv, fake_worker_root: Path) -> None:
    big = {"text": "żółw 🐢 \u2028 \x00 ok", "blob": "x" * 30_000_000, "n": [1, 2.5, None, True]}
    started = time.monotonic()
    result = run_worker(current_env, "echo", big, worker_path=fake_worker_root)
    assert result["echo"] == big
    assert time.monotonic() - started < 30


def test_crash_is_reported_with_stderr(current_env: VersionEnv, fake_worker_root: Path) -> None:
    with pytest.raises(WorkerError) as info:
        run_worker(current_env, "die", {}, worker_path=fake_worker_root)
    err = info.value
    assert err.kind == "crash"
    assert "exit code 3" in str(err) and "no output" in str(err)
    assert "about to die" in str(err) and "about to die" in err.stderr


def test_unserializable_result(current_env: VersionEnv, fake_worker_root: Path) -> None:
    with pytest.raises(WorkerError) as info:
        run_worker(current_env, "notjson", {}, worker_path=fake_worker_root)
    assert info.value.kind == "TypeError"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_hung_worker_is_killed_with_its_children(
    current_env: VersionEnv, fake_worker_root: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(WorkerError) as info:
        run_worker(
            current_env,
            "sleep",
            {"pid_file": str(pid_file)},
            timeout=3,
            worker_path=fake_worker_root,
        )
    assert time.monotonic() - started < 20
    err = info.value
    assert err.kind == "timeout"
    assert str(err).startswith("worker sleep timed out after 3s")
    assert "sleeping now" in err.stderr
    worker_pid, child_pid = map(int, pid_file.read_text().split())
    deadline = time.monotonic() + 5
    while (_alive(worker_pid) or _alive(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker_pid) and not _alive(child_pid)


def test_worker_does_not_see_the_tools_site_packages(tmp_path: Path) -> None:
    """The staged worker dir holds only migrator/__init__.py and migrator/worker/."""
    root = envs.worker_source_dir(cache=tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["migrator"]
    assert sorted(p.name for p in (root / "migrator").iterdir()) == ["__init__.py", "worker"]
    assert envs.worker_source_dir(cache=tmp_path) == root


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path.name} never appeared"


def _gone(*pids: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


def _sleeper(env: VersionEnv, root: Path, pid_file: Path) -> functools.partial[dict]:
    """A call of the fake ``sleep`` op (300 s) that writes its pids to ``pid_file``."""
    return functools.partial(
        run_worker, env, "sleep", {"pid_file": str(pid_file)}, timeout=300, worker_path=root
    )


def test_cancelled_worker_is_killed_with_its_children(
    current_env: VersionEnv, fake_worker_root: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(_sleeper(current_env, fake_worker_root, pid_file), cancel=cancel)
        _wait_for(pid_file)
        cancel.set()
        started = time.monotonic()
        with pytest.raises(WorkerError) as info:
            running.result(timeout=30)
    assert time.monotonic() - started < 10
    assert info.value.kind == "cancelled"
    assert str(info.value).startswith("worker sleep stopped in env current")
    assert _gone(*map(int, pid_file.read_text().split()))


def test_cancellable_worker_gets_its_whole_request(
    current_env: VersionEnv, fake_worker_root: Path
) -> None:
    """With a cancel event, the request is written across several short waits."""
    big = {"blob": "y" * 30_000_000, "text": "żółw 🐢"}
    result = run_worker(
        current_env, "echo", big, worker_path=fake_worker_root, cancel=threading.Event()
    )
    assert result["echo"] == big


@pytest.fixture(scope="module")
def late_reader_root(fake_worker_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake worker package, but it reads its request only after a second (as every
    real worker does after importing langgraph on a busy machine)."""
    root = tmp_path_factory.mktemp("late-worker")
    shutil.copytree(fake_worker_root / "migrator", root / "migrator")
    main = root / "migrator" / "worker" / "__main__.py"
    text = main.read_text()
    read = "    stdin_data = sys.stdin.buffer.read()\n"
    assert read in text
    main.write_text(text.replace(read, "    __import__('time').sleep(1.0)\n" + read))
    return root


@pytest.mark.parametrize("watch", ["cancel", "idle"])
def test_worker_that_reads_late_gets_its_whole_request(
    current_env: VersionEnv, late_reader_root: Path, watch: str
) -> None:
    """Issue 12 #18: more than a pipe buffer, and no reader during the first polls."""
    big = {"blob": "z" * 2_000_000}
    watched: dict[str, object] = (
        {"cancel": threading.Event()} if watch == "cancel" else {"idle": lambda: 0.0}
    )
    started = time.monotonic()
    result = run_worker(
        current_env, "echo", big, worker_path=late_reader_root, timeout=30, **watched
    )
    assert result["echo"] == big
    assert time.monotonic() - started < 25


def test_first_failure_stops_the_other_workers(
    current_env: VersionEnv, fake_worker_root: Path, tmp_path: Path
) -> None:
    """dump/restore --jobs: a part that fails kills the parts still running."""
    from migrator.dumprestore import run_parallel

    pid_file = tmp_path / "pids"
    calls = [
        _sleeper(current_env, fake_worker_root, pid_file),
        functools.partial(
            run_worker,
            current_env,
            "boom_when",
            {"after": str(pid_file)},
            timeout=300,
            worker_path=fake_worker_root,
        ),
    ]
    started = time.monotonic()
    with pytest.raises(WorkerError) as info:
        run_parallel(2, calls)
    assert time.monotonic() - started < 60  # not the sleeping worker's 300 s
    assert info.value.kind == "ValueError"  # the failure itself, not the cancellation
    assert _gone(*map(int, pid_file.read_text().split()))


def test_idle_timeout_spares_a_worker_that_keeps_moving(
    current_env: VersionEnv, fake_worker_root: Path
) -> None:
    """dump/restore: ``timeout`` limits the time without progress, not the run."""
    from migrator.output.progress import PartProgress

    with PartProgress("dump", 1, lambda _: None, every=3600) as meter:
        started = time.monotonic()
        result = run_worker(
            current_env,
            "progress",
            {"progress_path": meter.path(0), "seconds": 4},
            timeout=1.5,
            worker_path=fake_worker_root,
            idle=meter.idle(0),
        )
        assert time.monotonic() - started > 4  # well past the 1.5 s it was given
        assert result["threads"] > 50


def test_idle_timeout_kills_a_worker_that_stops_moving(
    current_env: VersionEnv, fake_worker_root: Path
) -> None:
    from migrator.output.progress import PartProgress

    with PartProgress("dump", 1, lambda _: None, every=3600) as meter:
        started = time.monotonic()
        with pytest.raises(WorkerError) as info:
            run_worker(
                current_env,
                "progress",
                {"progress_path": meter.path(0), "seconds": 300, "stall_after": 20},
                timeout=1.5,
                worker_path=fake_worker_root,
                idle=meter.idle(0),
            )
        assert time.monotonic() - started < 30
    assert info.value.kind == "timeout"
    assert str(info.value).startswith("worker progress made no progress for 1.5s in env current")
