"""Click wiring only: parse → call ``api`` → render → exit code.

Exit codes (DESIGN.md): 0 pass; 1 gate failed; 2 usage/configuration; 3 database
or environment; 4 lock not acquired; 5 migration failed and rolled back; 70 bug.
:func:`main` is the one place that turns errors into exit codes. One module per
family of commands; importing them registers their commands on :data:`cli`.
"""

from __future__ import annotations

from migrator.cli import check, data, infra, schema, serde  # noqa: F401 - register the commands
from migrator.cli.main import EXIT_TERMINATED, _Terminated, _unwind_on_sigterm, main
from migrator.cli.root import EXIT_BUG, cli

__all__ = ["EXIT_BUG", "EXIT_TERMINATED", "_Terminated", "_unwind_on_sigterm", "cli", "main"]
