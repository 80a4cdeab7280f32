-- The scheduler surface (legacy protocol): schedule state and provenance,
-- one fire-history row per fire_id, and the per-identity fire-rate buckets
-- shared by every replica.
ALTER TABLE schedules ADD COLUMN priority varchar(20) NOT NULL DEFAULT 'normal';
ALTER TABLE schedules ADD COLUMN paused_at timestamptz;
ALTER TABLE schedules ADD COLUMN catch_up varchar(32) NOT NULL DEFAULT 'skip'
    CHECK (catch_up IN ('skip', 'fire_one_missed', 'fire_all_missed'));
ALTER TABLE schedules ADD COLUMN overlap_policy varchar(32) NOT NULL DEFAULT 'allow';
ALTER TABLE schedules ADD COLUMN source varchar(64) NOT NULL DEFAULT 'dashboard';
ALTER TABLE schedules ADD COLUMN source_hash varchar(128);
ALTER TABLE schedules ADD COLUMN last_fire_id uuid;
ALTER TABLE schedules ADD COLUMN external_id varchar(200);
-- ListSchedules and the watch poll read one owner's rows in id order.
CREATE INDEX ix_schedules_scheduler_id ON schedules (scheduler, id);

ALTER TABLE schedule_fires ADD COLUMN triggered_by_user_id uuid REFERENCES users (id) ON DELETE SET NULL;
CREATE UNIQUE INDEX uq_schedule_fires_fire_id ON schedule_fires (fire_id);
-- The breaker reads a schedule's newest rows; retention deletes by age.
CREATE INDEX ix_schedule_fires_fired_at ON schedule_fires (fired_at);

-- Replay finds a project's buffers per engine, oldest slot first.
CREATE INDEX ix_pending_fires_project_engine ON pending_fires (project_id, engine, scheduled_for);

CREATE TABLE scheduler_rate_buckets (
    cert_cn                 varchar(255) PRIMARY KEY,
    tokens                  double precision NOT NULL,
    last_refill             timestamptz NOT NULL,
    capacity                double precision NOT NULL,
    refill_per_second       double precision NOT NULL,
    updated_at              timestamptz NOT NULL
);
