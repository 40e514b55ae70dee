"""Assets over time: data and code versions on records, waits, check results, dynamic
partitions.

Revision ID: 0007_asset_versions
Revises: 0006_queue_features
"""

from flowstone.queue.migrate import execute_ddl

revision = "0007_asset_versions"
down_revision = "0006_queue_features"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
-- `data_version`: what a success produced (a skip repeats the success it stands for);
-- `code_version`: the asset's code version when it ran; `stands_for`: the success a skip
-- stands for; `waiting_since`: when the current wait for a dependency that nothing was
-- materializing began (the wait is bounded by the asset's dependency_timeout).
ALTER TABLE {schema}.materializations
    ADD COLUMN code_version text,
    ADD COLUMN data_version text,
    ADD COLUMN stands_for bigint,
    ADD COLUMN waiting_since timestamptz;

-- Unfinished records by asset (and partition): what a finished materialization wakes,
-- whatever the run. Small: rows leave it as they finish.
CREATE INDEX materializations_waiting_idx ON {schema}.materializations (asset, partition)
    WHERE status IN ('pending', 'running');

-- The results of asset checks, per materialization.
CREATE TABLE {schema}.asset_check_results (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    materialization_id bigint NOT NULL REFERENCES {schema}.materializations (id) ON DELETE CASCADE,
    asset text NOT NULL,
    partition text NOT NULL DEFAULT '',
    check_name text NOT NULL,
    passed boolean NOT NULL,
    blocking boolean NOT NULL,
    description text,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    checked_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT check_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE INDEX asset_check_results_materialization_idx
    ON {schema}.asset_check_results (materialization_id);
CREATE INDEX asset_check_results_latest_idx
    ON {schema}.asset_check_results (asset, check_name, partition, id DESC);

-- The keys of dynamic partition sets, in the order they were added.
CREATE TABLE {schema}.dynamic_partitions (
    id bigint GENERATED ALWAYS AS IDENTITY,
    definition text NOT NULL,
    key text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (definition, key),
    CONSTRAINT key_length CHECK (char_length(key) BETWEEN 1 AND 255)
);
CREATE INDEX dynamic_partitions_order_idx ON {schema}.dynamic_partitions (definition, id);

-- The view lists the table's columns as they were when it was created: again, with the new.
CREATE OR REPLACE VIEW {schema}.latest_materializations AS
    SELECT DISTINCT ON (asset, partition) *
    FROM {schema}.materializations
    ORDER BY asset, partition, id DESC;
"""
    )


def downgrade() -> None:
    execute_ddl(
        """
DROP VIEW {schema}.latest_materializations;
DROP TABLE {schema}.dynamic_partitions;
DROP TABLE {schema}.asset_check_results;
DROP INDEX {schema}.materializations_waiting_idx;
ALTER TABLE {schema}.materializations
    DROP COLUMN code_version, DROP COLUMN data_version, DROP COLUMN stands_for,
    DROP COLUMN waiting_since;
CREATE VIEW {schema}.latest_materializations AS
    SELECT DISTINCT ON (asset, partition) *
    FROM {schema}.materializations
    ORDER BY asset, partition, id DESC;
"""
    )
