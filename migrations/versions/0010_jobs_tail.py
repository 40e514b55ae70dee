"""`flowstone jobs tail`: a notification on `<schema>.tail` when jobs are inserted and when
jobs end (completed, discarded, cancelled), carrying only the queue; the tail reads the
rows themselves through indexes (ids, the terminal timestamps).

Revision ID: 0010_jobs_tail
Revises: 0009_cancelled_materializations
"""

from flowstone.queue.migrate import execute_ddl

revision = "0010_jobs_tail"
down_revision = "0009_cancelled_materializations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
-- Inserts: one NOTIFY per statement per queue, whatever their state. Ends: row by row,
-- which Postgres folds into one NOTIFY per queue per transaction; BEFORE the update, as
-- the unique key's release: an AFTER row trigger queues an event per row and fetches the
-- row again, which cost acks about twice as much as this (measured at 50,000 rows).
CREATE FUNCTION {schema}.notify_jobs_tail() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.tail', NEW.queue);
        RETURN NEW;
    END IF;
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.tail', queue)
    FROM (SELECT DISTINCT queue FROM inserted) AS queues;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_tail_inserted AFTER INSERT ON {schema}.jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_jobs_tail();
CREATE TRIGGER jobs_notify_tail_ended BEFORE UPDATE OF state ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.state IN ('completed', 'discarded', 'cancelled')
                       AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION {schema}.notify_jobs_tail();
"""
    )


def downgrade() -> None:
    execute_ddl(
        """
DROP TRIGGER jobs_notify_tail_ended ON {schema}.jobs;
DROP TRIGGER jobs_notify_tail_inserted ON {schema}.jobs;
DROP FUNCTION {schema}.notify_jobs_tail();
"""
    )
