"""redact_dsn and friends: no password ever reaches output."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from migrator.errors import (
    MASK,
    ConfigError,
    WorkerError,
    remember_secret,
    scrub,
    secret_scope,
)
from migrator.postgres import redact_dsn
from migrator.postgres.dsn import check_dsn, major_of_version_num, redact_text, remember_dsn
from migrator.postgres.sources import check_major


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u:p%40ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        ("postgresql://u:p@ss/w@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        (
            "postgresql://h/db?password=pw&sslmode=disable",
            "postgresql://h/db?password=***&sslmode=disable",
        ),
        ("postgresql+psycopg://u:pw@h/db", "postgresql+psycopg://u:***@h/db"),
        ("host=h user=u password=pw dbname=db", "host=h user=u password=*** dbname=db"),
        ("host=h password='p w\\'x' dbname=db", "host=h password='***' dbname=db"),
        ("host=h PASSWORD = pw", "host=h PASSWORD = ***"),
        ("host=h dbname=db", "host=h dbname=db"),
        ("", ""),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected


def test_redact_text_hides_the_password_anywhere() -> None:
    dsn = "postgresql://u:hunter2@h/db"
    text = f"failed for {dsn}: auth hunter2 rejected"
    out = redact_text(text, dsn)
    assert "hunter2" not in out
    assert "postgresql://u:***@h/db" in out


def test_major_of_version_num() -> None:
    assert major_of_version_num(150019) == 15
    assert major_of_version_num(180006) == 18
    assert major_of_version_num(90624) == 9


@pytest.mark.parametrize("major", [9, 19])
def test_check_major_rejects_unknown(major: int) -> None:
    with pytest.raises(ConfigError) as info:
        check_major(major)
    assert info.value.exit_code == 2


# --------------------------------------------------------------------------- scrub

PW = "S3cretPw"


@pytest.mark.parametrize(
    "text",
    [
        # URLs, with and without scheme typos
        f"postgresql://user:{PW}@127.0.0.1:1/db",
        f"postgresql//user:{PW}@127.0.0.1:1/db",
        f"postgresql:/user:{PW}@h/db",
        f"postgresql:user:{PW}@h/db",
        f"postgres:///user:{PW}@h/db",
        f"postgresql+psycopg://user:{PW}@h/db",
        f"user:{PW}@h:5432/db",
        f"postgresql://:{PW}@h/db",
        f"postgresql://user@azure-server:{PW}@h/db",
        # multi-host, IPv6, unencoded "@" "/" ":" in the password
        f"postgresql://user:{PW}@h1:5432,h2:5433/db?target_session_attrs=any",
        f"postgresql://user:{PW}@[::1]:5432/db",
        f"postgresql://user:{PW}@x/y:z@h/db",
        "postgresql://user:S3cret%40Pw%2F@h/db",
        # query parameter
        f"postgresql:///db?host=/tmp&password={PW}&sslmode=disable",
        f"postgresql://h/db?PASSWORD={PW}",
        # key=value conninfo, quoted or not
        f"host=h user=u password={PW} dbname=db",
        f"host=h password = {PW}",
        f"host=h password='{PW} with space' dbname=db",
        "host=h password='S3cret\\'Pw' dbname=db",
        f"host=h password='{PW}",  # quote cut short
        # env echoes, dict/JSON reprs
        f"PGPASSWORD={PW} langgraph-migrator plan",
        f'export PGPASSWORD="{PW}"',
        f"{{'host': 'h', 'password': '{PW}'}}",
        f'{{"password": "{PW}", "user": "u"}}',
        # inside other text: libpq's echo, reprs, several at once
        f'missing "=" after "postgresql//user:{PW}@127.0.0.1:1/db" in connection info string',
        f"ValueError('could not reach postgresql://u:{PW}@h/db')",
        f"a=postgresql://u:{PW}@h/db, b=host=h password={PW}",
        "\x1b[1mpostgresql://u:S3cret\x1b[36mPw@h\x1b[0m",  # colour codes split it
    ],
)
def test_scrub_hides_every_password_shape(text: str) -> None:
    out = scrub(text)
    for piece in (PW, "S3cret", "S3cret%40Pw"):
        assert piece not in out, out
    assert MASK in out
    assert scrub(out) == out  # masking twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "Hint: check host, port, user and password, and that the server is running.",
        'FATAL:  password authentication failed for user "u"',
        "fe_sendauth: no password supplied",
        "langgraph-checkpoint-postgres==2.0.8 at 10:30 on 127.0.0.1:5432",
        "git@github.com:org/repo.git",
        "postgresql://user@h:5432/db",
        "host=h port=5432 user=u dbname=db",
        "canary:subgraph/sub:1ef-2a/1f0: task 9c -> 7d (write to __pregel_tasks)",
    ],
)
def test_scrub_leaves_text_without_passwords_alone(text: str) -> None:
    assert scrub(text) == text


@pytest.mark.parametrize(
    ("dsn", "password"),
    [
        ("postgresql//user:Tr1cky-Known@127.0.0.1:1/db", "Tr1cky-Known"),
        ("postgresql://u:Tr1cky%40Known@h/db", "Tr1cky@Known"),
        ("host=h password='Tr1cky Known'", "Tr1cky Known"),
        ("password=Tr1ckyKnown", "Tr1ckyKnown"),
    ],
)
def test_a_remembered_password_is_masked_in_any_shape(dsn: str, password: str) -> None:
    with secret_scope():
        remember_dsn(dsn)
        out = scrub(f"server said: {password}! and {quote(password, safe='')}")
        assert password not in out and quote(password, safe="") not in out, out
    assert password in scrub(f"server said: {password}!")  # forgotten after the scope


def test_a_short_remembered_password_is_masked_only_as_a_word() -> None:
    with secret_scope():
        remember_secret("test")
        remember_secret("pw")  # too short to mask by itself
        assert (
            scrub("password test rejected; db test_1; pw") == "password *** rejected; db test_1; pw"
        )


def test_errors_scrub_their_text() -> None:
    text = f"worker said postgresql://u:{PW}@h/db"
    err = WorkerError(text, hint=f"PGPASSWORD={PW}", stderr=f"Traceback ... {text}", kind="X")
    assert PW not in str(err) + err.message + (err.hint or "") + err.stderr + repr(err.args)


def test_a_malformed_dsn_is_a_config_error_without_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        check_dsn(f"postgresql//user:{PW}@127.0.0.1:1/db", "--dsn")
    assert info.value.exit_code == 2
    assert PW not in str(info.value) and "--dsn" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
