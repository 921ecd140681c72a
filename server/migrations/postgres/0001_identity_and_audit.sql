-- Facilities, PHR users (Basic auth) and the tamper-evident audit trail.
-- d_audit_event keeps the original server's columns so existing audit SQL works unchanged,
-- plus run_id and outcome.

CREATE TABLE facility (
    facility_id      VARCHAR(64) PRIMARY KEY,
    name             TEXT NOT NULL,
    facility_number  VARCHAR(32),
    zip_code         VARCHAR(16),
    address          TEXT,
    telephone        VARCHAR(32)
);

CREATE TABLE phr_user (
    facility_id    VARCHAR(64) NOT NULL REFERENCES facility (facility_id),
    user_id        VARCHAR(64) NOT NULL,
    password_hash  TEXT NOT NULL,
    display_name   VARCHAR(255),
    role           VARCHAR(64) NOT NULL DEFAULT 'user',
    PRIMARY KEY (facility_id, user_id)
);

CREATE TABLE d_audit_event (
    id                  BIGSERIAL PRIMARY KEY,
    event_time          TIMESTAMPTZ NOT NULL,
    actor_id            VARCHAR(128),
    actor_display_name  VARCHAR(255),
    actor_role          VARCHAR(64),
    action              VARCHAR(64) NOT NULL,
    resource            VARCHAR(512),
    patient_id          VARCHAR(64),
    request_id          VARCHAR(128),
    trace_id            VARCHAR(256),
    ip_address          VARCHAR(64),
    user_agent          VARCHAR(512),
    payload_hash        VARCHAR(64) NOT NULL,
    previous_hash       VARCHAR(64),
    event_hash          VARCHAR(64) NOT NULL,
    payload             TEXT,
    run_id              VARCHAR(128),
    outcome             VARCHAR(16) NOT NULL CHECK (outcome IN ('success', 'failed'))
);

CREATE INDEX d_audit_event_event_time_idx ON d_audit_event (event_time);
CREATE INDEX d_audit_event_action_idx ON d_audit_event (action);
CREATE INDEX d_audit_event_trace_id_idx ON d_audit_event (trace_id);

CREATE FUNCTION d_audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'd_audit_event is append-only: % refused', TG_OP;
END
$$;

CREATE TRIGGER d_audit_event_no_update_delete
    BEFORE UPDATE OR DELETE ON d_audit_event
    FOR EACH ROW EXECUTE FUNCTION d_audit_event_append_only();

CREATE TRIGGER d_audit_event_no_truncate
    BEFORE TRUNCATE ON d_audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION d_audit_event_append_only();
