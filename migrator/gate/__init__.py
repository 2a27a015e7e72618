"""The ``upgrade-check`` gate: seed under the old version, read under the new, compare.

* :mod:`migrator.gate.flow` — the flow (:func:`run_upgrade_check`);
* :mod:`migrator.gate.checks` — checks built from worker answers and diffs (pure);
* :mod:`migrator.gate.schema` — ``migrate``'s schema path, and a plain ``setup()``;
* :mod:`migrator.gate.fallback` — the dump/restore fallback on a pristine copy;
* :mod:`migrator.gate.scratch` — scratch databases and step timings;
* :mod:`migrator.gate.workers` — how worker ops are called.
"""

from __future__ import annotations

from migrator.gate.checks import diff_checks, seed_check
from migrator.gate.flow import changed_targets, run_upgrade_check, run_upgrade_checks
from migrator.gate.scratch import Progress

__all__ = [
    "Progress",
    "changed_targets",
    "diff_checks",
    "run_upgrade_check",
    "run_upgrade_checks",
    "seed_check",
]
