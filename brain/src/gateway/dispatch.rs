//! What the brain does with a verified agent→brain frame (spec 5), the same
//! for both transports.

use super::Gateway;
use crate::ingest::{Outcome, OverLimit, Submitted};
use crate::metrics::Metrics;
use crate::settings::mutant::Mutant;
use crate::store::{agents, observed, Ts};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;
use z4j_protocol::frame::{
    AgentStatus, CommandAck, CommandResult, EventBatch, EventBatchAck, Heartbeat,
};
use z4j_protocol::json::Object;
use z4j_protocol::FrameType;

/// `agent_status` frames kept per connection per rolling minute.
const STATUS_PER_MINUTE: usize = 12;
/// How stale the cached "agent still admitted" answer may be. Revocation
/// through the REST route kicks sockets at once; this bounds how long a
/// revocation made on another replica takes to be noticed.
const ADMISSION_RECHECK: Duration = Duration::from_secs(1);

/// One authenticated session (a WebSocket, or a long-poll session).
pub struct ConnCtx {
    pub agent_id: Uuid,
    pub project_id: Uuid,
    pub worker_id: Option<String>,
    status_window: Mutex<VecDeque<Instant>>,
    admitted_at: Mutex<Option<Instant>>,
}

impl ConnCtx {
    pub fn new(agent_id: Uuid, project_id: Uuid, worker_id: Option<String>) -> ConnCtx {
        ConnCtx {
            agent_id,
            project_id,
            worker_id,
            status_window: Mutex::new(VecDeque::new()),
            admitted_at: Mutex::new(Some(Instant::now())),
        }
    }

    async fn still_admitted(&self, state: &Gateway) -> Result<bool, crate::store::StoreError> {
        let fresh = self
            .admitted_at
            .lock()
            .map(|t| t.is_some_and(|t| t.elapsed() < ADMISSION_RECHECK))
            .unwrap_or(false);
        if fresh {
            return Ok(true);
        }
        let ok = agents::still_admitted(&state.db, self.agent_id).await?;
        if let Ok(mut t) = self.admitted_at.lock() {
            *t = ok.then(Instant::now);
        }
        Ok(ok)
    }

    fn status_allowed(&self) -> bool {
        let now = Instant::now();
        let Ok(mut w) = self.status_window.lock() else {
            return false;
        };
        while w
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            w.pop_front();
        }
        if w.len() >= STATUS_PER_MINUTE {
            return false;
        }
        w.push_back(now);
        true
    }
}

/// The result of handling one frame.
#[derive(Debug)]
pub enum Handled {
    /// Processed; nothing to send back.
    Done,
    /// An `event_batch` that is durable (or permanently unusable): ack it.
    Ack(EventBatchAck),
    /// Not processed, worth re-sending (no ack).
    Transient,
    /// An `event_batch` handed to the writer; resolve it for the ack.
    Writing(PendingAck),
    /// Long-poll only: over the project's event budget; re-send later.
    RateLimited,
    /// The agent was revoked or its project archived.
    Revoked,
}

pub async fn handle(
    state: &Gateway,
    conn: &ConnCtx,
    frame_type: FrameType,
    frame: &Object,
    over_limit: OverLimit,
) -> Handled {
    match conn.still_admitted(state).await {
        Ok(true) => {}
        Ok(false) => return Handled::Revoked,
        Err(e) => {
            tracing::warn!(error = %e, "admission re-check failed");
            return Handled::Transient;
        }
    }
    let result = match frame_type {
        FrameType::EventBatch => return event_batch(state, conn, frame, over_limit).await,
        FrameType::Heartbeat => heartbeat(state, conn, frame).await,
        FrameType::AgentStatus => agent_status(state, conn, frame).await,
        FrameType::CommandAck => {
            let ack = CommandAck::from_frame(frame);
            match ack
                .command_id
                .as_deref()
                .and_then(|i| Uuid::parse_str(i).ok())
            {
                Some(id) => {
                    state
                        .commands
                        .on_ack(id, conn.agent_id, conn.project_id)
                        .await
                }
                None => Ok(()),
            }
        }
        FrameType::CommandResult => {
            let r = CommandResult::from_frame(frame);
            match r
                .command_id
                .as_deref()
                .and_then(|i| Uuid::parse_str(i).ok())
            {
                Some(id) => {
                    state
                        .commands
                        .on_result(id, conn.agent_id, conn.project_id, &r)
                        .await
                }
                None => Ok(()),
            }
        }
        other => {
            tracing::debug!(frame_type = other.as_wire(), "frame verified and ignored");
            Ok(())
        }
    };
    match result {
        Ok(()) => Handled::Done,
        Err(e) => {
            tracing::warn!(error = %e, frame_type = frame_type.as_wire(), "frame not recorded");
            Handled::Transient
        }
    }
}

async fn event_batch(
    state: &Gateway,
    conn: &ConnCtx,
    frame: &Object,
    over_limit: OverLimit,
) -> Handled {
    let started = Instant::now();
    let batch = EventBatch::from_frame(frame);
    for v in batch.limit_violations() {
        tracing::warn!(violation = %v, "event_batch over a documented limit");
    }
    let Some(submitted) = state
        .ingestor
        .submit(conn.project_id, conn.agent_id, &batch, over_limit)
        .await
    else {
        return Handled::RateLimited;
    };
    Handled::Writing(PendingAck {
        acked_id: batch.id.unwrap_or_default(),
        submitted,
        started,
        metrics: state.metrics.clone(),
    })
}

/// An `event_batch` on its way to the database.
pub struct PendingAck {
    acked_id: String,
    submitted: Submitted,
    /// When the frame was dispatched (ack latency).
    started: Instant,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for PendingAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAck")
            .field("acked_id", &self.acked_id)
            .finish_non_exhaustive()
    }
}

impl PendingAck {
    /// Mutation testing only: an ack sent before the commit, when the
    /// counts are not known yet (both zero).
    pub fn ack_now(&self) -> EventBatchAck {
        EventBatchAck {
            acked_id: self.acked_id.clone(),
            received: 0,
            accepted: 0,
        }
    }

    /// Waits for the commit: [`Handled::Ack`] or [`Handled::Transient`].
    pub async fn resolve(self) -> Handled {
        let result = self.submitted.result().await;
        match result.outcome {
            Outcome::Durable | Outcome::Drop => {
                let m = &self.metrics;
                m.events_received
                    .fetch_add(result.received, Ordering::Relaxed);
                m.events_ingested
                    .fetch_add(result.accepted, Ordering::Relaxed);
                m.events_rejected.fetch_add(
                    result.received.saturating_sub(result.accepted),
                    Ordering::Relaxed,
                );
                m.ack_latency.observe(self.started.elapsed());
                Handled::Ack(EventBatchAck {
                    acked_id: self.acked_id,
                    received: result.received,
                    accepted: result.accepted,
                })
            }
            Outcome::Transient => Handled::Transient,
        }
    }
}

async fn heartbeat(
    state: &Gateway,
    conn: &ConnCtx,
    frame: &Object,
) -> Result<(), crate::store::StoreError> {
    let hb = Heartbeat::from_frame(frame);
    let now = Ts::now();
    agents::touch(&state.db, conn.agent_id, conn.worker_id.as_deref(), now).await?;
    let observed_at = frame
        .get("ts")
        .and_then(|v| v.as_str())
        .and_then(z4j_protocol::isotime::parse_python_isoformat)
        .map(|t| crate::ingest::prepare::ts_from_micros(t.micros))
        .unwrap_or(now);
    for (key, value) in &hb.adapter_health {
        if let Some(engine) = key.strip_suffix(".worker_details") {
            let workers = observed::parse_worker_details(value);
            observed::set_worker_details(&state.db, conn.project_id, engine, &workers, observed_at)
                .await?;
        }
        if let Some(engine) = key.strip_suffix(".queue_depths") {
            let depths = observed::parse_queue_depths(value);
            let keep = if state.settings.mutant(Mutant::DepthLastKept) {
                observed::MinuteDepth::Last
            } else {
                observed::MinuteDepth::Highest
            };
            observed::set_queue_depths(
                &state.db,
                conn.project_id,
                engine,
                &depths,
                observed_at,
                keep,
            )
            .await?;
        }
    }
    if hb.dropped_events > 0 {
        tracing::warn!(agent_id = %conn.agent_id, dropped = hb.dropped_events, "agent reports dropped events");
    }
    Ok(())
}

async fn agent_status(
    state: &Gateway,
    conn: &ConnCtx,
    frame: &Object,
) -> Result<(), crate::store::StoreError> {
    if !conn.status_allowed() {
        return Ok(());
    }
    let status = AgentStatus::from_frame(frame);
    let captured = frame
        .get("ts")
        .and_then(|v| v.as_str())
        .and_then(z4j_protocol::isotime::parse_python_isoformat)
        .map(|t| crate::ingest::prepare::ts_from_micros(t.micros))
        .unwrap_or_else(Ts::now);
    if let Err(e) = observed::record_status(
        &state.db,
        conn.agent_id,
        conn.project_id,
        conn.worker_id.as_deref(),
        captured,
        &status.payload,
    )
    .await
    {
        // Spec 5.5: persistence failures are logged and ignored.
        tracing::warn!(error = %e, "agent_status not recorded");
    }
    Ok(())
}
