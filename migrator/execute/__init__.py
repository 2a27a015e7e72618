"""``migrate``: lock → plan → backup → ``setup()`` with timeouts and retries → repair → verify.

1. A session-level advisory lock on its own autocommit connection
   (:func:`migrator.lock.advisory_lock`): one migrator at a time; the others wait,
   then find nothing to do.
2. The plan (:func:`migrator.plan.make_plan`); errors ``migrate`` cannot handle
   (privileges, poolers, statements failing for other reasons) stop it before
   anything is written (exit 1).
3. The ``backup`` hook, if given.
4. Until no other session holds a lock the work needs (read from ``pg_locks``,
   so waiting takes no lock), with backoff; exit 4 when it never clears, before
   any change.
5. The target's own ``setup()`` in its worker, on an autocommit connection with
   ``lock_timeout`` and ``statement_timeout``; on ``LockNotAvailable`` or
   ``QueryCanceled`` it retries with backoff (each statement is its own
   transaction, so a retry resumes where the ledger stopped). A step the plan
   predicted to fail with "already exists" (H-DUP-COLUMN) is recorded in the
   ledger and ``setup()`` runs again.
6. Introspect, compare with the reference, repair with idempotent DDL.
7. ``migrator.verify.verify_goldens`` and ``migrator.ledger.record_run`` when installed.
8. Breaking drift after 7 (``DriftError``) and ``fallback="dump-restore"`` (or
   ``"ask"`` and ``confirm`` says yes): still holding the lock, restore the
   pre-migrate backup (beside the live tables, then one swap), dump with ``from_spec`` and
   restore with the target (:func:`migrator.dumprestore.run_fallback`, ``task-id``
   transform), check the schema, verify again, and add one ``fallback`` check per
   golden thread saying whether it was cured. Not cured: the backup is restored
   again, exit 5. No fallback: undo as below, exit 1, and say how to run it.

Any failure after changes began: undo what can be undone (the objects and ledger
rows this run added), say exactly what state the database is in, exit 5.
"""

from __future__ import annotations

from migrator.execute.hooks import backup_hook, default_backup_dir
from migrator.execute.model import (
    FALLBACKS,
    PRE_MIGRATE_PREFIX,
    RETRYABLE,
    Backup,
    Confirm,
    DriftError,
    MigrateOutcome,
    MigrateSettings,
    Progress,
)
from migrator.execute.run import migrate

__all__ = [
    "FALLBACKS",
    "PRE_MIGRATE_PREFIX",
    "RETRYABLE",
    "Backup",
    "Confirm",
    "DriftError",
    "MigrateOutcome",
    "MigrateSettings",
    "Progress",
    "backup_hook",
    "default_backup_dir",
    "migrate",
]
