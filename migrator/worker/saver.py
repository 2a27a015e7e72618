"""Open the version's own ``PostgresSaver`` the way its README says to.

``setup()`` needs ``autocommit=True`` and ``row_factory=dict_row``; every
supported checkpoint-postgres (1.0.0 to the newest) takes a bare connection.
Every saver a worker op reads through is made by :func:`make_saver`: with the
app's serializer when the app profile names one (:mod:`migrator.worker.app`),
and behind :class:`~migrator.worker.nullguard.GuardedSerde`, so a value whose
class does not import here is an error, never ``None``. When that serializer
encrypts, one stored encrypted row per table must decrypt before the first read
(:func:`migrator.worker.cipher.check_key`): a wrong key fails the op at once,
naming the key's variable. Strict-msgpack rehearsal settings
(:mod:`migrator.worker.strict`) are applied to the serializer here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def open_connection(dsn: str) -> Iterator[Any]:
    """A psycopg connection configured as the savers expect (autocommit, dict rows)."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        yield conn


def make_saver(conn: Any, *, guarded: bool = True) -> Any:
    """The installed version's sync ``PostgresSaver`` over ``conn``, with the app's serde.

    Args:
        conn: A connection from :func:`open_connection` (or configured the same way).
        guarded: Put :class:`~migrator.worker.nullguard.GuardedSerde` in front of
            the serializer (False only for a saver that never loads a value).
    """
    from langgraph.checkpoint.postgres import PostgresSaver

    from migrator.worker import app, strict
    from migrator.worker.cipher import cipher_of
    from migrator.worker.nullguard import guard

    serde = app.make_serde()
    saver = PostgresSaver(conn) if serde is None else PostgresSaver(conn, serde=serde)
    saver.serde = strict.apply(saver.serde)
    if guarded:
        saver.serde = guard(saver.serde)
        if cipher_of(saver.serde) is not None:
            _check_key_once(conn, saver.serde)
    return saver


_KEYS_CHECKED: set[tuple[str, str, str]] = set()


def _check_key_once(conn: Any, serde: Any) -> None:
    """:func:`~migrator.worker.cipher.check_key` once per database and process."""
    from migrator.worker.cipher import check_key

    info = conn.info
    where = (str(info.host), str(info.port), str(info.dbname))
    if where in _KEYS_CHECKED:
        return
    check_key(conn, serde)
    _KEYS_CHECKED.add(where)


@contextmanager
def open_saver(dsn: str) -> Iterator[Any]:
    """The installed version's sync ``PostgresSaver`` over a fresh connection."""
    with open_connection(dsn) as conn:
        yield make_saver(conn)


def ledger_version(conn: Any) -> int | None:
    """Highest ``v`` in ``checkpoint_migrations``, or None when the table is absent."""
    row = conn.execute("SELECT to_regclass('checkpoint_migrations') AS t").fetchone()
    if row["t"] is None:
        return None
    row = conn.execute("SELECT max(v) AS v FROM checkpoint_migrations").fetchone()
    return None if row["v"] is None else int(row["v"])
