-- TOTP second factor: the sealed secret (and one pending enrolment), the
-- replay high-water mark, the wrong-code lock, the enforcement grace
-- clock; single-use recovery codes; remembered devices.
ALTER TABLE users ADD COLUMN mfa_secret text;
ALTER TABLE users ADD COLUMN mfa_pending_secret text;
ALTER TABLE users ADD COLUMN mfa_last_step bigint;
ALTER TABLE users ADD COLUMN mfa_failed_count integer NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN mfa_locked_until timestamptz;
ALTER TABLE users ADD COLUMN mfa_enforcement_started_at timestamptz;

CREATE TABLE mfa_recovery_codes (
    id                      uuid PRIMARY KEY,
    user_id                 uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash               varchar(64) NOT NULL,
    used_at                 timestamptz,
    created_at              timestamptz NOT NULL
);
CREATE INDEX ix_mfa_recovery_codes_user ON mfa_recovery_codes (user_id);

CREATE TABLE mfa_trusted_devices (
    id                      uuid PRIMARY KEY,
    user_id                 uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash              varchar(64) NOT NULL,
    label                   varchar(200) NOT NULL,
    created_at              timestamptz NOT NULL,
    last_seen_at            timestamptz NOT NULL,
    expires_at              timestamptz NOT NULL,
    revoked_at              timestamptz,
    CONSTRAINT uq_mfa_trusted_devices_token UNIQUE (token_hash)
);
CREATE INDEX ix_mfa_trusted_devices_user ON mfa_trusted_devices (user_id);
