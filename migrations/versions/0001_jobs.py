"""The jobs table, its state enum, indexes, triggers and the queue_stats view.

Revision ID: 0001_jobs
Revises:
"""

from flowstone.queue.migrate import execute_ddl

revision = "0001_jobs"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
CREATE TYPE {schema}.job_state AS ENUM (
    'available', 'scheduled', 'executing', 'retryable', 'completed', 'discarded', 'cancelled'
);

CREATE TABLE {schema}.jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state {schema}.job_state NOT NULL DEFAULT 'available',
    queue text NOT NULL DEFAULT 'default',
    worker text NOT NULL,
    args jsonb NOT NULL DEFAULT '{{}}',
    meta jsonb NOT NULL DEFAULT '{{}}',
    tags text[] NOT NULL DEFAULT '{{}}',
    errors jsonb NOT NULL DEFAULT '[]',
    attempt smallint NOT NULL DEFAULT 0,
    max_attempts smallint NOT NULL DEFAULT 20,
    priority smallint NOT NULL DEFAULT 0,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    attempted_at timestamptz,
    completed_at timestamptz,
    discarded_at timestamptz,
    cancelled_at timestamptz,
    attempted_by text[],
    unique_key text,
    CONSTRAINT attempt_range CHECK (attempt >= 0 AND attempt <= max_attempts),
    CONSTRAINT positive_max_attempts CHECK (max_attempts > 0),
    CONSTRAINT priority_range CHECK (priority BETWEEN 0 AND 9),
    CONSTRAINT queue_length CHECK (char_length(queue) BETWEEN 1 AND 128),
    CONSTRAINT worker_length CHECK (char_length(worker) BETWEEN 1 AND 128),
    CONSTRAINT args_is_object CHECK (jsonb_typeof(args) = 'object'),
    CONSTRAINT meta_is_object CHECK (jsonb_typeof(meta) = 'object'),
    CONSTRAINT errors_is_array CHECK (jsonb_typeof(errors) = 'array')
) WITH (
    fillfactor = 90,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- The claim query: available jobs of one queue in (priority, scheduled_at, id) order.
CREATE INDEX jobs_claim_idx ON {schema}.jobs (queue, priority, scheduled_at, id)
    WHERE state = 'available';
-- The stager: due scheduled and retryable jobs.
CREATE INDEX jobs_staging_idx ON {schema}.jobs (scheduled_at, id)
    WHERE state IN ('scheduled', 'retryable');
-- The lifeline: executing jobs by the node that claimed them.
CREATE INDEX jobs_executing_idx ON {schema}.jobs ((attempted_by[1]))
    WHERE state = 'executing';
-- The pruner: finished jobs by age, one partial index per terminal state.
CREATE INDEX jobs_completed_at_idx ON {schema}.jobs (completed_at) WHERE state = 'completed';
CREATE INDEX jobs_discarded_at_idx ON {schema}.jobs (discarded_at) WHERE state = 'discarded';
CREATE INDEX jobs_cancelled_at_idx ON {schema}.jobs (cancelled_at) WHERE state = 'cancelled';
-- Unique jobs: the database, not the client, decides which insert wins.
CREATE UNIQUE INDEX jobs_unique_key_idx ON {schema}.jobs (unique_key)
    WHERE unique_key IS NOT NULL;

-- One NOTIFY per statement per queue, for plain SQL inserts as much as for FlowStone's.
CREATE FUNCTION {schema}.notify_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.jobs', queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'available') AS queues;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_inserted AFTER INSERT ON {schema}.jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_jobs_inserted();

-- Jobs becoming available by an UPDATE (staged, retried, woken, rescued, handed back)
-- wake the producers too; Postgres folds identical notifications of a transaction.
CREATE FUNCTION {schema}.notify_jobs_available() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.jobs', NEW.queue);
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_available AFTER UPDATE OF state ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.state = 'available' AND OLD.state <> 'available')
    EXECUTE FUNCTION {schema}.notify_jobs_available();

-- A unique job leaving its unique states frees its key for a new job.
CREATE FUNCTION {schema}.release_unique_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT coalesce((NEW.meta -> 'unique_states') ? NEW.state::text, false) THEN
        NEW.unique_key := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER jobs_release_unique_key BEFORE UPDATE OF state ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.unique_key IS NOT NULL AND NEW.state IS DISTINCT FROM OLD.state)
    EXECUTE FUNCTION {schema}.release_unique_key();

CREATE VIEW {schema}.queue_stats AS
    SELECT queue, state, count(*) AS count
    FROM {schema}.jobs
    GROUP BY queue, state;
"""
    )


def downgrade() -> None:
    execute_ddl(
        """
DROP VIEW {schema}.queue_stats;
DROP TABLE {schema}.jobs;
DROP FUNCTION {schema}.release_unique_key();
DROP FUNCTION {schema}.notify_jobs_inserted();
DROP FUNCTION {schema}.notify_jobs_available();
DROP TYPE {schema}.job_state;
"""
    )
