"""Alembic environment for FlowStone: one schema, one advisory lock, one transaction.

FlowStone calls this through `flowstone.queue.migrate`, which hands over an open
SQLAlchemy connection and the schema name in `config.attributes`.
"""

from alembic import context
from sqlalchemy import text

from flowstone.queue.migrate import quoted_schema

config = context.config
connection = config.attributes["connection"]
schema = config.attributes["schema"]

context.configure(
    connection=connection,
    version_table_schema=schema,
    transaction_per_migration=False,
)

with context.begin_transaction():
    # Two processes migrating at once queue up here instead of colliding.
    connection.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"flowstone.migrate.{schema}"}
    )
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted_schema(schema)}"))
    context.run_migrations()
