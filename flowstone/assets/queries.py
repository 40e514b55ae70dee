"""Every statement on the materializations tables, composed once per schema; params bound.

`partition` is the serialized key, '' for an unpartitioned asset (the column is NOT NULL
so that the latest-per-(asset, partition) index serves every lookup).
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from flowstone.queue.queries import SchemaStatements, composer
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.validation import check_identifier

START_COLUMNS = (
    "id, asset, partition, run_id, status, inserted_at, started_at, finished_at, duration, "
    "error_type, error_message, metadata, job_id, attempt, waiting_since"
)
"""The columns of a record that starts (its versions come with its finish)."""

COLUMNS = START_COLUMNS + ", code_version, data_version, stands_for"

# Records created with their jobs, in the same transaction (a unique job that already
# existed keeps its record).
_CREATE_PENDING = """
INSERT INTO {m} (asset, partition, run_id, job_id)
SELECT r.asset, r.partition, r.run_id, r.job_id
FROM jsonb_to_recordset(%(records)s::jsonb) AS r(asset text, partition text, run_id text, job_id bigint)
ON CONFLICT (job_id) WHERE job_id IS NOT NULL DO NOTHING
"""

# An attempt starts: the job's record (created here if the job was inserted without one)
# becomes running. No row comes back when this job already finished its record, or when
# the record was cancelled (its job ended meanwhile; a retried job's record is reopened
# by the database).
_START_INSERT = """
INSERT INTO {m} AS m (asset, partition, run_id, job_id, attempt, status, started_at)
"""

_START_CONFLICT = """
ON CONFLICT (job_id) WHERE job_id IS NOT NULL DO UPDATE SET
    status = 'running', attempt = EXCLUDED.attempt, started_at = now(), finished_at = NULL,
    error_type = NULL, error_message = NULL
WHERE m.status NOT IN ('success', 'skipped', 'cancelled') AND EXCLUDED.status = 'running'
RETURNING {start_columns}
"""

_START = (
    _START_INSERT
    + "VALUES (%(asset)s, %(partition)s, %(run_id)s, %(job_id)s, %(attempt)s, 'running', now())"
    + _START_CONFLICT
)

# The same for a batch, each under its partition's session lock, tried first: a record
# starts only if its lock was taken (a job turned away by the lock gets a pending record
# if it had none, e.g. a job inserted by cron, so that the finish of the partition's
# current run finds it to wake). One row per request, in order: `n`, `locked`, the
# partition's last success or failure (id, status, versions, and for a success the data
# versions of the upstream records it read: "still fresh?"), then the record's columns
# (NULL when not locked, or when the job already finished its record). The batch's
# (asset, partition) pairs are distinct, which the join relies on.
_LOCKED_START_HEAD = """
WITH request AS (
    SELECT * FROM jsonb_to_recordset(%(requests)s::jsonb) AS r(
        n int, key text, asset text, partition text, run_id text, job_id bigint, attempt smallint)
), lock AS (
    SELECT n, pg_try_advisory_lock(hashtextextended(key, 0)) AS locked FROM request
), started AS (
"""

_LOCKED_START_SELECT = """
SELECT r.asset, r.partition, r.run_id, r.job_id, r.attempt,
       CASE WHEN lock.locked THEN 'running' ELSE 'pending' END::{status},
       CASE WHEN lock.locked THEN now() END
FROM request AS r JOIN lock USING (n) WHERE lock.locked OR r.job_id IS NOT NULL
"""

_LOCKED_START_TAIL = """)
SELECT lock.n, lock.locked, last.id AS last_id, last.status AS last_status,
       last.code_version AS last_code_version, last.data_version AS last_data_version,
       CASE WHEN last.status = 'success' THEN (
           SELECT coalesce(jsonb_agg(jsonb_build_array(u.asset, u.partition, u.data_version)), '[]')
           FROM {lineage} AS l JOIN {m} AS u ON u.id = l.upstream_id
           WHERE l.materialization_id = last.id) END AS last_inputs,
       started.*
FROM lock JOIN request AS r USING (n)
LEFT JOIN LATERAL (
    SELECT f.id, f.status::text AS status, f.code_version, f.data_version FROM {m} AS f
    WHERE f.asset = r.asset AND f.partition = r.partition AND f.status IN ('success', 'failed')
    ORDER BY f.id DESC LIMIT 1
) AS last ON true
LEFT JOIN started ON lock.locked AND started.asset = r.asset AND started.partition = r.partition
ORDER BY lock.n
"""

_LOCKED_START = (
    _LOCKED_START_HEAD + _START_INSERT + _LOCKED_START_SELECT + _START_CONFLICT + _LOCKED_START_TAIL
)

# Waiting again (dependencies not ready, or a retry is scheduled): the reason is kept;
# a wait for a dependency that nothing materializes (`absent`) keeps the time it began.
# A record cancelled meanwhile (its job ended while it ran) stays cancelled.
# Here and in _FINISH, `ids` repeats the records' ids as an array so that the planner,
# which cannot see into the JSON, finds the rows through the primary key rather than by
# scanning the table.
_SET_PENDING = """
UPDATE {m} AS m SET status = 'pending', error_type = r.error_type, error_message = r.error_message,
    waiting_since = CASE WHEN r.absent THEN coalesce(m.waiting_since, now()) END,
    logs = coalesce(r.logs, m.logs)
FROM jsonb_to_recordset(%(records)s::jsonb)
     AS r(id bigint, error_type text, error_message text, absent boolean, logs text)
WHERE m.id = ANY(%(ids)s::bigint[]) AND m.id = r.id AND m.status <> 'cancelled'
"""

# Records finish (success/failed/skipped) with their metadata, versions, lineage and check
# results: common table expressions, run on their own (_FINISH) or ahead of the wake-up
# of the jobs waiting on the records (`finish_and_wake`: one statement, one round trip).
_FINISH_CTES = """
finishing AS (
    SELECT * FROM jsonb_to_recordset(%(records)s::jsonb) AS f(
        id bigint, status text, error_type text, error_message text, metadata jsonb,
        upstream bigint[], code_version text, data_version text, stands_for bigint, logs text)
), done AS (
    UPDATE {m} AS m SET
        status = f.status::{status}, finished_at = now(),
        error_type = f.error_type, error_message = f.error_message,
        metadata = m.metadata || coalesce(f.metadata, '{{}}'),
        code_version = f.code_version, data_version = f.data_version, stands_for = f.stands_for,
        waiting_since = NULL, logs = f.logs
    FROM finishing AS f WHERE m.id = ANY(%(ids)s::bigint[]) AND m.id = f.id
    RETURNING m.id, m.asset, m.partition
), lineage AS (
    INSERT INTO {lineage} (materialization_id, upstream_id)
    SELECT f.id, upstream.id FROM finishing AS f JOIN done USING (id), unnest(f.upstream) AS upstream(id)
    ON CONFLICT DO NOTHING
), checked AS (
    INSERT INTO {checks} (materialization_id, asset, partition, check_name, passed, blocking,
                          description, metadata)
    SELECT c.id, done.asset, done.partition, c.check_name, c.passed, c.blocking, c.description,
           coalesce(c.metadata, '{{}}')
    FROM jsonb_to_recordset(%(checks)s::jsonb) AS c(
        id bigint, check_name text, passed boolean, blocking boolean, description text, metadata jsonb)
    JOIN done USING (id)
)"""

_FINISH = "WITH " + _FINISH_CTES + "\nSELECT id FROM done"

_LATEST = """
SELECT {columns} FROM {m}
WHERE asset = %(asset)s AND partition = %(partition)s
ORDER BY id DESC LIMIT 1
"""

# Per dependency: its latest record, the state of that record's job, its latest success
# (what a reader's lineage points at) with its data version, and whether any of its
# records is unfinished with a job still to run (`busy`: new data is on its way, though
# not necessarily from the latest record — queued jobs finish in any order), in the
# order asked; `request` tells whose dependency it is when a batch asks for several.
_DEPENDENCIES = """
SELECT d.request, d.asset, d.partition, latest.id, latest.status::text AS status, latest.job_id,
       latest.error_type, latest.error_message, j.state::text AS job_state,
       success.id AS success_id, success.data_version AS success_version, busy.found IS NOT NULL AS busy
FROM ROWS FROM (jsonb_to_recordset(%(deps)s::jsonb) AS (request int, asset text, partition text))
     WITH ORDINALITY AS d(request, asset, partition, n)
LEFT JOIN LATERAL (
    SELECT * FROM {m} AS m
    WHERE m.asset = d.asset AND m.partition = d.partition
    ORDER BY m.id DESC LIMIT 1
) AS latest ON true
LEFT JOIN {jobs} AS j ON j.id = latest.job_id
LEFT JOIN LATERAL (
    SELECT s.id, s.data_version FROM {m} AS s
    WHERE s.asset = d.asset AND s.partition = d.partition AND s.status = 'success'
    ORDER BY s.id DESC LIMIT 1
) AS success ON true
LEFT JOIN LATERAL (  -- per row, not an EXISTS the planner may hash over every unfinished record
    SELECT 1 AS found FROM {m} AS o JOIN {jobs} AS oj ON oj.id = o.job_id
    WHERE o.asset = d.asset AND o.partition = d.partition AND o.status IN ('pending', 'running')
      AND oj.state IN ('available', 'scheduled', 'executing', 'retryable')
    LIMIT 1
) AS busy ON true
ORDER BY d.n
"""

# The (asset, partition) pairs asked for that have no success and nothing queued or
# running: a materialization reading them would wait for what nobody makes.
_UNAVAILABLE = """
SELECT d.asset, d.partition
FROM jsonb_to_recordset(%(deps)s::jsonb) AS d(asset text, partition text)
WHERE NOT EXISTS (
    SELECT 1 FROM {m} AS m
    WHERE m.asset = d.asset AND m.partition = d.partition AND m.status IN ('success', 'pending', 'running')
)
"""

# Eager automation: of the candidate partitions (each with the upstream partitions it
# reads), those whose every upstream partition has a success: missing inputs would only
# make them wait.
_READY_CANDIDATES = """
SELECT c.n
FROM jsonb_to_recordset(%(candidates)s::jsonb) AS c(n int, needs jsonb)
WHERE NOT EXISTS (
    SELECT 1 FROM jsonb_to_recordset(c.needs) AS x(asset text, partition text)
    WHERE NOT EXISTS (
        SELECT 1 FROM {m} AS s
        WHERE s.asset = x.asset AND s.partition = x.partition AND s.status = 'success'
    )
)
ORDER BY c.n
"""

# The runs that started on a partition after `started_at` (other than the record asked
# about): a run that lost its lock while the connection was down checks this before it
# records its success.
_STARTED_SINCE = """
SELECT o.id FROM {m} AS o JOIN {m} AS mine ON mine.id = %(id)s
WHERE o.asset = mine.asset AND o.partition = mine.partition AND o.id <> mine.id
  AND o.started_at >= mine.started_at
LIMIT 1
"""

# The jobs that may be waiting on a finished materialization, whatever their run, found
# through their records (pending: enqueued or snoozed; running: may be about to snooze):
# the dependent partitions that read it (any partition when `partition` is NULL) and, for
# a pattern naming the finished record (`after`), the next duplicate of its partition
# only — duplicates take the partition's lock one at a time, so waking them all would
# have all but one snooze again. The unfinished records' partial index serves this; the
# executing jobs' partial index, full of dead entries between vacuums, made a search by
# args grow with the table. Feeds `JobQueries.wake_with`.
_WAITING_JOBS = """
SELECT w.job_id AS id
FROM jsonb_to_recordset(%(waiting)s::jsonb) AS p(asset text, partition text, after bigint)
CROSS JOIN LATERAL (
    SELECT m.job_id FROM {m} AS m
    WHERE p.partition IS NOT NULL AND p.after IS NULL AND m.asset = p.asset AND m.partition = p.partition
      AND m.status IN ('pending', 'running') AND m.job_id IS NOT NULL
    UNION ALL
    SELECT m.job_id FROM {m} AS m
    WHERE p.partition IS NULL AND m.asset = p.asset
      AND m.status IN ('pending', 'running') AND m.job_id IS NOT NULL
    UNION ALL
    (SELECT m.job_id FROM {m} AS m
     WHERE p.after IS NOT NULL AND m.asset = p.asset AND m.partition = p.partition AND m.id <> p.after
       AND m.status IN ('pending', 'running') AND m.job_id IS NOT NULL
     ORDER BY m.id LIMIT 1)
) AS w
"""

# The state of each asked partition of one asset: its latest record (with its job's state)
# and its latest success with the data versions that success read ("stale?").
_PARTITION_STATES = """
SELECT p.n, latest.*, j.state::text AS job_state,
       success.id AS success_id, success.code_version AS success_code_version,
       success.data_version AS success_version,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(u.asset, u.partition, u.data_version)), '[]')
        FROM {lineage} AS l JOIN {m} AS u ON u.id = l.upstream_id
        WHERE l.materialization_id = success.id) AS success_inputs
FROM unnest(%(partitions)s::text[]) WITH ORDINALITY AS p(key, n)
LEFT JOIN LATERAL (
    SELECT {columns} FROM {m}
    WHERE asset = %(asset)s AND partition = p.key
    ORDER BY id DESC LIMIT 1
) AS latest ON true
LEFT JOIN {jobs} AS j ON j.id = latest.job_id
LEFT JOIN LATERAL (
    SELECT s.id, s.code_version, s.data_version FROM {m} AS s
    WHERE s.asset = %(asset)s AND s.partition = p.key AND s.status = 'success'
    ORDER BY s.id DESC LIMIT 1
) AS success ON true
ORDER BY p.n
"""

# The partitions of one asset that have records (for counting without a list of keys).
_RECORDED_PARTITIONS = "SELECT DISTINCT partition FROM {m} WHERE asset = %(asset)s"

_CHECK_RESULTS = """
SELECT materialization_id, check_name, passed, blocking, description, metadata, checked_at
FROM {checks} WHERE materialization_id = ANY(%(ids)s::bigint[]) ORDER BY id
"""

# Dynamic partitions: added once (in the order given), removed, read in the order added.
_ADD_PARTITIONS = """
INSERT INTO {dynamic} (definition, key)
SELECT %(definition)s, t.key FROM unnest(%(keys)s::text[]) WITH ORDINALITY AS t(key, n) ORDER BY t.n
ON CONFLICT DO NOTHING
RETURNING key
"""

_DELETE_PARTITIONS = """
DELETE FROM {dynamic} WHERE definition = %(definition)s AND key = ANY(%(keys)s::text[]) RETURNING key
"""

_DYNAMIC_KEYS = """
SELECT definition, key FROM {dynamic} WHERE definition = ANY(%(definitions)s::text[]) ORDER BY definition, id
"""

_BY_JOB = "SELECT {columns} FROM {m} WHERE job_id = %(job_id)s"

_BY_ID = "SELECT {columns} FROM {m} WHERE id = %(id)s"

# Freshness: per asset, when its latest success (or skip: a confirmation that its data is
# current) finished; the partitions' latest records serve it (an index scan per asset).
_LAST_SUCCESSES = """
SELECT a.asset, now() AS now,
       (SELECT max(m.finished_at) FROM {m} AS m
        WHERE m.asset = a.asset AND m.status IN ('success', 'skipped')) AS last_success
FROM unnest(%(assets)s::text[]) AS a(asset)
"""

# The overdue assets, as the freshness sentry last saw them: those newly overdue are
# inserted and returned (their event is sent once, whichever node leads), those no longer
# overdue removed.
_MARK_OVERDUE = """
WITH recovered AS (DELETE FROM {overdue} WHERE NOT (asset = ANY(%(overdue)s::text[])))
INSERT INTO {overdue} (asset) SELECT unnest(%(overdue)s::text[])
ON CONFLICT DO NOTHING RETURNING asset
"""

# Compute logs are read apart from the records (they can be long): for the ids asked.
_LOGS = "SELECT id, logs FROM {m} WHERE id = ANY(%(ids)s::bigint[]) AND logs IS NOT NULL"

_JOB_STATE = "SELECT state::text AS state FROM {jobs} WHERE id = %(job_id)s"

_HISTORY = """
SELECT {columns} FROM {m}
WHERE (%(asset)s::text IS NULL OR asset = %(asset)s)
  AND (%(partition)s::text IS NULL OR partition = %(partition)s)
  AND (%(run_id)s::text IS NULL OR run_id = %(run_id)s)
ORDER BY id DESC
LIMIT %(limit)s
"""

_UPSTREAM = """
SELECT {m_columns} FROM {lineage} AS l JOIN {m} AS m ON m.id = l.upstream_id
WHERE l.materialization_id = %(id)s ORDER BY m.id
"""

_DOWNSTREAM = """
SELECT {m_columns} FROM {lineage} AS l JOIN {m} AS m ON m.id = l.materialization_id
WHERE l.upstream_id = %(id)s ORDER BY m.id
"""

# A run's records by outcome: finished ones by status; an unfinished one whose job ended
# (records of jobs ended before migration 0009 settled them) counts as cancelled.
_RUN_PROGRESS = """
SELECT CASE WHEN m.status IN ('success', 'failed', 'skipped', 'cancelled') THEN m.status::text
            WHEN j.state IN ('available', 'scheduled', 'executing', 'retryable') THEN m.status::text
            ELSE 'cancelled' END AS outcome,
       count(*) AS count
FROM {m} AS m LEFT JOIN {jobs} AS j ON j.id = m.job_id
WHERE m.run_id = %(run_id)s
GROUP BY 1
"""

# One materialization of an (asset, partition) at a time, cluster-wide: a session lock
# (taken by _LOCKED_START) held by the process's bookkeeping connection, released here or
# when that connection closes (also if the process dies).
_UNLOCK = """
SELECT pg_advisory_unlock(hashtextextended(key, 0)) AS unlocked FROM unnest(%(keys)s::text[]) AS key
"""

# After a reconnect, the locks of the materializations still running are taken again
# before anything else; a key another session took meanwhile comes back not locked.
_RELOCK = """
SELECT key, pg_try_advisory_lock(hashtextextended(key, 0)) AS locked FROM unnest(%(keys)s::text[]) AS key
"""

# Finished records notify this channel (trigger in the migration); waiters listen here.
_LISTEN = "LISTEN {channel}"


@dataclass(frozen=True, slots=True)
class MaterializationQueries(SchemaStatements):
    """The statements of the materializations tables for one schema."""

    schema: str
    channel: str
    create_pending: str
    start: str
    locked_start: str
    set_pending: str
    finish: str
    latest: str
    partition_states: str
    recorded_partitions: str
    dependencies: str
    unavailable: str
    ready_candidates: str
    started_since: str
    finish_and_wake: str
    check_results: str
    add_partitions: str
    delete_partitions: str
    dynamic_keys: str
    by_job: str
    by_id: str
    job_state: str
    history: str
    logs: str
    last_successes: str
    mark_overdue: str
    upstream: str
    downstream: str
    run_progress: str
    unlock: str
    relock: str
    listen: str

    @classmethod
    def compose(cls, schema: str) -> MaterializationQueries:
        """Compose every statement with the schema's quoted identifiers."""
        check_identifier(schema, "schema")
        names = {
            "m": sql.Identifier(schema, "materializations"),
            "lineage": sql.Identifier(schema, "materialization_lineage"),
            "jobs": sql.Identifier(schema, "jobs"),
            "checks": sql.Identifier(schema, "asset_check_results"),
            "dynamic": sql.Identifier(schema, "dynamic_partitions"),
            "overdue": sql.Identifier(schema, "overdue_assets"),
            "status": sql.Identifier(schema, "materialization_status"),
            "columns": sql.SQL(COLUMNS),
            "start_columns": sql.SQL(START_COLUMNS),
            "m_columns": sql.SQL(", ".join(f"m.{c}" for c in COLUMNS.split(", "))),
            "channel": sql.Identifier(f"{schema}.materializations"),
        }

        compose = composer(names)
        return cls(
            schema=schema,
            channel=f"{schema}.materializations",
            create_pending=compose(_CREATE_PENDING),
            start=compose(_START),
            locked_start=compose(_LOCKED_START),
            set_pending=compose(_SET_PENDING),
            finish=compose(_FINISH),
            latest=compose(_LATEST),
            partition_states=compose(_PARTITION_STATES),
            recorded_partitions=compose(_RECORDED_PARTITIONS),
            dependencies=compose(_DEPENDENCIES),
            unavailable=compose(_UNAVAILABLE),
            ready_candidates=compose(_READY_CANDIDATES),
            started_since=compose(_STARTED_SINCE),
            finish_and_wake=JobQueries.for_schema(schema).wake_with(
                compose(_WAITING_JOBS), before=compose(_FINISH_CTES) + ","
            ),
            check_results=compose(_CHECK_RESULTS),
            add_partitions=compose(_ADD_PARTITIONS),
            delete_partitions=compose(_DELETE_PARTITIONS),
            dynamic_keys=compose(_DYNAMIC_KEYS),
            by_job=compose(_BY_JOB),
            by_id=compose(_BY_ID),
            job_state=compose(_JOB_STATE),
            history=compose(_HISTORY),
            logs=compose(_LOGS),
            last_successes=compose(_LAST_SUCCESSES),
            mark_overdue=compose(_MARK_OVERDUE),
            upstream=compose(_UPSTREAM),
            downstream=compose(_DOWNSTREAM),
            run_progress=compose(_RUN_PROGRESS),
            unlock=compose(_UNLOCK),
            relock=compose(_RELOCK),
            listen=compose(_LISTEN),
        )
