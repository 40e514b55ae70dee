"""`flowstone jobs tail`: a notification on `<schema>.tail` when jobs are inserted (carrying
the queue) and after every statement that sets jobs' state (an empty payload); the tail
reads the rows themselves through indexes (ids, the terminal timestamps).

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
-- Inserts: one NOTIFY per statement per queue, whatever their state. Ends: one NOTIFY per
-- statement that sets a terminal timestamp (acks, cancels, discards; never a claim, so
-- claims take no notification lock at commit), payload empty, neither rows nor a
-- transition table looked at; the tail finds what ended by those timestamps, in SQL. A row trigger
-- (one pg_notify per ended job) cost a bare 50,000-row ack up to a fifth more.
CREATE FUNCTION {schema}.notify_jobs_tail() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.tail', '');
        RETURN NULL;
    END IF;
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.tail', queue)
    FROM (SELECT DISTINCT queue FROM inserted) AS queues;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_tail_inserted AFTER INSERT ON {schema}.jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_jobs_tail();
CREATE TRIGGER jobs_notify_tail_ended
    AFTER UPDATE OF completed_at, discarded_at, cancelled_at ON {schema}.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_jobs_tail();
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
