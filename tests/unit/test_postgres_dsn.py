"""redact_dsn and friends: no password ever reaches output."""

from __future__ import annotations

import pytest

from migrator.errors import ConfigError
from migrator.postgres import redact_dsn
from migrator.postgres.dsn import major_of_version_num, redact_text
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
        ("host=h password='p w\\'x' dbname=db", "host=h password=*** dbname=db"),
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
