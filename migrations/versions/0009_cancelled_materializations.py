"""A materialization whose job ends without a result is finalised `cancelled`, by the
database itself, whoever ends the job.

Revision ID: 0009_cancelled_materializations
Revises: 0008_jobs_vacuum
"""

from flowstone.queue.migrate import execute_ddl

revision = "0009_cancelled_materializations"
down_revision = "0008_jobs_vacuum"
branch_labels = None
depends_on = None

# The new enum value cannot be used in the transaction that adds it (every migration runs
# in one): the statements below compare statuses as text, and the trigger function
# names it only when it runs. A cancelled record notifies its waiters as a finished one.
_NOTIFY_CANCELLED_TOO = """
DROP TRIGGER materializations_notify_finished ON {schema}.materializations;
CREATE TRIGGER materializations_notify_finished
    AFTER INSERT OR UPDATE OF status ON {schema}.materializations
    FOR EACH ROW WHEN (NEW.status::text IN ('success', 'failed', 'skipped', 'cancelled'))
    EXECUTE FUNCTION {schema}.notify_materialization_finished();
"""

_NOTIFY_AS_BEFORE = """
DROP TRIGGER materializations_notify_finished ON {schema}.materializations;
CREATE TRIGGER materializations_notify_finished
    AFTER INSERT OR UPDATE OF status ON {schema}.materializations
    FOR EACH ROW WHEN (NEW.status IN ('success', 'failed', 'skipped'))
    EXECUTE FUNCTION {schema}.notify_materialization_finished();
"""


def upgrade() -> None:
    execute_ddl(
        """
ALTER TYPE {schema}.materialization_status ADD VALUE IF NOT EXISTS 'cancelled';

-- A job that ends without a result — cancelled, discarded, or deleted before it finished;
-- by FlowStone (one job, in bulk, the lifeline), from any process, or with plain SQL —
-- finalises its unfinished record as `cancelled`, saying how the job ended; a job run
-- again (retried) reopens it. In the database, so that every way a job ends is covered
-- without the queue knowing about assets (see docs/architecture.md).
CREATE FUNCTION {schema}.settle_materializations() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE {schema}.materializations SET status = 'cancelled', finished_at = now(),
            error_type = NULL, waiting_since = NULL,
            error_message = 'its job ' || OLD.id || ' was deleted before it finished'
        WHERE job_id = OLD.id AND status IN ('pending', 'running');
    ELSIF NEW.state IN ('cancelled', 'discarded') THEN
        UPDATE {schema}.materializations SET status = 'cancelled', finished_at = now(),
            error_type = NULL, waiting_since = NULL,
            error_message = 'its job ' || NEW.id || ' ended ' || NEW.state || ' without a result'
                            || coalesce(': ' || left(NEW.errors -> -1 ->> 'error', 1000), '')
        WHERE job_id = NEW.id AND status IN ('pending', 'running');
    ELSE
        UPDATE {schema}.materializations SET status = 'pending', finished_at = NULL,
            error_type = NULL, error_message = NULL
        WHERE job_id = NEW.id AND status = 'cancelled';
    END IF;
    RETURN NULL;
END
$$;

-- Per row, but only rows that end without a result (or come back): the WHEN clauses keep
-- the acknowledgements of completed jobs and the pruner's deletes from calling it.
CREATE TRIGGER jobs_settle_materializations
    AFTER UPDATE OF state ON {schema}.jobs FOR EACH ROW
    WHEN ((NEW.state IN ('cancelled', 'discarded')
           AND OLD.state IN ('available', 'scheduled', 'executing', 'retryable'))
          OR (OLD.state IN ('cancelled', 'discarded') AND NEW.state IN ('available', 'scheduled')))
    EXECUTE FUNCTION {schema}.settle_materializations();
CREATE TRIGGER jobs_deleted_settle_materializations
    AFTER DELETE ON {schema}.jobs FOR EACH ROW
    WHEN (OLD.state IN ('available', 'scheduled', 'executing', 'retryable'))
    EXECUTE FUNCTION {schema}.settle_materializations();
"""
    )
    execute_ddl(_NOTIFY_CANCELLED_TOO)


def downgrade() -> None:
    # Postgres cannot drop an enum value: 'cancelled' stays, unused (records become failed).
    execute_ddl(
        """
DROP TRIGGER jobs_deleted_settle_materializations ON {schema}.jobs;
DROP TRIGGER jobs_settle_materializations ON {schema}.jobs;
DROP FUNCTION {schema}.settle_materializations();
UPDATE {schema}.materializations SET status = 'failed', error_type = 'execution_error'
WHERE status::text = 'cancelled';
"""
    )
    execute_ddl(_NOTIFY_AS_BEFORE)
