"""What an environment answers (its ``info``, the schema its ``setup()`` builds), asked once
and kept.

Each answer starts a Python in the environment and imports langgraph there: two
seconds, for ``info`` and again for the reference schema, that every ``plan``,
``migrate`` and ``seed`` spent to learn what the previous run already learned. The
answers only change when the environment or the tool does:

- a built environment (``<cache>/envs/<key>``) never changes once its marker is
  written, so its answers are kept beside the marker (``kept/<name>.json``);
- ``current`` (the tool's own interpreter) changes when packages are installed into
  it, so its answers are kept under ``<cache>/kept/<id>/``, where the id is a hash of
  the interpreter and the installed versions of the packages that decide them.

Each kept answer records a hash of the tool code that produced it (the worker op and
the tool's side that reads the answer): a changed tool asks again. An answer that
cannot be read or written is asked again, never trusted half-written (files are
replaced atomically). Importing the app profile's code is not an answer that is kept:
:func:`migrator.envs.workers.check_app` does that in every command.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from migrator import __version__
from migrator.envs.build import cache_dir
from migrator.envs.versions import VersionEnv

#: The directory a built environment keeps its answers in.
KEPT_DIR = "kept"
_PACKAGE = Path(__file__).resolve().parents[1]
#: The code the ``info`` answer depends on (paths inside the ``migrator`` package).
INFO_CODE = ("worker/op_info.py", "worker/protocol.py")


def _code_hash(code: Sequence[str]) -> str:
    digest = hashlib.sha256(__version__.encode("utf-8"))
    for name in code:
        digest.update((_PACKAGE / name).read_bytes())
    return digest.hexdigest()[:16]


def kept_dir(env: VersionEnv) -> Path:
    """Where ``env``'s answers are kept."""
    if env.path is not None:
        return env.path / KEPT_DIR
    from psycopg import pq

    from migrator.worker.protocol import installed_versions

    key = json.dumps(
        [str(env.python), sorted(installed_versions().items()), pq.version()], default=str
    )
    return cache_dir() / KEPT_DIR / hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def _read(path: Path, code: str) -> dict[str, Any] | None:
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("code") != code:
        return None
    answer = kept.get("answer")
    return answer if isinstance(answer, dict) else None


def _write(path: Path, code: str, answer: dict[str, Any]) -> None:
    """Keep ``answer`` (atomically; a cache that cannot be written is only slower)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"code": code, "answer": answer}) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def kept_answer(
    env: VersionEnv, name: str, code: Sequence[str], ask: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``env``'s kept answer ``name``, or ``ask()``'s (then kept).

    Args:
        env: The environment the answer is about.
        name: The answer's name (a file name: ``info``, ``reference-pg17``).
        code: The tool's source files the answer depends on (inside ``migrator/``).
        ask: Computes the answer (a JSON-ready dict); its errors propagate, and
            nothing is kept then.
    """
    stamp = _code_hash(code)
    path = kept_dir(env) / f"{name}.json"
    answer = _read(path, stamp)
    if answer is None:
        answer = ask()
        _write(path, stamp, answer)
    return answer


def env_info(env: VersionEnv, *, timeout: float = 600.0) -> dict[str, Any]:
    """The environment's ``info`` answer (versions, ``MIGRATIONS``, setup SQL), kept.

    Args:
        env: From :func:`migrator.envs.ensure_env`.
        timeout: Seconds the ``info`` op may take when it has to run.

    Returns:
        What :mod:`migrator.worker.op_info` returns.

    Raises:
        WorkerError: The op failed (nothing is kept).
    """
    from migrator.envs.workers import run_worker  # workers imports this module's peers

    def ask() -> dict[str, Any]:
        info = run_worker(env, "info", {}, timeout=timeout)
        info.pop("user_canaries", None)
        return info

    return kept_answer(env, "info", INFO_CODE, ask)
