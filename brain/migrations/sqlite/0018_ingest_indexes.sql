-- Fewer B-trees per ingested event (issue 18, "lift the floor"); each
-- index left is the one a read query walks.
-- Retention deletes by project, a range of the primary key
-- (project_id, occurred_at, id); no read needs the instant alone.
DROP INDEX ix_events_occurred_at;
-- Only received and failed events are read by kind (the home counters and
-- recent failures): a partial index, which the other two thirds of the
-- events (started, succeeded, ...) no longer pay for.
DROP INDEX ix_events_project_kind;
CREATE INDEX ix_events_project_kind ON events (project_id, kind, occurred_at, id)
    WHERE kind IN ('task.received', 'task.failed');
-- Failure groups read only tasks that have a fingerprint.
DROP INDEX ix_tasks_project_fingerprint;
CREATE INDEX ix_tasks_project_fingerprint ON tasks (project_id, fingerprint)
    WHERE fingerprint IS NOT NULL;
