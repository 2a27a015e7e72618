"""Typed errors. Library code raises these; only ``cli.py`` turns them into exit codes.

Messages say what failed, the last observed state, then a ``Hint:`` where one helps.
Every message, hint and worker stderr is passed through :func:`scrub` when the error
is built, so a password can never ride along in text from libpq, a worker or user
code; ``cli.py`` applies the same filter to everything it prints. Standard library
only: everything imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar
from urllib.parse import quote, quote_plus, unquote

MASK = "***"

# userinfo of a URL, whatever comes before it: ``postgresql://u:pw@h``, scheme typos
# (``postgresql//u:pw@h``, ``postgresql:/u:pw@h``), none (``u:pw@h``), multi-host
# (``u:pw@h1,h2``). It starts after a slash or where a word starts; the password runs
# to the last "@" of the word, because hand-written passwords hold "@", "/" and ":".
# A password that starts with "/" is not taken for one: that is the "//" of a URL.
_URL_PASSWORD = re.compile(
    r"""(?:(?<=/)|(?<![^\s'"`(<\[{=,;|]))"""
    r"""(?P<user>[^\s:/'"`<>]{0,256}):(?P<password>(?!/)[^\s'"`<>]{1,512})@"""
)
# key=value conninfo, URL query parameters, env echoes (PGPASSWORD=...), and
# dict/JSON/YAML shapes (``'password': 'x'``); quoted values may be cut short.
_KV_PASSWORD = re.compile(
    r"""(?P<key>\b[\w.-]{0,64}?(?:password|passwd|pwd)['"]?\s*[=:]\s*)"""
    r"""(?P<value>'(?:[^'\\]|\\.)*(?:'|$)|"(?:[^"\\]|\\.)*(?:"|$)|[^\s&'"]+)""",
    re.IGNORECASE,
)
_KV_HINT = re.compile("pass|pwd", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")

#: A known password shorter than this is only masked where the shapes above find it:
#: replacing "pw" wherever it occurs would garble every message.
SECRET_MIN_LEN = 4
#: Shorter known passwords are masked only as a whole word ("test" but not "test_db").
_SECRET_ANYWHERE_LEN = 8
_secrets: set[str] = set()


def remember_secret(secret: str) -> None:
    """Mask ``secret`` (and its URL- and JSON-escaped forms) in every later :func:`scrub`.

    Args:
        secret: A password the user gave us (from a DSN, ``PGPASSWORD``, ...).
    """
    if len(secret) < SECRET_MIN_LEN:
        return
    escaped = secret.replace("\\", "\\\\").replace('"', '\\"')
    for form in {secret, unquote(secret), quote(secret, safe=""), quote_plus(secret), escaped}:
        if len(form) >= SECRET_MIN_LEN and form != MASK:
            _secrets.add(form)


@contextmanager
def secret_scope() -> Iterator[None]:
    """Forget, on exit, the secrets remembered inside (one CLI run in a longer process)."""
    saved = set(_secrets)
    try:
        yield
    finally:
        _secrets.clear()
        _secrets.update(saved)


def passwords_in(text: str) -> list[str]:
    """The passwords the shapes :func:`scrub` knows find in ``text`` (quotes removed).

    Args:
        text: A DSN, even a malformed one, or any message.

    Returns:
        Each password found, in order.
    """
    found = [m.group("password") for m in _URL_PASSWORD.finditer(text)] if "@" in text else []
    for m in _KV_PASSWORD.finditer(text):
        value = m.group("value")
        if value[:1] in ("'", '"'):
            value = re.sub(r"\\(.)", r"\1", value[1:].removesuffix(value[0]))
        found.append(value)
    return [p for p in found if p]


def scrub(text: str) -> str:
    """Hide every password in ``text``: any DSN shape, and every remembered secret.

    Args:
        text: Any message: ours, libpq's, a worker's, user code's.

    Returns:
        ``text`` with each password replaced by ``***``.
    """
    if not text:
        return text
    if "\x1b" in text:
        # Colour codes can split a password; a line that needs masking loses its colours.
        plain = _ANSI.sub("", text)
        masked = _scrub_plain(plain)
        return text if masked == plain else masked
    return _scrub_plain(text)


def _mask_value(m: re.Match[str]) -> str:
    # A quoted value keeps its quotes, so that masking twice changes nothing.
    value = m.group("value")
    quote_char = value[0] if value[0] in "'\"" else ""
    closing = quote_char if quote_char and len(value) > 1 and value.endswith(quote_char) else ""
    return f"{m.group('key')}{quote_char}{MASK}{closing}"


def _scrub_plain(text: str) -> str:
    if "@" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group('user')}:{MASK}@", text)
    if _KV_HINT.search(text):
        text = _KV_PASSWORD.sub(_mask_value, text)
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret not in text:
            continue
        if len(secret) >= _SECRET_ANYWHERE_LEN:
            text = text.replace(secret, MASK)
        else:
            text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", MASK, text)
    return text


class MigratorError(Exception):
    """Base of every expected failure. ``exit_code`` is what the CLI exits with."""

    exit_code: ClassVar[int] = 70

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = scrub(message)
        super().__init__(message)
        self.message = message
        self.hint = scrub(hint) if hint else hint

    def __str__(self) -> str:
        if not self.hint:
            return scrub(self.message)
        # "... payload. Hint: ...", never "... payload Hint: ...".
        sep = " " if self.message.rstrip().endswith((".", "!", "?", ":", ";")) else ". "
        return scrub(f"{self.message.rstrip()}{sep}Hint: {self.hint}")


class VerificationError(MigratorError):
    """The gate failed: breaking drift, failed verification, or an unsafe plan."""

    exit_code = 1


class ConfigError(MigratorError):
    """Bad usage or configuration: unknown version, bad spec, unreadable file."""

    exit_code = 2


class EnvironmentProblem(MigratorError):
    """Something outside the tool is missing or broken (base for exit code 3)."""

    exit_code = 3


class ProvisionError(EnvironmentProblem):
    """A Postgres server could not be provided (binaries, port, docker, initdb)."""


class ConnectError(EnvironmentProblem):
    """A database could not be reached or refused us."""


class EnvBuildError(EnvironmentProblem):
    """A version environment could not be built (install or import failed)."""


class WorkerError(EnvironmentProblem):
    """A worker process crashed, hung, or answered with an error."""

    def __init__(
        self, message: str, *, hint: str | None = None, stderr: str = "", kind: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.stderr = scrub(stderr)
        self.kind = kind


class LockTimeoutError(MigratorError):
    """Another migrator holds the lock; safe to retry."""

    exit_code = 4


class MigrationError(MigratorError):
    """A migration step failed and was rolled back."""

    exit_code = 5


class AppCodeError(WorkerError):
    """The app profile's code does not load in a version environment, or a stored
    value names a class that does not import there (configuration: exit 2)."""

    exit_code = 2


class LedgerDamagedError(EnvironmentProblem):
    """The tool's ledger schema no longer has the shape its revision promises."""


class OutputError(EnvironmentProblem):
    """A file the tool writes (backup, dump, report) could not be written."""
