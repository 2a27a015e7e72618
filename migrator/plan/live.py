"""The plan's I/O: read the live schema (read only), build the reference, rehearse."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from migrator import envs
from migrator.errors import ConfigError, ConnectError, MigratorError, ProvisionError
from migrator.plan.blast import DataScan, data_hazards, scan_needs
from migrator.plan.hazards import build_plan
from migrator.plan.model import (
    ALREADY_EXISTS,
    ConnectionProbe,
    Hazard,
    Plan,
    Progress,
    Step,
    TargetInfo,
)
from migrator.plan.scan import ScanNeeds, ThreadGroup, scan_threads
from migrator.plan.statements import _CONCURRENTLY_RE, pending_statements
from migrator.postgres import redact_dsn, scratch_database
from migrator.postgres.dsn import redact_text
from migrator.schema import (
    CHECKPOINT_TABLES,
    LEDGER_TABLE,
    SchemaModel,
    read_catalog,
)

CURRENT_SCHEMA_SQL = "SELECT current_schema()"
SCHEMA_EXISTS_SQL = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"
BACKEND_PID_SQL = "SELECT pg_backend_pid()"
INSERT_LEDGER_SQL = sql.SQL("INSERT INTO {} (v) VALUES (%s) ON CONFLICT DO NOTHING")
MARK_INVALID_SQL = "UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass"


#: Reference schemas built in this process: (env key, server major) -> model.
_REFERENCES: dict[tuple[str, int], SchemaModel] = {}
#: The code a kept reference schema depends on (:func:`build_reference`).
REFERENCE_CODE = ("worker/op_setup.py", "worker/saver.py", "schema.py", "plan/live.py")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def require_schema(dsn: str, schema: str | None) -> None:
    """Refuse a ``--schema`` the database does not have, before anything runs.

    ``setup()`` never creates a schema: against a missing one, ``migrate`` would run
    it, find none of the reference's tables, and undo (exit 5), and ``plan`` would
    plan tables nothing can create.

    Args:
        dsn: The live database (read only).
        schema: The checkpoint tables' schema the user named, or None (current schema).

    Raises:
        ConfigError: ``schema`` does not exist (exit 2).
        ConnectError: The database cannot be reached or read.
    """
    if not schema:
        return
    try:
        with psycopg.connect(
            dsn, connect_timeout=10, application_name="langgraph-migrator plan"
        ) as conn:
            row = conn.execute(SCHEMA_EXISTS_SQL, (schema,)).fetchone()
    except psycopg.Error as exc:
        raise ConnectError(
            f"cannot read {redact_dsn(dsn)}: {redact_text(_first_line(exc), dsn)}",
            hint="check host, port, user and password, and that the server is running.",
        ) from exc
    if not (row and row[0]):
        raise ConfigError(
            f"schema {schema!r} does not exist in {redact_dsn(dsn)}; nothing was done.",
            hint="--schema names the schema that holds the checkpoint tables: check its "
            "spelling, or leave it out to use the connection's current schema",
        )


def read_live(dsn: str, schema: str | None = None) -> tuple[SchemaModel, ConnectionProbe]:
    """Introspect the live database in ``READ ONLY`` transactions, and probe for poolers.

    Args:
        dsn: The live database.
        schema: The checkpoint tables' schema (default: the connection's ``current_schema()``).

    Returns:
        The model and the connection probe.

    Raises:
        ConnectError: The database cannot be reached or read.
    """
    try:
        with psycopg.connect(
            dsn, connect_timeout=10, application_name="langgraph-migrator plan"
        ) as conn:
            conn.read_only = True
            schema = schema or str((conn.execute(CURRENT_SCHEMA_SQL).fetchone() or ["public"])[0])
            catalog = read_catalog(conn, schema)
            first = int((conn.execute(BACKEND_PID_SQL).fetchone() or [0])[0])
            conn.rollback()
            second = int((conn.execute(BACKEND_PID_SQL).fetchone() or [0])[0])
            conn.rollback()
            connected_port: int | None = int(conn.info.port) if conn.info.port else None
    except psycopg.Error as exc:
        raise ConnectError(
            f"cannot read {redact_dsn(dsn)}: {redact_text(_first_line(exc), dsn)}",
            hint="check host, port, user and password, and that the server is running.",
        ) from exc
    server_port = catalog["server"].get("port")
    probe = ConnectionProbe(
        pid_first=first,
        pid_second=second,
        connected_port=connected_port,
        server_port=int(server_port) if server_port else None,
    )
    return SchemaModel.from_catalog(catalog), probe


def read_data(
    dsn: str, schema: str, needs: ScanNeeds | None = None
) -> tuple[tuple[ThreadGroup, ...], float]:
    """Scan the stored threads (:func:`~migrator.plan.scan.scan_sql`), read only.

    Args:
        dsn: The live database.
        schema: The checkpoint tables' schema.
        needs: What the data hazards of the (from, to) pair look at (default: everything).

    Returns:
        The thread groups and the seconds the scan took.

    Raises:
        ConnectError: The database cannot be reached or read.
    """
    started = time.monotonic()
    try:
        with psycopg.connect(
            dsn, connect_timeout=10, application_name="langgraph-migrator plan"
        ) as conn:
            conn.read_only = True
            conn.execute(
                sql.SQL("SELECT set_config('search_path', {}, true)").format(sql.Literal(schema))
            )
            groups = scan_threads(conn, needs)
            conn.rollback()
    except psycopg.Error as exc:
        raise ConnectError(
            f"cannot scan the stored threads of {redact_dsn(dsn)}: "
            f"{redact_text(_first_line(exc), dsn)}",
            hint="the role needs SELECT on checkpoints and checkpoint_writes",
        ) from exc
    return groups, time.monotonic() - started


def task_ids_cured(dsn: str, schema: str) -> str | None:
    """The restore, if any, that rewrote every stored thread's task ids (read only).

    A dump/restore with the task-id transform (``restore --transform task-id``,
    the migrate fallback) that swapped into ``schema`` and cured every thread is
    recorded in the tool's ledger; the threads it restored keep their old-format
    checkpoints, so the scan alone would report them at risk forever.
    """
    from migrator import ledger
    from migrator.dumprestore.common import LEDGER_KIND

    try:
        records = ledger.list_backups(dsn)
    except (MigratorError, psycopg.Error):
        return None
    for record in reversed(records):
        details = record.details if isinstance(record.details, dict) else {}
        if (
            record.kind == LEDGER_KIND
            and details.get("old_schema")
            and details.get("live_schema") == schema
            and details.get("task_id") is True
            and details.get("uncured") == 0
        ):
            when = record.created_at.strftime("%Y-%m-%d %H:%M UTC")
            return f"the dump/restore of {when} (task-id transform, every thread)"
    return None


def guess_from_spec(live: SchemaModel, groups: Sequence[ThreadGroup]) -> str:
    """A ``--from`` spec for the era the ledger and the stored formats show (a hint)."""
    formats = {g.fmt for g in groups}
    writes = live.tables.get("checkpoint_writes")
    has_task_path = writes is not None and writes.column("task_path") is not None
    top = max(live.ledger) if live.ledger else None
    if live.ledger is None:
        era = "1.0.0"
    elif top is None:
        era = "SPEC"
    elif top < 7:
        era = "1.0.9"
    elif top == 7:
        era = "2.0.11"
    elif top == 8:
        era = "2.0.12" if has_task_path else "2.0.8"
    elif formats and formats <= {"1"}:
        era = "2.0.13"
    else:
        era = "2.0.25"
    return "SPEC" if era == "SPEC" else f"langgraph-checkpoint-postgres=={era}"


@contextmanager
def scratch_server(major: int, scratch_dsn: str | None, notes: list[str]) -> Iterator[str]:
    """A server to build the reference and rehearse on: never the live one.

    Args:
        major: The live server's major.
        scratch_dsn: A server the user gave (databases are created and dropped on it).
        notes: Receives a note when another major had to be used.

    Yields:
        A DSN on which scratch databases may be created.

    Raises:
        ProvisionError: No local Postgres could be started.
    """
    if scratch_dsn:
        yield scratch_dsn
        return
    from migrator.postgres import MAX_MAJOR, MIN_MAJOR, provision

    candidates = sorted(range(MIN_MAJOR, MAX_MAJOR + 1), key=lambda m: (abs(m - major), -m))
    last: Exception | None = None
    for candidate in candidates:
        try:
            server = provision("local", candidate)
        except (ProvisionError, ConfigError) as exc:
            last = exc
            continue
        if candidate != major:
            notes.append(
                f"rehearsed on Postgres {candidate}: no local Postgres {major} is available "
                "(give --scratch-dsn for an exact match)"
            )
        try:
            yield server.dsn
        finally:
            server.stop()
        return
    raise ProvisionError(
        f"no local Postgres could be started for the rehearsal: {last}",
        hint="pass --scratch-dsn with a server where the tool may create databases",
    )


def build_reference(
    env: envs.VersionEnv, server_dsn: str, *, timeout: float = 600.0
) -> SchemaModel:
    """What the target's ``setup()`` builds on an empty database (built, read, dropped).

    Args:
        env: The target version environment.
        server_dsn: A scratch server.
        timeout: Seconds the worker may take.

    Returns:
        The reference schema.

    Raises:
        ConnectError: The scratch server cannot be reached (``--scratch-dsn`` named,
            its password masked).
    """
    try:
        with psycopg.connect(server_dsn, connect_timeout=10) as conn:
            major = int(conn.info.server_version) // 10000
    except psycopg.Error as exc:
        # The user's --scratch-dsn is the usual culprit: name it, not the live database.
        raise ConnectError(
            f"cannot reach the scratch server {redact_dsn(server_dsn)}: "
            f"{redact_text(_first_line(exc), server_dsn)}",
            hint="--scratch-dsn must name a running server where the tool may create "
            "databases; leave it out to rehearse on an ephemeral local Postgres.",
        ) from exc
    key = (env.version_set.key, major)
    if key not in _REFERENCES:

        def build() -> dict[str, Any]:
            with scratch_database(server_dsn) as dsn:
                envs.run_worker(env, "setup", {"dsn": dsn}, timeout=timeout)
                with psycopg.connect(dsn) as conn:
                    return read_catalog(conn, "public")

        # What setup() builds depends on the environment, the server's major and the
        # code that runs and reads it: kept per environment (migrator.envs.info).
        catalog = envs.kept_answer(env, f"reference-pg{major}", REFERENCE_CODE, build)
        _REFERENCES[key] = SchemaModel.from_catalog(catalog)
    return _REFERENCES[key]


def rehearse(
    live: SchemaModel,
    target: TargetInfo,
    server_dsn: str,
    reference: SchemaModel,
    notes: list[str],
) -> tuple[list[Step], SchemaModel]:
    """Run the pending statements on an empty clone of the live checkpoint tables.

    Args:
        live: The live schema.
        target: The target's migrations.
        server_dsn: A scratch server.
        reference: The reference (its tables are cloned too when live has them).
        notes: Receives notes (e.g. an INVALID index that could not be reproduced).

    Returns:
        The steps with outcomes, and the clone's schema afterwards.
    """
    names = [t for t in (*CHECKPOINT_TABLES, *reference.tables) if t in live.tables]
    names = list(dict.fromkeys(names))
    pending = pending_statements(target, live.ledger)
    steps: list[Step] = []
    with scratch_database(server_dsn) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        for name in names:
            for statement in live.tables[name].create_sql():
                conn.execute(statement)
        for index in live.invalid_indexes:
            try:
                conn.execute(MARK_INVALID_SQL, (index.name,))
            except psycopg.Error as exc:
                notes.append(
                    f"could not mark {index.name} INVALID on the scratch server "
                    f"({_first_line(exc)}); it is carried into the plan from the live catalog"
                )
        ledger_ident = sql.Identifier(LEDGER_TABLE)
        for done in live.ledger or ():
            conn.execute(INSERT_LEDGER_SQL.format(ledger_ident), (done,))
        for v, statement, always in pending:
            transactional = _CONCURRENTLY_RE.search(statement) is None
            try:
                if statement.strip():
                    conn.execute(statement)
            except psycopg.Error as exc:
                kind = type(exc).__name__
                steps.append(
                    Step(v, statement, always, transactional, "fails", kind, _first_line(exc))
                )
                if kind not in ALREADY_EXISTS:
                    continue
                # migrate records an "already exists" step as done and carries on.
            else:
                steps.append(Step(v, statement, always, transactional, "ok"))
            if v is not None and not always and target.has_ledger:
                conn.execute(INSERT_LEDGER_SQL.format(ledger_ident), (v,))
        rehearsed = SchemaModel.from_catalog(read_catalog(conn, "public"))
    return steps, rehearsed


def target_env(
    to_spec: str, *, progress: Progress, timeout: float = 600.0
) -> tuple[envs.VersionEnv, TargetInfo]:
    """Build (or reuse) the target environment and read its migrations."""
    version_set = envs.parse_version_set(to_spec)
    env = envs.ensure_env(version_set, progress=progress)
    return env, TargetInfo.from_info(env.label, envs.env_info(env, timeout=timeout))


def make_plan(
    dsn: str,
    to_spec: str = "current",
    *,
    scratch_dsn: str | None = None,
    schema: str | None = None,
    progress: Progress = lambda _m: None,
    timeout: float = 600.0,
    env_and_target: tuple[envs.VersionEnv, TargetInfo] | None = None,
    from_spec: str | None = None,
) -> Plan:
    """Introspect, build the reference, rehearse, and find hazards. Never writes to ``dsn``.

    Args:
        dsn: The live database (read only).
        to_spec: The target version set.
        scratch_dsn: A server for the reference and the rehearsal (default: an
            ephemeral local cluster of the live major).
        schema: The checkpoint tables' schema (default: the connection's current schema).
        progress: Receives one-line status messages.
        timeout: Seconds a worker step may take.
        env_and_target: A target already resolved by :func:`target_env`.
        from_spec: The version set that wrote the data, when known: named in the
            check that proves a data hazard, and it refines the era of the rows.

    Returns:
        The plan.

    Raises:
        ConfigError: Bad version spec, or ``schema`` does not exist.
        ConnectError: The live database cannot be reached.
        ProvisionError: No scratch server could be started.
    """
    require_schema(dsn, schema)
    progress("reading the live schema (read only)")
    live, probe = read_live(dsn, schema)
    from_set = envs.parse_version_set(from_spec) if from_spec else None
    env, target = env_and_target or target_env(to_spec, progress=progress, timeout=timeout)
    notes: list[str] = []
    major = int(live.server.get("version_num", 0)) // 10000
    has_threads = {"checkpoints", "checkpoint_writes"} <= set(live.tables)
    from_versions = dict(from_set.pins) if from_set else None
    needs = scan_needs(target.versions, from_versions)
    # The thread scan reads the live database, the reference and the rehearsal use the
    # scratch server: independent, so they run side by side (plan takes the longer).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan-scan") as pool:
        scan = pool.submit(read_data, dsn, live.schema, needs) if has_threads else None
        if scan is not None:
            progress("scanning the stored threads (read only)")
        started = time.monotonic()
        with scratch_server(major, scratch_dsn, notes) as server_dsn:
            progress(f"building the reference schema of {target.label}")
            reference = build_reference(env, server_dsn, timeout=timeout)
            progress("rehearsing setup() on an empty clone of the live schema")
            steps, rehearsed = rehearse(live, target, server_dsn, reference, notes)
        notes.append(f"reference and rehearsal took {time.monotonic() - started:.1f}s")
        scanned = scan.result() if scan is not None else None
    data: DataScan | None = None
    data_found: list[Hazard] = []
    if scanned is not None:
        groups, seconds = scanned
        spec = from_spec or guess_from_spec(live, groups)
        reaches, data_found = data_hazards(
            groups,
            target.versions,
            from_versions=from_versions,
            from_spec=spec,
            to_spec=to_spec,
            cured=task_ids_cured(dsn, live.schema),
        )
        data = DataScan(
            groups,
            seconds,
            from_label=from_set.label if from_set else None,
            reaches=tuple(reaches),
            needs=needs,
        )
    return build_plan(
        live=live,
        target=target,
        steps=steps,
        rehearsed=rehearsed,
        reference=reference,
        probe=probe,
        database=redact_dsn(dsn),
        notes=notes,
        data=data,
        data_found=data_found,
    )
