-- The retention worker deletes expired events oldest first in batches;
-- without this index every batch would scan the whole table.
CREATE INDEX ix_events_occurred_at ON events (occurred_at);
CREATE INDEX ix_agent_status_history_captured ON agent_status_history (captured_at);
