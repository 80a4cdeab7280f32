-- Misfire episodes already announced (scheduler spec §5.5): one row per
-- (schedule, anchor), so replicas agree and an episode alerts once.
CREATE TABLE misfire_alerts (
    schedule_id             blob NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    anchor_at               text NOT NULL,
    created_at              text NOT NULL,
    PRIMARY KEY (schedule_id, anchor_at)
);
CREATE INDEX ix_misfire_alerts_created ON misfire_alerts (created_at);
