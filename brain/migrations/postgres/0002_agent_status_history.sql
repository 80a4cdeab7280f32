-- agent_status frames (spec 5.5): the per-agent health samples the
-- dashboard's agent health view reads.
CREATE TABLE agent_status_history (
    id                      uuid PRIMARY KEY,
    agent_id                uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    project_id              uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    worker_id               varchar(128),
    captured_at             timestamptz NOT NULL,
    telemetry_loss          jsonb,
    payload                 jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ix_agent_status_history_agent_captured ON agent_status_history (agent_id, captured_at);
