"""Worker ops forked from one server per environment behave like plain workers.

The CLI runs every command inside :func:`migrator.envs.forkserver.worker_session`;
these tests hold the fork server to the same contract as a fresh process: the
same result, errors, stderr, timeouts and kills, and no state carried from one
op to the next.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from migrator import envs
from migrator.envs import forkserver
from migrator.errors import WorkerError
from migrator.postgres.local import process_alive
from tests.integration.fakeworker import stage_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the worker package plus test-only ops."""
    return stage_worker(tmp_path_factory.mktemp("worker"))


@pytest.fixture(scope="module")
def env() -> envs.VersionEnv:
    return envs.ensure_env(envs.parse_version_set("current"))


def _gone(*pids: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(process_alive(p) for p in pids)


def _servers() -> list[forkserver.ForkServer]:
    return list(forkserver._SESSIONS[0].servers.values())


def test_ops_are_forked_from_one_server(env: envs.VersionEnv, root: Path) -> None:
    big = {"text": "żółw 🐢 \u2028 ok", "blob": "x" * 5_000_000}
    with forkserver.worker_session():
        first = envs.run_worker(env, "whoami", big, worker_path=root)
        second = envs.run_worker(env, "whoami", {"n": 2}, worker_path=root)
        (server,) = _servers()
        assert first["echo"] == big and second["echo"] == {"n": 2}
        assert first["pid"] != second["pid"]  # a process per op
        assert first["ppid"] == second["ppid"] == server.proc.pid
        server_pid = server.proc.pid
    assert _gone(server_pid), "the session left its fork server running"


def test_nothing_an_op_leaves_behind_reaches_the_next(env: envs.VersionEnv, root: Path) -> None:
    with forkserver.worker_session():
        envs.run_worker(env, "leave", {"value": "secret-state"}, worker_path=root)
        assert envs.run_worker(env, "look", {}, worker_path=root) == {"found": None}


def test_crash_is_reported_with_stderr(env: envs.VersionEnv, root: Path) -> None:
    with forkserver.worker_session(), pytest.raises(WorkerError) as info:
        envs.run_worker(env, "die", {}, worker_path=root)
    assert info.value.kind == "crash"
    assert "no output" in str(info.value)
    assert "about to die" in info.value.stderr


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_stopped_op_is_killed_with_its_children(
    env: envs.VersionEnv, root: Path, tmp_path: Path, how: str
) -> None:
    pid_file = tmp_path / "pids"
    cancel = threading.Event()
    if how == "cancel":  # once the op sleeps, as a failing sibling would

        def _cancel_when_sleeping() -> None:
            while not pid_file.exists():
                time.sleep(0.05)
            time.sleep(0.5)
            cancel.set()

        threading.Thread(target=_cancel_when_sleeping, daemon=True).start()
    with forkserver.worker_session():
        with pytest.raises(WorkerError) as info:
            envs.run_worker(
                env,
                "sleep",
                {"pid_file": str(pid_file)},
                timeout=3 if how == "timeout" else 300,
                cancel=cancel,
                worker_path=root,
            )
        assert info.value.kind == ("timeout" if how == "timeout" else "cancelled")
        assert "sleeping now" in info.value.stderr
        worker_pid, child_pid = map(int, pid_file.read_text().split())
        assert _gone(worker_pid, child_pid)
        (server,) = _servers()
        assert server.alive()  # only the op's own process group was killed
        assert envs.run_worker(env, "look", {}, worker_path=root) == {"found": None}


def test_a_dead_server_falls_back_to_a_plain_worker(env: envs.VersionEnv, root: Path) -> None:
    with forkserver.worker_session():
        envs.run_worker(env, "whoami", {}, worker_path=root)
        (server,) = _servers()
        server.close()
        result = envs.run_worker(env, "whoami", {"again": True}, worker_path=root)
        assert result["echo"] == {"again": True}
