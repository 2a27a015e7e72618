"""SIGTERM (``timeout``, a cancelled CI job, a deploy hook) unwinds like Ctrl-C.

A real ``upgrade-check`` on its own ephemeral cluster is terminated while its
seed worker runs: it must exit 143 with one line saying so, and leave nothing
running (no worker, no postmaster) and no cluster directory behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from migrator.postgres.local import process_alive
from migrator.postgres.sources import cache_root, make_shared_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

OLD = "langgraph-checkpoint-postgres==2.0.25"
TAG = "LGM_SIGTERM_TEST_TAG"


def _tagged(tag: str) -> list[int]:
    """Processes whose environment carries ``TAG=tag`` (the CLI's children inherit it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        # process_alive: reaped-later zombies hold nothing
        if f"{TAG}={tag}".encode() in environ and process_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def _wait_for_line(proc: subprocess.Popen[str], needle: str, seen: list[str]) -> bool:
    """Read stderr until a line contains ``needle`` (False at EOF)."""
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            return True
    return False


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_sigterm_stops_workers_and_the_ephemeral_server(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    # as root the server user must reach its cluster: not below the private tmp_path
    clusters = make_shared_dir(cache_root() / f"test-sigterm-{tag[:8]}")
    try:
        _terminate_a_check(tmp_path, tag, clusters)
    finally:
        shutil.rmtree(clusters, ignore_errors=True)


def _terminate_a_check(tmp_path: Path, tag: str, clusters: Path) -> None:
    env = {**os.environ, TAG: tag, "LANGGRAPH_MIGRATOR_PG_CLUSTERS": str(clusters)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from migrator.cli import main; main()", "upgrade-check"]
        + ["--from", OLD, "--to", "current", "--pg", "local"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    seen: list[str] = []
    reader = threading.Thread(target=_wait_for_line, args=(proc, "seeding canaries", seen))
    reader.start()
    reader.join(timeout=300)
    assert not reader.is_alive() and any("seeding canaries" in s for s in seen), "".join(seen)
    time.sleep(1.0)  # the seed worker and the server are up
    running = set(_tagged(tag)) - {proc.pid}
    assert running, "expected a worker and a server to be running"
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 143, "".join(seen) + rest
    assert rest.strip().splitlines()[-1].startswith("terminated (SIGTERM)"), rest
    deadline = time.monotonic() + 10
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _tagged(tag) == [], "processes outlived the terminated CLI"
    assert list(clusters.iterdir()) == [], "the cluster directory was left behind"


def test_second_sigterm_kills_at_once() -> None:
    """The handler is one-shot: a cleanup that hangs can still be ended by SIGTERM."""
    code = (
        "import os, signal, time\n"
        "from migrator import cli\n"
        "cli._unwind_on_sigterm()\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
        "except cli._Terminated:\n"
        "    print('unwound', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
        "    print('survived', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["unwound"]
    assert done.returncode == -signal.SIGTERM
