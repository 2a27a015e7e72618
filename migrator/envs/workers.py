"""Worker processes: the staged worker package, and running one op in an environment."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, NoReturn

from migrator.app.profile import AppProfile, active_profile, checked_envs
from migrator.envs import forkserver
from migrator.envs.build import cache_dir
from migrator.envs.versions import _STDERR_TAIL_LINES, VersionEnv
from migrator.errors import AppCodeError, WorkerError, scrub


def _worker_files() -> list[Path]:
    package = Path(__file__).resolve().parents[1]
    files = [package / "__init__.py"]
    for path in sorted((package / "worker").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc",):
            files.append(path)
    return files


_staged: dict[Path, Path] = {}


def worker_source_dir(*, cache: Path | None = None) -> Path:
    """A directory holding only ``migrator/__init__.py`` and ``migrator/worker/``.

    It goes on the worker's ``PYTHONPATH``. Pointing ``PYTHONPATH`` at wherever
    ``migrator`` is installed would be wrong: in a site-packages, that would put
    the tool's own langgraph in front of the environment's. The copy is keyed by
    the content hash, so edits to worker code are picked up.

    Args:
        cache: Cache root (default :func:`cache_dir`).

    Returns:
        The directory to put on ``PYTHONPATH``.
    """
    root = cache or cache_dir()
    if root in _staged and _staged[root].is_dir():
        return _staged[root]
    package = Path(__file__).resolve().parents[1]
    files = _worker_files()
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    final = root / "worker" / digest.hexdigest()[:16]
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
        tmp.chmod(0o755)
        try:
            for path in files:
                dest = tmp / "migrator" / path.relative_to(package)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.is_dir():  # lost the race: another process staged it
                raise
    _staged[root] = final
    return final


def _tail(text: str, lines: int = _STDERR_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _one_line(text: str, limit: int = 500) -> str:
    # Masked before it is cut: a password cut in half no longer looks like one.
    line = " ".join(scrub(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


#: How often a worker with a ``cancel`` event or an ``idle`` clock checks them (seconds).
CANCEL_POLL_S = 0.2
#: Worker error kinds that mean "the app's code does not load there" (exit 2).
APP_KINDS = frozenset({"AppConfigError", "UndecodableValueError", "CipherKeyError"})
#: Encrypted values that do not decrypt (wrong or missing key, no cipher): exit 2.
KEY_HINT = (
    "set the variable named above to the key the checkpoints were written with, and "
    "name the app's encrypting serializer (serde in [tool.langgraph-migrator.app] or --serde)"
)
APP_HINT = (
    "check [tool.langgraph-migrator.app] in the app's pyproject.toml (paths, graphs, "
    "serde, requirements; --app-path/--graph/--serde override it) and that the app's "
    "modules import in that version environment"
)


def _feed(stdin: IO[bytes], payload: bytes) -> None:
    """Write the whole request and close the pipe (the worker reads until EOF).

    A worker that died or was killed closed its end: the rest is not needed.
    """
    with contextlib.suppress(BrokenPipeError, OSError):
        try:
            stdin.write(payload)
        finally:
            stdin.close()


def _communicate(
    proc: subprocess.Popen[bytes],
    payload: bytes,
    timeout: float,
    cancel: threading.Event | None,
    idle: Callable[[], float] | None = None,
) -> tuple[bytes, bytes]:
    """``proc.communicate(payload, timeout)``, raising ``TimeoutExpired`` early on
    ``cancel``; with ``idle``, ``timeout`` counts the seconds ``idle()`` reports
    (the worker's time without progress) instead of the time since it started.

    Watched, the request is written by a thread of its own, and ``communicate()``
    only reads, in short waits. Passing the request to ``communicate()`` would not
    do: after its first wait times out, a retry writes the unwritten rest only if it
    gets the input again (CPython 3.11), so a worker that starts reading late (every
    worker imports langgraph first) waited forever for the end of its request.
    """
    if cancel is None and idle is None:
        return proc.communicate(payload, timeout=timeout)
    stdin, proc.stdin = proc.stdin, None  # the feeder owns it; communicate() only reads
    if stdin is not None:
        threading.Thread(
            target=_feed, args=(stdin, payload), name=f"worker-{proc.pid}-stdin", daemon=True
        ).start()
    started = time.monotonic()
    while True:
        still = time.monotonic() - started
        if idle is not None:
            still = min(still, idle())
        left = timeout - still
        if left <= 0 or (cancel is not None and cancel.is_set()):
            raise subprocess.TimeoutExpired(proc.args, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            # What was read so far stays in ``proc``: the next call (or the caller's
            # final ``communicate()`` after a kill) returns all of it.
            return proc.communicate(None, timeout=min(left, CANCEL_POLL_S))


def run_worker(
    env: VersionEnv,
    op: str,
    request: Mapping[str, Any] | None = None,
    *,
    timeout: float = 600.0,
    worker_path: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
    idle: Callable[[], float] | None = None,
    app: AppProfile | None = None,
) -> dict[str, Any]:
    """Run ``python -m migrator.worker OP`` in ``env`` and return the op's result.

    The worker runs in its own process group; on timeout the whole group is killed.

    Args:
        env: From :func:`ensure_env`.
        op: The op name (module ``migrator.worker.op_<op>``).
        request: The JSON request object.
        timeout: Seconds before the worker is killed.
        worker_path: Directory put on ``PYTHONPATH`` (default :func:`worker_source_dir`).
        extra_env: Extra environment variables for the worker.
        cancel: When set (by another thread), the worker's process group is killed
            within :data:`CANCEL_POLL_S`.
        app: The application profile the worker loads (default: the active one,
            :func:`migrator.app.profile.use_profile`).
        idle: Seconds since the worker last made progress (its progress file,
            :class:`migrator.output.progress.PartProgress`): ``timeout`` then limits
            the time without progress, not the whole run.

    Returns:
        The op's ``result`` object.

    Raises:
        WorkerError: The op raised (``kind`` is the exception's class name), the
            worker crashed or printed no response (``kind`` ``"crash"``), timed
            out (``kind`` ``"timeout"``) or was cancelled (``kind``
            ``"cancelled"``). ``stderr`` holds its last stderr lines.
    """
    where = f"in env {env.label}"
    payload = json.dumps(dict(request or {}), ensure_ascii=False).encode("utf-8")
    child_env = _child_env(worker_path, extra_env, app)
    server = forkserver.server_for(env.python, child_env)
    if server is not None:
        try:
            outcome = server.run(op, payload, timeout=timeout, cancel=cancel, idle=idle)
        except forkserver.ServerUnavailable:
            pass  # a plain worker process, below
        except subprocess.TimeoutExpired as exc:
            _raise_stopped(op, where, timeout, cancel, idle, _tail(str(exc.output or "")))
        else:
            return _interpret(op, where, outcome.out, _tail(outcome.stderr), "forked worker")
    try:
        proc = subprocess.Popen(
            [str(env.python), "-m", "migrator.worker", op],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
            start_new_session=True,
        )
    except OSError as exc:
        raise WorkerError(f"worker op {op} could not start {where}: {exc}", kind="crash") from None
    try:
        out, err = _communicate(proc, payload, timeout, cancel, idle)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        _raise_stopped(op, where, timeout, cancel, idle, _tail(err.decode("utf-8", "replace")))
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    stderr = _tail(err.decode("utf-8", "replace"))
    return _interpret(op, where, out, stderr, f"exit code {proc.returncode}")


def check_app(env: VersionEnv, *, timeout: float = 300.0) -> None:
    """Load the active app profile's code in ``env`` (op ``info``), once per env and command.

    Only ops that read an app's threads import its graphs, serializer and
    ``thread_graph``; without this, a ``--graph`` whose module does not import
    passed every command in which nothing needed it. Every command that takes the
    app options gets its environments through :func:`migrator.envs.ensure_env`,
    which calls this before the command does anything in them.

    Args:
        env: A version environment.
        timeout: Seconds the ``info`` op may take.

    Raises:
        AppCodeError: A module the profile names does not import in ``env``, or lacks
            the attribute (exit 2, the key named: ``graph NAME``, ``serde``, ...).
        WorkerError: The worker failed otherwise.
    """
    profile = active_profile()
    if profile is None or profile.empty:
        return
    done = checked_envs(profile)
    if str(env.python) in done:
        return
    run_worker(env, "info", {}, timeout=timeout, app=profile)
    done.add(str(env.python))


def _child_env(
    worker_path: Path | None, extra_env: Mapping[str, str] | None, app: AppProfile | None
) -> dict[str, str]:
    """The worker's environment: ours, the worker code, extra variables, the app profile."""
    child_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    }
    child_env.update(
        PYTHONPATH=str(worker_path or worker_source_dir()),
        # `python -m` would otherwise put the cwd first on sys.path: a checkout
        # there (or a stray `langgraph/` dir) would shadow the env's packages.
        PYTHONSAFEPATH="1",
        PYTHONNOUSERSITE="1",
        PYTHONIOENCODING="utf-8",
    )
    child_env.update(extra_env or {})
    profile = app if app is not None else active_profile()
    if profile is not None:
        child_env.update(profile.worker_env())
    return child_env


def prestart_worker(
    env: VersionEnv,
    *,
    worker_path: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    app: AppProfile | None = None,
) -> None:
    """Start ``env``'s fork server now (inside a worker session), so its imports
    overlap other work; :func:`run_worker` with the same arguments uses it."""
    forkserver.server_for(env.python, _child_env(worker_path, extra_env, app))


def _raise_stopped(
    op: str,
    where: str,
    timeout: float,
    cancel: threading.Event | None,
    idle: Callable[[], float] | None,
    stderr: str,
) -> NoReturn:
    """The worker was killed: cancelled by the caller, or out of time (or progress)."""
    if cancel is not None and cancel.is_set():
        raise WorkerError(
            f"worker {op} stopped {where}: cancelled", stderr=stderr, kind="cancelled"
        ) from None
    what = f"made no progress for {timeout:g}s" if idle else f"timed out after {timeout:g}s"
    raise WorkerError(f"worker {op} {what} {where}", stderr=stderr, kind="timeout") from None


#: What langgraph logged in this process's workers: ``(where, message)``, in order.
_LOGGED: list[tuple[str, str]] = []
_LOGGED_LOCK = threading.Lock()


def _keep_log(where: str, log: Any) -> None:
    if not isinstance(log, list):
        return
    with _LOGGED_LOCK:
        for message in log:
            entry = (where, str(message))
            if entry not in _LOGGED:
                _LOGGED.append(entry)


def drain_worker_log() -> list[str]:
    """What langgraph logged (warnings and worse) in the workers since the last drain.

    A worker hands its ops' langgraph warnings back with the answer
    (:mod:`migrator.worker.logcapture`): "Task … wrote to unknown channel …, ignoring
    it" (writes the new graph drops), "Deserializing unregistered type …". Commands
    put them in their report's notes, once each.

    Returns:
        ``"<message> (<where>)"`` lines, each distinct message once.
    """
    with _LOGGED_LOCK:
        taken = list(_LOGGED)
        _LOGGED.clear()
    out = []
    for where, message in taken:
        if _OWN_CLASSES in message:
            continue  # the tool's canary classes: nothing the user can act on
        if _UNKNOWN_CHANNEL in message:
            message += f" ({UNKNOWN_CHANNEL_NOTE})"
        out.append(f"{message} ({where})")
    return out


_OWN_CLASSES = "migrator.worker.canaries."
_UNKNOWN_CHANNEL = "wrote to unknown channel"
#: Said with langgraph's "wrote to unknown channel": what it means in an upgrade.
UNKNOWN_CHANNEL_NOTE = (
    "a write an older langgraph made to a channel the new graph does not have, such "
    "as a node's old trigger channel; langgraph drops it, and the resume checks say "
    "whether the thread still runs as before"
)


def _interpret(op: str, where: str, out: bytes, stderr: str, exit_desc: str) -> dict[str, Any]:
    """The op's result from the worker's response bytes, or the error it reported."""
    try:
        response = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        response = None
    if not isinstance(response, dict) or "ok" not in response:
        said = "no output" if not out.strip() else "output that is not a JSON response"
        last = stderr.splitlines()[-1] if stderr else ""
        raise WorkerError(
            f"worker op {op} crashed {where}: {exit_desc}, {said}"
            + (f"; last stderr line: {_one_line(last, 200)}" if last else ""),
            stderr=stderr,
            kind="crash",
        )
    if response["ok"]:
        _keep_log(where, response.get("log"))
        result = response.get("result")
        return result if isinstance(result, dict) else {}
    error = response.get("error") or {}
    kind = str(error.get("type", "Exception"))
    message = _one_line(str(error.get("message", "")))
    details = "\n".join(x for x in (stderr, str(error.get("traceback", "")).rstrip()) if x)
    if kind in APP_KINDS:
        raise AppCodeError(
            f"{message} ({where})",
            stderr=details,
            kind=kind,
            hint=KEY_HINT if kind == "CipherKeyError" else APP_HINT,
        )
    raise WorkerError(
        f"worker op {op} failed {where}: {kind}: {message}", stderr=details, kind=kind
    )
