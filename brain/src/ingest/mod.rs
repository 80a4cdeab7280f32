//! Event ingest: `event_batch` → rows → one group-committing writer.

pub mod fingerprint;
pub mod prepare;
pub mod ratelimit;
pub mod redact;
pub mod writer;

use crate::settings::Settings;
use crate::store::Db;
use ratelimit::ProjectLimiter;
use redact::Redactor;
use uuid::Uuid;
use writer::{Commit, IngestWriter, WriteError};
use z4j_protocol::frame::EventBatch;

/// What became of one batch (spec 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed: ack it.
    Durable,
    /// Not written, worth re-sending: no ack.
    Transient,
    /// Unusable for good: ack it so the agent deletes it.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchResult {
    pub received: u64,
    pub accepted: u64,
    pub outcome: Outcome,
}

/// How to treat a batch over the project's event budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    Wait,
    Refuse,
}

pub struct Ingestor {
    writer: IngestWriter,
    redactor: Redactor,
    limiter: ProjectLimiter,
    /// Mutant `event-rate-limit-off`.
    unlimited: bool,
}

impl Ingestor {
    pub fn new(
        settings: &Settings,
        db: Db,
        alerts: crate::notify::Alerts,
        live: std::sync::Arc<crate::fleet::live::Live>,
    ) -> (Ingestor, tokio::task::JoinHandle<()>) {
        let (writer, handle) = IngestWriter::spawn(db, alerts, live);
        let extra: Vec<String> = settings.redaction_extra_key_patterns.0.clone();
        (
            Ingestor {
                writer,
                redactor: Redactor::new(settings.max_payload_size_bytes.max(128) as usize, &extra),
                limiter: ProjectLimiter::new(settings.ratelimit_events_per_second.max(1) as u64),
                unlimited: settings.mutant(crate::settings::mutant::Mutant::EventRateLimitOff),
            },
            handle,
        )
    }

    /// Ingests a verified batch; `None` when refused by the rate limit.
    pub async fn ingest(
        &self,
        project_id: Uuid,
        agent_id: Uuid,
        batch: &EventBatch,
        over_limit: OverLimit,
    ) -> Option<BatchResult> {
        Some(
            self.submit(project_id, agent_id, batch, over_limit)
                .await?
                .result()
                .await,
        )
    }

    /// Prepares a batch and hands it to the writer without waiting for the
    /// commit; `None` when refused by the rate limit.
    pub async fn submit(
        &self,
        project_id: Uuid,
        agent_id: Uuid,
        batch: &EventBatch,
        over_limit: OverLimit,
    ) -> Option<Submitted> {
        let Some(events) = &batch.events else {
            return Some(Submitted::Ready(BatchResult {
                received: 0,
                accepted: 0,
                outcome: Outcome::Drop,
            }));
        };
        let received = events.len() as u64;
        if received > 0 {
            match over_limit {
                _ if self.unlimited => {}
                OverLimit::Wait => self.limiter.acquire(project_id, received).await,
                OverLimit::Refuse => {
                    if !self.limiter.try_acquire(project_id, received) {
                        return None;
                    }
                }
            }
        }
        let now = chrono::Utc::now().timestamp_micros();
        let rows: Vec<_> = events
            .iter()
            .filter_map(|e| prepare::prepare(e, &project_id, now, &self.redactor).ok())
            .collect();
        if rows.is_empty() {
            return Some(Submitted::Ready(BatchResult {
                received,
                accepted: 0,
                outcome: Outcome::Durable,
            }));
        }
        Some(match self.writer.submit(project_id, agent_id, rows).await {
            Ok(commit) => Submitted::Writing { received, commit },
            Err(e) => Submitted::Ready(failed(received, e)),
        })
    }
}

/// A batch handed to the writer.
pub enum Submitted {
    Ready(BatchResult),
    Writing { received: u64, commit: Commit },
}

impl Submitted {
    /// Waits for the commit.
    pub async fn result(self) -> BatchResult {
        match self {
            Submitted::Ready(r) => r,
            Submitted::Writing { received, commit } => match commit.committed().await {
                Ok(accepted) => BatchResult {
                    received,
                    accepted,
                    outcome: Outcome::Durable,
                },
                Err(e) => failed(received, e),
            },
        }
    }
}

fn failed(received: u64, e: WriteError) -> BatchResult {
    let outcome = match e {
        WriteError::Transient(e) => {
            tracing::warn!(error = %e, "event batch not written (transient); the agent re-sends it");
            Outcome::Transient
        }
        WriteError::Permanent(e) => {
            tracing::error!(error = %e, "event batch dropped (permanent database error)");
            Outcome::Drop
        }
    };
    BatchResult {
        received,
        accepted: 0,
        outcome,
    }
}
