-- The reconciliation sweep's stale-task query (store/reconcile.rs): only
-- in-flight tasks, by their age anchor. Without it every sweep scanned the
-- whole table (24.6 s at 3.6 million tasks in the soak on SQLite); under
-- 1 ms with it. Partial, so finished tasks cost it nothing.
CREATE INDEX ix_tasks_inflight_since ON tasks ((COALESCE(started_at, received_at, created_at)), id)
    WHERE state IN ('started', 'pending', 'retry');
