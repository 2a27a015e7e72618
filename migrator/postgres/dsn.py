"""DSN helpers: hide passwords, connect with typed errors, read the server's major."""

from __future__ import annotations

import re

import psycopg
from psycopg import conninfo

from migrator.errors import (
    MASK,
    ConfigError,
    ConnectError,
    passwords_in,
    remember_secret,
    scrub,
)

CONNECT_TIMEOUT_S = 5
_MAX_PORT = 65535

SHOW_VERSION_NUM_SQL = "SHOW server_version_num"
SHOW_VERSION_SQL = "SHOW server_version"

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)")
_DSN_HINT = (
    'a URL needs "://" after its scheme (postgresql://...) and @ : / in the password '
    "percent-encoded; key=value pairs are separated by spaces (host=... dbname=...)."
)


def redact_dsn(dsn: str) -> str:
    """Hide the password of a DSN, in URL or key=value form.

    Args:
        dsn: A libpq connection string, ``postgresql://user:pw@host/db`` or
            ``host=... password=...``.

    Returns:
        The same string with every password replaced by ``***``.
    """
    text = dsn
    scheme = _SCHEME.match(text)
    if scheme:
        start = scheme.end()
        rest = text[start:]
        # The userinfo ends at the last "@" before the path/query; passwords with
        # an unencoded "@" or "/" are common enough in hand-written DSNs.
        query_at = rest.find("?")
        head = rest if query_at < 0 else rest[:query_at]
        at = head.rfind("@")
        if at >= 0:
            userinfo = head[:at]
            user, sep, _password = userinfo.partition(":")
            if sep:
                rest = f"{user}:{MASK}{rest[at:]}"
        text = text[:start] + rest
    return scrub(text)


def redact_text(text: str, dsn: str | None) -> str:
    """Hide a DSN's password wherever it occurs in ``text`` (e.g. a driver message).

    Args:
        text: Any message.
        dsn: The DSN whose password must not appear, if any.

    Returns:
        ``text`` with the DSN and its password masked, and :func:`scrub` applied.
    """
    if dsn:
        if dsn in text:
            text = text.replace(dsn, redact_dsn(dsn))
        for password in sorted(_passwords_of(dsn), key=len, reverse=True):
            text = text.replace(password, MASK)
    return scrub(text)


def remember_dsn(value: str) -> None:
    """Have :func:`migrator.errors.scrub` mask the password(s) ``value`` carries, anywhere.

    For the DSNs a user hands us: libpq may echo them in shapes no pattern knows,
    and a malformed one is echoed whole. Values that hold no password change nothing.

    Args:
        value: A DSN (valid or not), or any option value.
    """
    for password in _passwords_of(value):
        remember_secret(password)


def check_dsn(dsn: str, option: str = "DSN") -> None:
    """Refuse a connection string libpq cannot parse, before anything runs.

    Args:
        dsn: The value given.
        option: How the user named it (``--dsn``), for the message.

    Raises:
        ConfigError: ``dsn`` is not a connection string (a typo such as
            ``postgresql//`` or an unknown key); the message hides its password.
    """
    try:
        parsed = conninfo.conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(
            f"{option} is not a valid connection string: {redact_text(detail, dsn)}.",
            hint=_DSN_HINT,
        ) from None
    # libpq parses a port as text and judges it only when it connects: a typo there
    # would be a "cannot connect" (exit 3) after work began, not a usage error.
    port = str(parsed.get("port") or "")
    for part in port.split(",") if port else ():
        part = part.strip()
        if part and not (part.isascii() and part.isdigit() and 0 < int(part) <= _MAX_PORT):
            raise ConfigError(
                f"{option} is not a valid connection string: invalid port "
                f"{redact_text(repr(part), dsn)} (a number from 1 to {_MAX_PORT}).",
                hint=_DSN_HINT,
            )


def _passwords_of(dsn: str) -> set[str]:
    found = set(passwords_in(dsn))
    if "=" in dsn or "://" in dsn:
        try:
            value = conninfo.conninfo_to_dict(dsn).get("password")
        except (psycopg.Error, ValueError):
            value = None
        if value:
            found.add(str(value))
    return found


def with_dbname(dsn: str, dbname: str) -> str:
    """Return ``dsn`` pointing at another database (key=value form).

    Args:
        dsn: A libpq connection string.
        dbname: The database to point at.

    Returns:
        A libpq connection string.
    """
    return conninfo.make_conninfo(dsn, dbname=dbname)


def connect(dsn: str, *, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
    """Open a connection, turning any failure into a ``ConnectError``.

    Args:
        dsn: A libpq connection string.
        autocommit: Open the connection in autocommit mode.

    Returns:
        An open psycopg connection.

    Raises:
        ConfigError: ``dsn`` is not a connection string libpq can parse.
        ConnectError: The server could not be reached or refused us.
    """
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.ProgrammingError as exc:  # libpq could not parse it: a typo, not the network
        detail = " ".join(str(exc).split())
        raise ConfigError(
            f"{redact_dsn(dsn)} is not a valid connection string: {redact_text(detail, dsn)}.",
            hint=_DSN_HINT,
        ) from exc
    except (psycopg.Error, ValueError) as exc:
        detail = " ".join(str(exc).split())
        raise ConnectError(
            f"Cannot connect to {redact_dsn(dsn)}: {redact_text(detail, dsn)}",
            hint="check host, port, user and password, and that the server is running.",
        ) from exc


def server_version(dsn: str) -> tuple[int, str]:
    """Read a server's version.

    Args:
        dsn: A libpq connection string.

    Returns:
        ``(major, server_version)``, e.g. ``(15, "15.19")``.

    Raises:
        ConnectError: The server could not be reached.
    """
    with connect(dsn) as conn:
        num_row = conn.execute(SHOW_VERSION_NUM_SQL).fetchone()
        text_row = conn.execute(SHOW_VERSION_SQL).fetchone()
    assert num_row is not None and text_row is not None
    return major_of_version_num(int(str(num_row[0]))), str(text_row[0])


def major_of_version_num(num: int) -> int:
    """Turn ``server_version_num`` into a major (``150019`` -> 15, ``90624`` -> 9).

    Args:
        num: The value of ``server_version_num``.

    Returns:
        The major version.
    """
    return num // 10000
