"""`Statements`: every statement set of one schema, each under one name."""

from __future__ import annotations

from typing import TypeVar

from flowstone.queue.queries import SchemaStatements
from flowstone.queue.queries.cron import CronQueries
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.queries.nodes import NodeQueries

S = TypeVar("S", bound=SchemaStatements)


class Statements:
    """The statement sets of one schema: `jobs` (the jobs table), `nodes` (the runtime
    tables), `cron` (the stored cron entries); a higher layer's own set through `of(kind)`
    (the asset records')."""

    __slots__ = ("cron", "jobs", "nodes", "schema")

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.jobs = JobQueries.for_schema(schema)
        self.nodes = NodeQueries.for_schema(schema)
        self.cron = CronQueries.for_schema(schema)

    def of(self, kind: type[S]) -> S:
        """Another layer's statement set for this schema, composed once."""
        return kind.for_schema(self.schema)
