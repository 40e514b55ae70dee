"""Cron entries managed at run time (Oban Pro's DynamicCron): `fs.cron.add/update/pause/
resume/delete/list`, stored in `cron_entries` beside the entries in code.

The leader reads the stored entries when a new minute begins (of the database's clock)
and inserts their jobs as it does those of code entries, unique per tick, so each tick
fires once across nodes. An entry in code wins over a stored one of the same name (a code
entry's name is its worker's name); the stored one is then shadowed, shown as such.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from flowstone.errors import ValidationError, ValidationTypeError
from flowstone.queue.plan import Plan, Row
from flowstone.queue.plugins.cron import CronEntry, check_schedule
from flowstone.queue.queries.cron import CronQueries
from flowstone.queue.validation import check_name
from flowstone.queue.worker import Worker

if TYPE_CHECKING:
    from flowstone.queue.instance import FlowStone


@dataclass(frozen=True)
class StoredCron:
    """A cron entry stored in the database."""

    name: str
    expression: str
    worker: str
    args: dict[str, Any]
    timezone: str
    paused: bool
    inserted_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


def _stored(rows: list[Row], name: str) -> StoredCron:
    if not rows:
        raise ValidationError(f"no cron entry named {name!r} (see `flowstone cron ls`)")
    return StoredCron(**rows[0])


def _args(args: Mapping[str, Any] | None) -> Jsonb | None:
    if args is None:
        return None
    if not isinstance(args, Mapping):
        raise ValidationTypeError(f"cron args must be a JSON object; got {type(args).__name__}")
    try:
        return Jsonb(json.loads(json.dumps(dict(args))))
    except (TypeError, ValueError) as error:
        raise ValidationError(f"cron args must be JSON: {error}") from None


class CronManager:
    """`fs.cron`: the stored cron entries of one instance (each call has an `a` twin)."""

    def __init__(self, fs: FlowStone) -> None:
        self.fs = fs

    @property
    def queries(self) -> CronQueries:
        return CronQueries.for_schema(self.fs.schema)

    def _worker(self, worker: type[Worker] | str) -> str:
        """The worker's name; one this instance does not register is refused (unless it
        registers none: a bare command line cannot tell)."""
        name = worker.name if isinstance(worker, type) and issubclass(worker, Worker) else worker
        check_name(name, "cron worker")
        known = self.fs.registry.names()
        if known and name not in known:
            raise ValidationError(
                f"worker {name!r} is not registered with this instance; register it (or pass --app) first"
            )
        return name

    def _add_plan(
        self, name: str, expression: str, worker: type[Worker] | str, options: Mapping[str, Any]
    ) -> Plan[StoredCron]:
        """See `add`; `options`: `args`, `timezone`, `paused`."""
        unknown = sorted(set(options) - {"args", "timezone", "paused"})
        if unknown:
            raise ValidationTypeError(
                f"unknown cron entry option(s) {', '.join(unknown)}; use args, timezone, paused"
            )
        args, timezone = options.get("args"), options.get("timezone", "UTC")
        check_name(name, "cron entry name")
        check_schedule(expression, timezone, f"cron entry {name!r}")
        params = {
            "name": name,
            "expression": expression,
            "worker": self._worker(worker),
            "args": _args(args or {}),
            "timezone": timezone,
            "paused": bool(options.get("paused", False)),
        }
        rows = yield self.queries.add, params
        if not rows:
            raise ValidationError(f"a cron entry named {name!r} exists already; update or delete it")
        return StoredCron(**rows[0])

    def _update_plan(self, name: str, **fields: Any) -> Plan[StoredCron]:
        current = yield from self._find_plan(name)
        expression = fields.get("expression") or current.expression
        timezone = fields.get("timezone") or current.timezone
        check_schedule(expression, timezone, f"cron entry {name!r}")
        worker = fields.get("worker")
        params = {
            "name": name,
            "expression": fields.get("expression"),
            "timezone": fields.get("timezone"),
            "worker": None if worker is None else self._worker(worker),
            "args": _args(fields.get("args")),
            "paused": fields.get("paused"),
        }
        rows = yield self.queries.update, params
        return _stored(rows, name)

    def _find_plan(self, name: str) -> Plan[StoredCron]:
        entries = yield from self._list_plan()
        found = next((entry for entry in entries if entry.name == name), None)
        return _stored([] if found is None else [found.to_dict()], name)

    def _delete_plan(self, name: str) -> Plan[bool]:
        rows = yield self.queries.delete, {"name": name}
        return bool(rows)

    def _list_plan(self) -> Plan[list[StoredCron]]:
        rows = yield self.queries.list, {}
        return [StoredCron(**row) for row in rows]

    def add(
        self,
        name: str,
        expression: str,
        worker: type[Worker] | str,
        *,
        args: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        paused: bool = False,
    ) -> StoredCron:
        """Store a new entry `name`: `worker(args)` on each tick of `expression` (in `timezone`)."""
        options = {"args": args, "timezone": timezone, "paused": paused}
        return self.fs.execute(self._add_plan(name, expression, worker, options))

    async def aadd(
        self, name: str, expression: str, worker: type[Worker] | str, **options: Any
    ) -> StoredCron:
        """Async twin of `add` (same options: `args`, `timezone`, `paused`)."""
        return await self.fs.aexecute(self._add_plan(name, expression, worker, options))

    def update(self, name: str, **fields: Any) -> StoredCron:
        """Change the given fields (`expression`, `worker`, `args`, `timezone`, `paused`)."""
        return self.fs.execute(self._update_plan(name, **_known(fields)))

    async def aupdate(self, name: str, **fields: Any) -> StoredCron:
        """Async twin of `update`."""
        return await self.fs.aexecute(self._update_plan(name, **_known(fields)))

    def pause(self, name: str) -> StoredCron:
        """Stop inserting the entry's jobs until `resume`."""
        return self.update(name, paused=True)

    async def apause(self, name: str) -> StoredCron:
        """Async twin of `pause`."""
        return await self.aupdate(name, paused=True)

    def resume(self, name: str) -> StoredCron:
        """Insert the entry's jobs again from the next tick."""
        return self.update(name, paused=False)

    async def aresume(self, name: str) -> StoredCron:
        """Async twin of `resume`."""
        return await self.aupdate(name, paused=False)

    def delete(self, name: str) -> bool:
        """Delete the entry; False when there was none of that name."""
        return self.fs.execute(self._delete_plan(name))

    async def adelete(self, name: str) -> bool:
        """Async twin of `delete`."""
        return await self.fs.aexecute(self._delete_plan(name))

    def list(self) -> list[StoredCron]:
        """Every stored entry, by name."""
        return self.fs.execute(self._list_plan())

    async def alist(self) -> builtins.list[StoredCron]:
        """Async twin of `list`."""
        return await self.fs.aexecute(self._list_plan())


FIELDS = ("expression", "worker", "args", "timezone", "paused")


def _known(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ValidationTypeError(
            f"unknown cron entry field(s) {', '.join(unknown)}; use {', '.join(FIELDS)}"
        )
    return fields


def listing(code: Sequence[CronEntry], stored: Sequence[StoredCron]) -> builtins.list[dict[str, Any]]:
    """Every entry as front ends list it: those in code, then the stored ones (`shadowed`
    when an entry in code has the same name, and so does not run)."""
    names = {entry.key for entry in code}
    rows = [
        {
            "name": entry.key,
            "source": "code",
            "worker": entry.worker.name,
            "expression": entry.expression,
            "timezone": entry.timezone,
            "args": None if callable(entry.args) else dict(entry.args),
            "paused": False,
            "shadowed": False,
        }
        for entry in code
    ]
    for stored_entry in stored:
        row = {key: value for key, value in stored_entry.to_dict().items() if key in _LISTED}
        rows.append({**row, "source": "database", "shadowed": stored_entry.name in names})
    return rows


_LISTED = ("name", "worker", "expression", "timezone", "args", "paused")
