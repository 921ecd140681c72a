-- Audit hash version 2: every stored column sealed (PHR_API.md §5, ARCHITECTURE.md "Audit hash chain").
--
-- hash_version says which formula a row's event_hash follows: rows written before this migration keep
-- version 1 (the column default) and keep verifying under it; the server writes version 2 from now on.
-- chain_id names the chain a row belongs to; each chain is linked by previous_hash in id order and never
-- forks. Existing rows form the chain 'main'. Adding columns with constant defaults rewrites no row, so the
-- append-only trigger is not involved.

ALTER TABLE d_audit_event ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE d_audit_event ADD COLUMN chain_id VARCHAR(64) NOT NULL DEFAULT 'main';

-- The writer reads each chain's head (its newest row) under the chain lock.
CREATE INDEX d_audit_event_chain_idx ON d_audit_event (chain_id, id);
