-- Project invitations: a single-use token (stored as HMAC-SHA256 keyed by
-- Z4J_SECRET) that creates an account with a membership when accepted.
CREATE TABLE invitations (
    id                      uuid PRIMARY KEY,
    project_id              uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    email                   varchar(320) NOT NULL,
    role                    varchar(20) NOT NULL,
    invited_by              uuid REFERENCES users (id) ON DELETE SET NULL,
    token_hash              varchar(64) NOT NULL,
    expires_at              timestamptz NOT NULL,
    accepted_at             timestamptz,
    accepted_by             uuid REFERENCES users (id) ON DELETE SET NULL,
    revoked_at              timestamptz,
    created_at              timestamptz NOT NULL,
    CONSTRAINT uq_invitations_token UNIQUE (token_hash)
);
CREATE INDEX ix_invitations_project ON invitations (project_id, created_at);
