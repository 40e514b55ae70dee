"""Reads of the queue side for front ends: the cluster overview, throughput, cron entries
and pages of jobs.

Counts never scan the table: each state is counted exactly up to `SAMPLE_CAP` rows
through its partial index, and a state holding more is estimated by the planner, per
queue (the overview says which states are estimates). Throughput is counted the same
way, per minute.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from flowstone.errors import ValidationError
from flowstone.queue.control import NodeInfo, QueueControl, cluster_plan, controls_plan
from flowstone.queue.job import Job, JobState
from flowstone.queue.manage import JobFilter, list_plan
from flowstone.queue.plan import Plan, Row
from flowstone.queue.plugins.cron import CronEntry, database_now_plan
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.queries.nodes import NodeQueries

SAMPLE_CAP = 1000
"""Rows counted exactly per state (and per minute of throughput); beyond, the planner estimates."""

CRON_LOOKBACK = 5
"""Past ticks of a cron entry searched for the job its last firing inserted."""


@dataclass(frozen=True)
class QueueOverview:
    """One queue: jobs per state, and how the alive nodes run it: their `limit` now and
    as they were configured (`configured_limit`: they differ while a stored setting
    overrides it), with the cluster-wide `global_limit` and `rate_limit` they apply."""

    queue: str
    counts: dict[str, int]
    nodes: int = 0
    paused_on: int = 0
    limit: int = 0
    configured_limit: int = 0
    running: int = 0
    global_limit: int | None = None
    rate_limit: dict[str, Any] | None = None


@dataclass(frozen=True)
class ClusterOverview:
    """Every queue (known from its jobs or a node running it), every node, the leader, and
    the stored queue settings that override the nodes' configured ones."""

    queues: list[QueueOverview]
    nodes: list[NodeInfo]
    leader: str | None
    estimated: frozenset[str] = frozenset()
    """States with more than `SAMPLE_CAP` jobs, whose counts are the planner's estimates."""
    controls: list[QueueControl] = field(default_factory=list)
    """Stored pause/scale settings (`flowstone queues reset QUEUE` clears them)."""

    def overrides(self, queue: str) -> list[QueueControl]:
        """The stored settings of `queue`."""
        return [control for control in self.controls if control.queue == queue]

    @property
    def alive(self) -> list[NodeInfo]:
        """The nodes whose heartbeat is current."""
        return [node for node in self.nodes if node.alive]


def overview_plan(
    jobs: JobQueries, nodes: NodeQueries, expiry: float, known: Iterable[str] = ()
) -> Plan[ClusterOverview]:
    """Counts per queue and state, the nodes and the leader, assembled per queue; `known`
    queues (the instance's configured ones) are listed even without jobs or nodes."""
    infos, leader = yield from cluster_plan(nodes, expiry)
    controls = yield from controls_plan(nodes)
    running = {queue for info in infos for queue in info.queues}
    counts, estimated = yield from job_counts_plan(jobs, {*known, *running})
    names = sorted({*counts, *known, *running})
    queues = [_queue(name, counts.get(name, {}), infos) for name in names]
    return ClusterOverview(queues, infos, leader, estimated, controls)


def job_counts_plan(
    jobs: JobQueries, queues: Iterable[str] = (), cap: int = SAMPLE_CAP
) -> Plan[tuple[dict[str, dict[str, int]], frozenset[str]]]:
    """Jobs per queue and state without a scan: exact for states with at most `cap` jobs,
    the planner's estimate (per queue of `queues`, the sampled ones and those the
    planner knows) for the others, which come back as the second value."""
    rows = yield jobs.state_sample, {"cap": cap + 1}
    counts: dict[str, dict[str, int]] = {}
    totals: Counter[str] = Counter()
    for row in rows:
        counts.setdefault(row["queue"], {})[row["state"]] = row["count"]
        totals[row["state"]] += row["count"]
    capped = sorted(state for state, total in totals.items() if total > cap)
    if not capped:
        return counts, frozenset()
    known = yield jobs.stats_queues, {"schema": jobs.schema}
    names = sorted({*queues, *counts, *(known[0]["queues"] or () if known else ())})
    for state in capped:
        for queue in names:
            seen = counts.get(queue, {}).get(state, 0)
            estimate = plan_rows((yield jobs.estimate, {"state": state, "queue": queue}))
            # The planner never estimates zero rows: one means none it knows of.
            found = max(seen, estimate if seen or estimate > 1 else 0)
            if found:
                counts.setdefault(queue, {})[state] = found
    return counts, frozenset(capped)


def plan_rows(rows: Sequence[Row]) -> int:
    """The row count the planner expects, from the result of `EXPLAIN (FORMAT JSON)`."""
    return int(rows[0]["QUERY PLAN"][0]["Plan"]["Plan Rows"])


def _queue(name: str, counts: dict[str, int], infos: list[NodeInfo]) -> QueueOverview:
    running_on = [info.queues[name] for info in infos if info.alive and name in info.queues]
    return QueueOverview(
        queue=name,
        counts={state.value: counts.get(state.value, 0) for state in JobState},
        nodes=len(running_on),
        paused_on=sum(1 for queue in running_on if queue.get("paused")),
        limit=sum(int(queue.get("limit", 0)) for queue in running_on),
        configured_limit=sum(int(q.get("configured_limit", q.get("limit", 0))) for q in running_on),
        running=sum(int(queue.get("running", 0)) for queue in running_on),
        global_limit=next((q["global_limit"] for q in running_on if q.get("global_limit")), None),
        rate_limit=next((q["rate_limit"] for q in running_on if q.get("rate_limit")), None),
    )


SCAN_WINDOW = 100_000
"""Ids a page of jobs searches at most when its filter has no index (worker, tag, args,
or a queue in a finished state): the next page goes on below."""

QUEUE_INDEXED = frozenset({"available", "scheduled", "retryable", "executing"})
"""States whose jobs are few or indexed by queue: a queue filter within them needs no window."""


@dataclass(frozen=True)
class JobPage:
    """One page of jobs and the cursor of the next page (None on the last one).
    `searched` is (highest, lowest) id searched when the filter had no index to use: a
    short page then means no more matches in that range, not none at all."""

    jobs: list[Job]
    next_cursor: int | None = None
    where: JobFilter = field(default_factory=JobFilter)
    searched: tuple[int, int] | None = None


def _unindexed(where: JobFilter) -> bool:
    """Whether finding `where`'s jobs could scan the whole table."""
    state = where.params()["state"]  # validated
    return bool(where.worker or where.tag or where.args) or (
        where.queue is not None and state not in QUEUE_INDEXED
    )


def jobs_plan(jobs: JobQueries, where: JobFilter) -> Plan[JobPage]:
    """A page of jobs matching `where` (keyset paging on the id); a filter no index
    serves searches `SCAN_WINDOW` ids per page."""
    if where.oldest_first or not _unindexed(where):
        found = yield from list_plan(jobs, where)
        return JobPage(found, found[-1].id if len(found) == where.limit else None, where)
    top = where.cursor
    if top is None:
        rows = yield jobs.max_id, {}
        top = int(rows[0]["max_id"]) + 1
    low = max(1, top - SCAN_WINDOW)
    found = yield from list_plan(jobs, replace(where, cursor=top, within=low))
    cursor = found[-1].id if len(found) == where.limit else (low if low > 1 else None)
    return JobPage(found, cursor, where, (top - 1, low))


@dataclass(frozen=True)
class Throughput:
    """Jobs that finished in one minute (from `minute`), completed and discarded;
    `estimated` when either passed `SAMPLE_CAP` and is the planner's estimate."""

    minute: datetime
    completed: int
    discarded: int
    estimated: bool = False


def throughput_plan(jobs: JobQueries, minutes: int, cap: int = SAMPLE_CAP) -> Plan[list[Throughput]]:
    """Jobs finished per minute over the last `minutes` minutes (the current one included)."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 120:
        raise ValidationError(f"minutes must be an integer from 1 to 120; got {minutes!r}")
    rows = yield jobs.throughput, {"minutes": minutes, "cap": cap + 1}
    found = []
    for row in rows:
        counted = {"completed": row["completed"], "discarded": row["discarded"]}
        for outcome, statement in (
            ("completed", jobs.estimate_completed),
            ("discarded", jobs.estimate_discarded),
        ):
            if counted[outcome] > cap:
                estimate = plan_rows((yield statement, {"minute": row["minute"]}))
                counted[outcome] = max(counted[outcome], estimate)
        estimated = row["completed"] > cap or row["discarded"] > cap
        found.append(Throughput(row["minute"], estimated=estimated, **counted))
    return found


@dataclass(frozen=True)
class CronStatus:
    """A cron entry, its next tick, and its last tick that inserted a job (with the job,
    as it is now; None when none of the last `CRON_LOOKBACK` ticks did, or it was pruned)."""

    entry: CronEntry
    next_at: datetime
    last_at: datetime | None = None
    last_job: Job | None = None


def _ticks(entry: CronEntry, now: datetime) -> tuple[datetime, list[tuple[datetime, str | None]]]:
    """The entry's next tick, and its last `CRON_LOOKBACK` ticks (newest first) with the
    unique key of the job each inserts; in UTC, as the cron plugin counts minutes."""
    local = now.astimezone(ZoneInfo(entry.timezone))
    ahead = croniter(entry.expression, local).get_next(datetime).astimezone(UTC)
    behind = croniter(entry.expression, local)
    past = [behind.get_prev(datetime).astimezone(UTC) for _ in range(CRON_LOOKBACK)]
    jobs = [(tick, entry.job(tick)) for tick in past]  # an entry may insert no job on a tick
    return ahead, [(tick, None if job is None else job.unique_key) for tick, job in jobs]


def cron_plan(
    jobs: JobQueries, nodes: NodeQueries, entries: Sequence[CronEntry], now: datetime | None = None
) -> Plan[list[CronStatus]]:
    """Each entry's next tick and last firing as of `now` (default: the database's clock,
    which the ticks follow): a tick's job is unique per tick, so it is found by its unique
    key (an index lookup) among the last few ticks."""
    if now is None:
        now = yield from database_now_plan(nodes)
    ticks = [_ticks(entry, now) for entry in entries]
    keys = [key for _, past in ticks for _, key in past if key is not None]
    rows = yield jobs.by_unique_keys, {"keys": keys}
    fired = {row["unique_key"]: Job.from_row(row) for row in rows}
    statuses = []
    for entry, (ahead, past) in zip(entries, ticks, strict=True):
        last = next(((tick, fired[key]) for tick, key in past if key in fired), (None, None))
        statuses.append(CronStatus(entry, ahead, *last))
    return statuses
