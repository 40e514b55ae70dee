"""All SQL of the queue layer, one module per table; values are always bound parameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from psycopg import sql


def composer(names: Mapping[str, sql.Composable]) -> Callable[[str], str]:
    """A function that fills a statement template's `{name}` slots with quoted identifiers.

    The result is a plain string composed once per schema, so psycopg can prepare it.
    """

    def compose(template: str) -> str:
        return sql.SQL(template.strip()).format(**names).as_string(None)

    return compose
