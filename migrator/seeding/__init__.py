"""``canary seed``: seed canary threads into a real database under the version the app runs.

Flow: refuse unless the checkpoint tables exist (the tool never runs a
``setup()`` the app did not ask for) and the ledger is whole → take the migrator
lock → refuse to seed over existing canary threads unless ``reseed`` → upgrade the
ledger → worker op ``seed`` in the app's version env, into empty copies of the
checkpoint tables in a shadow schema (:mod:`migrator.seeding.shadow`) → worker op
``snapshot`` of that copy (the goldens) → one transaction: delete the old canary
threads' rows (``reseed``, only those threads), copy the new ones in, replace their
ledger rows, record the run. Nothing is deleted before everything that could fail
has run. ``verify`` later compares what a newer version reads with these goldens,
without any old environment.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg

from migrator import envs, ledger
from migrator.errors import ConfigError, ConnectError, WorkerError
from migrator.gate import seed_check
from migrator.ledger.health import check_ledger
from migrator.lock import advisory_lock
from migrator.postgres.dsn import connect, redact_dsn
from migrator.report import Check, Report
from migrator.seeding.shadow import Shadow, replace_threads, shadow_tables

Progress = Callable[[str], None]

CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
TABLE_EXISTS_SQL = "SELECT to_regclass(%s) IS NOT NULL"
CHECKPOINT_LEDGER_SQL = "SELECT max(v) FROM checkpoint_migrations"
EXISTING_THREADS_SQL = (
    "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id = ANY(%s) ORDER BY thread_id"
)
#: Worker error kinds that mean the canaries named do not load (exit 2, nothing written).
CANARY_CONFIG_KINDS = frozenset({"CanaryConfigError", "ModuleNotFoundError", "ImportError"})


def _quiet(_: str) -> None:
    return None


def builtin_canaries() -> list[dict[str, str]]:
    """The built-in canaries: ``name``, ``thread_id`` and what each covers (its docstring)."""
    from migrator.worker import canaries

    out = []
    for canary in canaries.BUILTIN:
        doc = (type(canary).__doc__ or "").strip().split("\n\n")[0]
        out.append(
            {
                "name": canary.name,
                "thread_id": canaries.thread_id_of(canary),
                "covers": " ".join(doc.replace("``", "").split()),
            }
        )
    return out


def worker_env(user_canaries: str | None) -> dict[str, str] | None:
    """Extra environment for worker ops: user canary modules import from the app checkout.

    Args:
        user_canaries: ``module:attr`` or None.

    Returns:
        ``{"PYTHONPATH": ...}`` (worker code first, then the current directory), or None.
    """
    if not user_canaries:
        return None
    search = [str(envs.worker_source_dir()), str(Path.cwd())]
    if os.environ.get("PYTHONPATH"):
        search.append(os.environ["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(search)}


def _table_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute(TABLE_EXISTS_SQL, (name,)).fetchone()
    return bool(row and row[0])


def _check_tables(dsn: str) -> int | None:
    """Refuse a database without checkpoint tables; return its checkpoint ledger version.

    Raises:
        ConfigError: The checkpoint tables do not exist (exit 2).
        ConnectError: The role may not read them (exit 3, the privilege named).
    """
    with connect(dsn) as conn:
        missing = [t for t in CHECKPOINT_TABLES if not _table_exists(conn, t)]
        if missing:
            raise ConfigError(
                f"{redact_dsn(dsn)} has no checkpoint tables ({', '.join(missing)} missing); "
                "nothing was written.",
                hint="canary seed never creates them: start the app once (its "
                "PostgresSaver.setup()) or run `langgraph-migrator migrate` first",
            )
        if not _table_exists(conn, "checkpoint_migrations"):
            return None
        try:
            row = conn.execute(CHECKPOINT_LEDGER_SQL).fetchone()
        except psycopg.errors.InsufficientPrivilege as exc:  # was exit 70 with a traceback
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConnectError(
                f"canary seed on {redact_dsn(dsn)}: {first}; nothing was written.",
                hint="seeding reads and writes the checkpoint tables and creates a shadow "
                "schema: run it as the role the app's setup() ran as (SELECT, INSERT, "
                "DELETE on the checkpoint tables, CREATE on the database)",
            ) from exc
    return None if row is None or row[0] is None else int(str(row[0]))


def _check_era(dsn: str, db_version: int | None, info: Mapping[str, Any], label: str) -> str | None:
    """Refuse to seed with a version newer than the schema; say when the schema is newer."""
    migrations = info.get("migrations") or []
    if not info.get("has_ledger", True) or not migrations:
        return None
    expected = len(migrations) - 1
    have = -1 if db_version is None else db_version
    if have < expected:
        raise ConfigError(
            f"the checkpoint tables in {redact_dsn(dsn)} were set up by an older version "
            f"(ledger v{have}) than {label} expects (v{expected}); nothing was written.",
            hint="seed with the version the app runs today (--with SPEC); "
            "upgrading is `migrate`'s job",
        )
    if have > expected:
        return (
            f"the schema (ledger v{have}) is newer than {label} (v{expected}): "
            "is this really the version the app runs today?"
        )
    return None


def _candidate_threads(dsn: str, names: Sequence[str] | None) -> list[str]:
    """Thread ids the requested canaries use (built-ins) or used (recorded in the ledger)."""
    builtin = {c["name"]: c["thread_id"] for c in builtin_canaries()}
    wanted = list(builtin) if names is None else list(names)
    found = {builtin[n] for n in wanted if n in builtin}
    for record in ledger.list_canaries(dsn):
        if names is None or record.canary in wanted:
            found.add(record.thread_id)
    return sorted(found)


def _existing(dsn: str, thread_ids: Sequence[str]) -> list[str]:
    with connect(dsn) as conn:
        return [str(r[0]) for r in conn.execute(EXISTING_THREADS_SQL, (list(thread_ids),))]


def canary_config_error(exc: WorkerError) -> ConfigError | None:
    """The configuration error (exit 2) a worker failure means, when the canaries do not load.

    Args:
        exc: What a worker op that loads canaries raised.
    """
    if exc.kind not in CANARY_CONFIG_KINDS:
        return None
    return ConfigError(
        f"canaries could not be loaded: {exc.message}",
        hint="fix --canaries MODULE:ATTR (a module importable from the app's checkout, "
        "and a list of canary objects in it)",
    )


def seed_canaries(
    dsn: str,
    env: envs.VersionEnv,
    *,
    canaries: Sequence[str] | None = None,
    user_canaries: str | None = None,
    reseed: bool = False,
    timeout: float = 600.0,
    lock_wait: float | None = 60.0,
    progress: Progress = _quiet,
) -> Report:
    """Seed canaries into the app's database under ``env`` and store their goldens.

    Args:
        dsn: The app's database; its checkpoint tables must exist.
        env: The version the app runs today.
        canaries: Canary names (default: every built-in and user canary).
        user_canaries: ``module:attr`` of the app's own canaries.
        reseed: Delete existing canary threads (only their rows) and seed again.
        timeout: Seconds one worker op may take.
        lock_wait: Seconds to wait for another migrator.
        progress: Receives a one-line message as each step starts.

    Returns:
        A report with a ``seed`` and a ``golden`` check per canary.

    Raises:
        ConfigError: No checkpoint tables, a schema older than ``env``, canary threads
            already seeded (without ``reseed``), or bad canary names (exit 2).
        LockTimeoutError: Another migrator holds the lock (exit 4).
        EnvironmentProblem: Database or worker failures (exit 3).
    """
    started = time.time()
    extra = worker_env(user_canaries)
    db_version = _check_tables(dsn)
    check_ledger(dsn)
    progress(f"reading {env.label}")
    info = envs.env_info(env, timeout=timeout)
    note = _check_era(dsn, db_version, info, env.label)
    names = list(canaries) if canaries else None
    progress("taking the migrator lock")
    with advisory_lock(dsn, wait=lock_wait):
        existing = _existing(dsn, _candidate_threads(dsn, names))
        if existing and not reseed:
            raise ConfigError(
                f"canary threads already exist in {redact_dsn(dsn)}: {', '.join(existing)}; "
                "nothing was written.",
                hint="`langgraph-migrator verify` checks them; pass --reseed to delete only "
                "these threads' rows and seed again",
            )
        ledger.upgrade_ledger(dsn)
        with shadow_tables(dsn) as shadow:
            seeded, golden, timings = _seed_in_shadow(
                env, shadow, names, user_canaries, timeout, extra, progress
            )
            report = Report(
                command="canary seed",
                checks=tuple(_checks(seeded, golden)),
                versions={"seeded_with": golden.get("versions") or {}},
                timings=timings,
                notes=(note,) if note else (),
            )
            progress(
                f"replacing {len(existing)} canary thread(s) in one transaction"
                if existing
                else "storing the canary threads and goldens"
            )
            with connect(dsn, autocommit=True) as conn, conn.transaction():
                _store(dsn, conn, shadow, existing, seeded, golden, user_canaries)
                ledger.record_run(
                    dsn,
                    {
                        "command": "canary seed",
                        "from_versions": report.versions["seeded_with"],
                        "verdict": report.verdict,
                        "timings": dict(report.timings),
                        "started_at": started,
                        "finished_at": time.time(),
                        "details": {
                            "canaries": [c.to_dict() for c in report.checks],
                            "reseed": reseed,
                        },
                    },
                    conn=conn,
                )
    return report


def _seed_in_shadow(
    env: envs.VersionEnv,
    shadow: Shadow,
    names: list[str] | None,
    user_canaries: str | None,
    timeout: float,
    extra: dict[str, str] | None,
    progress: Progress,
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, float]]:
    """Seed into ``shadow`` and read the goldens there; the live tables are not touched.

    Returns:
        The seed op's threads, the golden snapshot, and the timings.
    """
    timings: dict[str, float] = {}
    progress(f"seeding canaries under {env.label} (into {shadow.schema})")
    t0 = time.perf_counter()
    try:
        seeded = envs.run_worker(
            env,
            "seed",
            {"dsn": shadow.dsn, "canaries": names, "user_canaries": user_canaries},
            timeout=timeout,
            extra_env=extra,
        )
    except WorkerError as exc:
        config = canary_config_error(exc)
        if config is not None:
            raise config from exc
        raise
    timings["seed"] = time.perf_counter() - t0
    threads = [t for t in seeded["threads"] if t["status"] == "seeded"]
    progress(f"snapshot (golden) under {env.label}")
    t0 = time.perf_counter()
    golden = envs.run_worker(
        env,
        "snapshot",
        {
            "dsn": shadow.dsn,
            "threads": [{"thread_id": t["thread_id"], "canary": t["canary"]} for t in threads],
            "user_canaries": user_canaries,
        },
        timeout=timeout,
        extra_env=extra,
    )
    timings["golden"] = time.perf_counter() - t0
    golden.setdefault("versions", seeded.get("versions") or {})
    return list(seeded["threads"]), golden, timings


def _checks(seeded: Sequence[Mapping[str, Any]], golden: Mapping[str, Any]) -> list[Check]:
    """One ``seed`` and (when seeded) one ``golden`` check per canary."""
    checks: list[Check] = []
    for t in seeded:
        checks.append(seed_check(t))
        if t["status"] != "seeded":
            continue
        entry = golden.get("threads", {}).get(t["thread_id"]) or {}
        if entry.get("error"):
            checks.append(
                Check(
                    check="golden",
                    status="fail",
                    summary=f"the seeding version cannot read its own thread: {entry['error']}",
                    canary=t["canary"],
                )
            )
            continue
        n = len(entry.get("checkpoints") or [])
        checks.append(
            Check(
                check="golden",
                status="pass",
                summary=f"stored ({n} checkpoint(s))",
                canary=t["canary"],
            )
        )
    return checks


def _store(
    dsn: str,
    conn: psycopg.Connection[Any],
    shadow: Shadow,
    existing: Sequence[str],
    seeded: Sequence[Mapping[str, Any]],
    golden: Mapping[str, Any],
    user_canaries: str | None,
) -> None:
    """In ``conn``'s transaction: the old canary threads' rows and ledger rows go, the
    seeded threads' rows come in from ``shadow``, each good golden is stored."""
    versions = dict(golden.get("versions") or {})
    new = [t["thread_id"] for t in seeded if t["status"] == "seeded"]
    clash = _existing(dsn, [t for t in new if t not in existing])
    if clash:
        raise ConfigError(
            f"threads {', '.join(clash)} already exist in {redact_dsn(dsn)} and are not "
            "canaries this ledger knows; nothing was written.",
            hint="give those canaries other thread ids: a thread the app wrote is never replaced",
        )
    # A canary whose new seed failed keeps its old thread: nothing is deleted unreplaced.
    replaced = [t for t in existing if t in set(new)]
    replace_threads(conn, shadow, replaced, new)
    ledger.forget_threads(dsn, new, conn=conn)
    for t in seeded:
        if t["status"] != "seeded":
            continue
        entry = golden.get("threads", {}).get(t["thread_id"]) or {}
        if entry.get("error"):
            continue
        ledger.record_canary(
            dsn,
            t["thread_id"],
            t["canary"],
            versions,
            user_canaries=user_canaries,
            trace=t.get("trace"),
            conn=conn,
        )
        ledger.save_golden(dsn, t["thread_id"], t["canary"], entry, versions, conn=conn)
