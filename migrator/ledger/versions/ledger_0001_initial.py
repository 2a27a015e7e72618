"""The ledger's first tables: canaries, goldens, runs, backups.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Snapshots, plans and manifests are ``json`` (stored verbatim: a snapshot may hold
``\\u0000`` escapes, which ``jsonb`` rejects); small version maps are ``jsonb``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrator.ledger import LEDGER_SCHEMA

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_NOW = sa.text("now()")


def upgrade() -> None:
    """Create the ledger tables in ``langgraph_migrator``."""
    op.create_table(
        "canaries",
        sa.Column("thread_id", sa.Text, primary_key=True),
        sa.Column("canary", sa.Text, nullable=False),
        sa.Column("versions", pg.JSONB, nullable=False),
        sa.Column("user_canaries", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default="seeded"),
        sa.Column("seed_trace", pg.JSON),
        sa.Column("seeded_by", sa.Text, server_default=sa.text("current_user")),
        sa.Column("seeded_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=LEDGER_SCHEMA,
    )
    op.create_table(
        "goldens",
        sa.Column("thread_id", sa.Text, primary_key=True),
        sa.Column("canary", sa.Text),
        sa.Column("snapshot", pg.JSON, nullable=False),
        sa.Column("versions", pg.JSONB, nullable=False),
        sa.Column("seeded_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=LEDGER_SCHEMA,
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("from_versions", pg.JSONB),
        sa.Column("to_versions", pg.JSONB),
        sa.Column("plan", pg.JSON),
        sa.Column("applied_statements", pg.JSON),
        sa.Column("repairs", pg.JSON),
        sa.Column("verdict", sa.Text),
        sa.Column("timings", pg.JSONB),
        sa.Column("db_user", sa.Text, server_default=sa.text("current_user")),
        sa.Column("client_host", sa.Text),
        sa.Column("client_addr", pg.INET, server_default=sa.text("inet_client_addr()")),
        sa.Column("tool_version", sa.Text),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("details", pg.JSON),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=LEDGER_SCHEMA,
    )
    op.create_table(
        "backups",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("manifest", pg.JSON),
        sa.Column("status", sa.Text, nullable=False, server_default="created"),
        sa.Column("details", pg.JSON),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.CheckConstraint(
            "kind IN ('backup', 'dump', 'shadow-tables')", name="backups_kind_check"
        ),
        schema=LEDGER_SCHEMA,
    )


def downgrade() -> None:
    """Drop the ledger tables (the schema and version table stay)."""
    for table in ("backups", "runs", "goldens", "canaries"):
        op.drop_table(table, schema=LEDGER_SCHEMA)
