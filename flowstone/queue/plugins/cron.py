"""Cron: insert a worker's job on each tick of a 5-field expression, once cluster-wide.

Each tick's job carries the tick in its meta and is unique forever on (worker, queue,
args, meta), so two nodes that both believe they lead still insert it once. An entry's
args may be a function of the tick (e.g. the partition that just closed); a higher layer
adds entries of its own through `cron_sources` (the asset layer: asset schedules).

Expressions are read in the entry's time zone (`cron_timezone` on a Worker, `timezone=`
of `fs.schedule`; UTC by default), where each local minute fires at most once across
daylight saving: a local time that occurs twice (clocks go back) fires at its first
occurrence only, and local times that do not occur (clocks go forward) fire once, at the
first minute after the gap. Schedules that must follow real time (every 5 minutes through
the night) are best written in UTC.

Ticks follow the database's clock, not the leader's: a leader whose clock is off still
inserts each minute's jobs when that minute begins on the database (as heartbeats,
rescues and scheduled jobs do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from croniter import croniter

from flowstone.errors import ValidationError
from flowstone.queue import telemetry
from flowstone.queue.queries.cron import CronQueries
from flowstone.queue.unique import Unique
from flowstone.queue.worker import NewJob, Worker, WorkerRegistry

if TYPE_CHECKING:
    from flowstone.queue.instance import FlowStone
    from flowstone.queue.plan import Plan
    from flowstone.queue.plugins.base import PluginRuntime
    from flowstone.queue.queries.nodes import NodeQueries

_log = structlog.get_logger("flowstone.cron")
TICK_UNIQUE = Unique(period=None, fields=("worker", "queue", "args", "meta"), states="all")
MINUTE = timedelta(minutes=1)


TickArgs = Callable[[datetime], Mapping[str, Any] | None]
"""Args computed from a tick (its minute, UTC); None: no job on that tick."""


def check_schedule(expression: str, timezone: str, owner: str) -> None:
    """A ValidationError naming `owner` unless `expression` is a 5-field cron expression
    and `timezone` a known time zone."""
    if not isinstance(expression, str) or len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValidationError(
            f"cron expression {expression!r} for {owner} is not a valid "
            "5-field expression (minute hour day month weekday)"
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValidationError(f"cron timezone {timezone!r} is not a known time zone") from error


@dataclass(frozen=True)
class CronEntry:
    """`worker` with `args` (or `args(tick)`), every time `expression` matches (in `timezone`).
    `name`: a stored entry's name (`fs.cron`); an entry in code is named by its worker."""

    expression: str
    worker: type[Worker]
    args: Mapping[str, Any] | TickArgs = field(default_factory=dict)
    timezone: str = "UTC"
    name: str | None = None

    @property
    def key(self) -> str:
        """The name stored entries are compared with: code entries win on a conflict."""
        return self.name or self.worker.name

    def __post_init__(self) -> None:
        check_schedule(self.expression, self.timezone, self.worker.name)

    def matches(self, minute: datetime) -> bool:
        """Whether the tick at `minute` (UTC) fires this entry: its local minute matches
        (and is not the second occurrence of a repeated local time), or it is the first
        minute after a daylight saving gap whose skipped local minutes matched."""
        zone = ZoneInfo(self.timezone)
        local = minute.astimezone(zone)
        if local.fold:
            return False
        wall = local.replace(tzinfo=None)
        if croniter.match(self.expression, wall):
            return True
        skipped = wall - (minute - MINUTE).astimezone(zone).replace(tzinfo=None) - MINUTE
        return any(
            croniter.match(self.expression, wall - gap * MINUTE)
            for gap in range(1, int(skipped / MINUTE) + 1)
        )

    def job(self, minute: datetime) -> NewJob | None:
        """This tick's job, unique per tick (None when args computed from the tick say so)."""
        args = self.args(minute) if callable(self.args) else self.args
        if args is None:
            return None
        meta = {"cron": self.expression, "cron_tick": minute.isoformat()}
        if self.name is not None:
            meta["cron_name"] = self.name
        return self.worker.new(dict(args), meta=meta, unique=TICK_UNIQUE)


CronSource = Callable[["FlowStone"], Iterable[CronEntry]]
cron_sources: list[CronSource] = []
"""Functions adding entries for an instance when it builds a node: how a higher layer
(the assets' schedules) schedules work without the queue importing it."""


def sourced_entries(fs: FlowStone) -> list[CronEntry]:
    """The entries every registered source gives for `fs`."""
    return [entry for source in cron_sources for entry in source(fs)]


def entries_from(registry: WorkerRegistry) -> list[CronEntry]:
    """Entries for every registered worker with a `cron` class attribute."""
    entries = []
    for name in registry.names():
        worker = registry.get(name)
        if worker is not None and worker.cron:
            timezone = getattr(worker, "cron_timezone", "UTC")
            entries.append(CronEntry(worker.cron, worker, timezone=timezone))
    return entries


def database_now_plan(nodes: NodeQueries) -> Plan[datetime]:
    """The database's clock (`now()`), in UTC."""
    rows = yield nodes.clock, {}
    now: datetime = rows[0]["now"]
    return now.astimezone(UTC)


def floor_minute(moment: datetime) -> datetime:
    """The start of `moment`'s minute."""
    return moment.replace(second=0, microsecond=0)


def stored_entries_plan(queries: CronQueries, registry: WorkerRegistry) -> Plan[list[CronEntry]]:
    """The stored entries that run (not paused), as entries of this node's workers; one
    whose worker this node does not register, or that is invalid, is skipped and logged."""
    rows = yield queries.list, {}
    entries = []
    for row in rows:
        worker = registry.get(row["worker"])
        if row["paused"]:
            continue
        if worker is None:
            _log.warning("cron entry skipped: worker not registered", entry=row["name"], worker=row["worker"])
            continue
        try:
            entries.append(CronEntry(row["expression"], worker, row["args"], row["timezone"], row["name"]))
        except ValidationError as error:
            _log.warning("cron entry skipped", entry=row["name"], error=str(error))
    return entries


def shadowing(code: Iterable[CronEntry], stored: Iterable[CronEntry]) -> list[CronEntry]:
    """The stored entries that run: those no code entry shadows (same name)."""
    names = {entry.key for entry in code}
    return [entry for entry in stored if entry.key not in names]


class Cron:
    """Leader only: checks once per interval whether a new minute has begun. With a
    `registry`, the entries stored in the database (`fs.cron`) run too, read once a minute."""

    name = "cron"
    leader_only = True

    def __init__(
        self, entries: Iterable[CronEntry], interval: float = 1.0, registry: WorkerRegistry | None = None
    ) -> None:
        self.entries = list(entries)
        self.interval = interval
        self.registry = registry
        self.last_minute: datetime | None = None

    def due(self, now: datetime, stored: Iterable[CronEntry] = ()) -> tuple[datetime, list[NewJob]] | None:
        """The current minute's jobs, if that minute has not been handled yet."""
        minute = floor_minute(now)
        if minute == self.last_minute:
            return None
        entries = [*self.entries, *shadowing(self.entries, stored)]
        jobs = [entry.job(minute) for entry in entries if entry.matches(minute)]
        return minute, [job for job in jobs if job is not None]

    async def tick(self, runtime: PluginRuntime) -> None:
        """Insert this minute's jobs once (the minute of the database's clock)."""
        await self.insert_due(runtime, await runtime.execute(database_now_plan(runtime.nodes)))

    async def insert_due(self, runtime: PluginRuntime, now: datetime) -> None:
        """Insert the jobs of `now`'s minute unless this plugin handled that minute already."""
        if floor_minute(now) == self.last_minute:
            return
        stored: list[CronEntry] = []
        if self.registry is not None:
            queries = CronQueries.for_schema(runtime.jobs.schema)
            stored = await runtime.execute(stored_entries_plan(queries, self.registry))
        due = self.due(now, stored)
        if due is None:
            return
        minute, jobs = due
        if jobs:
            inserted = await runtime.insert_all(jobs)
            fresh = [job for job in inserted if not job.conflict]
            telemetry.emit("cron.insert", {"count": len(fresh)}, {"tick": minute})
            _log.info("cron tick", tick=minute.isoformat(), inserted=len(fresh))
        self.last_minute = minute
