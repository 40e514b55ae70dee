"""All SQL of the queue layer, one module per table; values are always bound parameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

from psycopg import sql

LOCAL_TIMEOUT = "SELECT set_config('statement_timeout', %(ms)s, true)"
"""Bound the statements of the current transaction to `ms` milliseconds (a transaction
pooler keeps no session setting, so this is set per transaction there)."""


def composer(names: Mapping[str, sql.Composable]) -> Callable[[str], str]:
    """A function that fills a statement template's `{name}` slots with quoted identifiers.

    The result is a plain string composed once per schema, so psycopg can prepare it.
    """

    def compose(template: str) -> str:
        return sql.SQL(template.strip()).format(**names).as_string(None)

    return compose


class SchemaStatements:
    """A set of statements for one schema: `compose` builds it, `for_schema` composes it
    once per process and schema (composing is not free; the hot path asks often)."""

    __slots__ = ()
    _composed: ClassVar[dict[tuple[type, str], Any]] = {}

    @classmethod
    def for_schema(cls, schema: str) -> Self:
        """The statements for `schema`, composed once."""
        key = (cls, schema)
        found: Self | None = cls._composed.get(key)
        if found is None:  # two threads may compose at once; setdefault keeps one
            found = cls._composed.setdefault(key, cls.compose(schema))
        return found

    @classmethod
    def compose(cls, schema: str) -> Self:
        """Compose every statement with the schema's quoted identifiers."""
        raise NotImplementedError
