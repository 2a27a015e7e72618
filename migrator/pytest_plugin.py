"""pytest plugin (entry point ``pytest11``): test your own graphs across a langgraph upgrade.

Installed with langgraph-migrator; nothing to enable. It gives an app's test suite:

* ``versioned_postgres`` — a running Postgres (``migrator.postgres.Server``) of a chosen
  major: ``@pytest.mark.postgres_major(16)`` or ``indirect`` parametrization; one
  server per major per session. ``--lgm-pg`` / ``$LANGGRAPH_MIGRATOR_PG`` picks the
  provider (``auto``, ``local``, ``docker``) or an existing server (a DSN).
* ``seeded_thread`` — one of your canaries seeded under an OLD version, in its own
  version environment, on a fresh database of ``versioned_postgres``:
  ``@pytest.mark.langgraph_upgrade(from_="langgraph-checkpoint-postgres==2.0.8",
  canaries="myapp.canaries:CANARIES", canary="orders")``. ``.upgrade(to)`` runs the new
  version's ``setup()`` and returns the drift (``migrator.compare.Diff``).
* :func:`assert_upgrade_safe` — the whole ``upgrade-check`` gate on your canaries;
  raises ``AssertionError`` with the report's findings when the verdict is fail.

Canary modules are imported inside the version environments from the directory
pytest runs in (your checkout), as with ``upgrade-check --canaries``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from migrator.config import CheckSettings, PgChoice
from migrator.errors import MigratorError

PG_OPTION = "--lgm-pg"
MAX_DIFFERENCES_SHOWN = 5


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--lgm-pg``: where ``versioned_postgres`` comes from."""
    group = parser.getgroup("langgraph-migrator")
    group.addoption(
        PG_OPTION,
        default=None,
        metavar="auto|local|docker|DSN",
        help="Postgres for versioned_postgres (default: $LANGGRAPH_MIGRATOR_PG, else auto).",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin's markers."""
    config.addinivalue_line(
        "markers", "postgres_major(major): the Postgres major versioned_postgres provides"
    )
    config.addinivalue_line(
        "markers",
        "langgraph_upgrade(from_, canaries, canary=None): what seeded_thread seeds, "
        "under which old version set",
    )


class _ServerPool:
    """One server per (provider, major) for the whole session."""

    def __init__(self, choice: PgChoice) -> None:
        self.choice = choice
        self.servers: dict[int | None, Any] = {}

    def get(self, major: int | None) -> Any:
        from migrator.postgres import provision

        if self.choice.provider == "url":
            major = None  # an existing server has the major it has
        if major not in self.servers:
            self.servers[major] = provision(
                self.choice.provider, major or self.choice.major, self.choice.dsn
            )
        return self.servers[major]

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


@pytest.fixture(scope="session")
def _lgm_server_pool(pytestconfig: pytest.Config) -> Iterator[_ServerPool]:
    choice = PgChoice.parse(pytestconfig.getoption(PG_OPTION))
    pool = _ServerPool(choice)
    try:
        yield pool
    finally:
        pool.stop()


def _requested_major(request: pytest.FixtureRequest) -> int | None:
    marker = request.node.get_closest_marker("postgres_major")
    if marker is not None:
        return int(marker.args[0] if marker.args else marker.kwargs["major"])
    param = getattr(request, "param", None)
    return int(param) if param is not None else None


@pytest.fixture
def versioned_postgres(request: pytest.FixtureRequest, _lgm_server_pool: _ServerPool) -> Any:
    """A running Postgres server of the requested major (``.dsn``, ``.major``).

    The major comes from ``@pytest.mark.postgres_major(N)`` or an indirect parameter;
    without either, the provider's default. Against an existing server (a DSN) a test
    asking for another major is skipped, with the reason.
    """
    major = _requested_major(request)
    try:
        server = _lgm_server_pool.get(major)
    except MigratorError as exc:
        pytest.fail(f"versioned_postgres: {exc}", pytrace=False)
    if major is not None and server.major != major:
        pytest.skip(
            f"Postgres {major} requested, the server given with {PG_OPTION} is {server.major}"
        )
    return server


def _worker_env() -> dict[str, str]:
    """PYTHONPATH for worker ops that import the user's canaries from the checkout."""
    from migrator import envs

    search = [str(envs.worker_source_dir()), str(Path.cwd())]
    if os.environ.get("PYTHONPATH"):
        search.append(os.environ["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(search)}


def user_canary_names(spec: str) -> list[str]:
    """Names of the canaries ``module:attr`` lists (imported here, from the working directory).

    Raises:
        MigratorError: The module cannot be imported or holds no canaries.
    """
    from migrator.errors import ConfigError
    from migrator.worker.canaries import CanaryConfigError, load_user_canaries

    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()
    try:
        names = [c.name for c in load_user_canaries(spec)]
    except CanaryConfigError as exc:
        raise ConfigError(str(exc)) from exc
    if not names:
        raise ConfigError(f"{spec} lists no canaries.", hint="name a non-empty list")
    return names


@dataclass
class SeededThread:
    """A canary thread seeded under an old version set, on its own database.

    Attributes:
        dsn: The database holding the thread (dropped after the test).
        thread_id: The canary's thread id.
        canary: The canary's name.
        from_spec: The version set that seeded it.
        golden: What the old version reads for the thread (a snapshot dict).
        trace: Nodes that executed while seeding.
    """

    dsn: str
    thread_id: str
    canary: str
    from_spec: str
    user_canaries: str
    golden: dict[str, Any]
    trace: list[dict[str, Any]]
    timeout: float = 600.0
    _calls: list[str] = field(default_factory=list, repr=False)

    def _run(self, spec: str, op: str, request: dict[str, Any]) -> dict[str, Any]:
        from migrator import envs

        env = envs.ensure_env(envs.parse_version_set(spec))
        self._calls.append(f"{op}@{spec}")
        return envs.run_worker(env, op, request, timeout=self.timeout, extra_env=_worker_env())

    def snapshot(self, spec: str) -> dict[str, Any]:
        """What version set ``spec`` reads for the thread now."""
        threads = [{"thread_id": self.thread_id, "canary": self.canary}]
        return self._run(
            spec,
            "snapshot",
            {"dsn": self.dsn, "threads": threads, "user_canaries": self.user_canaries},
        )

    def upgrade(self, to: str = "current", policy: Any = None) -> Any:
        """Run ``setup()`` of ``to`` on the database and compare what it reads with the golden.

        Returns:
            The ``migrator.compare.Diff``; ``diff.breaking`` is empty when nothing broke.
        """
        from migrator.compare import compare_snapshots

        self._run(to, "setup", {"dsn": self.dsn})
        return compare_snapshots(self.golden, self.snapshot(to), policy=policy)

    def resume(self, spec: str = "current") -> dict[str, Any]:
        """Continue the thread under ``spec`` (run its ``setup()`` first via :meth:`upgrade`).

        Returns:
            The worker's outcome for the thread: ``outcome``, ``error``, ``trace``, ``next``.
        """
        answer = self._run(
            spec,
            "resume",
            {"dsn": self.dsn, "canaries": [self.canary], "user_canaries": self.user_canaries},
        )
        return dict(answer["threads"][0])


@pytest.fixture
def seeded_thread(
    request: pytest.FixtureRequest, versioned_postgres: Any
) -> Iterator[SeededThread]:
    """Seed the marked canary under the marked old version (see the module docstring)."""
    from migrator import envs
    from migrator.postgres import scratch_database

    marker = request.node.get_closest_marker("langgraph_upgrade")
    if marker is None:
        pytest.fail(
            "seeded_thread needs @pytest.mark.langgraph_upgrade(from_=SPEC, "
            'canaries="module:attr")',
            pytrace=False,
        )
    from_spec = marker.kwargs.get("from_") or (marker.args[0] if marker.args else None)
    spec = marker.kwargs.get("canaries")
    if not from_spec or not spec:
        pytest.fail("langgraph_upgrade needs from_=SPEC and canaries='module:attr'", pytrace=False)
    timeout = float(marker.kwargs.get("timeout", 600.0))
    try:
        names = user_canary_names(spec)
        name = marker.kwargs.get("canary") or names[0]
        if name not in names:
            pytest.fail(f"{spec} has no canary {name!r} (it has {', '.join(names)})", pytrace=False)
        env = envs.ensure_env(envs.parse_version_set(from_spec))
    except MigratorError as exc:
        pytest.fail(f"seeded_thread: {exc}", pytrace=False)

    def call(op: str, req: dict[str, Any]) -> dict[str, Any]:
        return envs.run_worker(env, op, req, timeout=timeout, extra_env=_worker_env())

    with scratch_database(versioned_postgres) as dsn:
        call("setup", {"dsn": dsn})
        seeded = call("seed", {"dsn": dsn, "canaries": [name], "user_canaries": spec})
        entry = seeded["threads"][0]
        if entry["status"] == "skipped":
            pytest.skip(f"canary {name!r} under {from_spec}: {entry['reason']}")
        if entry["status"] != "seeded":
            pytest.fail(
                f"canary {name!r} could not be seeded under {from_spec}: {entry['reason']}",
                pytrace=False,
            )
        threads = [{"thread_id": entry["thread_id"], "canary": name}]
        golden = call("snapshot", {"dsn": dsn, "threads": threads, "user_canaries": spec})
        yield SeededThread(
            dsn=dsn,
            thread_id=entry["thread_id"],
            canary=name,
            from_spec=from_spec,
            user_canaries=spec,
            golden=golden,
            trace=list(entry["trace"]),
            timeout=timeout,
        )


def format_findings(report: Any, from_spec: str, to_spec: str, *, show_values: bool = False) -> str:
    """A readable failure message: what failed, on which canary, and the first differences.

    Differences show type tags and short hashes; their values only with ``show_values``
    (test logs are CI logs).
    """
    counts = report.counts()
    hazards = f"; hazards: {', '.join(report.hazards)}" if report.hazards else ""
    lines = [
        f"upgrade {from_spec} -> {to_spec} is not safe: {counts['fail']} failed check(s), "
        f"{counts['breaking']} breaking difference(s){hazards}"
    ]
    for c in report.checks:
        if c.status != "fail":
            continue
        tags = f" [{', '.join(c.hazards)}]" if c.hazards else ""
        lines.append(f"  FAIL {c.name}{tags}: {c.summary}")
        breaking = [d for d in c.shown_differences(show_values) if d.get("severity") == "breaking"]
        for d in breaking[:MAX_DIFFERENCES_SHOWN]:
            text = str(d.get("summary_values") or d.get("summary") or d.get("path"))
            lines.append(f"      {text[:300]}")
        if len(breaking) > MAX_DIFFERENCES_SHOWN:
            lines.append(f"      ... {len(breaking) - MAX_DIFFERENCES_SHOWN} more")
    return "\n".join(lines)


def assert_upgrade_safe(
    from_: str,
    to: str = "current",
    canaries: str | None = None,
    pg: Any = None,
    *,
    builtin: bool = False,
    timeout: float = 600.0,
    progress: Callable[[str], None] | None = None,
    show_values: bool = False,
) -> Any:
    """Run ``upgrade-check`` on your canaries; fail the test when the upgrade is not safe.

    Args:
        from_: Version set deployed today (``langgraph-checkpoint-postgres==2.0.8``, a
            requirements file, ...).
        to: Version set to upgrade to (default: the one the tests run on).
        canaries: Your canaries, ``module:attr`` (importable from the working directory).
        pg: Where to run: a ``Server`` (e.g. ``versioned_postgres``), a DSN or provider
            string, or None for ``$LANGGRAPH_MIGRATOR_PG`` / auto.
        builtin: Also run the built-in canaries.
        timeout: Seconds one worker step may take.
        progress: Receives a line as each step starts.
        show_values: Show differing values in the failure message, not only their
            types and hashes.

    Returns:
        The ``Report`` (when the verdict is pass).

    Raises:
        AssertionError: The verdict is fail; the message lists the failed checks.
        MigratorError: Bad specs, canaries that cannot be imported, Postgres problems.
    """
    from migrator import api
    from migrator.settings_file import find_pyproject

    if canaries is None and not builtin:
        raise ValueError("assert_upgrade_safe needs canaries='module:attr' (or builtin=True)")
    names = tuple(user_canary_names(canaries)) if canaries and not builtin else ()
    if pg is None or isinstance(pg, str):
        choice = PgChoice.parse(pg)
    else:
        choice = PgChoice(provider="url", dsn=pg.dsn)
    settings = CheckSettings(
        from_spec=from_,
        to_spec=to,
        pg=choice,
        canaries=names,
        user_canaries=canaries,
        pyproject=find_pyproject(),
        worker_timeout=timeout,
    )
    report = api.upgrade_check(settings, progress=progress or (lambda _m: None))
    if report.verdict == "fail":
        raise AssertionError(format_findings(report, from_, to, show_values=show_values))
    return report
