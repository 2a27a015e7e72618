"""The example app's Alembic env: its own models, next to LangGraph's checkpoint tables.

Two lines matter for langgraph-migrator: ``include_name``/``include_object`` keep
autogenerate away from the checkpoint tables and the tool's ledger schema.
``-x transaction_per_migration=false`` runs every revision in one transaction
(Alembic's default); both modes work with ``run_checkpoint_migrations``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from models import metadata
from sqlalchemy import create_engine, pool

from migrator.alembic_support import include_name, include_object

config = context.config
if config.config_file_name:
    fileConfig(config.config_file_name)
x_args = context.get_x_argument(as_dictionary=True)
url = (
    x_args.get("url") or os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
)
per_migration = x_args.get("transaction_per_migration", "true").lower() in ("1", "true", "yes")


def run_migrations_online() -> None:
    """Run the app's revisions on a live connection."""
    if not url:
        raise SystemExit("set DATABASE_URL (postgresql+psycopg://user@host:port/db) or -x url=...")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            include_name=include_name,
            include_object=include_object,
            transaction_per_migration=per_migration,
        )
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL only (the checkpoint revision refuses: setup() needs a live database)."""
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
