"""Why a write was refused: a read-only session is not a missing privilege.

A ``CREATE`` refused with SQLSTATE 25006 (``read_only_sql_transaction``) comes from
``default_transaction_read_only``, a hot standby, or a role or pooler set up for
reading; granting CREATE would not help there, so the hint must say read-only.
"""

from __future__ import annotations

#: SQLSTATE of a write in a read-only transaction.
READ_ONLY_SQLSTATE = "25006"
#: SQLSTATE of a missing privilege.
INSUFFICIENT_PRIVILEGE_SQLSTATE = "42501"

READ_ONLY_HINT = (
    "the session is read-only (default_transaction_read_only, a standby, or a read-only "
    "role or pooler): point --dsn at the primary, with a role whose sessions may write"
)


def sqlstate_of(exc: BaseException) -> str:
    """The SQLSTATE of a psycopg error, or of the one a SQLAlchemy error wraps ('' if none)."""
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
    return ""


def write_refused_hint(exc: BaseException, privilege_hint: str) -> str:
    """The hint for a refused write: read-only when it was, else ``privilege_hint``.

    Args:
        exc: What the write raised (psycopg or SQLAlchemy).
        privilege_hint: What to say when it was not a read-only session.
    """
    return READ_ONLY_HINT if sqlstate_of(exc) == READ_ONLY_SQLSTATE else privilege_hint
