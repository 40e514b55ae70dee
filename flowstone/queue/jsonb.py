"""Decoding the jsonb columns defensively: a document no one can decode must not take a
node down. Rows are written by any producer with SQL, so a job's args may be nested
deeper than Python's decoder can follow; such a value decodes to `UndecodableJSON`,
which the executor discards with a clear error and front ends show as what it is."""

from __future__ import annotations

import json
from typing import Any

from psycopg.abc import AdaptContext
from psycopg.types.json import set_json_loads


class UndecodableJSON(dict[str, str]):
    """Stands in for a JSON document that could not be decoded; says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(__undecodable__=reason)
        self.reason = reason


def loads(data: bytes | str) -> Any:
    """`json.loads`, with documents too deeply nested to decode as `UndecodableJSON`."""
    try:
        return json.loads(data)
    except RecursionError:
        return UndecodableJSON(f"nested too deeply to decode ({len(data)} bytes)")


def prepare(context: AdaptContext) -> None:
    """Make a connection (or cursor) decode json and jsonb with `loads`."""
    set_json_loads(loads, context)
