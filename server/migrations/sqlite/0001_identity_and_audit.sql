-- Facilities, PHR users (Basic auth) and the tamper-evident audit trail (same columns as PostgreSQL;
-- event_time is stored as RFC 3339 text with millisecond precision).

CREATE TABLE facility (
    facility_id      TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    facility_number  TEXT,
    zip_code         TEXT,
    address          TEXT,
    telephone        TEXT
);

CREATE TABLE phr_user (
    facility_id    TEXT NOT NULL REFERENCES facility (facility_id),
    user_id        TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    display_name   TEXT,
    role           TEXT NOT NULL DEFAULT 'user',
    PRIMARY KEY (facility_id, user_id)
);

CREATE TABLE d_audit_event (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    event_time          TEXT NOT NULL,
    actor_id            TEXT,
    actor_display_name  TEXT,
    actor_role          TEXT,
    action              TEXT NOT NULL,
    resource            TEXT,
    patient_id          TEXT,
    request_id          TEXT,
    trace_id            TEXT,
    ip_address          TEXT,
    user_agent          TEXT,
    payload_hash        TEXT NOT NULL,
    previous_hash       TEXT,
    event_hash          TEXT NOT NULL,
    payload             TEXT,
    run_id              TEXT,
    outcome             TEXT NOT NULL CHECK (outcome IN ('success', 'failed'))
);

CREATE INDEX d_audit_event_event_time_idx ON d_audit_event (event_time);
CREATE INDEX d_audit_event_action_idx ON d_audit_event (action);
CREATE INDEX d_audit_event_trace_id_idx ON d_audit_event (trace_id);

CREATE TRIGGER d_audit_event_no_update BEFORE UPDATE ON d_audit_event
BEGIN
    SELECT RAISE(ABORT, 'd_audit_event is append-only: UPDATE refused');
END;

CREATE TRIGGER d_audit_event_no_delete BEFORE DELETE ON d_audit_event
BEGIN
    SELECT RAISE(ABORT, 'd_audit_event is append-only: DELETE refused');
END;
