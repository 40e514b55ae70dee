"""Materialization records of assets, their lineage, and the latest-per-partition view.

Revision ID: 0003_materializations
Revises: 0002_runtime
"""

from flowstone.queue.migrate import execute_ddl

revision = "0003_materializations"
down_revision = "0002_runtime"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
CREATE TYPE {schema}.materialization_status AS ENUM (
    'pending', 'running', 'success', 'failed', 'skipped'
);

-- One row per materialization job (a retried job updates its row; `attempt` tells which
-- try it is at). `partition` is the serialized key, '' for an unpartitioned asset.
-- `pending` means waiting (enqueued, snoozed on dependencies, or between retries);
-- `failed` is final for that job.
CREATE TABLE {schema}.materializations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset text NOT NULL,
    partition text NOT NULL DEFAULT '',
    run_id text NOT NULL,
    status {schema}.materialization_status NOT NULL DEFAULT 'pending',
    inserted_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    duration interval GENERATED ALWAYS AS (finished_at - started_at) STORED,
    error_type text,
    error_message text,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    job_id bigint,
    attempt smallint NOT NULL DEFAULT 0,
    CONSTRAINT asset_length CHECK (char_length(asset) BETWEEN 1 AND 128),
    CONSTRAINT metadata_is_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT finished_after_started CHECK (finished_at IS NULL OR started_at IS NULL
                                             OR finished_at >= started_at)
);

-- Latest record per (asset, partition): an index scan backwards, one row.
CREATE INDEX materializations_latest_idx ON {schema}.materializations (asset, partition, id DESC);
-- The latest finished (success/failed) record, for "already materialized?".
CREATE INDEX materializations_finished_idx ON {schema}.materializations (asset, partition, id DESC)
    WHERE status IN ('success', 'failed');
CREATE INDEX materializations_run_idx ON {schema}.materializations (run_id);
CREATE UNIQUE INDEX materializations_job_idx ON {schema}.materializations (job_id)
    WHERE job_id IS NOT NULL;

-- Lineage: which upstream materializations a materialization read.
CREATE TABLE {schema}.materialization_lineage (
    materialization_id bigint NOT NULL
        REFERENCES {schema}.materializations (id) ON DELETE CASCADE,
    upstream_id bigint NOT NULL REFERENCES {schema}.materializations (id) ON DELETE CASCADE,
    PRIMARY KEY (materialization_id, upstream_id)
);
CREATE INDEX materialization_lineage_upstream_idx
    ON {schema}.materialization_lineage (upstream_id);

-- A record reaching a final status notifies `<schema>.materializations` (JSON payload),
-- which `materialize(..., wait=True)` listens to instead of polling.
CREATE FUNCTION {schema}.notify_materialization_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        TG_TABLE_SCHEMA || '.materializations',
        json_build_object('id', NEW.id, 'asset', NEW.asset, 'partition', NEW.partition,
                          'run_id', NEW.run_id, 'job_id', NEW.job_id,
                          'status', NEW.status)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER materializations_notify_finished
    AFTER INSERT OR UPDATE OF status ON {schema}.materializations
    FOR EACH ROW WHEN (NEW.status IN ('success', 'failed', 'skipped'))
    EXECUTE FUNCTION {schema}.notify_materialization_finished();

CREATE VIEW {schema}.latest_materializations AS
    SELECT DISTINCT ON (asset, partition) *
    FROM {schema}.materializations
    ORDER BY asset, partition, id DESC;
"""
    )


def downgrade() -> None:
    execute_ddl(
        """
DROP VIEW {schema}.latest_materializations;
DROP TABLE {schema}.materialization_lineage;
DROP TABLE {schema}.materializations;
DROP FUNCTION {schema}.notify_materialization_finished();
DROP TYPE {schema}.materialization_status;
"""
    )
