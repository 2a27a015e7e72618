"""LangGraph checkpoint migrations, with the langgraph this app has installed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Add a revision like this one whenever you upgrade langgraph-checkpoint-postgres:
``run_checkpoint_migrations`` runs ``PostgresSaver.setup()`` outside the
migration's transaction (``CREATE INDEX CONCURRENTLY`` cannot run inside one) and
under the migrator's advisory lock. Run ``langgraph-migrator plan`` first to see
what it will do, and ``langgraph-migrator verify`` after the deploy.
"""

from __future__ import annotations

from alembic import op

from migrator.alembic_support import run_checkpoint_migrations

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Bring the checkpoint tables to what the installed langgraph expects."""
    run_checkpoint_migrations(op)


def downgrade() -> None:
    """Checkpoint migrations are forward only; restore a backup to go back."""
