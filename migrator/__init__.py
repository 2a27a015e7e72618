"""langgraph-migrator: safe LangGraph upgrades for PostgreSQL checkpoints.

This module must stay importable with the standard library alone: version
environments put the package on ``PYTHONPATH`` to run ``migrator.worker``.
"""

__version__ = "0.1.0"
