"""Every statement on the jobs table, composed once per schema (so psycopg can prepare them).

The hot path batches: one statement acknowledges a batch of outcomes and claims up to N
jobs, one inserts a batch of jobs. Every transition to `available` is announced by a
trigger (one NOTIFY per queue per transaction). Rows travel as a single jsonb document unpacked
with `jsonb_to_recordset`, which keeps each statement one round trip however large.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from psycopg import sql

from flowstone.queue.queries import composer
from flowstone.queue.validation import check_identifier

JOB_COLUMNS = (
    "id, state, queue, worker, args, meta, tags, errors, attempt, max_attempts, priority, "
    "inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, "
    "attempted_by, unique_key"
)

# Missing keys of the document are NULL: defaults are not sent (smaller, faster to parse).
_INSERT = """
INSERT INTO {jobs} AS j
    (state, queue, worker, args, meta, tags, max_attempts, priority, scheduled_at, unique_key)
SELECT
    CASE WHEN s.at > now() THEN 'scheduled' ELSE 'available' END::{state},
    s.queue, s.worker, s.args, coalesce(s.meta, '{{}}'), coalesce(s.tags, '{{}}'),
    s.max_attempts, s.priority, s.at, s.unique_key
FROM (
    SELECT t.*, coalesce(t.scheduled_at, now() + make_interval(secs => coalesce(t.scheduled_in, 0))) AS at
    FROM jsonb_to_recordset(%(jobs)s::jsonb) AS t(
        queue text, worker text, args jsonb, meta jsonb, tags text[], max_attempts smallint,
        priority smallint, scheduled_at timestamptz, scheduled_in float8, unique_key text, ord bigint)
    ORDER BY t.ord
) AS s
{on_conflict}
RETURNING j.id, j.state, j.inserted_at, j.scheduled_at, j.unique_key
"""

# Only batches holding a unique job pay for speculative insertion.
_ON_CONFLICT = "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING"

# A unique job older than its period no longer blocks a new one: free its key first.
_RELEASE_EXPIRED_UNIQUE = """
UPDATE {jobs} AS j SET unique_key = NULL
FROM jsonb_to_recordset(%(keys)s::jsonb) AS k(unique_key text, period float8)
WHERE j.unique_key = k.unique_key
  AND j.inserted_at < now() - make_interval(secs => k.period)
"""

# Unique states name the states an *existing* job must be in to block a new one; a new
# job whose first state is outside them (e.g. available under states="scheduled") holds
# no key. Done after the insert so that the insert's conflict matching stays positional.
_RELEASE_UNHELD_UNIQUE = """
UPDATE {jobs} SET unique_key = NULL
WHERE id = ANY(%(ids)s::bigint[]) AND unique_key IS NOT NULL
  AND NOT coalesce((meta -> 'unique_states') ? state::text, false)
RETURNING id
"""

_BY_UNIQUE_KEYS = "SELECT {columns} FROM {jobs} WHERE unique_key = ANY(%(keys)s::text[])"

# The claim, in two parts so the runtime can send it together with its acks.
_CLAIM_SELECT = """
claimed AS (
    SELECT id FROM {jobs}
    WHERE state = 'available' AND queue = %(queue)s AND id <= %(max_id)s
    ORDER BY priority, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""

_CLAIM_UPDATE = """
UPDATE {jobs} AS j
SET state = 'executing', attempt = j.attempt + 1, attempted_at = now(),
    attempted_by = ARRAY[%(node)s]::text[]
FROM claimed
WHERE j.id = claimed.id
RETURNING {claimed_columns}
"""

# Guarded by state, attempt and attempted_at: a stale or late acknowledgement matches
# no row, so it can never overwrite a newer outcome. A job that was woken while it ran
# (meta.wake_pending, see _WAKE_SCHEDULED) does not sit out its snooze: it is available at once.
# `ids` repeats the ids as an array so the rows are found through the primary key, and
# the state is compared as text so the planner does not pick the partial index of
# executing jobs (full of dead entries between vacuums on a busy queue).
_ACK_UPDATE = """
UPDATE {jobs} AS j SET
    state = CASE WHEN a.snoozed AND j.meta ? 'wake_pending' THEN 'available' ELSE a.state END::{state},
    completed_at = CASE WHEN a.state = 'completed' THEN now() ELSE j.completed_at END,
    discarded_at = CASE WHEN a.state = 'discarded' THEN now() ELSE j.discarded_at END,
    cancelled_at = CASE WHEN a.state = 'cancelled' THEN now() ELSE j.cancelled_at END,
    scheduled_at = CASE WHEN a.delay IS NULL THEN j.scheduled_at
                        WHEN a.snoozed AND j.meta ? 'wake_pending' THEN now()
                        ELSE now() + make_interval(secs => a.delay) END,
    attempt = CASE WHEN a.refund THEN j.attempt - 1 ELSE j.attempt END,
    errors = CASE WHEN a.error IS NULL THEN j.errors
                  ELSE j.errors || jsonb_build_array(a.error || jsonb_build_object('at', now())) END,
    meta = CASE WHEN a.snoozed
                THEN (j.meta - 'wake_pending')
                     || jsonb_build_object('snoozed', coalesce((j.meta ->> 'snoozed')::int, 0) + 1)
                ELSE j.meta - 'wake_pending' END
FROM jsonb_to_recordset(%(acks)s::jsonb) AS a(
    id bigint, attempt smallint, attempted_at timestamptz, state text, delay float8,
    error jsonb, snoozed boolean, refund boolean)
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = a.id AND j.state::text = 'executing'
  AND j.attempt = a.attempt AND j.attempted_at = a.attempted_at
RETURNING j.id
"""

_CLAIM = "WITH " + _CLAIM_SELECT + _CLAIM_UPDATE

# The runtime's one statement per cycle: acknowledge what finished and claim what fits,
# committed together, so a job's slot is reused only once its outcome is durable.
_ACK_CLAIM = "WITH acked AS (" + _ACK_UPDATE + "), " + _CLAIM_SELECT + _CLAIM_UPDATE

# After a lost connection a producer cannot know whether its last claim committed: jobs
# executing under its node and queue that it is not running were claimed but never
# started. They go back to available with the attempt refunded.
_RELEASE_ORPHANS = """
UPDATE {jobs} SET state = 'available', attempt = attempt - 1, scheduled_at = now()
WHERE state = 'executing' AND attempted_by[1] = %(node)s AND queue = %(queue)s
  AND NOT (id = ANY(%(keep)s::bigint[]))
RETURNING id
"""

_STAGE = """
WITH due AS (
    SELECT id FROM {jobs}
    WHERE state IN ('scheduled', 'retryable')
      AND scheduled_at <= coalesce(%(until)s::timestamptz, now())
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    ORDER BY scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), staged AS (
    UPDATE {jobs} AS j SET state = 'available'
    FROM due WHERE j.id = due.id
    RETURNING j.queue
)
SELECT queue, count(*) AS count FROM staged GROUP BY queue
"""

_GET = "SELECT {columns} FROM {jobs} WHERE id = %(id)s"

# Jobs by filter, paged by id (keyset: `after` for oldest first, `before` for newest
# first), so a page costs the same deep in a table of millions as on its first page.
_LIST = """
SELECT {columns} FROM {jobs}
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(state)s::text IS NULL OR state = %(state)s::{state})
  AND (%(worker)s::text IS NULL OR worker = %(worker)s)
  AND (%(tag)s::text IS NULL OR tags @> ARRAY[%(tag)s::text])
  AND (%(args)s::jsonb IS NULL OR args @> %(args)s::jsonb)
  AND (%(cursor)s::bigint IS NULL OR id {beyond} %(cursor)s)
ORDER BY id {direction}
LIMIT %(limit)s
"""

_RETRY = """
WITH retried AS (
    UPDATE {jobs} SET
        state = 'available', scheduled_at = now(),
        max_attempts = GREATEST(max_attempts, attempt + 1),
        completed_at = NULL, discarded_at = NULL, cancelled_at = NULL
    WHERE id = %(id)s AND state NOT IN ('available', 'executing')
    RETURNING {columns}
)
SELECT * FROM retried
"""

_DELETE = "DELETE FROM {jobs} WHERE id = %(id)s AND state <> 'executing' RETURNING id"

# Cancel any job that has not finished; the node running it (if any) is told to stop it,
# and its late acknowledgement matches nothing because the row is no longer executing.
_CANCEL = """
WITH target AS (
    SELECT id, state AS previous_state FROM {jobs}
    WHERE id = %(id)s AND state IN ('available', 'scheduled', 'retryable', 'executing')
    FOR UPDATE
), cancelled AS (
    UPDATE {jobs} AS j SET state = 'cancelled', cancelled_at = now()
    FROM target WHERE j.id = target.id
    RETURNING {j_columns}, target.previous_state
)
SELECT cancelled.*,
       CASE WHEN previous_state = 'executing' THEN pg_notify(%(channel)s, %(signal)s) END AS notified
FROM cancelled
"""

# The lifeline: jobs executing on nodes that stopped heartbeating go back to available
# (or are discarded when out of attempts), with an error entry that says so.
_RESCUE = """
UPDATE {jobs} AS j SET
    state = CASE WHEN j.attempt >= j.max_attempts THEN 'discarded' ELSE 'available' END::{state},
    discarded_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END,
    scheduled_at = now(),
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt, 'at', now(), 'traceback', NULL,
        'error', 'rescued by the lifeline: node ' || coalesce(j.attempted_by[1], '?')
                 || ' stopped heartbeating while executing this job'))
WHERE j.id IN (
    SELECT id FROM {jobs}
    WHERE state = 'executing'
      AND NOT (coalesce(attempted_by[1], '') = ANY(%(alive)s::text[]))
      AND attempted_at < now() - make_interval(secs => %(grace)s)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING j.id, j.state, j.queue
"""

# The pruner: finished jobs older than max_age, oldest first, through the partial indexes.
_PRUNE = """
WITH pruned AS (DELETE FROM {jobs} WHERE id IN (
    (SELECT id FROM {jobs} WHERE state = 'completed'
        AND completed_at < now() - make_interval(secs => %(max_age)s) LIMIT %(limit)s)
    UNION ALL
    (SELECT id FROM {jobs} WHERE state = 'cancelled'
        AND cancelled_at < now() - make_interval(secs => %(max_age)s) LIMIT %(limit)s)
    UNION ALL
    (SELECT id FROM {jobs} WHERE state = 'discarded'
        AND discarded_at < now() - make_interval(secs => %(max_age)s) LIMIT %(limit)s)
) RETURNING 1)
SELECT count(*) AS count FROM pruned
"""

_COUNTS = "SELECT queue, state::text AS state, count FROM {stats} ORDER BY queue, state"

_MAX_ID = "SELECT coalesce(max(id), 0) AS max_id FROM {jobs}"

# Test helpers: enqueued (available or scheduled) jobs; args/meta match by containment.
_ENQUEUED = """
SELECT {columns} FROM {jobs}
WHERE state IN ('available', 'scheduled')
  AND (%(worker)s::text IS NULL OR worker = %(worker)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(priority)s::smallint IS NULL OR priority = %(priority)s)
  AND args @> %(args)s::jsonb AND meta @> %(meta)s::jsonb AND tags @> %(tags)s::text[]
ORDER BY id
"""

# Wake jobs waiting on something that just happened, found by the caller's own query of
# candidate ids (`JobQueries.wake_with`): scheduled ones become available now, executing
# ones are marked so that a snooze they return is not sat out (the wake-up would
# otherwise be lost). Rows are waited for, not skipped: a row locked by its snooze's ack
# is re-read once that commits (then scheduled, so woken) instead of missing the wake-up.
# Candidates are collected into an array first: the UPDATE then re-checks only
# `id = ANY(array)` and the state of the row's latest version (a snooze being
# acknowledged meanwhile is waited for, then woken). Locking inside the candidate
# queries instead would re-check their own state and drop a job that just left it.
_WAKE_HEAD = """
candidates AS (
    SELECT coalesce(array_agg(id), '{{}}') AS ids FROM ("""

_WAKE_TAIL = """) AS c
), locked AS (  -- in id order: two wake-ups of overlapping jobs queue instead of deadlocking
    SELECT id FROM {jobs}
    WHERE id = ANY((SELECT ids FROM candidates)::bigint[]) AND state IN ('scheduled', 'executing')
    ORDER BY id
    FOR UPDATE
), woken AS (
    UPDATE {jobs} AS j SET
        state = CASE WHEN j.state = 'scheduled' THEN 'available' ELSE j.state END,
        scheduled_at = CASE WHEN j.state = 'scheduled' THEN now() ELSE j.scheduled_at END,
        meta = CASE WHEN j.state = 'executing' THEN j.meta || '{{"wake_pending": true}}'
                    ELSE j.meta END
    FROM locked WHERE j.id = locked.id
    RETURNING j.queue
)
SELECT queue, count(*) AS count FROM woken GROUP BY queue
"""


# Claimed rows come back on the hot path: empty meta and errors (the usual case) are sent
# as NULL, which costs the client no JSON parsing.
_EMPTY = {"meta": "'{}'", "errors": "'[]'"}


def _claimed_column(column: str) -> str:
    empty = _EMPTY.get(column)
    return f"NULLIF(j.{column}, {empty}) AS {column}" if empty else f"j.{column}"


@dataclass(frozen=True, slots=True)
class JobQueries:
    """The statements of the jobs table for one schema."""

    schema: str
    channel: str
    insert: str
    insert_unique: str
    release_expired_unique: str
    release_unheld_unique: str
    by_unique_keys: str
    claim: str
    ack: str
    ack_claim: str
    release_orphans: str
    stage: str
    get: str
    list_oldest: str
    list_newest: str
    retry: str
    delete: str
    max_id: str
    cancel: str
    rescue: str
    prune: str
    counts: str
    enqueued: str
    wake_head: str
    wake_tail: str

    def wake_with(self, candidates: str, before: str = "") -> str:
        """The wake-up statement (see _WAKE_HEAD) around a caller's own query of candidate
        job ids, composed for this schema: the caller finds its waiting jobs faster than
        a search by args, which the executing jobs' partial index, full of dead entries
        between vacuums, makes slow. `before`: the caller's own common table expressions
        (each followed by a comma), run in the same statement. Parameters: the caller's."""
        return f"WITH {before}\n{self.wake_head}\n{candidates}\n{self.wake_tail}"

    @classmethod
    def for_schema(cls, schema: str) -> JobQueries:
        """The statements for `schema`, composed once per process and schema."""
        return _for_schema(schema)

    @classmethod
    def compose(cls, schema: str) -> JobQueries:
        """Compose every statement with the schema's quoted identifiers."""
        check_identifier(schema, "schema")
        names = {
            "jobs": sql.Identifier(schema, "jobs"),
            "state": sql.Identifier(schema, "job_state"),
            "stats": sql.Identifier(schema, "queue_stats"),
            "columns": sql.SQL(JOB_COLUMNS),
            "j_columns": sql.SQL(", ".join(f"j.{c}" for c in JOB_COLUMNS.split(", "))),
            "claimed_columns": sql.SQL(", ".join(_claimed_column(c) for c in JOB_COLUMNS.split(", "))),
        }

        compose = composer(names)
        return cls(
            schema=schema,
            channel=f"{schema}.jobs",
            insert=compose(_INSERT.replace("{on_conflict}", "")),
            insert_unique=compose(_INSERT.replace("{on_conflict}", _ON_CONFLICT)),
            release_expired_unique=compose(_RELEASE_EXPIRED_UNIQUE),
            release_unheld_unique=compose(_RELEASE_UNHELD_UNIQUE),
            by_unique_keys=compose(_BY_UNIQUE_KEYS),
            claim=compose(_CLAIM),
            ack=compose(_ACK_UPDATE),
            ack_claim=compose(_ACK_CLAIM),
            release_orphans=compose(_RELEASE_ORPHANS),
            stage=compose(_STAGE),
            get=compose(_GET),
            list_oldest=compose(_LIST.replace("{beyond}", ">").replace("{direction}", "ASC")),
            list_newest=compose(_LIST.replace("{beyond}", "<").replace("{direction}", "DESC")),
            retry=compose(_RETRY),
            delete=compose(_DELETE),
            max_id=compose(_MAX_ID),
            cancel=compose(_CANCEL),
            rescue=compose(_RESCUE),
            prune=compose(_PRUNE),
            counts=compose(_COUNTS),
            enqueued=compose(_ENQUEUED),
            wake_head=compose(_WAKE_HEAD),
            wake_tail=compose(_WAKE_TAIL),
        )


@lru_cache(maxsize=64)
def _for_schema(schema: str) -> JobQueries:
    return JobQueries.compose(schema)
