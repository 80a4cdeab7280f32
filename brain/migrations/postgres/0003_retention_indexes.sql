-- Dated partitions are dropped whole; rows that landed in the default
-- partition (days without a partition) are deleted in batches by age.
CREATE INDEX ix_events_default_occurred_at ON events_default (occurred_at);
CREATE INDEX ix_agent_status_history_captured ON agent_status_history (captured_at);
