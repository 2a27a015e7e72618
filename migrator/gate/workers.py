"""How the gate calls worker ops: its timeout, the user's code on the path, strict mode."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrator import envs
from migrator.config import CheckSettings


def user_code_env(settings: CheckSettings) -> dict[str, str] | None:
    """Worker environment that puts the user's code (canaries) on the path, after ours.

    User canary modules are imported inside each version environment, from the
    directory the tool was started in (the app's checkout), after the worker code.
    """
    if not settings.user_canaries:
        return None
    search = [str(envs.worker_source_dir()), str(Path.cwd())]
    if os.environ.get("PYTHONPATH"):
        search.append(os.environ["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(search)}


def worker_caller(settings: CheckSettings) -> Callable[..., dict[str, Any]]:
    """``run_worker`` with the timeout and, for user canaries, the user's code on the path."""
    extra = user_code_env(settings)

    def call(env: envs.VersionEnv, op: str, request: dict[str, Any]) -> dict[str, Any]:
        return envs.run_worker(env, op, request, timeout=settings.worker_timeout, extra_env=extra)

    return call


def strict_runner(settings: CheckSettings) -> Callable[..., dict[str, Any]]:
    """``run_worker`` for the new version's ops under a strict-msgpack rehearsal."""
    extra = user_code_env(settings) or {}

    def run(
        env: envs.VersionEnv, op: str, request: dict[str, Any], env_vars: dict[str, str]
    ) -> Any:
        return envs.run_worker(
            env, op, request, timeout=settings.worker_timeout, extra_env={**extra, **env_vars}
        )

    return run
