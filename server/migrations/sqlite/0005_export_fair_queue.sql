-- Phase F's fair queue (server/src/export/queue.rs): per-facility caps and turns instead of one FIFO.
--
-- started_seq numbers the claims: each claim sets it one past the largest so far, under the claim lock, so
-- "the facility whose latest run started longest ago" is exact across instances whatever their clocks say.
-- Jobs claimed before this migration have none and count as never started. The indexes make the per-facility
-- questions of admission and claiming (PENDING and RUNNING counts, latest start) index lookups.

ALTER TABLE phr_async_job ADD COLUMN started_seq BIGINT;

CREATE INDEX phr_async_job_facility_state_idx ON phr_async_job (facility_id, state);
CREATE INDEX phr_async_job_facility_started_idx ON phr_async_job (facility_id, started_seq);
CREATE INDEX phr_async_job_started_seq_idx ON phr_async_job (started_seq);
