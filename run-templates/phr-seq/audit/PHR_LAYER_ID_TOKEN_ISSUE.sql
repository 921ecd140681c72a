-- Phase-C PHR-06: d_audit_event rows written for this run (joined by X-Trace-Id = RUN_ID or RUN_ID-<probe>).
-- Portable between PostgreSQL and SQLite.
SELECT action, outcome, count(*) AS count
FROM d_audit_event
WHERE (trace_id = '{{run_id}}' OR trace_id LIKE '{{run_id}}-%')
  AND action LIKE 'PHR_LAYER_ID%'
GROUP BY action, outcome
ORDER BY action, outcome;
