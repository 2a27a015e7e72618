"""``migrate --conformance``: langgraph's checkpointer conformance suite on a copy.

After a migration, the official suite (``langgraph-checkpoint-conformance``,
pinned: :data:`PIN`) runs against the migrated schema with the app's serializer,
in the target version's environment, on a copy made with
``CREATE DATABASE ... TEMPLATE`` (never the live database; the copy is dropped
afterwards). A template copy needs no other session on the source database; when
one is connected, the check is skipped and says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from migrator import envs
from migrator.postgres import redact_dsn
from migrator.report import Check

PACKAGE = "langgraph-checkpoint-conformance"
VERSION = "0.0.2"
#: The suite is 0.0.x (its API may change): always this release.
PIN = f"{PACKAGE}=={VERSION}"

Progress = Callable[[str], None]


class CopyRefused(Exception):
    """The database could not be copied with ``CREATE DATABASE ... TEMPLATE``."""


@contextlib.contextmanager
def template_copy(dsn: str) -> Iterator[str]:
    """A copy of ``dsn``'s database (``CREATE DATABASE ... TEMPLATE``), dropped on exit.

    Raises:
        CopyRefused: the server refused (another session on the source, no CREATEDB).
    """
    params = conninfo_to_dict(dsn)
    source = str(params.get("dbname") or params.get("user") or "postgres")
    copy = f"lgm_conformance_{uuid.uuid4().hex[:12]}"
    admin = make_conninfo(dsn, dbname="postgres")
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(copy), sql.Identifier(source)
                )
            )
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CopyRefused(first) from exc
    try:
        yield make_conninfo(dsn, dbname=copy)
    finally:
        with contextlib.suppress(psycopg.Error), psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(copy))
            )


def conformance_env(to_spec: str, progress: Progress) -> envs.VersionEnv:
    """The target's environment with the pinned suite (``current``: this interpreter)."""
    vs = envs.parse_version_set(to_spec)
    if not vs.current:
        pins = dict(vs.pins)
        pins[PACKAGE] = VERSION
        vs = dataclasses.replace(vs, pins=tuple(sorted(pins.items())), label=f"{vs.label} + {PIN}")
    return envs.ensure_env(vs, progress=progress)


def run_conformance(
    dsn: str,
    to_spec: str = "current",
    *,
    schema: str | None = None,
    progress: Progress = lambda _: None,
    timeout: float = 1800.0,
) -> Check:
    """Run the suite on a template copy of ``dsn`` and return one ``conformance`` check."""
    env = conformance_env(to_spec, progress)
    progress(f"conformance suite ({PIN}) under {env.label} on a copy of the database")
    try:
        with template_copy(dsn) as copy:
            if schema:
                copy = make_conninfo(copy, options=f"-csearch_path={schema}")
            result = envs.run_worker(env, "conformance", {"dsn": copy}, timeout=timeout)
    except CopyRefused as exc:
        return Check(
            "conformance",
            "skip",
            f"could not copy {redact_dsn(dsn)} with CREATE DATABASE ... TEMPLATE ({exc}); "
            "the suite never runs on the live database",
            details={"pin": PIN},
        )
    return _check(result, env.label)


def _check(result: dict[str, Any], label: str) -> Check:
    if not result.get("available"):
        return Check(
            "conformance",
            "skip",
            f"{PIN} is not installed under {label}: {result.get('reason')}",
            details={"pin": PIN},
        )
    results: dict[str, Any] = result.get("results") or {}
    failed = {k: v for k, v in results.items() if v.get("detected") and v.get("passed") is False}
    passed = sum(1 for v in results.values() if v.get("passed") is True)
    details = {"pin": PIN, "level": result.get("level"), "serde": result.get("serde"), **result}
    if failed:
        first = next(iter(failed.values()))["failures"][:1]
        return Check(
            "conformance",
            "fail",
            f"{PIN} under {label}: {', '.join(sorted(failed))} failed"
            + (f" (first: {first[0]})" if first else ""),
            details=details,
        )
    return Check(
        "conformance",
        "pass",
        f"{PIN} under {label}: level {result.get('level')}, {passed} capabilities pass",
        details=details,
    )
