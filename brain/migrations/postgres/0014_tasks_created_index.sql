-- The task list's order (newest first, then id): without it every page of
-- a large project sorted all its tasks (a limit=1 page of 3.3 million
-- tasks outlived the 30 s request timeout on SQLite; 20 ms with it).
CREATE INDEX ix_tasks_project_created ON tasks (project_id, created_at, id);
