"""Notifications of available jobs carry their claim key, so producers can start their
claims past the dead prefix of the claim index (see `flowstone.queue.floor`).

A long transaction anywhere in the database keeps every claimed job's entry in the claim
index; a claim walking them from the start slows with every job. A producer claims past
its floor (the last key it claimed), and these notifications lower that floor when a job
becomes available below it. The payload: `{"queue", "priority", "at", "id"}`.

Revision ID: 0012_claim_floor
Revises: 0011_cron_entries
"""

from flowstone.queue.migrate import execute_ddl

revision = "0012_claim_floor"
down_revision = "0011_cron_entries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
-- One NOTIFY per statement per queue, with the lowest (priority, scheduled_at, id) inserted.
CREATE OR REPLACE FUNCTION {schema}.notify_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.jobs', json_build_object(
        'queue', lowest.queue, 'priority', lowest.priority, 'at', lowest.scheduled_at, 'id', lowest.id)::text)
    FROM (SELECT DISTINCT ON (queue) queue, priority, scheduled_at, id FROM inserted
          WHERE state = 'available' ORDER BY queue, priority, scheduled_at, id) AS lowest;
    RETURN NULL;
END
$$;

-- Every committed UPDATE that leaves a job available announces it: the jobs made available
-- (staged, retried, woken, rescued, handed back) and the available jobs another statement
-- locked (a claim skipped them) or re-keyed. The key is rounded down to the second (id 0),
-- so Postgres folds the notifications of a batch (identical payloads of a transaction).
CREATE OR REPLACE FUNCTION {schema}.notify_jobs_available() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.jobs', json_build_object(
        'queue', NEW.queue, 'priority', NEW.priority,
        'at', date_trunc('second', NEW.scheduled_at), 'id', 0)::text);
    RETURN NULL;
END
$$;
DROP TRIGGER jobs_notify_available ON {schema}.jobs;
CREATE TRIGGER jobs_notify_available AFTER UPDATE ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.state = 'available')
    EXECUTE FUNCTION {schema}.notify_jobs_available();
"""
    )


def downgrade() -> None:
    execute_ddl(
        """
CREATE OR REPLACE FUNCTION {schema}.notify_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.jobs', queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'available') AS queues;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION {schema}.notify_jobs_available() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.jobs', NEW.queue);
    RETURN NULL;
END
$$;
DROP TRIGGER jobs_notify_available ON {schema}.jobs;
CREATE TRIGGER jobs_notify_available AFTER UPDATE OF state ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.state = 'available' AND OLD.state <> 'available')
    EXECUTE FUNCTION {schema}.notify_jobs_available();
"""
    )
