-- Audit hash version 2: every stored column sealed (same columns as PostgreSQL; see its 0004 for the why).
-- Rows written before keep hash_version 1; existing rows form the chain 'main'.

ALTER TABLE d_audit_event ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE d_audit_event ADD COLUMN chain_id TEXT NOT NULL DEFAULT 'main';

CREATE INDEX d_audit_event_chain_idx ON d_audit_event (chain_id, id);
