-- Every d_audit_event row written for this run (joined by X-Trace-Id = RUN_ID or RUN_ID-<probe>),
-- by action and outcome. Run before and after each phase: the delta belongs to that phase's probes.
-- Portable between PostgreSQL and SQLite.
SELECT action, outcome, count(*) AS count
FROM d_audit_event
WHERE trace_id = '{{run_id}}' OR trace_id LIKE '{{run_id}}-%'
GROUP BY action, outcome
ORDER BY action, outcome;
