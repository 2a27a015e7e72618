"""Alembic environment of the tool's own ledger (run by :func:`migrator.ledger.upgrade_ledger`).

There is no ``alembic.ini``: the ``Config`` is built in code and hands over the
live connection in ``config.attributes["connection"]``. The version table is
``langgraph_migrator.migrator_ledger_version``, so an app's ``alembic_version``
is never read or written.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.schema import CreateSchema

from migrator.ledger import LEDGER_SCHEMA, VERSION_TABLE


def run_migrations_online() -> None:
    """Upgrade on the connection passed in ``config.attributes``, in one transaction."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "the ledger's alembic env needs a live connection in config.attributes; "
            "use migrator.ledger.upgrade_ledger(dsn)"
        )
    context.configure(
        connection=connection,
        target_metadata=None,
        version_table=VERSION_TABLE,
        version_table_schema=LEDGER_SCHEMA,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        # The version table lives in the schema, so the schema comes first.
        connection.execute(CreateSchema(LEDGER_SCHEMA, if_not_exists=True))
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("the ledger has no offline (--sql) mode; it is upgraded by the tool itself")
run_migrations_online()
