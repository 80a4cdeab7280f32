-- Password-reset tokens: stored as HMAC-SHA256 keyed by Z4J_SECRET, valid
-- 30 minutes, single use; a completed reset consumes every outstanding one.
CREATE TABLE password_reset_tokens (
    id                      blob PRIMARY KEY,
    user_id                 blob NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash              varchar(64) NOT NULL,
    expires_at              text NOT NULL,
    used_at                 text,
    created_at              text NOT NULL,
    CONSTRAINT uq_password_reset_tokens_token UNIQUE (token_hash)
);
CREATE INDEX ix_password_reset_tokens_user ON password_reset_tokens (user_id);
