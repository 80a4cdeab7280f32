-- HMAC-chained audit log: which key signed each row, the User-Agent, and
-- the signed chain state (head, prune point, count). Rows are never
-- updated; only the retention sweep deletes (an oldest-first prefix).
ALTER TABLE audit_log ADD COLUMN user_agent text;
ALTER TABLE audit_log ADD COLUMN hmac_key_id varchar(64);
CREATE UNIQUE INDEX uq_audit_log_prev_row_hmac ON audit_log (prev_row_hmac)
    WHERE prev_row_hmac IS NOT NULL;

CREATE TABLE audit_chain_state (
    singleton_id            varchar(32) PRIMARY KEY CHECK (singleton_id = 'audit-chain'),
    head_id                 bigint,
    head_row_hmac           varchar(64),
    head_occurred_at        text,
    prune_row_hmac          varchar(64),
    row_count               bigint NOT NULL DEFAULT 0 CHECK (row_count >= 0),
    state_mac               varchar(64)
);
INSERT INTO audit_chain_state (singleton_id, row_count) VALUES ('audit-chain', 0);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
