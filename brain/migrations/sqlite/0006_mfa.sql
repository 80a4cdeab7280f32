-- TOTP second factor: the sealed secret (and one pending enrolment), the
-- replay high-water mark, the wrong-code lock, the enforcement grace
-- clock; single-use recovery codes; remembered devices.
ALTER TABLE users ADD COLUMN mfa_secret text;
ALTER TABLE users ADD COLUMN mfa_pending_secret text;
ALTER TABLE users ADD COLUMN mfa_last_step bigint;
ALTER TABLE users ADD COLUMN mfa_failed_count integer NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN mfa_locked_until text;
ALTER TABLE users ADD COLUMN mfa_enforcement_started_at text;

CREATE TABLE mfa_recovery_codes (
    id                      blob PRIMARY KEY,
    user_id                 blob NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash               varchar(64) NOT NULL,
    used_at                 text,
    created_at              text NOT NULL
);
CREATE INDEX ix_mfa_recovery_codes_user ON mfa_recovery_codes (user_id);

CREATE TABLE mfa_trusted_devices (
    id                      blob PRIMARY KEY,
    user_id                 blob NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash              varchar(64) NOT NULL,
    label                   varchar(200) NOT NULL,
    created_at              text NOT NULL,
    last_seen_at            text NOT NULL,
    expires_at              text NOT NULL,
    revoked_at              text,
    CONSTRAINT uq_mfa_trusted_devices_token UNIQUE (token_hash)
);
CREATE INDEX ix_mfa_trusted_devices_user ON mfa_trusted_devices (user_id);
