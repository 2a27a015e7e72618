"""Host side of the worker fork servers: one per version environment per command.

Inside :func:`worker_session` (the CLI opens one around every command),
:func:`migrator.envs.run_worker` asks the environment's fork server
(:mod:`migrator.worker.forkserver`) for a process instead of starting Python
and importing langgraph again: the op runs in a freshly forked child with the
same request, response, stderr, timeout, cancel and kill semantics as a plain
worker. Servers are keyed by the environment and the exact worker environment
variables (app profile, user canaries' path), and stopped when the session
ends. Anything unexpected from a server (it died, it cannot fork) makes the
caller fall back to a plain worker process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Seconds a server may take to answer a fork request, and a child to connect.
START_TIMEOUT_S = 60.0
POLL_S = 0.2


class ServerUnavailable(Exception):
    """The fork server cannot serve this op: run a plain worker instead."""


@dataclass
class ChildOutcome:
    """What a forked op left: its response bytes and its stderr."""

    out: bytes
    stderr: str
    pid: int


class ForkServer:
    """One ``python -m migrator.worker --serve`` process.

    Args:
        python: The environment's interpreter.
        env: The worker's environment variables.
        workdir: A private directory for sockets and stderr files.
    """

    def __init__(self, python: Path, env: Mapping[str, str], workdir: Path) -> None:
        self.workdir = workdir
        self._lock = threading.Lock()
        self._count = 0
        self.proc = subprocess.Popen(
            [str(python), "-m", "migrator.worker", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
            text=True,
        )

    def alive(self) -> bool:
        """The server process still runs."""
        return self.proc.poll() is None

    def _fork(self, sock_path: Path, err_path: Path) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self._lock:
            if not self.alive():
                raise ServerUnavailable("the fork server exited")
            try:
                line = json.dumps({"socket": str(sock_path), "stderr": str(err_path)})
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
                ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT_S)
                reply = json.loads(self.proc.stdout.readline()) if ready else None
            except (OSError, ValueError) as exc:
                raise ServerUnavailable(f"the fork server did not answer: {exc}") from exc
        if not isinstance(reply, dict) or not isinstance(reply.get("pid"), int):
            raise ServerUnavailable(f"the fork server answered {reply!r}")
        return int(reply["pid"])

    def run(
        self,
        op: str,
        payload: bytes,
        *,
        timeout: float,
        cancel: threading.Event | None,
        idle: Callable[[], float] | None,
    ) -> ChildOutcome:
        """Run ``op`` in a forked child; its response bytes and stderr.

        Raises:
            ServerUnavailable: nothing ran (the caller starts a plain worker).
            subprocess.TimeoutExpired: timed out or cancelled (the child's process
                group was killed); ``.output`` holds the stderr text.
        """
        with self._lock:
            self._count += 1
            n = self._count
        sock_path = self.workdir / f"op{n}.sock"
        err_path = self.workdir / f"op{n}.stderr"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(sock_path))
            listener.listen(1)
            pid = self._fork(sock_path, err_path)
            try:
                listener.settimeout(START_TIMEOUT_S)
                try:
                    conn, _ = listener.accept()
                except OSError as exc:
                    raise ServerUnavailable(f"the forked worker did not connect: {exc}") from exc
                with conn:
                    out = self._exchange(conn, op, payload, pid, timeout, cancel, idle, err_path)
            except BaseException:
                _kill(pid)
                raise
            finally:
                with contextlib.suppress(OSError):
                    sock_path.unlink()
        stderr = _read(err_path)
        with contextlib.suppress(OSError):
            err_path.unlink()
        return ChildOutcome(out=out, stderr=stderr, pid=pid)

    def _exchange(
        self,
        conn: socket.socket,
        op: str,
        payload: bytes,
        pid: int,
        timeout: float,
        cancel: threading.Event | None,
        idle: Callable[[], float] | None,
        err_path: Path,
    ) -> bytes:
        # The child reads the whole request before it does anything else.
        conn.settimeout(START_TIMEOUT_S)
        try:
            conn.sendall(op.encode("utf-8") + b"\n" + payload)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            return b""  # the child is gone: "no response", with its stderr
        conn.setblocking(False)
        started = time.monotonic()
        chunks: list[bytes] = []
        while True:
            still = time.monotonic() - started
            if idle is not None:
                still = min(still, idle())
            if still >= timeout or (cancel is not None and cancel.is_set()):
                _kill(pid)
                raise subprocess.TimeoutExpired(op, timeout, output=_read(err_path))
            ready, _, _ = select.select([conn], [], [], POLL_S)
            if not ready:
                continue
            try:
                chunk = conn.recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def close(self) -> None:
        """Stop the server (its children are in sessions of their own)."""
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


class _Session:
    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="lgm-workers-"))
        self.workdir.chmod(0o700)
        self.servers: dict[str, ForkServer] = {}
        self.lock = threading.Lock()

    def server(self, python: Path, env: Mapping[str, str]) -> ForkServer:
        key = hashlib.sha256(
            json.dumps([str(python), sorted(env.items())]).encode("utf-8")
        ).hexdigest()
        with self.lock:
            server = self.servers.get(key)
            if server is None or not server.alive():
                server = ForkServer(python, env, self.workdir)
                self.servers[key] = server
            return server

    def close(self) -> None:
        with self.lock:
            for server in self.servers.values():
                server.close()
            self.servers.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


_SESSIONS: list[_Session] = []


@contextlib.contextmanager
def worker_session() -> Iterator[None]:
    """Within it, worker ops are forked from one server per environment.

    Process-wide (worker threads of ``--jobs`` use it too); nested sessions
    share the outermost one.
    """
    if _SESSIONS:
        yield
        return
    session = _Session()
    _SESSIONS.append(session)
    try:
        yield
    finally:
        _SESSIONS.remove(session)
        session.close()


def server_for(python: Path, env: Mapping[str, str]) -> ForkServer | None:
    """The fork server for this environment in the current session, or None."""
    if not _SESSIONS or os.environ.get("LANGGRAPH_MIGRATOR_NO_FORKSERVER"):
        return None
    return _SESSIONS[0].server(python, env)
