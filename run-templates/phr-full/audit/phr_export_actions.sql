-- Phase F: the export and signed-URL rows of this run (PHR_EXPORT_% and PHR_SIGNED_URL_%), by action and
-- outcome, joined by X-Trace-Id = RUN_ID or RUN_ID-<probe>. Run before and after each Phase-F step: the
-- delta belongs to that step's probe. `\_` keeps the underscores literal; portable between PostgreSQL and SQLite.
SELECT action, outcome, count(*) AS count
FROM d_audit_event
WHERE (trace_id = '{{run_id}}' OR trace_id LIKE '{{run_id}}-%')
  AND (action LIKE 'PHR\_EXPORT\_%' ESCAPE '\' OR action LIKE 'PHR\_SIGNED\_URL\_%' ESCAPE '\')
GROUP BY action, outcome
ORDER BY action, outcome;
