-- Initial schema (SQLite). Same tables as the PostgreSQL schema; blobs are
-- 16-byte blobs, timestamps fixed-width UTC text, json is text.

CREATE TABLE z4j_meta (
    key   varchar(100) PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE projects (
    id                      blob PRIMARY KEY,
    slug                    varchar(63) NOT NULL,
    name                    varchar(200) NOT NULL,
    description             text,
    environment             varchar(40) NOT NULL DEFAULT 'production',
    timezone                varchar(64) NOT NULL DEFAULT 'UTC',
    is_active               boolean NOT NULL DEFAULT 1,
    settings                text NOT NULL DEFAULT '{}',
    created_at              text NOT NULL,
    updated_at              text NOT NULL,
    CONSTRAINT uq_projects_slug UNIQUE (slug)
);
CREATE INDEX ix_projects_active ON projects (is_active);

CREATE TABLE users (
    id                      blob PRIMARY KEY,
    email                   varchar(320) NOT NULL,
    password_hash           text NOT NULL,
    display_name            varchar(200),
    first_name              varchar(100),
    last_name               varchar(100),
    is_admin                boolean NOT NULL DEFAULT 0,
    is_active               boolean NOT NULL DEFAULT 1,
    timezone                varchar(64) NOT NULL DEFAULT 'UTC',
    last_login_at           text,
    failed_login_count      integer NOT NULL DEFAULT 0,
    locked_until            text,
    last_failed_login_at    text,
    password_changed_at     text,
    mfa_secret_encrypted    blob,
    mfa_enrolled_at         text,
    created_at              text NOT NULL,
    updated_at              text NOT NULL,
    CONSTRAINT uq_users_email UNIQUE (email)
);

CREATE TABLE sessions (
    id                      blob PRIMARY KEY,
    user_id                 blob NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token              varchar(64) NOT NULL,
    issued_at               text NOT NULL,
    expires_at              text NOT NULL,
    last_seen_at            text NOT NULL,
    revoked_at              text,
    revocation_reason       varchar(40),
    ip_at_issue             varchar(64) NOT NULL,
    user_agent_at_issue     varchar(256),
    mfa_verified_at         text
);
CREATE INDEX ix_sessions_user_id ON sessions (user_id);
CREATE INDEX ix_sessions_expires_at ON sessions (expires_at);

CREATE TABLE memberships (
    id                      blob PRIMARY KEY,
    user_id                 blob NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role                    varchar(20) NOT NULL DEFAULT 'viewer'
                            CHECK (role IN ('viewer', 'auditor', 'operator', 'admin')),
    created_at              text NOT NULL,
    updated_at              text NOT NULL,
    CONSTRAINT uq_memberships_user_project UNIQUE (user_id, project_id)
);
CREATE INDEX ix_memberships_project_id ON memberships (project_id);

CREATE TABLE api_keys (
    id                      blob PRIMARY KEY,
    user_id                 blob NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id              blob REFERENCES projects (id) ON DELETE CASCADE,
    name                    varchar(200) NOT NULL,
    token_hash              text NOT NULL,
    prefix                  varchar(8) NOT NULL,
    scopes                  text NOT NULL DEFAULT '[]',
    last_used_at            text,
    expires_at              text,
    revoked_at              text,
    created_at              text NOT NULL,
    CONSTRAINT uq_api_keys_token_hash UNIQUE (token_hash)
);

CREATE TABLE first_boot_tokens (
    id                      blob PRIMARY KEY,
    token_hash              varchar(64) NOT NULL,
    expires_at              text NOT NULL,
    created_at              text NOT NULL
);

-- Failed setup-token verifications, per source address (the sliding-window
-- budget of Z4J_FIRST_BOOT_ATTEMPTS_PER_IP, shared by every replica).
CREATE TABLE setup_attempts (
    id                      blob PRIMARY KEY,
    ip                      varchar(64) NOT NULL,
    reason                  varchar(40) NOT NULL,
    attempted_at            text NOT NULL
);
CREATE INDEX ix_setup_attempts_ip_at ON setup_attempts (ip, attempted_at);

CREATE TABLE agents (
    id                      blob PRIMARY KEY,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name                    varchar(200) NOT NULL,
    token_hash              text NOT NULL,
    protocol_version        varchar(20) NOT NULL DEFAULT '2',
    framework_adapter       varchar(40) NOT NULL DEFAULT 'unknown',
    engine_adapters         text NOT NULL DEFAULT '[]',
    scheduler_adapters      text NOT NULL DEFAULT '[]',
    capabilities            text NOT NULL DEFAULT '{}',
    state                   varchar(20) NOT NULL DEFAULT 'unknown'
                            CHECK (state IN ('online', 'offline', 'unknown')),
    last_seen_at            text,
    last_connect_at         text,
    metadata                text NOT NULL DEFAULT '{}',
    revoked_at              text,
    created_at              text NOT NULL,
    updated_at              text NOT NULL,
    CONSTRAINT uq_agents_token_hash UNIQUE (token_hash),
    CONSTRAINT uq_agents_project_name UNIQUE (project_id, name)
);
CREATE INDEX ix_agents_last_seen_at ON agents (last_seen_at);
CREATE INDEX ix_agents_project_state ON agents (project_id, state);

CREATE TABLE agent_workers (
    id                      blob PRIMARY KEY,
    agent_id                blob NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    worker_id               varchar(128),
    role                    varchar(32),
    framework               varchar(40),
    pid                     integer,
    started_at              text,
    state                   varchar(20) NOT NULL DEFAULT 'online',
    last_seen_at            text,
    last_connect_at         text,
    created_at              text NOT NULL,
    updated_at              text NOT NULL,
    CONSTRAINT uq_agent_workers_agent_worker UNIQUE (agent_id, worker_id)
);
CREATE UNIQUE INDEX ux_agent_workers_legacy_agent ON agent_workers (agent_id) WHERE worker_id IS NULL;

CREATE TABLE workers (
    id                      blob PRIMARY KEY,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    engine                  varchar(40) NOT NULL,
    name                    varchar(200) NOT NULL,
    hostname                varchar(255),
    pid                     integer,
    concurrency             integer,
    queues                  text NOT NULL DEFAULT '[]',
    state                   varchar(20) NOT NULL DEFAULT 'unknown'
                            CHECK (state IN ('online', 'offline', 'draining', 'unknown')),
    last_heartbeat          text,
    active_tasks            integer NOT NULL DEFAULT 0,
    metadata                text NOT NULL DEFAULT '{}',
    created_at              text NOT NULL,
    updated_at              text NOT NULL,
    CONSTRAINT uq_workers_project_engine_name UNIQUE (project_id, engine, name)
);

CREATE TABLE queues (
    id                      blob PRIMARY KEY,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    engine                  varchar(40) NOT NULL,
    name                    varchar(200) NOT NULL,
    last_seen_at            text,
    pending_count           integer NOT NULL DEFAULT 0,
    consumer_count          integer NOT NULL DEFAULT 0,
    metadata                text NOT NULL DEFAULT '{}',
    created_at              text NOT NULL,
    updated_at              text NOT NULL,
    CONSTRAINT uq_queues_project_engine_name UNIQUE (project_id, engine, name)
);

CREATE TABLE tasks (
    id                      blob PRIMARY KEY,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    engine                  varchar(40) NOT NULL,
    task_id                 varchar(200) NOT NULL,
    name                    varchar(500) NOT NULL DEFAULT 'unknown',
    queue                   varchar(200),
    state                   varchar(20) NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'received', 'started', 'success', 'failure',
                                             'retry', 'revoked', 'rejected', 'unknown')),
    priority                varchar(20) NOT NULL DEFAULT 'normal',
    args                    text,
    kwargs                  text,
    result                  text,
    exception               text,
    traceback               text,
    retry_count             integer NOT NULL DEFAULT 0,
    received_at             text,
    started_at              text,
    finished_at             text,
    runtime_ms              bigint,
    worker_name             varchar(200),
    parent_task_id          varchar(200),
    root_task_id            varchar(200),
    created_at              text NOT NULL,
    updated_at              text NOT NULL,
    CONSTRAINT uq_tasks_project_engine_task_id UNIQUE (project_id, engine, task_id)
);
CREATE INDEX ix_tasks_project_state_started ON tasks (project_id, state, started_at);
CREATE INDEX ix_tasks_project_name ON tasks (project_id, name);
CREATE INDEX ix_tasks_project_queue ON tasks (project_id, queue);
CREATE INDEX ix_tasks_project_finished ON tasks (project_id, finished_at);

-- Not partitioned on SQLite; the retention worker deletes in batches.
CREATE TABLE events (
    id                      blob NOT NULL,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    agent_id                blob NOT NULL REFERENCES agents (id) ON DELETE RESTRICT,
    engine                  varchar(40) NOT NULL,
    task_id                 varchar(200) NOT NULL DEFAULT '',
    kind                    varchar(80) NOT NULL,
    occurred_at             text NOT NULL,
    payload                 text NOT NULL DEFAULT '{}',
    CONSTRAINT pk_events PRIMARY KEY (project_id, occurred_at, id)
) WITHOUT ROWID;
CREATE INDEX ix_events_project_task ON events (project_id, task_id, occurred_at);
CREATE INDEX ix_events_project_kind ON events (project_id, kind, occurred_at);

CREATE TABLE commands (
    id                      blob PRIMARY KEY,
    project_id              blob NOT NULL,
    issued_by               blob REFERENCES users (id) ON DELETE SET NULL,
    agent_id                blob,
    action                  varchar(80) NOT NULL,
    target_type             varchar(40) NOT NULL,
    target_id               varchar(200),
    payload                 text NOT NULL DEFAULT '{}',
    idempotency_key         varchar(200),
    status                  varchar(20) NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'dispatched', 'completed', 'failed',
                                              'timeout', 'cancelled')),
    result                  text,
    error                   text,
    issued_at               text NOT NULL,
    dispatched_at           text,
    completed_at            text,
    timeout_at              text NOT NULL,
    source_ip               varchar(64),
    CONSTRAINT uq_commands_project_idempotency UNIQUE (project_id, idempotency_key)
);
CREATE INDEX ix_commands_project_status_issued ON commands (project_id, status, issued_at);
CREATE INDEX ix_commands_timeout_at ON commands (timeout_at);

CREATE TABLE audit_log (
    id                      integer PRIMARY KEY AUTOINCREMENT,
    occurred_at             text NOT NULL,
    project_id              blob,
    user_id                 blob,
    action                  varchar(80) NOT NULL,
    target_type             varchar(40),
    target_id               varchar(200),
    result                  varchar(20) NOT NULL DEFAULT 'success',
    outcome                 varchar(40),
    source_ip               varchar(64),
    metadata                text NOT NULL DEFAULT '{}',
    prev_row_hmac           varchar(64),
    row_hmac                varchar(64)
);
CREATE INDEX ix_audit_log_occurred_at ON audit_log (occurred_at);

CREATE TABLE schedules (
    id                      blob PRIMARY KEY,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    engine                  varchar(40) NOT NULL,
    scheduler               varchar(40) NOT NULL,
    name                    varchar(200) NOT NULL,
    task_name               varchar(500) NOT NULL,
    kind                    varchar(20) NOT NULL CHECK (kind IN ('cron', 'interval', 'solar', 'clocked')),
    expression              text NOT NULL,
    timezone                varchar(64) NOT NULL DEFAULT 'UTC',
    queue                   varchar(200),
    args                    text NOT NULL DEFAULT '[]',
    kwargs                  text NOT NULL DEFAULT '{}',
    is_enabled              boolean NOT NULL DEFAULT 1,
    last_run_at             text,
    next_run_at             text,
    total_runs              bigint NOT NULL DEFAULT 0,
    created_at              text NOT NULL,
    updated_at              text NOT NULL,
    CONSTRAINT uq_schedules_project_scheduler_name UNIQUE (project_id, scheduler, name)
);

CREATE TABLE schedule_fires (
    id                      blob PRIMARY KEY,
    fire_id                 blob NOT NULL,
    schedule_id             blob,
    project_id              blob,
    command_id              blob,
    status                  varchar(32) NOT NULL,
    scheduled_for           text NOT NULL,
    fired_at                text NOT NULL,
    acked_at                text,
    latency_ms              integer,
    error_code              varchar(64),
    error_message           varchar(2000)
);
CREATE INDEX ix_schedule_fires_schedule_recent ON schedule_fires (schedule_id, fired_at);

CREATE TABLE pending_fires (
    id                      blob PRIMARY KEY,
    fire_id                 blob NOT NULL,
    schedule_id             blob NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    engine                  varchar(40) NOT NULL,
    payload                 text NOT NULL,
    scheduled_for           text NOT NULL,
    enqueued_at             text NOT NULL,
    expires_at              text NOT NULL,
    CONSTRAINT uq_pending_fires_fire_id UNIQUE (fire_id)
);
CREATE INDEX ix_pending_fires_expires ON pending_fires (expires_at);
