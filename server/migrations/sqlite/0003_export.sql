-- Phase F: durable export jobs and the signed download URLs issued for their artifacts.
-- (SQLite twin of the PostgreSQL migration: same tables, columns and constraints.)
--
-- Times are epoch milliseconds (BIGINT) so that heartbeat staleness and expiry compare the same way on
-- PostgreSQL and SQLite; the API renders them as RFC 3339. A job row is the whole state machine:
-- PENDING -> RUNNING -> SUCCEEDED | FAILED, PENDING -> CANCELLED, SUCCEEDED -> EXPIRED; a RUNNING row whose
-- heartbeat went stale goes back to PENDING (or to FAILED after max attempts). lease_id identifies the run
-- that owns a RUNNING row: every worker update is conditional on it, so a worker that lost its job can never
-- overwrite the run that replaced it.

CREATE TABLE phr_async_job (
    job_id           VARCHAR(36) PRIMARY KEY,
    facility_id      VARCHAR(64) NOT NULL,
    job_type         VARCHAR(32) NOT NULL DEFAULT 'PHR_EXPORT',
    state            VARCHAR(16) NOT NULL
                     CHECK (state IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'EXPIRED')),
    requested_by     VARCHAR(128) NOT NULL,
    trace_id         VARCHAR(256),
    request_json     TEXT NOT NULL,
    patient_count    BIGINT NOT NULL,
    progress         BIGINT NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts         BIGINT NOT NULL DEFAULT 0,
    queued_at_ms     BIGINT NOT NULL,
    started_at_ms    BIGINT,
    finished_at_ms   BIGINT,
    heartbeat_at_ms  BIGINT,
    lease_id         VARCHAR(36),
    worker_id        VARCHAR(128),
    storage_type     VARCHAR(16),
    artifact_key     VARCHAR(1024),
    artifact_bytes   BIGINT,
    error_code       VARCHAR(64),
    error_message    TEXT
);

-- Claiming takes the oldest PENDING job; recovery scans RUNNING jobs by heartbeat.
CREATE INDEX phr_async_job_state_idx ON phr_async_job (state, queued_at_ms);
CREATE INDEX phr_async_job_facility_idx ON phr_async_job (facility_id, queued_at_ms);

-- One row per issued download URL. The token itself is never stored (it is recomputed from the nonce);
-- consumed_at_ms is set by exactly one conditional UPDATE, which is what makes a URL single-use.
CREATE TABLE phr_export_signed_url (
    nonce            VARCHAR(64) PRIMARY KEY,
    job_id           VARCHAR(36) NOT NULL REFERENCES phr_async_job (job_id),
    facility_id      VARCHAR(64) NOT NULL,
    expires_at       BIGINT NOT NULL,
    issued_at_ms     BIGINT NOT NULL,
    issued_to        VARCHAR(128),
    consumed_at_ms   BIGINT,
    consumed_by      VARCHAR(128)
);

CREATE INDEX phr_export_signed_url_job_idx ON phr_export_signed_url (job_id, expires_at);
