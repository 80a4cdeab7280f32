//! The single ingest writer: every connection hands its prepared batches to
//! one task that group-commits whatever is waiting (one transaction, one
//! fsync, for many frames), then answers each batch. A batch is answered only
//! after its commit, so an ack always means "durable".

use super::prepare::{EventRow, TaskPatch, TaskState};
use crate::fleet::live::{Live, Topic};
use crate::notify::{Alert, Alerts};
use crate::store::ingest::{self as rows, Frame};
use crate::store::{Db, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Frames waiting beyond this go into the next transaction.
pub const MAX_GROUP_FRAMES: usize = 512;
pub const MAX_GROUP_ROWS: usize = 10_000;
const QUEUE_DEPTH: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Worth retrying (lock, connection, pool): the batch is not acked.
    #[error("transient database error: {0}")]
    Transient(String),
    /// Deterministic: retrying cannot help; the batch is dropped (acked).
    #[error("permanent database error: {0}")]
    Permanent(String),
}

struct Job {
    project_id: Uuid,
    agent_id: Uuid,
    rows: Vec<EventRow>,
    reply: oneshot::Sender<Result<u64, WriteError>>,
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct IngestWriter {
    tx: mpsc::Sender<Job>,
}

impl IngestWriter {
    /// The writer task; `live` hears `task.changed` for every project a
    /// commit stored new rows for.
    pub fn spawn(
        db: Db,
        alerts: Alerts,
        live: Arc<Live>,
    ) -> (IngestWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let handle = tokio::spawn(run(db, rx, alerts, live));
        (IngestWriter { tx }, handle)
    }

    /// Writes one batch; returns how many rows were newly inserted once they
    /// are committed.
    pub async fn write(
        &self,
        project_id: Uuid,
        agent_id: Uuid,
        rows: Vec<EventRow>,
    ) -> Result<u64, WriteError> {
        self.submit(project_id, agent_id, rows)
            .await?
            .committed()
            .await
    }

    /// Queues one batch for the writer (waiting only for queue room) and
    /// returns a handle to its commit. Batches are written in submission
    /// order, so a connection may keep many in flight.
    pub async fn submit(
        &self,
        project_id: Uuid,
        agent_id: Uuid,
        rows: Vec<EventRow>,
    ) -> Result<Commit, WriteError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            project_id,
            agent_id,
            rows,
            reply,
        };
        self.tx
            .send(job)
            .await
            .map_err(|_| WriteError::Transient("ingest writer stopped".into()))?;
        Ok(Commit(answer))
    }
}

/// A submitted batch; resolves once its transaction committed (or failed).
pub struct Commit(oneshot::Receiver<Result<u64, WriteError>>);

impl Commit {
    pub async fn committed(self) -> Result<u64, WriteError> {
        self.0
            .await
            .map_err(|_| WriteError::Transient("ingest writer stopped".into()))?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Job>, alerts: Alerts, live: Arc<Live>) {
    // After the commit, once per project per group: the hub throttles.
    let changed = |project: Uuid, n: u64, told: &mut Vec<Uuid>| {
        if n > 0 && !told.contains(&project) {
            told.push(project);
            live.publish(project, Topic::Task);
        }
    };
    while let Some(first) = rx.recv().await {
        let mut rows = first.rows.len();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_FRAMES && rows < MAX_GROUP_ROWS {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.rows.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        match write_group(&db, &group).await {
            Ok((counts, failed)) => {
                let mut told = Vec::new();
                for (job, n) in group.into_iter().zip(counts) {
                    changed(job.project_id, n, &mut told);
                    let _ = job.reply.send(Ok(n));
                }
                failed.into_iter().for_each(|a| alerts.raise(a));
            }
            // One bad frame must not cost the others: retry each alone.
            Err(e) if group.len() > 1 => {
                tracing::warn!(error = %e, frames = group.len(), "group commit failed; writing frames one by one");
                let mut told = Vec::new();
                for job in group {
                    let one = std::slice::from_ref(&job);
                    let result = write_group(&db, one)
                        .await
                        .map(|(c, failed)| {
                            failed.into_iter().for_each(|a| alerts.raise(a));
                            c.first().copied().unwrap_or(0)
                        })
                        .map_err(classify);
                    if let Ok(n) = result {
                        changed(job.project_id, n, &mut told);
                    }
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                let err = classify(e);
                for job in group {
                    let _ = job.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Spec 6.3: lock, connection and resource errors are transient (no ack,
/// the agent re-sends); constraint and data errors are permanent.
fn classify(e: StoreError) -> WriteError {
    if e.is_transient() {
        WriteError::Transient(e.to_string())
    } else {
        WriteError::Permanent(e.to_string())
    }
}

/// Writes a group in one transaction. Returns the new rows per job, and a
/// `task.failed` alert for every newly stored failure (raised only after
/// the commit).
async fn write_group(db: &Db, jobs: &[Job]) -> Result<(Vec<u64>, Vec<Alert>), StoreError> {
    let frames: Vec<Frame<'_>> = jobs
        .iter()
        .map(|j| Frame {
            project_id: j.project_id,
            agent_id: j.agent_id,
            rows: &j.rows,
        })
        .collect();
    let written = rows::write_group(db, &frames).await?;
    let failed = jobs
        .iter()
        .flat_map(|j| j.rows.iter().map(move |r| (j, r)))
        .zip(&written.inserted)
        .filter(|(_, new)| **new)
        .filter_map(|((job, row), _)| {
            let t = row
                .task
                .as_ref()
                .filter(|t| t.state == TaskState::Failure)?;
            Some(failure_alert(job.project_id, row, t))
        })
        .collect();
    Ok((written.counts, failed))
}

fn failure_alert(project_id: Uuid, row: &EventRow, t: &TaskPatch) -> Alert {
    let mut fields = serde_json::Map::new();
    fields.insert("engine".into(), row.engine.clone().into());
    fields.insert("state".into(), "failure".into());
    fields.insert("queue".into(), t.queue.clone().into());
    fields.insert("exception".into(), t.exception.clone().into());
    fields.insert("worker_name".into(), t.worker_name.clone().into());
    Alert {
        project_id,
        trigger: "task.failed",
        task_id: Some(row.task_id.clone()),
        task_name: Some(t.name.clone()),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_onto_ack_decisions() {
        assert!(matches!(
            classify(StoreError::Sqlx(sqlx::Error::PoolTimedOut)),
            WriteError::Transient(_)
        ));
        assert!(matches!(
            classify(StoreError::Conflict("x".into())),
            WriteError::Permanent(_)
        ));
    }
}
