"""No password reaches the terminal, whatever the DSN's shape and wherever the text comes from.

The CLI runs through ``main`` (the one error translation point) inside
``CliRunner.isolation``, so stdout and stderr are exactly what a user sees.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from migrator.cli import cli, main
from migrator.errors import ConnectError

PW = "S3cretPw"  # a fake password, only ever written into DSNs of these tests
TYPO_DSN = f"postgresql//user:{PW}@127.0.0.1:1/db"  # the ":" after the scheme is missing


def _main(args: Sequence[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``main(args)``; return its exit code, stdout and stderr."""
    with CliRunner().isolation(env=env) as streams:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def _typo_cases(tmp: Path) -> dict[str, list[str]]:
    return {
        "plan": ["plan", "--dsn", TYPO_DSN, "-q"],
        "plan --scratch-dsn": ["plan", "--dsn", "host=127.0.0.1", "--scratch-dsn", TYPO_DSN],
        "verify": ["verify", "--dsn", TYPO_DSN, "-q"],
        "backup": ["backup", "--dsn", TYPO_DSN, "--out", str(tmp / "backup"), "-q"],
        "restore-backup": ["restore-backup", "--dsn", TYPO_DSN, str(tmp / "backup"), "-q"],
        "dump": ["dump", "--dsn", TYPO_DSN, "--from", "current", "--out", str(tmp / "d.lgdump")],
        "restore": ["restore", "--dsn", TYPO_DSN, str(tmp / "d.lgdump"), "-q"],
        "migrate": ["migrate", "--dsn", TYPO_DSN, "--no-backup", "-q"],
        "cleanup": ["cleanup", "--dsn", TYPO_DSN],
        "canary list": ["canary", "list", "--dsn", TYPO_DSN],
        "upgrade-check --threads-from": [
            "upgrade-check",
            "--from",
            "langgraph-checkpoint-postgres==2.0.8",
            "--pg",
            "local",
            "--threads-from",
            TYPO_DSN,
            "-q",
        ],
        "upgrade-check --pg": [
            "upgrade-check",
            "--from",
            "langgraph-checkpoint-postgres==2.0.8",
            "--pg",
            TYPO_DSN,
            "-q",
        ],
    }


TYPO_COMMANDS = list(_typo_cases(Path(".")))


@pytest.mark.parametrize("case", TYPO_COMMANDS)
def test_typo_dsn_is_a_usage_error_on_one_line_without_the_password(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # migrate and friends write next to the cwd
    work = tmp_path / "work"
    work.mkdir()
    code, out, err = _main(_typo_cases(work)[case])
    assert code == 2, err  # usage/configuration (DESIGN.md), not "database unreachable"
    line = _one_error_line(err)
    assert "127.0.0.1" in line and "***" in line
    assert PW not in out + err
    assert list(work.iterdir()) == [], "a malformed DSN must stop the command before any work"


def test_a_raiseerr_traceback_is_scrubbed_too() -> None:
    code, out, err = _main(["--raiseerr", "plan", "--dsn", TYPO_DSN, "-q"])
    assert code == 2
    assert "Traceback" in err and "***" in err
    assert PW not in out + err


def test_a_click_usage_error_echoing_the_dsn_is_scrubbed() -> None:
    args = ["upgrade-check", "--from", "langgraph-checkpoint-postgres==2.0.8", "--pg", "local"]
    code, out, err = _main([*args, TYPO_DSN])  # an extra argument: click echoes it
    assert code == 2
    assert "***" in err and PW not in out + err


@pytest.fixture
def leaky_plan(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``api.plan`` replaced by one that prints the DSN it got every way a bug could."""
    known = "Kn0wn-" + uuid.uuid4().hex[:8]

    def plan(dsn: str, to_spec: str, *, progress, **_kw):  # type: ignore[no-untyped-def]
        progress(f"connecting to {dsn}")
        print(f"stray print: {dsn} and its password {known}!")
        print("in pieces: postgresql://x:", end="", flush=True)
        print(f"{PW}@h/db")
        sys.stderr.write(f"warning: libpq says {known} is wrong\n")
        raise RuntimeError(f"bug with postgresql://u:{PW}@h/db and {known}")

    monkeypatch.setattr("migrator.api.plan", plan)
    yield known


@pytest.mark.parametrize(
    "dsn_shape",
    [
        "postgresql://app:{pw}@db.internal:5432/app",
        "host=db.internal user=app password='{pw}' dbname=app",
        "postgresql://db.internal/app?password={pw}",
    ],
)
def test_unexpected_failure_prints_no_password(leaky_plan: str, dsn_shape: str) -> None:
    """A bug's traceback, progress lines and stray prints all pass the output filter."""
    dsn = dsn_shape.format(pw=leaky_plan)
    code, out, err = _main(["plan", "--dsn", dsn])
    assert code == 70
    assert "Traceback" in err and "bug with" in err and "stray print" in out
    for secret in (leaky_plan, PW):
        assert secret not in out + err


def test_pgpassword_is_a_known_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "EnvS3cret-" + uuid.uuid4().hex[:6]

    def plan(dsn: str, to_spec: str, *, progress, **_kw):  # type: ignore[no-untyped-def]
        progress(f"server rejected {secret}")
        raise ConnectError(f"cannot connect: {secret} rejected")

    monkeypatch.setattr("migrator.api.plan", plan)
    code, out, err = _main(
        ["plan", "--dsn", "host=127.0.0.1 dbname=app"], env={"PGPASSWORD": secret}
    )
    assert code == 3
    assert secret not in out + err and "rejected" in err


def test_url_encoded_password_is_masked_decoded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def plan(dsn: str, to_spec: str, *, progress, **_kw):  # type: ignore[no-untyped-def]
        progress("libpq echoed p@ss/W0rd-1 back")
        raise SystemExit(0)

    monkeypatch.setattr("migrator.api.plan", plan)
    code, out, err = _main(["plan", "--dsn", "postgresql://u:p%40ss%2FW0rd-1@h/db"])
    assert code == 0
    assert "p@ss/W0rd-1" not in out + err and "echoed *** back" in err


def test_the_filter_also_runs_without_main(monkeypatch: pytest.MonkeyPatch) -> None:
    """``cli`` invoked directly (CliRunner, embedding programs) filters its output as well."""
    secret = "D1rect-" + uuid.uuid4().hex[:6]

    def plan(dsn: str, to_spec: str, *, progress, **_kw):  # type: ignore[no-untyped-def]
        progress(f"at {dsn}")
        print(f"echo {secret}")
        raise SystemExit(0)

    monkeypatch.setattr("migrator.api.plan", plan)
    result = CliRunner().invoke(cli, ["plan", "--dsn", f"postgresql://u:{secret}@h/db"])
    assert result.exit_code == 0, result.output
    assert "echo ***" in result.output and secret not in result.output


# --------------------------------------------------------------------------- transforms

ROOT = Path(__file__).resolve().parents[2] / "canary_fixtures"
RICH_TYPES = (
    "migrator.worker.canaries.rich.CanaryColor",
    "migrator.worker.canaries.rich.CanaryModel",
    "migrator.worker.canaries.rich.CanaryRecord",
)
LEAKY_TRANSFORMS = f'''
import os

def leak(record):
    raise ValueError(
        "cannot reach postgresql://u:{PW}@h/db (the server said " + os.environ["LEAK_KNOWN"] + ")"
    )

def leak_long(record):
    # A message long enough to be cut short, the cut inside the password.
    raise ValueError("cannot reach postgresql://u:" + "{PW}" * 60 + "@h/db")
'''


@pytest.fixture(scope="module")
def dumped(pg_default, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real dump (written by 2.0.25) of the 2.0.25 fixture."""
    from migrator import dumprestore, envs, fixtures
    from migrator.postgres import scratch_database

    out = tmp_path_factory.mktemp("dump") / "d.lgdump"
    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, ROOT / "2.0.25")
        old = envs.ensure_env(envs.parse_version_set("langgraph-checkpoint-postgres==2.0.25"))
        dumprestore.dump_threads(dsn, old, out)
    return out


@pytest.fixture
def live_db(pg_default) -> Iterator[str]:
    from migrator import fixtures
    from migrator.postgres import scratch_database

    with scratch_database(pg_default) as dsn:
        fixtures.import_tables(dsn, ROOT / "2.0.25")
        yield dsn


@pytest.fixture
def transform_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app's checkout (the cwd, where restore imports transforms from)."""
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "leaky_transforms.py").write_text(LEAKY_TRANSFORMS)
    monkeypatch.chdir(folder)
    return folder


def _with_known_password(dsn: str) -> tuple[str, str]:
    """``dsn`` with a password the user "passed" (the server's own, or one trust auth ignores)."""
    known = conninfo_to_dict(dsn).get("password")
    if known:
        return dsn, str(known)
    known = "Kn0wn-" + uuid.uuid4().hex[:10]
    return make_conninfo(dsn, password=known), known


@pytest.mark.timeout(900)
@pytest.mark.parametrize("function", ["leak", "leak_long"])
def test_a_raising_transform_prints_no_password(
    function: str,
    dumped: Path,
    live_db: str,
    transform_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn, known = _with_known_password(live_db)
    monkeypatch.setenv("LEAK_KNOWN", known)  # the transform echoes the user's password
    args = ["restore", "--dsn", dsn, str(dumped), "--transform", f"leaky_transforms:{function}"]
    for name in RICH_TYPES:
        args += ["--allow-type", name]
    code, out, err = _main([*args, "-q"])
    assert code == 5, err  # restore failed, live tables untouched
    line = _one_error_line(err)
    assert "cannot reach postgresql://u:***@h/db" in line
    for secret in (PW, PW[:4], known):
        assert secret not in out + err


@pytest.mark.timeout(900)
def test_a_raising_transform_error_holds_no_password(
    dumped: Path, live_db: str, transform_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a report would be built from: the error, its worker error and traceback."""
    from migrator import dumprestore, envs
    from migrator.errors import MigrationError, WorkerError

    monkeypatch.setenv("LEAK_KNOWN", "the server said nothing")
    new_env = envs.ensure_env(envs.parse_version_set("current"))
    path = f"{envs.worker_source_dir()}:{transform_dir}"
    with pytest.raises(MigrationError) as info:
        dumprestore.restore_dump(
            live_db,
            new_env,
            dumped,
            transform="leaky_transforms:leak",
            allow_types=RICH_TYPES,
            extra_env={"PYTHONPATH": path},
        )
    cause = info.value.__cause__
    assert isinstance(cause, WorkerError) and "Traceback" in cause.stderr
    texts = [str(info.value), repr(info.value.args), cause.message, cause.stderr, str(cause)]
    assert "postgresql://u:***@h/db" in str(info.value)
    assert all(PW not in text for text in texts), texts
