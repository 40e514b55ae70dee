"""Queue features: recorded results and progress on jobs, workflow dependencies, the rate
limit ledger, an index to count a queue's executing jobs, and a NOTIFY when an awaited
job finishes.

Revision ID: 0006_queue_features
Revises: 0005_dashboard
"""

from flowstone.queue.migrate import execute_ddl

revision = "0006_queue_features"
down_revision = "0005_dashboard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
ALTER TABLE {schema}.jobs ADD COLUMN result jsonb, ADD COLUMN progress jsonb;

-- Global limits count a queue's executing jobs; the orphan sweep looks them up by
-- queue and node. One partial index serves both (it replaces the node-only one).
DROP INDEX {schema}.jobs_executing_idx;
CREATE INDEX jobs_executing_idx ON {schema}.jobs (queue, (attempted_by[1]))
    WHERE state = 'executing';

-- A workflow's (or batch's) jobs, found by the id in their meta.
CREATE INDEX jobs_workflow_idx ON {schema}.jobs ((meta -> 'workflow' ->> 'id'), id)
    WHERE meta ? 'workflow';

-- The dependencies still pending: job_id waits on dep_id. A row goes away when its
-- dependency finishes (in the statement that finishes it); a job with none left runs.
CREATE TABLE {schema}.job_deps (
    dep_id bigint NOT NULL,
    job_id bigint NOT NULL,
    PRIMARY KEY (dep_id, job_id)
);
CREATE INDEX job_deps_job_idx ON {schema}.job_deps (job_id);

-- Jobs started per rate-limited queue (and partition) in time buckets of a twentieth
-- of the period; buckets older than the period are deleted by the claims themselves.
CREATE TABLE {schema}.rate_limits (
    queue text NOT NULL,
    partition text NOT NULL,
    bucket timestamptz NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (queue, partition, bucket)
);

-- `await_job` marks the job it waits on (meta.awaited); its end wakes the waiter.
CREATE FUNCTION {schema}.notify_jobs_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.finished', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_finished AFTER UPDATE OF state ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.state IN ('completed', 'discarded', 'cancelled')
                       AND OLD.state IS DISTINCT FROM NEW.state AND NEW.meta ? 'awaited')
    EXECUTE FUNCTION {schema}.notify_jobs_finished();
"""
    )


def downgrade() -> None:
    execute_ddl(
        """
DROP TRIGGER jobs_notify_finished ON {schema}.jobs;
DROP FUNCTION {schema}.notify_jobs_finished();
DROP TABLE {schema}.rate_limits;
DROP TABLE {schema}.job_deps;
DROP INDEX {schema}.jobs_workflow_idx;
DROP INDEX {schema}.jobs_executing_idx;
CREATE INDEX jobs_executing_idx ON {schema}.jobs ((attempted_by[1])) WHERE state = 'executing';
ALTER TABLE {schema}.jobs DROP COLUMN progress, DROP COLUMN result;
"""
    )
