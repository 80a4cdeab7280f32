-- Failure grouping (dashboard spec 3.4): the fingerprint of a task's last
-- failure and when it failed, both kept across a later success.
ALTER TABLE tasks ADD COLUMN fingerprint varchar(32);
ALTER TABLE tasks ADD COLUMN last_failed_at text;
CREATE INDEX ix_tasks_project_fingerprint ON tasks (project_id, fingerprint);
