"""The gate's rehearsal of ``migrate``: the same schema path on a copy of the data.

``upgrade-check`` must judge what a deploy through ``migrate`` gets, not what a
plain ``setup()`` gets: :func:`rehearse_schema` runs ``migrate``'s own
:func:`~migrator.execute.apply.apply_schema` (``setup()`` with the H-DUP-COLUMN
ledger fix, then repairs to the reference schema) on the gate's database, and
returns ``migrate``'s ``setup`` and ``repair`` checks. No lock, no backup, no
canary verification: the gate does its own drift and resume checks afterwards.
"""

from __future__ import annotations

from migrator import envs
from migrator.execute.apply import apply_schema
from migrator.execute.model import MigrateOutcome, MigrateSettings, Progress, _Run
from migrator.plan import Plan
from migrator.report import Check, Report


def rehearse_schema(
    dsn: str,
    env: envs.VersionEnv,
    plan: Plan,
    *,
    progress: Progress,
    worker_timeout: float = 900.0,
) -> list[Check]:
    """Bring ``dsn`` to the target's reference schema exactly as ``migrate`` would.

    Args:
        dsn: A scratch copy of the data (the gate's database).
        env: The target version environment.
        plan: :func:`migrator.plan.make_plan` of ``dsn`` for that target.
        progress: Receives one-line status messages.
        worker_timeout: Seconds ``setup()`` may take.

    Returns:
        ``migrate``'s ``setup`` and ``repair`` checks.

    Raises:
        MigrationError: The schema still differs from the reference afterwards.
        WorkerError: ``setup()`` failed in a way ``migrate`` does not handle.
    """
    run = _Run(MigrateSettings(dsn=dsn, worker_timeout=worker_timeout, retries=0), progress)
    apply_schema(run, env, plan, MigrateOutcome(report=Report("migrate", ())))
    return run.checks
