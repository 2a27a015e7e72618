"""Which ``MIGRATIONS`` statements ``setup()`` runs, and the table locks they take (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from migrator.plan.model import TargetInfo
from migrator.schema import (
    SchemaModel,
)

#: Postgres' table-lock conflict matrix (docs: "Conflicting Lock Modes").
#: Postgres' table lock modes, weakest first.
LOCK_MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
#: Which modes each mode conflicts with, as indexes into ``LOCK_MODES``
#: (docs: "Conflicting Lock Modes").
_CONFLICT_INDEXES = (
    (7,),
    (6, 7),
    (4, 5, 6, 7),
    (3, 4, 5, 6, 7),
    (2, 3, 5, 6, 7),
    (2, 3, 4, 5, 6, 7),
    (1, 2, 3, 4, 5, 6, 7),
    (0, 1, 2, 3, 4, 5, 6, 7),
)
LOCK_CONFLICTS: Mapping[str, frozenset[str]] = {
    mode: frozenset(LOCK_MODES[i] for i in idx)
    for mode, idx in zip(LOCK_MODES, _CONFLICT_INDEXES, strict=True)
}

_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = rf"(?:{_IDENT}\.)?(?P<table>{_IDENT})"
_ALTER_RE = re.compile(rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?{_QUALIFIED}", re.I)
_INDEX_RE = re.compile(
    rf"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?P<conc>CONCURRENTLY\s+)?.*?\sON\s+(?:ONLY\s+)?"
    rf"{_QUALIFIED}",
    re.I | re.S,
)
_CONCURRENTLY_RE = re.compile(r"\bCONCURRENTLY\b", re.I)


def pending_statements(
    target: TargetInfo, ledger: Sequence[int] | None
) -> list[tuple[int | None, str, bool]]:
    """Which statements ``setup()`` runs, decided as ``setup()`` decides (pure).

    ``setup()`` always runs ``MIGRATIONS[0]``, reads ``max(v)`` of the ledger
    (-1 when empty or absent) and runs every later entry. A version without a
    ledger runs its ``CREATE TABLE IF NOT EXISTS`` statements every time.

    Args:
        target: The target version's migrations.
        ledger: The live ledger rows, or None without a ledger table.

    Returns:
        ``(v, sql, always)`` triples in execution order.
    """
    if not target.has_ledger:
        return [(None, s, True) for s in target.setup_sql]
    if not target.migrations:
        return []
    done = max(ledger) if ledger else -1
    out: list[tuple[int | None, str, bool]] = [(0, target.migrations[0], done >= 0)]
    out += [
        (v, target.migrations[v], False) for v in range(max(done + 1, 1), len(target.migrations))
    ]
    return out


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def statement_locks(statement: str) -> list[tuple[str, str]]:
    """Table locks a migration statement takes (pure; best effort on its text).

    ``CREATE INDEX CONCURRENTLY`` takes SHARE UPDATE EXCLUSIVE and then waits for
    writers (a SHARE conflict), so both are listed.

    Args:
        statement: One SQL statement.

    Returns:
        ``(table, mode)`` pairs.
    """
    match = _ALTER_RE.match(statement)
    if match:
        return [(_unquote(match["table"]), "AccessExclusiveLock")]
    match = _INDEX_RE.match(statement)
    if match:
        table = _unquote(match["table"])
        if match.group("conc"):
            return [(table, "ShareUpdateExclusiveLock"), (table, "ShareLock")]
        return [(table, "ShareLock")]
    return []


def conflicting_locks(
    model: SchemaModel, wanted: Sequence[tuple[str, str]]
) -> list[tuple[str, str, int, float | None]]:
    """Locks other sessions hold that the ``wanted`` locks would wait for (pure).

    Args:
        model: A live model (its ``locks``).
        wanted: ``(table, mode)`` pairs.

    Returns:
        ``(table, held mode, pid, transaction age in seconds)``, one per holder.
    """
    out: list[tuple[str, str, int, float | None]] = []
    seen: set[tuple[str, int]] = set()
    for lock in model.locks:
        if not lock.granted or (lock.table, lock.pid) in seen:
            continue
        for table, mode in wanted:
            if table == lock.table and lock.mode in LOCK_CONFLICTS.get(mode, frozenset()):
                out.append((lock.table, lock.mode, lock.pid, lock.xact_age_s))
                seen.add((lock.table, lock.pid))
                break
    return out
