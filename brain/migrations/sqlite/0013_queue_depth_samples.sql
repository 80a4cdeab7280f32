-- Queue depth over time (the dashboard's chart): the highest depth the
-- heartbeats reported per queue and minute, pruned with agent status
-- samples after Z4J_EVENT_RETENTION_DAYS.
CREATE TABLE queue_depth_samples (
    queue_id    blob NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    minute      text NOT NULL,
    depth       integer NOT NULL,
    PRIMARY KEY (queue_id, minute)
);
CREATE INDEX ix_queue_depth_samples_minute ON queue_depth_samples (minute);
