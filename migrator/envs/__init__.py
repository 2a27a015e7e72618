"""Version sets -> cached virtual environments; runs worker ops inside them.

A :class:`VersionSet` names the packages an environment is built from. It comes
from a spec (``langgraph-checkpoint-postgres==2.0.8 langgraph==0.2.56``), a
requirements or lock file, or ``current`` (the interpreter the tool runs in).
Bare specs are completed from the known-good eras in ``versions.toml``.

:func:`ensure_env` builds a venv per version set with ``uv`` (fallback: ``venv`` +
pip) under ``<cache>/envs/<key>``, where two processes building the same env at
once are serialized by a file lock and a build only becomes visible, by an atomic
rename, after its imports were verified. :func:`run_worker` runs
``python -m migrator.worker OP`` inside an environment.

Parsing (:func:`parse_version_set`, :func:`parse_requirements_text`,
:func:`load_eras`) is pure apart from reading the named file.
"""

from __future__ import annotations

from migrator.envs.build import cache_dir, ensure_env, env_dir
from migrator.envs.info import env_info, kept_answer
from migrator.envs.versions import (
    ALIASES,
    CHECKPOINT_POSTGRES,
    KEY_PACKAGES,
    PSYCOPG,
    Era,
    Progress,
    VersionEnv,
    VersionSet,
    current_version_set,
    known_eras,
    load_eras,
    normalize_name,
    parse_lock_text,
    parse_requirements_text,
    parse_spec,
    parse_version_set,
    resolve_pins,
    versions_toml_text,
)
from migrator.envs.workers import (
    APP_HINT,
    APP_KINDS,
    CANCEL_POLL_S,
    check_app,
    drain_worker_log,
    prestart_worker,
    run_worker,
    worker_source_dir,
)
from migrator.errors import ConfigError, EnvBuildError, WorkerError

__all__ = [
    "ALIASES",
    "APP_HINT",
    "APP_KINDS",
    "CANCEL_POLL_S",
    "CHECKPOINT_POSTGRES",
    "KEY_PACKAGES",
    "PSYCOPG",
    "ConfigError",
    "EnvBuildError",
    "Era",
    "Progress",
    "VersionEnv",
    "VersionSet",
    "WorkerError",
    "cache_dir",
    "check_app",
    "current_version_set",
    "drain_worker_log",
    "ensure_env",
    "env_dir",
    "env_info",
    "kept_answer",
    "known_eras",
    "load_eras",
    "normalize_name",
    "parse_lock_text",
    "parse_requirements_text",
    "parse_spec",
    "parse_version_set",
    "resolve_pins",
    "prestart_worker",
    "run_worker",
    "versions_toml_text",
    "worker_source_dir",
]
