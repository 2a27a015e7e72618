"""``plan``: what ``setup()`` of a target version will do to a live schema, and what breaks.

Modules: ``model`` (value types), ``statements`` (pending statements, locks),
``repairs``, ``hazards`` (:func:`build_plan`), ``render``, ``live`` (the I/O).

Pure part (no I/O): :func:`pending_statements` (which ``MIGRATIONS`` entries run,
from the ledger's max ``v``, exactly as ``setup()`` decides), :func:`statement_locks`,
:func:`repairs_for` (idempotent DDL that turns a schema into the reference),
:func:`undo_statements`, :func:`build_plan` (hazards with stable ids) and
:func:`render_plan`.

I/O part (:func:`make_plan`): the live database is only read, in a ``READ ONLY``
transaction. The reference schema and the rehearsal are built on a scratch server
(an ephemeral local cluster of the live server's major, or ``--scratch-dsn``):
the reference is the target's own ``setup()`` on an empty database; the rehearsal
is an empty clone of the live checkpoint tables (structure only, INVALID indexes
marked invalid again when the scratch role may, ledger rows copied) on which the
pending statements run one by one in autocommit, as ``setup()`` runs them.

Pooler detection: ``pg_backend_pid()`` is read in two consecutive transactions of
one connection; a different backend means a transaction-mode pooler, where the
migrator's session advisory lock does not hold (``P-POOLER``, error). A server
``port`` that differs from the port we connected to, or port 6432, means a proxy or
pooler in between (``P-POOLER``, warning).
"""

from __future__ import annotations

from migrator.plan.accept import check_hazard_ids
from migrator.plan.hazards import build_plan
from migrator.plan.live import (
    _REFERENCES,
    build_reference,
    make_plan,
    read_live,
    rehearse,
    require_schema,
    scratch_server,
    target_env,
)
from migrator.plan.model import (
    ALREADY_EXISTS,
    LOCK_RISK_BYTES,
    LOCK_RISK_ROWS,
    PLAN_FORMAT,
    POOLER_PORT,
    ConnectionProbe,
    Hazard,
    HazardSeverity,
    Plan,
    Progress,
    Repair,
    Step,
    TargetInfo,
)
from migrator.plan.render import render_plan
from migrator.plan.repairs import repairs_for, undo_statements
from migrator.plan.statements import (
    LOCK_CONFLICTS,
    LOCK_MODES,
    conflicting_locks,
    pending_statements,
    statement_locks,
)

__all__ = [
    "check_hazard_ids",
    "ALREADY_EXISTS",
    "LOCK_CONFLICTS",
    "LOCK_MODES",
    "LOCK_RISK_BYTES",
    "LOCK_RISK_ROWS",
    "PLAN_FORMAT",
    "POOLER_PORT",
    "_REFERENCES",
    "ConnectionProbe",
    "Hazard",
    "HazardSeverity",
    "Plan",
    "Progress",
    "Repair",
    "Step",
    "TargetInfo",
    "build_plan",
    "build_reference",
    "conflicting_locks",
    "make_plan",
    "pending_statements",
    "read_live",
    "rehearse",
    "render_plan",
    "repairs_for",
    "require_schema",
    "scratch_server",
    "statement_locks",
    "target_env",
    "undo_statements",
]
