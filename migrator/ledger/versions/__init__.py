"""Alembic revisions of the ledger (file names are not module names alembic imports)."""
