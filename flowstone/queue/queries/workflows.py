"""The statements of the `job_deps` table: a workflow's pending dependencies, and the
effects of a job's end on the jobs waiting on it.

`EFFECTS` is a run of common table expressions that every statement ending jobs
(acknowledging, cancelling, rescuing, deleting) carries after a CTE named `ended`
(`id`, `state`, `meta` of the jobs it ended), the way the asset layer wakes dependents
in the statement that finishes a materialization (`JobQueries.wake_with`). Its reads
are fresh because the transaction took its workflows' advisory locks (`LOCK`) in an
earlier statement: two jobs of one workflow ending at once take turns, so the second
sees the first's effects and the last dependency to finish wakes the job waiting on it.
"""

from __future__ import annotations

# A dependent whose dependency was discarded or cancelled is cancelled in turn (and so
# on down the graph) unless it ignores that state (meta.workflow.ignore), its error entry
# saying so (`kind` 'dependency', the `dependency`'s id: what a retry re-arms); a dependent
# none of whose dependencies is left becomes available; a batch's callback gets the
# counts per state of the batch's jobs (those ended by this statement as they end).
EFFECTS = """
ended_flow AS (
    SELECT id, state::text AS state FROM ended
    WHERE meta ? 'workflow' AND state::text IN ('completed', 'discarded', 'cancelled')
), doomed (id, cause, cause_state) AS (
    SELECT d.job_id, e.id, e.state
    FROM {deps} AS d JOIN ended_flow AS e ON d.dep_id = e.id JOIN {jobs} AS c ON c.id = d.job_id
    WHERE e.state <> 'completed' AND c.state = 'scheduled'
      AND NOT coalesce(c.meta -> 'workflow' -> 'ignore' ? e.state, false)
    UNION
    SELECT d.job_id, x.id, 'cancelled'
    FROM {deps} AS d JOIN doomed AS x ON d.dep_id = x.id JOIN {jobs} AS c ON c.id = d.job_id
    WHERE c.state = 'scheduled' AND NOT coalesce(c.meta -> 'workflow' -> 'ignore' ? 'cancelled', false)
), settled AS (
    SELECT id FROM ended_flow UNION SELECT id FROM doomed
), unlinked AS (
    DELETE FROM {deps} AS d USING settled AS s WHERE d.dep_id = s.id RETURNING d.job_id
), doomed_cancelled AS (
    UPDATE {jobs} AS j SET state = 'cancelled', cancelled_at = now(),
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', now(), 'traceback', NULL,
            'error', 'cancelled: its dependency (job ' || x.cause || ') was ' || x.cause_state,
            'kind', 'dependency', 'dependency', x.cause))
    FROM (SELECT DISTINCT ON (id) id, cause, cause_state FROM doomed ORDER BY id, cause) AS x
    WHERE j.id = x.id AND j.state = 'scheduled'
    RETURNING j.id
), released AS (
    UPDATE {jobs} AS j SET state = 'available', scheduled_at = now(),
        meta = CASE WHEN j.meta -> 'batch' ? 'callback'
                    THEN jsonb_set(j.meta, '{{batch,counts}}', (
                        SELECT coalesce(jsonb_object_agg(s, n), '{{}}') FROM (
                            SELECT coalesce(e.state::text, m.state::text) AS s, count(*) AS n
                            FROM {jobs} AS m LEFT JOIN ended AS e ON e.id = m.id
                            WHERE m.meta ? 'workflow' AND m.id <> j.id
                              AND (m.meta -> 'workflow' ->> 'id') = (j.meta -> 'workflow' ->> 'id')
                            GROUP BY 1) AS per_state))
                    ELSE j.meta END
    WHERE j.state = 'scheduled' AND j.id IN (
        SELECT d.job_id FROM {deps} AS d JOIN settled AS s ON d.dep_id = s.id
        WHERE NOT EXISTS (SELECT 1 FROM doomed AS x WHERE x.id = d.job_id)
          AND NOT EXISTS (SELECT 1 FROM {deps} AS r WHERE r.job_id = d.job_id
                          AND NOT EXISTS (SELECT 1 FROM settled AS s2 WHERE s2.id = r.dep_id)))
    RETURNING j.id
)
"""

# Advisory locks of the transaction, taken in one order (by key) so that transactions
# taking several never deadlock on them: a limited queue's claims, a workflow's ends
# and appends.
LOCK = """
SELECT pg_advisory_xact_lock(key) IS NULL AS locked FROM (
    SELECT DISTINCT hashtextextended(name, 0) AS key FROM unnest(%(names)s::text[]) AS name ORDER BY 1
) AS keys
"""

INSERT_DEPS = """
INSERT INTO {deps} (dep_id, job_id)
SELECT dep_id, job_id FROM jsonb_to_recordset(%(edges)s::jsonb) AS e(dep_id bigint, job_id bigint)
ON CONFLICT DO NOTHING
"""

# A workflow's jobs (the partial index holds only jobs with a workflow), with how many
# of its dependencies each one still waits on.
WORKFLOW_JOBS = """
SELECT {columns}, (SELECT count(*) FROM {deps} AS d WHERE d.job_id = jobs.id) AS waiting_on
FROM {jobs} AS jobs
WHERE meta ? 'workflow' AND (meta -> 'workflow' ->> 'id') = %(workflow)s
ORDER BY id
"""

# Retrying a workflow (workflow_retry.py): a failed job or a dependent its failure
# cancelled waits again on its pending dependencies (their rows written just before).
REARM = """
UPDATE {jobs} AS j SET state = 'scheduled', scheduled_at = %(held)s,
    max_attempts = GREATEST(max_attempts, attempt + 1),
    completed_at = NULL, discarded_at = NULL, cancelled_at = NULL
WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('discarded', 'cancelled')
RETURNING {columns}
"""
