"""Op ``info``: what is installed in this environment and which migrations it has.

Also the import check a freshly built environment must pass before it is marked
complete: it imports langgraph's graph API, the Postgres saver and psycopg (which
needs a libpq).
"""

from __future__ import annotations

import platform
import sys
from typing import Any

from migrator.worker import protocol

#: Where ``MIGRATIONS`` has lived, newest first: ``(module, attribute path)``.
_MIGRATION_SOURCES = (
    ("langgraph.checkpoint.postgres.base", "BasePostgresSaver.MIGRATIONS"),
    ("langgraph.checkpoint.postgres.base", "MIGRATIONS"),
    ("langgraph.checkpoint.postgres", "PostgresSaver.MIGRATIONS"),
)

#: checkpoint-postgres 1.0.0 has no ledger; its ``setup()`` runs these statements.
_LEGACY_SETUP_ATTRS = (
    "CREATE_CHECKPOINTS_SQL",
    "CREATE_CHECKPOINT_BLOBS_SQL",
    "CREATE_CHECKPOINT_WRITES_SQL",
)


def _lookup(module_name: str, path: str) -> Any:
    import importlib

    obj: Any = importlib.import_module(module_name)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _migrations() -> tuple[list[str], str | None]:
    for module_name, path in _MIGRATION_SOURCES:
        try:
            value = _lookup(module_name, path)
        except (ImportError, AttributeError):
            continue
        if isinstance(value, (list, tuple)):
            return [str(sql) for sql in value], f"{module_name}.{path}"
    return [], None


def _legacy_setup_sql() -> list[str]:
    try:
        from langgraph.checkpoint.postgres.base import BasePostgresSaver
    except ImportError:
        return []
    return [
        str(getattr(BasePostgresSaver, attr))
        for attr in _LEGACY_SETUP_ATTRS
        if isinstance(getattr(BasePostgresSaver, attr, None), str)
    ]


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Report installed versions and the checkpoint-postgres migrations.

    Args:
        request: ``{}``, or ``{"user_canaries": "module:attr"}`` to load those
            canaries too (their names come back as ``user_canaries``).

    Returns:
        ``versions`` (distribution -> version or None, plus ``python``),
        ``migrations`` (the SQL strings of ``MIGRATIONS``, in order),
        ``migrations_source`` (where they were found, or None), ``has_ledger``,
        ``setup_sql`` (what ``setup()`` runs when there is no ledger),
        ``libpq_version``, ``python_executable`` and ``notes``.

    Raises:
        ImportError: langgraph, its Postgres saver or psycopg cannot be imported.
        AppConfigError: A module the app profile names does not import here.
        CanaryConfigError: The user canaries named do not load.
    """
    # The import check: fail loudly if any of these is broken in this env.
    import langgraph.checkpoint.postgres  # noqa: F401
    import langgraph.graph  # noqa: F401
    import psycopg

    # The app profile, if the host passed one: its modules must import here, whether or
    # not this command reads an app thread (AppConfigError names the key: exit 2).
    from migrator.worker import app as worker_app

    worker_app.current()

    versions: dict[str, Any] = dict(protocol.installed_versions())
    versions["python"] = platform.python_version()
    migrations, source = _migrations()
    notes: list[str] = []
    setup_sql: list[str] = []
    if source is None:
        setup_sql = _legacy_setup_sql()
        notes.append(
            "this checkpoint-postgres has no MIGRATIONS and no checkpoint_migrations "
            "ledger; setup() only runs CREATE TABLE IF NOT EXISTS (see setup_sql)"
        )
    user: list[str] | None = None
    if request.get("user_canaries"):
        from migrator.worker.canaries import load_user_canaries

        user = [str(c.name) for c in load_user_canaries(str(request["user_canaries"]))]
    return {
        "user_canaries": user,
        "versions": versions,
        "migrations": migrations,
        "migrations_source": source,
        "has_ledger": source is not None,
        "setup_sql": setup_sql,
        "libpq_version": psycopg.pq.version(),
        "python_executable": sys.executable,
        "notes": notes,
    }
