-- Initial schema (PostgreSQL). Timestamps are timestamptz (UTC), enums are
-- text with CHECK constraints, arrays and maps are jsonb.

CREATE TABLE z4j_meta (
    key   varchar(100) PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE projects (
    id                      uuid PRIMARY KEY,
    slug                    varchar(63) NOT NULL,
    name                    varchar(200) NOT NULL,
    description             text,
    environment             varchar(40) NOT NULL DEFAULT 'production',
    timezone                varchar(64) NOT NULL DEFAULT 'UTC',
    is_active               boolean NOT NULL DEFAULT true,
    settings                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT uq_projects_slug UNIQUE (slug)
);
CREATE INDEX ix_projects_active ON projects (is_active);

CREATE TABLE users (
    id                      uuid PRIMARY KEY,
    email                   varchar(320) NOT NULL,
    password_hash           text NOT NULL,
    display_name            varchar(200),
    first_name              varchar(100),
    last_name               varchar(100),
    is_admin                boolean NOT NULL DEFAULT false,
    is_active               boolean NOT NULL DEFAULT true,
    timezone                varchar(64) NOT NULL DEFAULT 'UTC',
    last_login_at           timestamptz,
    failed_login_count      integer NOT NULL DEFAULT 0,
    locked_until            timestamptz,
    last_failed_login_at    timestamptz,
    password_changed_at     timestamptz,
    mfa_secret_encrypted    bytea,
    mfa_enrolled_at         timestamptz,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT uq_users_email UNIQUE (email)
);

CREATE TABLE sessions (
    id                      uuid PRIMARY KEY,
    user_id                 uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token              varchar(64) NOT NULL,
    issued_at               timestamptz NOT NULL,
    expires_at              timestamptz NOT NULL,
    last_seen_at            timestamptz NOT NULL,
    revoked_at              timestamptz,
    revocation_reason       varchar(40),
    ip_at_issue             varchar(64) NOT NULL,
    user_agent_at_issue     varchar(256),
    mfa_verified_at         timestamptz
);
CREATE INDEX ix_sessions_user_id ON sessions (user_id);
CREATE INDEX ix_sessions_expires_at ON sessions (expires_at);

CREATE TABLE memberships (
    id                      uuid PRIMARY KEY,
    user_id                 uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id              uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role                    varchar(20) NOT NULL DEFAULT 'viewer'
                            CHECK (role IN ('viewer', 'auditor', 'operator', 'admin')),
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT uq_memberships_user_project UNIQUE (user_id, project_id)
);
CREATE INDEX ix_memberships_project_id ON memberships (project_id);

CREATE TABLE api_keys (
    id                      uuid PRIMARY KEY,
    user_id                 uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id              uuid REFERENCES projects (id) ON DELETE CASCADE,
    name                    varchar(200) NOT NULL,
    token_hash              text NOT NULL,
    prefix                  varchar(8) NOT NULL,
    scopes                  jsonb NOT NULL DEFAULT '[]',
    last_used_at            timestamptz,
    expires_at              timestamptz,
    revoked_at              timestamptz,
    created_at              timestamptz NOT NULL,
    CONSTRAINT uq_api_keys_token_hash UNIQUE (token_hash)
);

CREATE TABLE first_boot_tokens (
    id                      uuid PRIMARY KEY,
    token_hash              varchar(64) NOT NULL,
    expires_at              timestamptz NOT NULL,
    created_at              timestamptz NOT NULL
);

-- Failed setup-token verifications, per source address (the sliding-window
-- budget of Z4J_FIRST_BOOT_ATTEMPTS_PER_IP, shared by every replica).
CREATE TABLE setup_attempts (
    id                      uuid PRIMARY KEY,
    ip                      varchar(64) NOT NULL,
    reason                  varchar(40) NOT NULL,
    attempted_at            timestamptz NOT NULL
);
CREATE INDEX ix_setup_attempts_ip_at ON setup_attempts (ip, attempted_at);

CREATE TABLE agents (
    id                      uuid PRIMARY KEY,
    project_id              uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name                    varchar(200) NOT NULL,
    token_hash              text NOT NULL,
    protocol_version        varchar(20) NOT NULL DEFAULT '2',
    framework_adapter       varchar(40) NOT NULL DEFAULT 'unknown',
    engine_adapters         jsonb NOT NULL DEFAULT '[]',
    scheduler_adapters      jsonb NOT NULL DEFAULT '[]',
    capabilities            jsonb NOT NULL DEFAULT '{}',
    state                   varchar(20) NOT NULL DEFAULT 'unknown'
                            CHECK (state IN ('online', 'offline', 'unknown')),
    last_seen_at            timestamptz,
    last_connect_at         timestamptz,
    metadata                jsonb NOT NULL DEFAULT '{}',
    revoked_at              timestamptz,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT uq_agents_token_hash UNIQUE (token_hash),
    CONSTRAINT uq_agents_project_name UNIQUE (project_id, name)
);
CREATE INDEX ix_agents_last_seen_at ON agents (last_seen_at);
CREATE INDEX ix_agents_project_state ON agents (project_id, state);

CREATE TABLE agent_workers (
    id                      uuid PRIMARY KEY,
    agent_id                uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    project_id              uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    worker_id               varchar(128),
    role                    varchar(32),
    framework               varchar(40),
    pid                     integer,
    started_at              timestamptz,
    state                   varchar(20) NOT NULL DEFAULT 'online',
    last_seen_at            timestamptz,
    last_connect_at         timestamptz,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT uq_agent_workers_agent_worker UNIQUE (agent_id, worker_id)
);
CREATE UNIQUE INDEX ux_agent_workers_legacy_agent ON agent_workers (agent_id) WHERE worker_id IS NULL;

CREATE TABLE workers (
    id                      uuid PRIMARY KEY,
    project_id              uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    engine                  varchar(40) NOT NULL,
    name                    varchar(200) NOT NULL,
    hostname                varchar(255),
    pid                     integer,
    concurrency             integer,
    queues                  jsonb NOT NULL DEFAULT '[]',
    state                   varchar(20) NOT NULL DEFAULT 'unknown'
                            CHECK (state IN ('online', 'offline', 'draining', 'unknown')),
    last_heartbeat          timestamptz,
    active_tasks            integer NOT NULL DEFAULT 0,
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT uq_workers_project_engine_name UNIQUE (project_id, engine, name)
);

CREATE TABLE queues (
    id                      uuid PRIMARY KEY,
    project_id              uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    engine                  varchar(40) NOT NULL,
    name                    varchar(200) NOT NULL,
    last_seen_at            timestamptz,
    pending_count           integer NOT NULL DEFAULT 0,
    consumer_count          integer NOT NULL DEFAULT 0,
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT uq_queues_project_engine_name UNIQUE (project_id, engine, name)
);

CREATE TABLE tasks (
    id                      uuid PRIMARY KEY,
    project_id              uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    engine                  varchar(40) NOT NULL,
    task_id                 varchar(200) NOT NULL,
    name                    varchar(500) NOT NULL DEFAULT 'unknown',
    queue                   varchar(200),
    state                   varchar(20) NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'received', 'started', 'success', 'failure',
                                             'retry', 'revoked', 'rejected', 'unknown')),
    priority                varchar(20) NOT NULL DEFAULT 'normal',
    args                    jsonb,
    kwargs                  jsonb,
    result                  jsonb,
    exception               text,
    traceback               text,
    retry_count             integer NOT NULL DEFAULT 0,
    received_at             timestamptz,
    started_at              timestamptz,
    finished_at             timestamptz,
    runtime_ms              bigint,
    worker_name             varchar(200),
    parent_task_id          varchar(200),
    root_task_id            varchar(200),
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT uq_tasks_project_engine_task_id UNIQUE (project_id, engine, task_id)
);
CREATE INDEX ix_tasks_project_state_started ON tasks (project_id, state, started_at);
CREATE INDEX ix_tasks_project_name ON tasks (project_id, name);
CREATE INDEX ix_tasks_project_queue ON tasks (project_id, queue);
CREATE INDEX ix_tasks_project_finished ON tasks (project_id, finished_at);

-- Time-partitioned by day; the retention worker creates and drops children.
CREATE TABLE events (
    id                      uuid NOT NULL,
    project_id              uuid NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    agent_id                uuid NOT NULL REFERENCES agents (id) ON DELETE RESTRICT,
    engine                  varchar(40) NOT NULL,
    task_id                 varchar(200) NOT NULL DEFAULT '',
    kind                    varchar(80) NOT NULL,
    occurred_at             timestamptz NOT NULL,
    payload                 jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT pk_events PRIMARY KEY (project_id, occurred_at, id)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX ix_events_project_task ON events (project_id, task_id, occurred_at);
CREATE INDEX ix_events_project_kind ON events (project_id, kind, occurred_at);

CREATE TABLE commands (
    id                      uuid PRIMARY KEY,
    project_id              uuid NOT NULL,
    issued_by               uuid REFERENCES users (id) ON DELETE SET NULL,
    agent_id                uuid,
    action                  varchar(80) NOT NULL,
    target_type             varchar(40) NOT NULL,
    target_id               varchar(200),
    payload                 jsonb NOT NULL DEFAULT '{}',
    idempotency_key         varchar(200),
    status                  varchar(20) NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'dispatched', 'completed', 'failed',
                                              'timeout', 'cancelled')),
    result                  jsonb,
    error                   text,
    issued_at               timestamptz NOT NULL,
    dispatched_at           timestamptz,
    completed_at            timestamptz,
    timeout_at              timestamptz NOT NULL,
    source_ip               varchar(64),
    CONSTRAINT uq_commands_project_idempotency UNIQUE (project_id, idempotency_key)
);
CREATE INDEX ix_commands_project_status_issued ON commands (project_id, status, issued_at);
CREATE INDEX ix_commands_timeout_at ON commands (timeout_at);

CREATE TABLE audit_log (
    id                      bigserial PRIMARY KEY,
    occurred_at             timestamptz NOT NULL,
    project_id              uuid,
    user_id                 uuid,
    action                  varchar(80) NOT NULL,
    target_type             varchar(40),
    target_id               varchar(200),
    result                  varchar(20) NOT NULL DEFAULT 'success',
    outcome                 varchar(40),
    source_ip               varchar(64),
    metadata                jsonb NOT NULL DEFAULT '{}',
    prev_row_hmac           varchar(64),
    row_hmac                varchar(64)
);
CREATE INDEX ix_audit_log_occurred_at ON audit_log (occurred_at);

CREATE TABLE schedules (
    id                      uuid PRIMARY KEY,
    project_id              uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    engine                  varchar(40) NOT NULL,
    scheduler               varchar(40) NOT NULL,
    name                    varchar(200) NOT NULL,
    task_name               varchar(500) NOT NULL,
    kind                    varchar(20) NOT NULL CHECK (kind IN ('cron', 'interval', 'solar', 'clocked')),
    expression              text NOT NULL,
    timezone                varchar(64) NOT NULL DEFAULT 'UTC',
    queue                   varchar(200),
    args                    jsonb NOT NULL DEFAULT '[]',
    kwargs                  jsonb NOT NULL DEFAULT '{}',
    is_enabled              boolean NOT NULL DEFAULT true,
    last_run_at             timestamptz,
    next_run_at             timestamptz,
    total_runs              bigint NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT uq_schedules_project_scheduler_name UNIQUE (project_id, scheduler, name)
);

CREATE TABLE schedule_fires (
    id                      uuid PRIMARY KEY,
    fire_id                 uuid NOT NULL,
    schedule_id             uuid,
    project_id              uuid,
    command_id              uuid,
    status                  varchar(32) NOT NULL,
    scheduled_for           timestamptz NOT NULL,
    fired_at                timestamptz NOT NULL,
    acked_at                timestamptz,
    latency_ms              integer,
    error_code              varchar(64),
    error_message           varchar(2000)
);
CREATE INDEX ix_schedule_fires_schedule_recent ON schedule_fires (schedule_id, fired_at);

CREATE TABLE pending_fires (
    id                      uuid PRIMARY KEY,
    fire_id                 uuid NOT NULL,
    schedule_id             uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    project_id              uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    engine                  varchar(40) NOT NULL,
    payload                 jsonb NOT NULL,
    scheduled_for           timestamptz NOT NULL,
    enqueued_at             timestamptz NOT NULL,
    expires_at              timestamptz NOT NULL,
    CONSTRAINT uq_pending_fires_fire_id UNIQUE (fire_id)
);
CREATE INDEX ix_pending_fires_expires ON pending_fires (expires_at);
