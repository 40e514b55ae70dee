"""Every statement on the jobs table, composed once per schema (so psycopg can prepare them).

The hot path batches: one statement acknowledges a batch of outcomes and claims up to N
jobs, one inserts a batch of jobs. Every transition to `available` is announced by a
trigger (one NOTIFY per queue per transaction). Rows travel as a single jsonb document unpacked
with `jsonb_to_recordset`, which keeps each statement one round trip however large.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from flowstone.queue.queries import SchemaStatements, composer
from flowstone.queue.queries.workflows import EFFECTS, INSERT_DEPS, LOCK, REARM, WORKFLOW_JOBS
from flowstone.queue.validation import check_identifier

JOB_COLUMNS = (
    "id, state, queue, worker, args, meta, tags, errors, attempt, max_attempts, priority, "
    "inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, "
    "attempted_by, unique_key"
)
# What a job's detail shows besides: its recorded result and its last progress report
# (not returned by claims: the worker writes them, it never reads them).
DETAIL_COLUMNS = f"{JOB_COLUMNS}, result, progress"


def _filled(template: str, slots: dict[str, str]) -> str:
    """`template` with each slot replaced by its text (statements built of shared parts)."""
    for slot, text in slots.items():
        template = template.replace(slot, text)
    return template


# Jobs travel as two jsonb documents: `kinds`, the distinct (queue, worker, max_attempts,
# priority, tags) of the batch, and `jobs`, one short array per job: [kind, args] and, only
# when one is set, meta, scheduled_at, scheduled_in and unique_key after them (a missing
# or null element is NULL). Per job that is a tenth of the bytes of a keyed object, to
# encode, send and parse.
# One row comes back, its columns arrays in insertion order (ids grow with it): one value
# to decode per column rather than a dict per job. `inserted_at` is the transaction's
# now() for every row, so it comes once; `scheduled_at` is NULL where it is that too.
_INSERT = """
WITH inserted AS (
INSERT INTO {jobs} AS j
    (state, queue, worker, args, meta, tags, max_attempts, priority, scheduled_at, unique_key)
SELECT
    CASE WHEN s.at > now() THEN 'scheduled' ELSE 'available' END::{state},
    s.queue, s.worker, s.args, coalesce(s.meta, '{{}}'), s.tags, s.max_attempts, s.priority, s.at,
    s.unique_key
FROM (
    SELECT k.queue, k.worker, k.max_attempts, k.priority, coalesce(k.tags, '{{}}') AS tags,
        t.job -> 1 AS args, nullif(t.job -> 2, 'null') AS meta, t.job ->> 5 AS unique_key,
        coalesce(
            (t.job ->> 3)::timestamptz, now() + make_interval(secs => coalesce((t.job ->> 4)::float8, 0))
        ) AS at
    FROM jsonb_array_elements(%(jobs)s::jsonb) WITH ORDINALITY AS t(job, ord)
    JOIN jsonb_to_recordset(%(kinds)s::jsonb) AS k(
        kind int, queue text, worker text, max_attempts smallint, priority smallint, tags text[])
        ON k.kind = (t.job ->> 0)::int
    ORDER BY t.ord
) AS s
{on_conflict}
RETURNING j.id, j.state, j.inserted_at, j.scheduled_at, j.unique_key
)
SELECT now() AS inserted_at,
    coalesce(array_agg(id ORDER BY id), '{{}}') AS ids,
    coalesce(array_agg(state::text ORDER BY id), '{{}}') AS states,
    coalesce(array_agg(NULLIF(scheduled_at, inserted_at) ORDER BY id), '{{}}') AS scheduled_at,
    coalesce(array_agg(unique_key ORDER BY id), '{{}}') AS unique_keys
FROM inserted
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

# Unique with replace: the named fields (`fields`, a jsonb list) of the job holding each
# key are set from the conflicting input, only while it has not started (the row lock
# makes a concurrent claim wait or skip it, and the state is checked again after it).
# A new schedule makes a waiting job scheduled or available again; a retryable one stays
# retryable (the stager makes it available when due).
_REPLACE_UNIQUE = """
UPDATE {jobs} AS j SET
    args = CASE WHEN r.fields ? 'args' THEN r.args ELSE j.args END,
    meta = CASE WHEN r.fields ? 'meta' THEN coalesce(r.meta, '{{}}') ELSE j.meta END,
    tags = CASE WHEN r.fields ? 'tags' THEN coalesce(r.tags, '{{}}') ELSE j.tags END,
    priority = CASE WHEN r.fields ? 'priority' THEN r.priority ELSE j.priority END,
    max_attempts = CASE WHEN r.fields ? 'max_attempts' THEN r.max_attempts ELSE j.max_attempts END,
    scheduled_at = CASE WHEN r.fields ? 'scheduled_at' THEN r.at ELSE j.scheduled_at END,
    state = CASE WHEN r.fields ? 'scheduled_at' AND j.state <> 'retryable'
                 THEN CASE WHEN r.at > now() THEN 'scheduled' ELSE 'available' END::{state}
                 ELSE j.state END
FROM (
    SELECT t.*, coalesce(t.scheduled_at, now() + make_interval(secs => coalesce(t.scheduled_in, 0))) AS at
    FROM jsonb_to_recordset(%(jobs)s::jsonb) AS t(
        unique_key text, fields jsonb, args jsonb, meta jsonb, tags text[], max_attempts smallint,
        priority smallint, scheduled_at timestamptz, scheduled_in float8)
) AS r
WHERE j.unique_key = r.unique_key AND j.state IN ('scheduled', 'available', 'retryable')
"""

_BY_UNIQUE_KEYS = "SELECT {columns} FROM {jobs} WHERE unique_key = ANY(%(keys)s::text[])"

# The claim, in two parts so the runtime can send it together with its acks. The claimed
# rows are updated through `id = ANY(ARRAY(...))`: the producer's generic plan cannot
# know the LIMIT, and a join with the claimed ids planned for a tenth of the table walked
# the whole primary key (192 ms a claim at 530k waiting jobs, against 0.4 ms).
# The claim starts at the producer's floor (flowstone.queue.floor), an Index Cond of
# the claim index: under a pinned snapshot it skips the entries of every job claimed
# since (0.16 ms against 44 ms at 290k of them). No floor is priority -1.
_CLAIM_SELECT = """
claimed AS (
    SELECT id FROM {jobs}
    WHERE state = 'available' AND queue = %(queue)s AND id <= %(max_id)s
      AND (priority, scheduled_at, id)
          >= (%(floor_priority)s::smallint, %(floor_at)s::timestamptz, %(floor_id)s::bigint)
    ORDER BY priority, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""

# The floor's audit, off the claim path: the lowest available job of the queue below a
# producer's floor, down to a lower key (flowstone.queue.floor: where the recent claims
# started, or the head), that no notification announced (a claim skipped it while another
# transaction held its lock, then rolled back). No lock taken, so a locked job is seen too.
# Under a pinned snapshot it walks the dead entries between the two keys: on its own
# connection every AUDIT seconds, never in a claim.
_BELOW_FLOOR = """
SELECT priority, scheduled_at, id FROM {jobs}
WHERE state = 'available' AND queue = %(queue)s
  AND (priority, scheduled_at, id)
      < (%(floor_priority)s::smallint, %(floor_at)s::timestamptz, %(floor_id)s::bigint)
  AND (priority, scheduled_at, id)
      >= (%(lower_priority)s::smallint, %(lower_at)s::timestamptz, %(lower_id)s::bigint)
ORDER BY priority, scheduled_at, id
LIMIT 1
"""

_CLAIM_UPDATE = """
UPDATE {jobs} AS j
SET state = 'executing', attempt = j.attempt + 1, attempted_at = now(),
    attempted_by = %(claimer)s::text[]
WHERE j.id = ANY(ARRAY(SELECT id FROM claimed))
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
    attempt = CASE WHEN a.refund THEN j.attempt - 1 ELSE j.attempt END,{result_set}
    errors = CASE WHEN a.error IS NULL THEN j.errors
                  ELSE j.errors || jsonb_build_array(a.error || jsonb_build_object('at', now())) END,
    meta = CASE WHEN a.snoozed
                THEN (j.meta - 'wake_pending')
                     || jsonb_build_object('snoozed', coalesce((j.meta ->> 'snoozed')::int, 0) + 1)
                ELSE j.meta - 'wake_pending' END
FROM jsonb_to_recordset(%(acks)s::jsonb) AS a(
    id bigint, attempt smallint, attempted_at timestamptz, state text, delay float8,
    error jsonb, snoozed boolean, refund boolean{result_column})
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = a.id AND j.state::text = 'executing'
  AND j.attempt = a.attempt AND j.attempted_at = a.attempted_at
RETURNING {acked}
"""

# The plain acknowledgement, and the one for outcomes that record a result or end a
# workflow's job: it stores the result and applies the end's effects (EFFECTS).
_PLAIN_ACK = {"{result_set}": "", "{result_column}": "", "{acked}": "j.id"}
_RICH_ACK = {
    "{result_set}": "\n    result = coalesce(a.result, j.result),",
    "{result_column}": ", result jsonb",
    "{acked}": "j.id, j.state, j.meta",
}


_ACK_EFFECTS = _filled(
    """
WITH RECURSIVE acked AS (@ack@), ended AS (SELECT id, state, meta FROM acked), @effects@
SELECT id FROM acked
""",
    {"@ack@": _filled(_ACK_UPDATE, _RICH_ACK), "@effects@": EFFECTS},
)

_CLAIM = "WITH " + _CLAIM_SELECT + _CLAIM_UPDATE

# The partition of a job of a partitioned queue: the values of the partition's args keys
# (an empty text for a queue without a partition).
_PARTITION = "coalesce((SELECT jsonb_object_agg(k, args -> k) FROM unnest(%(keys)s::text[]) AS k)::text, '')"

# The claim of a queue with a global limit and/or a rate limit, run after the queue's
# advisory lock (LOCK) in the same transaction: claims of the queue take turns, so each
# counts what is executing (and what started in the rate window) as it is. Up to
# `lookahead` available jobs are ranked per partition; a job is claimed when its rank
# fits what its partition has left. Starts are recorded in the rate ledger's bucket
# of now(), the claim's `attempted_at`; a window counts every bucket that may hold one
# of its starts (at most a bucket too many), and buckets older than two periods go.
_CLAIM_LIMITED = """
WITH running AS (
    SELECT {partition} AS part, count(*) AS n FROM {jobs}
    WHERE state = 'executing' AND queue = %(queue)s AND %(global_limit)s::integer IS NOT NULL
    GROUP BY 1
), started AS (
    SELECT partition AS part, sum(count) AS n FROM {rates}
    WHERE queue = %(queue)s AND %(allowed)s::integer IS NOT NULL
      AND bucket > now() - make_interval(secs => %(period)s::float8 + %(bucket)s::float8)
    GROUP BY 1
), candidates AS (
    SELECT id, priority, scheduled_at, {partition} AS part FROM {jobs}
    WHERE state = 'available' AND queue = %(queue)s
    ORDER BY priority, scheduled_at, id
    LIMIT %(lookahead)s
), chosen AS (
    SELECT ranked.id, ranked.part FROM (
        SELECT c.*, row_number() OVER (PARTITION BY c.part ORDER BY c.priority, c.scheduled_at, c.id) AS rank
        FROM candidates AS c
    ) AS ranked
    LEFT JOIN running AS r ON r.part = ranked.part
    LEFT JOIN started AS s ON s.part = ranked.part
    WHERE ranked.rank <= coalesce(%(global_limit)s::integer - coalesce(r.n, 0), ranked.rank)
      AND ranked.rank <= coalesce(%(allowed)s::integer - coalesce(s.n, 0), ranked.rank)
    ORDER BY ranked.priority, ranked.scheduled_at, ranked.id
    LIMIT %(limit)s
), claimed AS (
    UPDATE {jobs} AS j
    SET state = 'executing', attempt = j.attempt + 1, attempted_at = now(),
        attempted_by = %(claimer)s::text[]
    FROM chosen
    WHERE j.id = ANY(ARRAY(SELECT id FROM chosen)) AND j.id = chosen.id AND j.state = 'available'
    RETURNING {claimed_columns}, chosen.part AS part
), counted AS (
    INSERT INTO {rates} AS l (queue, partition, count, bucket)
    SELECT %(queue)s, part, count(*),
           to_timestamp(floor(extract(epoch FROM now()) / %(bucket)s::float8) * %(bucket)s::float8)
    FROM claimed WHERE %(allowed)s::integer IS NOT NULL
    GROUP BY part
    ON CONFLICT (queue, partition, bucket) DO UPDATE SET count = l.count + EXCLUDED.count
), expired AS (
    DELETE FROM {rates}
    WHERE queue = %(queue)s
      AND bucket < now() - make_interval(secs => 2 * %(period)s::float8 + %(bucket)s::float8)
)
SELECT {job_columns} FROM claimed
"""

# The runtime's one statement per cycle: acknowledge what finished and claim what fits,
# committed together, so a job's slot is reused only once its outcome is durable.
_ACK_CLAIM = "WITH acked AS (" + _ACK_UPDATE + "), " + _CLAIM_SELECT + _CLAIM_UPDATE

# Due jobs from `after` on (NULL: all of them; the stager's cursor, see plugins/cursor.py)
# up to `until`; `upto` (one row at least, `queue` NULL when none was staged) is that
# upper bound but never past now (a timestamp, not 'infinity'), where the stager's next
# pass may start (less its margin).
_STAGE = """
WITH due AS (
    SELECT id FROM {jobs}
    WHERE state IN ('scheduled', 'retryable')
      AND scheduled_at >= coalesce(%(after)s::timestamptz, '-infinity')
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
SELECT least(%(until)s::timestamptz, now()) AS upto, queue, count
FROM (SELECT 1) AS one
LEFT JOIN (SELECT queue, count(*) AS count FROM staged GROUP BY queue) AS per_queue ON true
"""

_GET = "SELECT {columns} FROM {jobs} WHERE id = %(id)s"

# Jobs by filter: every given field must match (`args` by containment, `tag` among the tags).
_FILTER = """
    (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(state)s::text IS NULL OR state = %(state)s::{state})
  AND (%(worker)s::text IS NULL OR worker = %(worker)s)
  AND (%(tag)s::text IS NULL OR tags @> ARRAY[%(tag)s::text])
  AND (%(args)s::jsonb IS NULL OR args @> %(args)s::jsonb)
"""

# Jobs by filter, paged by id (keyset: `after` for oldest first, `before` for newest
# first), so a page costs the same deep in a table of millions as on its first page.
# `within` bounds the ids searched on the far side (filters no index serves scan at most
# that many rows).
_LIST = _filled(
    """
SELECT {columns} FROM {jobs}
WHERE @filter@  AND (%(cursor)s::bigint IS NULL OR id {beyond} %(cursor)s)
  AND (%(within)s::bigint IS NULL OR id {within} %(within)s)
ORDER BY id {direction}
LIMIT %(limit)s
""",
    {"@filter@": _FILTER},
)

# Bulk operations: the next batch of jobs matching a filter in the states the operation
# applies to (no newer than the operation's start), with their workflows; and a count.
_MATCHING = _filled(
    """
SELECT id, meta -> 'workflow' ->> 'id' AS workflow FROM {jobs}
WHERE @filter@  AND state::text = ANY(%(states)s::text[]) AND id <= %(max_id)s
ORDER BY id
LIMIT %(limit)s
""",
    {"@filter@": _FILTER},
)

_COUNT_MATCHING = _filled(
    """
SELECT count(*) AS count FROM {jobs}
WHERE @filter@  AND state::text = ANY(%(states)s::text[])
""",
    {"@filter@": _FILTER},
)

# Which of `ids` exist, with their workflows (whose locks are taken before acting on them).
_WORKFLOWS_OF = """
SELECT id, meta -> 'workflow' ->> 'id' AS workflow FROM {jobs} WHERE id = ANY(%(ids)s::bigint[])
"""

# A job waiting on workflow dependencies runs when they finish: retrying it would not.
_RETRY = """
WITH retried AS (
    UPDATE {jobs} AS j SET
        state = 'available', scheduled_at = now(),
        max_attempts = GREATEST(max_attempts, attempt + 1),
        completed_at = NULL, discarded_at = NULL, cancelled_at = NULL
    WHERE id = ANY(%(ids)s::bigint[]) AND state NOT IN ('available', 'executing')
      AND NOT (state = 'scheduled' AND EXISTS (SELECT 1 FROM {deps} AS d WHERE d.job_id = j.id))
    RETURNING {columns}
)
SELECT * FROM retried ORDER BY id
"""

# A deleted job that had not finished ends as if cancelled for the jobs waiting on it.
_DELETE = _filled(
    """
WITH RECURSIVE deleted AS (
    DELETE FROM {jobs} WHERE id = ANY(%(ids)s::bigint[]) AND state <> 'executing'
    RETURNING id, state, meta
), ended AS (
    SELECT id, CASE WHEN state IN ('completed', 'discarded', 'cancelled') THEN state
                    ELSE 'cancelled' END AS state, meta
    FROM deleted
), @effects@
SELECT id FROM deleted ORDER BY id
""",
    {"@effects@": EFFECTS},
)

# Cancel jobs that have not finished, recording why and by whom (role, client, and the
# state each was in) and, when given, the `kind` of cancellation (workflow.py's
# DEPENDENCY); the node running one (if any) is told to stop it, and its late
# acknowledgement matches nothing because the row is no longer executing.
_CANCEL = _filled(
    """
WITH RECURSIVE target AS (
    SELECT id, state AS previous_state FROM {jobs}
    WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('available', 'scheduled', 'retryable', 'executing')
    ORDER BY id
    FOR UPDATE
), cancelled AS (
    UPDATE {jobs} AS j SET state = 'cancelled', cancelled_at = now(),
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', now(), 'traceback', NULL,
            'error', 'cancelled: ' || %(reason)s || ' (by ' || current_user || ' from '
                     || coalesce(nullif(current_setting('application_name'), ''), 'an unnamed client')
                     || coalesce(' at ' || host(inet_client_addr()), '') || ', while '
                     || target.previous_state || ')')
            || CASE WHEN %(kind)s::text IS NULL THEN '{{}}'::jsonb
                    ELSE jsonb_build_object('kind', %(kind)s::text) END)
    FROM target WHERE j.id = target.id
    RETURNING {j_columns}, target.previous_state
), ended AS (SELECT id, state, meta FROM cancelled), @effects@
SELECT cancelled.*,
       CASE WHEN previous_state = 'executing'
            THEN pg_notify(%(channel)s, json_build_object('action', 'cancel', 'job_id', id)::text) END
       AS notified
FROM cancelled ORDER BY id
""",
    {"@effects@": EFFECTS},
)

# The lifeline: jobs executing under a claimer (node name / incarnation) that stopped
# heartbeating go back to available (or are discarded when out of attempts), with an
# error entry that says so. `alive` holds "name/incarnation" of every live node and
# "name/*" too, for rows claimed before incarnations existed (attempted_by[2] NULL).
_CLAIMER = """((coalesce(attempted_by[1], '') || '/' || coalesce(attempted_by[2], '*')) COLLATE "C")"""
# After a lost connection a producer cannot know whether its last claim committed: jobs
# executing under its claimer (node name and incarnation) and queue that it is not
# running were claimed but never started. They go back to available, attempt refunded.
# Found through `jobs_claimer_idx` by the claimer key and, from `after` on (NULL: all;
# the producer's sweep cursor, see plugins/cursor.py), the claim time; the name and
# incarnation are then compared exactly (a name holding '/' could share a key). `mark`
# is where the next sweep may start (less its margin).
_RELEASE_ORPHANS = _filled(
    """
WITH released AS (
    UPDATE {jobs} SET state = 'available', attempt = attempt - 1, scheduled_at = now()
    WHERE state = 'executing'
      AND @claimer@ = coalesce((%(claimer)s::text[])[1], '') || '/' || coalesce((%(claimer)s::text[])[2], '*')
      AND attempted_at >= coalesce(%(after)s::timestamptz, '-infinity')
      AND attempted_by[1] = (%(claimer)s::text[])[1]
      AND attempted_by[2] IS NOT DISTINCT FROM (%(claimer)s::text[])[2] AND queue = %(queue)s
      AND NOT (id = ANY(%(keep)s::bigint[]))
    RETURNING id
)
SELECT count(*) AS count, now() AS mark FROM released
""",
    {"@claimer@": _CLAIMER},
)

_ORPHANED = _filled(
    """
    state = 'executing'
      AND NOT (@claimer@ = ANY(%(alive)s::text[]))
      AND attempted_at < now() - make_interval(secs => %(grace)s)
""",
    {"@claimer@": _CLAIMER},
)

# Found first (with their workflows, whose locks are taken next), then rescued. Searched
# only between the live keys, through `jobs_claimer_idx` (migration 0015): in the gap
# below each live key (the lowest from '', below every key, which is never empty) and
# above the highest one — which is every key but the live ones, so the entries of the
# live nodes' jobs, dead ones kept by a long transaction included, are never walked.
_ORPHANS = _filled(
    """
WITH alive AS (SELECT DISTINCT key COLLATE "C" AS key FROM unnest(%(alive)s::text[]) AS key)
SELECT id, workflow FROM (
    SELECT found.*
    FROM (SELECT coalesce(lag(key) OVER (ORDER BY key), '') AS above, key AS below FROM alive) AS gap
    CROSS JOIN LATERAL (
        SELECT id, meta -> 'workflow' ->> 'id' AS workflow FROM {jobs}
        WHERE @orphaned@ AND @claimer@ > gap.above AND @claimer@ < gap.below LIMIT %(limit)s
    ) AS found
    UNION ALL
    (SELECT id, meta -> 'workflow' ->> 'id' FROM {jobs}
     WHERE @orphaned@ AND @claimer@ > (SELECT coalesce(max(key), '') FROM alive) LIMIT %(limit)s)
) AS orphans LIMIT %(limit)s
""",
    {"@orphaned@": _ORPHANED, "@claimer@": _CLAIMER},
)

_RESCUE = _filled(
    """
WITH RECURSIVE rescued AS (
    UPDATE {jobs} AS j SET
        state = CASE WHEN j.attempt >= j.max_attempts THEN 'discarded' ELSE 'available' END::{state},
        discarded_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END,
        scheduled_at = now(),
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', now(), 'traceback', NULL,
            'error', 'rescued by the lifeline: node ' || coalesce(j.attempted_by[1], '?')
                     || ' stopped heartbeating while executing this job'))
    WHERE j.id IN (
        SELECT id FROM {jobs} WHERE id = ANY(%(ids)s::bigint[]) AND @orphaned@
        FOR UPDATE SKIP LOCKED
    )
    RETURNING j.id, j.state, j.queue, j.meta, j.worker, j.attempt, j.attempted_by[1] AS node
), ended AS (SELECT id, state, meta FROM rescued), @effects@
SELECT id, state, queue, worker, attempt, node FROM rescued
""",
    {"@orphaned@": _ORPHANED, "@effects@": EFFECTS},
)

# The pruner: finished jobs older than max_age through the partial indexes, up to `limit`
# per terminal state, from `after` on (NULL: all; the pruner's cursor, see
# plugins/cursor.py); `fullest` tells whether a state had more (a batch came back full),
# `cutoff` is the age bound, where the next pass may start (less its margin).
_PRUNE = _filled(
    """
WITH pruned AS (DELETE FROM {jobs} WHERE id IN (
    (SELECT id FROM {jobs} WHERE state = 'completed' AND @aged(completed_at)@ LIMIT %(limit)s)
    UNION ALL
    (SELECT id FROM {jobs} WHERE state = 'cancelled' AND @aged(cancelled_at)@ LIMIT %(limit)s)
    UNION ALL
    (SELECT id FROM {jobs} WHERE state = 'discarded' AND @aged(discarded_at)@ LIMIT %(limit)s)
) RETURNING state)
SELECT coalesce(max(count), 0) AS fullest, coalesce(sum(count), 0) AS count,
       now() - make_interval(secs => %(max_age)s) AS cutoff
FROM (SELECT state, count(*) AS count FROM pruned GROUP BY state) AS per_state
""",
    {
        f"@aged({column})@": f"{column} >= coalesce(%(after)s::timestamptz, '-infinity')"
        f" AND {column} < now() - make_interval(secs => %(max_age)s)"
        for column in ("completed_at", "cancelled_at", "discarded_at")
    },
)

_COUNTS = "SELECT queue, state::text AS state, count FROM {stats} ORDER BY queue, state"

# Front ends count jobs without scanning the table: per state, at most `cap` rows are read
# through the state's partial index (ordered by its key so the planner walks it) and
# counted per queue; a state with more rows than that is estimated by the planner
# (_ESTIMATE, helped by the jobs_queue_state_stats statistics).
_SAMPLE_ORDER = {
    "available": "queue",
    "scheduled": "scheduled_at",
    "executing": _CLAIMER,
    "retryable": "scheduled_at",
    "completed": "completed_at",
    "discarded": "discarded_at",
    "cancelled": "cancelled_at",
}

_SAMPLE_BRANCH = """
SELECT '<state>' AS state, queue, count(*) AS count
FROM (SELECT queue FROM {jobs} WHERE state = '<state>' ORDER BY <order> LIMIT %(cap)s) AS sample
GROUP BY queue"""

_STATE_SAMPLE = "\nUNION ALL".join(
    _SAMPLE_BRANCH.replace("<state>", state).replace("<order>", order)
    for state, order in _SAMPLE_ORDER.items()
)

_ESTIMATE = (
    "EXPLAIN (FORMAT JSON) SELECT 1 FROM {jobs} WHERE state = %(state)s::{state} AND queue = %(queue)s"
)

# The queues the planner knows (the most common values of the column, from ANALYZE).
_STATS_QUEUES = """
SELECT most_common_vals::text::text[] AS queues FROM pg_stats
WHERE schemaname = %(schema)s AND tablename = 'jobs' AND attname = 'queue'
"""

# Jobs finished per minute over the last `minutes` minutes, through the partial indexes
# of the finished states, at most `cap` rows per minute and outcome (then estimated).
_THROUGHPUT_COUNT = """
(SELECT count(*) FROM (SELECT 1 FROM {jobs} WHERE state = '<outcome>'
    AND <outcome>_at >= m.minute AND <outcome>_at < m.minute + interval '1 minute' LIMIT %(cap)s) AS n)"""

_THROUGHPUT = (
    "SELECT m.minute,"
    + _THROUGHPUT_COUNT.replace("<outcome>", "completed")
    + " AS completed,"
    + _THROUGHPUT_COUNT.replace("<outcome>", "discarded")
    + """ AS discarded
FROM generate_series(date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1),
                     date_trunc('minute', now()), interval '1 minute') AS m(minute)
ORDER BY m.minute
"""
)

_ESTIMATE_FINISHED = """
EXPLAIN (FORMAT JSON) SELECT 1 FROM {jobs} WHERE state = '<outcome>'
    AND <outcome>_at >= %(minute)s::timestamptz
    AND <outcome>_at < %(minute)s::timestamptz + interval '1 minute'
"""

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


# `await_job` marks the job it waits on (a trigger then announces its end on
# `<schema>.finished`) and reads it in the same statement: a job that ends meanwhile
# is either seen ended here or announced.
_AWAIT = """
UPDATE {jobs} SET meta = meta || '{{"awaited": true}}' WHERE id = %(id)s
RETURNING state::text AS state, result, errors
"""

_ENDING = "SELECT state::text AS state, result, errors FROM {jobs} WHERE id = %(id)s"

_LISTEN_FINISHED = "LISTEN {finished}"

# `jobs tail` (insights/tail.py), woken by `<schema>.tail` (migration 0010): where it starts,
# then what was inserted after an id (the primary key) and what ended after a time (the
# partial indexes of the terminal timestamps), with the filters given; now() is the cursor.
_LISTEN_TAIL = "LISTEN {tail}"
_TAIL_START = "SELECT coalesce(max(id), 0) AS max_id, now() AS at FROM {jobs}"
_TAIL_FILTER = """
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(worker)s::text IS NULL OR worker = %(worker)s)"""
_TAIL_INSERTED = (
    """
SELECT {job_columns}, now() AS at,
       CASE WHEN scheduled_at > inserted_at THEN 'scheduled' ELSE 'available' END AS event
FROM {jobs} WHERE id > %(after)s"""
    + _TAIL_FILTER
    + "\nORDER BY id LIMIT %(limit)s"
)
_TAIL_END = (
    """
SELECT {job_columns}, now() AS at, '<end>' AS event FROM {jobs}
WHERE state = '<end>' AND <end>_at > %(since)s AND coalesce(%(state)s::text = '<end>', true)"""
    + _TAIL_FILTER
)
_TAIL_ENDED = "\nUNION ALL".join(
    _TAIL_END.replace("<end>", end) for end in ("completed", "discarded", "cancelled")
)

# Polling in place of the control channel: which of a node's running jobs were cancelled.
_CANCELLED_AMONG = "SELECT id FROM {jobs} WHERE id = ANY(%(ids)s::bigint[]) AND state = 'cancelled'"

# Progress reports of executing jobs, coalesced by the node: one statement per flush,
# each report guarded by the attempt it belongs to.
_PROGRESS = """
UPDATE {jobs} AS j SET progress = p.progress || jsonb_build_object('at', now())
FROM jsonb_to_recordset(%(reports)s::jsonb) AS p(id bigint, attempt smallint, progress jsonb)
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = p.id AND j.state::text = 'executing'
  AND j.attempt = p.attempt
"""


# Claimed rows come back on the hot path: empty meta and errors (the usual case) are sent
# as NULL, which costs the client no JSON parsing.
_EMPTY = {"meta": "'{}'", "errors": "'[]'"}


def _claimed_column(column: str) -> str:
    empty = _EMPTY.get(column)
    return f"NULLIF(j.{column}, {empty}) AS {column}" if empty else f"j.{column}"


@dataclass(frozen=True, slots=True)
class JobQueries(SchemaStatements):
    """The statements of the jobs table for one schema."""

    schema: str
    channel: str
    insert: str
    insert_unique: str
    release_expired_unique: str
    release_unheld_unique: str
    by_unique_keys: str
    replace_unique: str
    claim: str
    ack: str
    ack_claim: str
    release_orphans: str
    below_floor: str
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
    state_sample: str
    estimate: str
    stats_queues: str
    throughput: str
    estimate_completed: str
    estimate_discarded: str
    enqueued: str
    wake_head: str
    wake_tail: str
    ack_effects: str
    claim_limited: str
    lock: str
    orphans: str
    matching: str
    count_matching: str
    workflows_of: str
    insert_deps: str
    workflow_jobs: str
    rearm: str
    await_job: str
    ending: str
    listen_finished: str
    listen_tail: str
    tail_start: str
    tail_inserted: str
    tail_ended: str
    cancelled_among: str
    progress: str

    def wake_with(self, candidates: str, before: str = "") -> str:
        """The wake-up statement (see _WAKE_HEAD) around a caller's own query of candidate
        job ids, composed for this schema: the caller finds its waiting jobs faster than
        a search by args, which the executing jobs' partial index, full of dead entries
        between vacuums, makes slow. `before`: the caller's own common table expressions
        (each followed by a comma), run in the same statement. Parameters: the caller's."""
        return f"WITH {before}\n{self.wake_head}\n{candidates}\n{self.wake_tail}"

    @classmethod
    def compose(cls, schema: str) -> JobQueries:
        """Compose every statement with the schema's quoted identifiers."""
        check_identifier(schema, "schema")
        names = {
            "jobs": sql.Identifier(schema, "jobs"),
            "state": sql.Identifier(schema, "job_state"),
            "stats": sql.Identifier(schema, "queue_stats"),
            "deps": sql.Identifier(schema, "job_deps"),
            "rates": sql.Identifier(schema, "rate_limits"),
            "finished": sql.Identifier(f"{schema}.finished"),
            "tail": sql.Identifier(f"{schema}.tail"),
            "columns": sql.SQL(DETAIL_COLUMNS),
            "job_columns": sql.SQL(JOB_COLUMNS),
            "j_columns": sql.SQL(", ".join(f"j.{c}" for c in DETAIL_COLUMNS.split(", "))),
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
            replace_unique=compose(_REPLACE_UNIQUE),
            claim=compose(_CLAIM),
            ack=compose(_filled(_ACK_UPDATE, _PLAIN_ACK)),
            ack_claim=compose(_filled(_ACK_CLAIM, _PLAIN_ACK)),
            release_orphans=compose(_RELEASE_ORPHANS),
            below_floor=compose(_BELOW_FLOOR),
            stage=compose(_STAGE),
            get=compose(_GET),
            list_oldest=compose(_list(">", "<=", "ASC")),
            list_newest=compose(_list("<", ">=", "DESC")),
            retry=compose(_RETRY),
            delete=compose(_DELETE),
            max_id=compose(_MAX_ID),
            cancel=compose(_CANCEL),
            rescue=compose(_RESCUE),
            prune=compose(_PRUNE),
            counts=compose(_COUNTS),
            state_sample=compose(_STATE_SAMPLE),
            estimate=compose(_ESTIMATE),
            stats_queues=compose(_STATS_QUEUES),
            throughput=compose(_THROUGHPUT),
            estimate_completed=compose(_ESTIMATE_FINISHED.replace("<outcome>", "completed")),
            estimate_discarded=compose(_ESTIMATE_FINISHED.replace("<outcome>", "discarded")),
            enqueued=compose(_ENQUEUED),
            wake_head=compose(_WAKE_HEAD),
            wake_tail=compose(_WAKE_TAIL),
            ack_effects=compose(_ACK_EFFECTS),
            claim_limited=compose(_CLAIM_LIMITED.replace("{partition}", _PARTITION)),
            lock=compose(LOCK),
            orphans=compose(_ORPHANS),
            matching=compose(_MATCHING),
            count_matching=compose(_COUNT_MATCHING),
            workflows_of=compose(_WORKFLOWS_OF),
            insert_deps=compose(INSERT_DEPS),
            workflow_jobs=compose(WORKFLOW_JOBS),
            rearm=compose(REARM),
            await_job=compose(_AWAIT),
            ending=compose(_ENDING),
            listen_finished=compose(_LISTEN_FINISHED),
            listen_tail=compose(_LISTEN_TAIL),
            tail_start=compose(_TAIL_START),
            tail_inserted=compose(_TAIL_INSERTED),
            tail_ended=compose(_TAIL_ENDED),
            cancelled_among=compose(_CANCELLED_AMONG),
            progress=compose(_PROGRESS),
        )


def _list(beyond: str, within: str, direction: str) -> str:
    return _LIST.replace("{beyond}", beyond).replace("{within}", within).replace("{direction}", direction)
