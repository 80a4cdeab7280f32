-- Project invitations: a single-use token (stored as HMAC-SHA256 keyed by
-- Z4J_SECRET) that creates an account with a membership when accepted.
CREATE TABLE invitations (
    id                      blob PRIMARY KEY,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    email                   varchar(320) NOT NULL,
    role                    varchar(20) NOT NULL,
    invited_by              blob REFERENCES users (id) ON DELETE SET NULL,
    token_hash              varchar(64) NOT NULL,
    expires_at              text NOT NULL,
    accepted_at             text,
    accepted_by             blob REFERENCES users (id) ON DELETE SET NULL,
    revoked_at              text,
    created_at              text NOT NULL,
    CONSTRAINT uq_invitations_token UNIQUE (token_hash)
);
CREATE INDEX ix_invitations_project ON invitations (project_id, created_at);
