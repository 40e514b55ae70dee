"""The statements of the `cron_entries` table: cron entries managed at run time."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from flowstone.queue.queries import SchemaStatements, composer
from flowstone.queue.validation import check_identifier

_COLUMNS = "name, expression, worker, args, timezone, paused, inserted_at, updated_at"

_ADD = """
INSERT INTO {entries} (name, expression, worker, args, timezone, paused)
VALUES (%(name)s, %(expression)s, %(worker)s, %(args)s, %(timezone)s, %(paused)s)
ON CONFLICT (name) DO NOTHING
RETURNING {columns}
"""

# Only the fields given (not NULL) change.
_UPDATE = """
UPDATE {entries} SET
    expression = coalesce(%(expression)s, expression), worker = coalesce(%(worker)s, worker),
    args = coalesce(%(args)s, args), timezone = coalesce(%(timezone)s, timezone),
    paused = coalesce(%(paused)s, paused), updated_at = now()
WHERE name = %(name)s
RETURNING {columns}
"""

_DELETE = "DELETE FROM {entries} WHERE name = %(name)s RETURNING name"

_LIST = "SELECT {columns} FROM {entries} ORDER BY name"


@dataclass(frozen=True, slots=True)
class CronQueries(SchemaStatements):
    """The statements of the cron entries table for one schema."""

    add: str
    update: str
    delete: str
    list: str

    @classmethod
    def compose(cls, schema: str) -> CronQueries:
        """Compose every statement with the schema's quoted identifiers."""
        check_identifier(schema, "schema")
        compose = composer({"entries": sql.Identifier(schema, "cron_entries"), "columns": sql.SQL(_COLUMNS)})
        return cls(add=compose(_ADD), update=compose(_UPDATE), delete=compose(_DELETE), list=compose(_LIST))
