"""Postgres provisioning against real servers: every major this machine can provide."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from migrator.errors import ConfigError, ConnectError, ProvisionError
from migrator.postgres import (
    NO_DAEMON_REASON,
    Server,
    connect_url,
    docker_available,
    list_sources,
    provision,
    read_state,
    scratch_database,
    start_detached,
    stop_detached,
)
from migrator.postgres.local import process_alive, template_dir
from migrator.postgres.sources import (
    cache_root,
    make_shared_dir,
    resolve_binaries,
    running_as_root,
)


def _param(request: pytest.FixtureRequest):
    return request.node.callspec.params["pg_server"]


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def _live_postgres_for(data_dir: Path) -> list[int]:
    """Pids of non-zombie processes whose command line names ``data_dir`` (process table)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(data_dir) in cmdline and process_alive(int(proc.name)):
            pids.append(int(proc.name))
    return pids


# --- on every provisioned major ----------------------------------------------------


def test_server_answers_with_its_major(pg_server: Server, request: pytest.FixtureRequest) -> None:
    with psycopg.connect(pg_server.dsn) as conn:
        num = conn.execute("SHOW server_version_num").fetchone()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert num is not None
    assert int(num[0]) // 10000 == pg_server.major
    expected = _param(request).major
    if expected is not None:
        assert pg_server.major == expected


def test_bin_dir_has_client_tools(pg_server: Server) -> None:
    if pg_server.bin_dir is None:
        pytest.skip(f"{pg_server.provider} server has no local binaries")
    for tool in ("pg_dump", "psql"):
        assert os.access(pg_server.bin_dir / tool, os.X_OK)
    out = subprocess.run(
        [str(pg_server.bin_dir / "pg_dump"), "--version"], capture_output=True, text=True
    )
    assert f" {pg_server.major}." in out.stdout


def test_pg_dump_runs_against_server(pg_server: Server, pg_dsn: str) -> None:
    if pg_server.bin_dir is None:
        pytest.skip(f"{pg_server.provider} server has no local binaries")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int primary key)")
    out = subprocess.run(
        [str(pg_server.bin_dir / "pg_dump"), "--schema-only", "-d", pg_dsn],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "CREATE TABLE public.t" in out.stdout


def test_server_runs_unprivileged_when_root(pg_server: Server) -> None:
    if pg_server.provider != "local" or pg_server.pid is None:
        pytest.skip("only local clusters run as a local process")
    if not running_as_root():
        assert _uid_of(pg_server.pid) == os.getuid()
        return
    import pwd

    assert _uid_of(pg_server.pid) == pwd.getpwnam("nobody").pw_uid


def test_scratch_database_is_fresh_and_dropped(pg_server: Server) -> None:
    with scratch_database(pg_server) as dsn:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT current_database()").fetchone()
            assert row is not None
            name = str(row[0])
            assert name.startswith("test_")
            assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname='public'")
    # A connection still open on the scratch database must not block the drop.
    with psycopg.connect(pg_server.dsn) as conn:
        gone = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert gone is None


def test_url_provider_detects_major(pg_server: Server) -> None:
    server = connect_url(pg_server.dsn)
    assert server.provider == "url"
    assert server.major == pg_server.major
    server.stop()  # a no-op: the server keeps answering
    with psycopg.connect(pg_server.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_url_provider_rejects_other_major(pg_server: Server) -> None:
    other = 14 if pg_server.major != 14 else 15
    with pytest.raises(ConfigError, match=f"runs Postgres {pg_server.major}"):
        provision("url", other, dsn=pg_server.dsn)


def test_second_cluster_from_template_and_clean_stop(
    pg_server: Server, request: pytest.FixtureRequest
) -> None:
    param = _param(request)
    if param.provider != "local":
        pytest.skip("templates belong to local clusters")
    source = resolve_binaries(param.major, param.kind)
    assert (template_dir(source) / "PG_VERSION").exists()
    started = time.perf_counter()
    second = provision("local", param.major, source=param.kind)
    elapsed = time.perf_counter() - started
    try:
        assert second.dsn != pg_server.dsn
        assert second.major == pg_server.major
        assert elapsed < 10, f"cluster from template took {elapsed:.2f}s"
        with psycopg.connect(second.dsn) as conn:
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    finally:
        assert second.pid is not None and second.data_dir is not None
        pid, data_dir = second.pid, second.data_dir
        assert _live_postgres_for(data_dir)
        second.stop()
        second.stop()  # idempotent
    assert not process_alive(pid)
    assert _live_postgres_for(data_dir) == []
    assert not data_dir.exists()
    assert not data_dir.parent.exists()
    assert not second.is_running()


# --- errors ------------------------------------------------------------------------


def test_port_in_use_is_a_provision_error(pg_default: Server) -> None:
    if pg_default.provider != "local":
        pytest.skip("fixed ports are a local-provider option")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ProvisionError) as info:
            provision("local", pg_default.major, port=port)
    assert f"127.0.0.1:{port} is in use" in str(info.value)
    assert info.value.hint
    assert info.value.exit_code == 3


@pytest.mark.parametrize("major", [9, 19, 100])
def test_unknown_major_is_a_config_error(major: int) -> None:
    with pytest.raises(ConfigError, match=f"Unknown Postgres major {major}") as info:
        provision("local", major)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_major_without_source_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PG_BIN", "PG12_BIN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="No source on this machine provides Postgres 12"):
        provision("local", 12)


def test_missing_binaries_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PG_BIN", str(tmp_path))
    with pytest.raises(ProvisionError) as info:
        provision("local", 15)
    message = str(info.value)
    assert "\n" not in message
    assert f"$PG_BIN={tmp_path} lacks Postgres binaries" in message
    assert "initdb" in message
    assert info.value.hint


def test_initdb_failure_is_a_provision_error(
    monkeypatch: pytest.MonkeyPatch, shared_scratch: Path
) -> None:
    src = resolve_binaries(None)
    assert src.bin_dir is not None
    fake = make_shared_dir(shared_scratch / "bin")
    for tool in ("pg_ctl", "postgres", "pg_dump", "psql"):
        (fake / tool).symlink_to(src.bin_dir / tool)
    (fake / "initdb").write_text("#!/bin/sh\necho 'initdb: error: disk on fire' >&2\nexit 1\n")
    (fake / "initdb").chmod(0o755)
    monkeypatch.setenv("PG_BIN", str(fake))
    monkeypatch.setenv("LANGGRAPH_MIGRATOR_PG_CACHE", str(shared_scratch / "cache"))
    with pytest.raises(ProvisionError, match="initdb .* failed with exit 1: .*disk on fire"):
        provision("local")


def test_private_bin_dir_is_refused_when_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not running_as_root():
        pytest.skip("only root hands the server to another user")
    src = resolve_binaries(None)
    assert src.bin_dir is not None
    private = tmp_path / "private" / "bin"
    private.mkdir(parents=True)
    for tool in ("initdb", "pg_ctl", "postgres", "pg_dump", "psql"):
        (private / tool).symlink_to(src.bin_dir / tool)
    private.parent.chmod(0o700)
    monkeypatch.setenv("PG_BIN", str(private))
    monkeypatch.setenv("LANGGRAPH_MIGRATOR_PG_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ProvisionError, match="not readable by 'nobody'"):
        provision("local")


def test_private_clusters_dir_is_refused_when_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not pg_ctl's empty server log: a one-line cause naming the directory."""
    if not running_as_root():
        pytest.skip("only root hands the server to another user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setenv("LANGGRAPH_MIGRATOR_PG_CLUSTERS", str(private / "clusters"))
    with pytest.raises(ProvisionError, match=re.escape(f"'nobody' cannot enter {private}. ")):
        provision("local")


DEBIAN_15 = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def shared_scratch() -> Iterator[Path]:
    """A dir the server user can read (as root ``tmp_path`` is private)."""
    scratch = make_shared_dir(cache_root() / f"test-{uuid.uuid4().hex[:8]}")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_server_that_fails_to_start_reports_its_log(
    monkeypatch: pytest.MonkeyPatch, shared_scratch: Path
) -> None:
    if not (DEBIAN_15 / "pg_ctl").exists():
        pytest.skip("needs Debian's Postgres 15 (its pg_ctl can be copied)")
    fake = make_shared_dir(shared_scratch / "bin")
    for tool in ("initdb", "pg_dump", "psql"):
        (fake / tool).symlink_to(DEBIAN_15 / tool)
    # pg_ctl runs the postgres beside its own (resolved) path: copy it, wrap postgres.
    shutil.copy2(DEBIAN_15 / "pg_ctl", fake / "pg_ctl")
    (fake / "postgres").write_text(
        "#!/bin/sh\n"
        f'case "$1" in -V|--version) exec {DEBIAN_15}/postgres "$@";; esac\n'
        "echo 'FATAL:  simulated startup failure' >&2\nexit 1\n"
    )
    (fake / "postgres").chmod(0o755)
    monkeypatch.setenv("PG_BIN", str(fake))
    monkeypatch.setenv("LANGGRAPH_MIGRATOR_PG_CACHE", str(shared_scratch / "cache"))
    with pytest.raises(ProvisionError) as info:
        provision("local", 15)
    message = str(info.value)
    assert "the server did not start" in message
    assert "simulated startup failure" in message
    assert "\n" not in message


def test_concurrent_template_creation(shared_scratch: Path) -> None:
    """Two processes building the same template at once both get a working cluster."""
    src = resolve_binaries(None)
    code = (
        "from migrator.postgres import provision\n"
        "with provision('local') as s:\n"
        "    import psycopg; psycopg.connect(s.dsn).execute('select 1')\n"
        "print('ok')\n"
    )
    env = {
        **os.environ,
        "LANGGRAPH_MIGRATOR_PG_CACHE": str(shared_scratch),
        "PG_BIN": str(src.bin_dir),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    templates = list((shared_scratch / "templates").iterdir())
    assert [t.name.startswith("pg") for t in templates] == [True]


def test_bad_dsn_is_a_connect_error_without_password() -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex[:8]
    for dsn in (
        f"postgresql://postgres:{secret}@127.0.0.1:1/postgres",
        f"host=127.0.0.1 port=1 user=postgres password={secret} dbname=postgres",
    ):
        with pytest.raises(ConnectError) as info:
            provision("url", dsn=dsn)
        assert secret not in str(info.value)
        assert "***" in str(info.value)
        assert info.value.exit_code == 3


def test_url_provider_needs_a_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANGGRAPH_MIGRATOR_DSN", raising=False)
    with pytest.raises(ConfigError, match="needs a DSN"):
        provision("url")


def test_docker_asked_without_daemon_is_a_provision_error() -> None:
    if docker_available():
        pytest.skip("a Docker daemon answers here")
    with pytest.raises(ProvisionError, match="no Docker daemon answered") as info:
        provision("docker", 16)
    assert info.value.hint


@pytest.mark.docker
def test_docker_provider_starts_postgres() -> None:
    if not docker_available():
        pytest.skip(NO_DAEMON_REASON)
    with provision("docker", 16) as server:
        assert server.provider == "docker"
        assert server.major == 16
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


# --- sources, detached servers, safety net ------------------------------------------


def test_list_sources_names_majors_and_origins() -> None:
    sources = list_sources(include_docker=False)
    kinds = {(s.major, s.kind) for s in sources}
    assert (18, "embedded") in kinds
    assert {14, 15, 16, 17, 18} <= {s.major for s in sources if s.kind == "wheel"}
    if Path("/usr/lib/postgresql/15/bin/initdb").exists():
        assert (15, "debian") in kinds


def test_detached_server_is_stopped_from_another_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LANGGRAPH_MIGRATOR_RUNTIME_DIR", str(tmp_path))
    name = f"t-{uuid.uuid4().hex[:8]}"
    server = start_detached("local", name=name)
    assert server.pid is not None and server.data_dir is not None
    state = read_state(name)
    assert state is not None and state.pid == server.pid and state.dsn == server.dsn
    assert json.loads((tmp_path / f"{name}.json").read_text())["major"] == server.major
    with pytest.raises(ProvisionError, match="already runs"):
        start_detached("local", name=name)
    down = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from migrator.postgres import stop_detached; stop_detached({name!r})",
        ],
        env={**os.environ, "LANGGRAPH_MIGRATOR_RUNTIME_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 0, down.stderr
    assert not process_alive(server.pid)
    assert not server.data_dir.exists()
    assert read_state(name) is None
    assert stop_detached(name) is None


def test_server_is_stopped_at_exit_without_stop_call() -> None:
    code = (
        "from migrator.postgres import provision\n"
        "s = provision('local')\n"
        "print(s.pid, s.data_dir, flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    pid_text, data_dir = out.stdout.split()
    assert not process_alive(int(pid_text))
    assert not Path(data_dir).exists()
