-- Notification channels of a project (config encrypted at rest), the
-- project's trigger → channel routes, the delivery log, and the claims
-- that make an agent.offline alert fire once per offline episode.
CREATE TABLE notification_channels (
    id                      blob PRIMARY KEY,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name                    varchar(200) NOT NULL,
    type                    varchar(20) NOT NULL,
    config                  text NOT NULL,
    is_active               boolean NOT NULL DEFAULT 1,
    created_at              text NOT NULL,
    updated_at              text NOT NULL,
    CONSTRAINT uq_notification_channels_project_name UNIQUE (project_id, name)
);

CREATE TABLE project_default_subscriptions (
    id                      blob PRIMARY KEY,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    trigger                 varchar(40) NOT NULL,
    project_channel_ids     text NOT NULL DEFAULT '[]',
    cooldown_seconds        integer NOT NULL DEFAULT 0,
    last_fired_at           text,
    created_at              text NOT NULL,
    CONSTRAINT uq_project_default_subscriptions UNIQUE (project_id, trigger)
);

CREATE TABLE notification_deliveries (
    id                      blob PRIMARY KEY,
    project_id              blob NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    channel_id              blob REFERENCES notification_channels (id) ON DELETE SET NULL,
    trigger                 varchar(40) NOT NULL,
    task_id                 varchar(200),
    task_name               varchar(500),
    status                  varchar(20) NOT NULL,
    response_code           integer,
    response_body           text,
    error                   text,
    attempts                integer NOT NULL DEFAULT 0,
    channel_name            varchar(200),
    channel_type            varchar(20),
    sent_at                 text NOT NULL
);
CREATE INDEX ix_notification_deliveries_project_sent ON notification_deliveries (project_id, sent_at, id);

CREATE TABLE agent_offline_alerts (
    agent_id                blob NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    anchor_at               text NOT NULL,
    created_at              text NOT NULL,
    PRIMARY KEY (agent_id, anchor_at)
);
