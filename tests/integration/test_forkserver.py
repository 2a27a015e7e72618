"""Worker ops forked from one server per environment behave like plain workers.

The CLI runs every command inside :func:`migrator.envs.forkserver.worker_session`;
these tests hold the fork server to the same contract as a fresh process: the
same result, errors, stderr, timeouts and kills, and no state carried from one
op to the next.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import threading
import time
from pathlib import Path

import pytest

from migrator import envs
from migrator.envs import forkserver
from migrator.errors import WorkerError

pytestmark = pytest.mark.slow

OPS = {
    "whoami": """
        import os
        def run(request):
            print("printed by a library")
            return {"pid": os.getpid(), "ppid": os.getppid(), "echo": request}
        """,
    "leave": """
        import sys
        def run(request):
            sys.modules["migrator.worker"].LEFT_BEHIND = request["value"]
            return {}
        """,
    "look": """
        import sys
        def run(request):
            return {"found": getattr(sys.modules["migrator.worker"], "LEFT_BEHIND", None)}
        """,
    "die": """
        import os, sys
        def run(request):
            sys.stderr.write("about to die\\n")
            sys.stderr.flush()
            os._exit(3)
        """,
    "sleep": """
        import os, subprocess, sys, time
        def run(request):
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
            with open(request["pid_file"], "w") as f:
                f.write(f"{os.getpid()} {child.pid}")
            sys.stderr.write("sleeping now\\n")
            sys.stderr.flush()
            time.sleep(300)
            return {}
        """,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the worker package plus test-only ops."""
    where = tmp_path_factory.mktemp("worker")
    shutil.copytree(envs.worker_source_dir(cache=where / "cache") / "migrator", where / "migrator")
    for name, body in OPS.items():
        (where / "migrator" / "worker" / f"op_{name}.py").write_text(textwrap.dedent(body))
    return where


@pytest.fixture(scope="module")
def env() -> envs.VersionEnv:
    return envs.ensure_env(envs.parse_version_set("current"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone(*pids: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


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
