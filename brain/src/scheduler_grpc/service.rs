//! The `SchedulerService` handlers of the legacy (epoch 0) protocol.

use super::identity::Peer;
use super::watch::{self, Caps};
use super::wire;
use crate::schedules::{AckOutcome, FireOutcome, FireRequest, Schedules, Scope};
use crate::settings::{Settings, BRAIN_VERSION};
use crate::store::schedules as rows;
use crate::store::Ts;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use z4j_scheduler_proto::v1 as pb;
use z4j_scheduler_proto::v1::scheduler_service_server::SchedulerService;

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// At most this many fires hold a database transaction at once per
/// process; more wait (scheduler spec §1.9).
pub const FIRE_CONCURRENCY: usize = 8;

pub struct Service {
    pub settings: Arc<Settings>,
    pub schedules: Schedules,
    pub caps: Arc<Caps>,
    /// Closed at SIGTERM: new fires are refused from then on (§1.10).
    pub admitting: Arc<AtomicBool>,
    pub refused_while_draining: Arc<AtomicU64>,
    pub fire_slots: Semaphore,
    /// Set when the drain's grace is over: open watch streams end.
    pub cut: tokio::sync::watch::Receiver<bool>,
}

impl Service {
    async fn scope(&self, peer: &Peer) -> Result<Scope, Status> {
        peer.scope(
            self.schedules.db(),
            &self.settings.scheduler_grpc_cn_project_bindings.0,
        )
        .await
        .map_err(internal)
    }

    /// List/Watch: the projects to serve, from `project_id` and the
    /// binding (§2.5, §1.7).
    async fn listing_scope(&self, peer: &Peer, project_id: &str) -> Result<Scope, Status> {
        let scope = self.scope(peer).await?;
        if project_id.is_empty() {
            return Ok(scope);
        }
        let id = Uuid::parse_str(project_id)
            .map_err(|_| Status::invalid_argument(format!("invalid project_id '{project_id}'")))?;
        if !scope.permits(id) {
            return Err(denied_project());
        }
        Ok(Scope::Projects(vec![id]))
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "scheduler gRPC call failed");
    Status::internal("brain error")
}

fn denied_project() -> Status {
    Status::permission_denied("scheduler not authorised for this project")
}

fn peer_of<T>(r: &Request<T>) -> Peer {
    r.extensions().get::<Peer>().cloned().unwrap_or_default()
}

fn fire_error(code: &str, message: impl Into<String>) -> pb::FireScheduleResponse {
    pb::FireScheduleResponse {
        error_code: code.to_owned(),
        error_message: message.into(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl SchedulerService for Service {
    type ListSchedulesStream = Streamed<pb::Schedule>;
    type WatchSchedulesStream = Streamed<pb::ScheduleEvent>;
    type ListScheduleSnapshotStream = Streamed<pb::ScheduleSnapshotFrame>;
    type WatchSchedulesV2Stream = Streamed<pb::ScheduleWatchFrame>;

    async fn ping(
        &self,
        _r: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {
            brain_version: BRAIN_VERSION.to_owned(),
            brain_time: wire::timestamp(Some(Ts::now())),
            // Legacy only: the current protocol is not served (decision Y1).
            scheduler_protocol_epoch: 0,
        }))
    }

    async fn negotiate_scheduler_protocol(
        &self,
        _r: Request<pb::NegotiateSchedulerProtocolRequest>,
    ) -> Result<Response<pb::NegotiateSchedulerProtocolResponse>, Status> {
        // With Ping's epoch 0 this is what makes the stock scheduler choose
        // the legacy protocol (scheduler spec §2.3).
        Err(Status::unimplemented("Method not implemented!"))
    }

    async fn list_schedules(
        &self,
        r: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<Self::ListSchedulesStream>, Status> {
        let peer = peer_of(&r);
        let req = r.into_inner();
        let scope = self.listing_scope(&peer, &req.project_id).await?;
        let page = match req.page_size {
            n if n <= 0 => 100,
            n => i64::from(n.min(1000)),
        };
        let db = self.schedules.db().clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let walked = watch::for_each_page(&db, &scope, page, |batch| {
                let tx = tx.clone();
                async move {
                    for s in &batch {
                        if tx.send(Ok(wire::schedule(s))).await.is_err() {
                            return false;
                        }
                    }
                    true
                }
            })
            .await;
            if let Err(e) = walked {
                let _ = tx.send(Err(internal(e))).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn watch_schedules(
        &self,
        r: Request<pb::WatchSchedulesRequest>,
    ) -> Result<Response<Self::WatchSchedulesStream>, Status> {
        let peer = peer_of(&r);
        let req = r.into_inner();
        let scope = self.listing_scope(&peer, &req.project_id).await?;
        let slot = self.caps.acquire(&peer.watch_key())?;
        let resume = wire::parse_token(&req.resume_token);
        if resume.is_none() && !req.resume_token.trim().is_empty() {
            tracing::warn!(token = %req.resume_token, "malformed watch resume token ignored");
        }
        let poll =
            std::time::Duration::from_secs_f64(self.settings.scheduler_grpc_watch_poll_seconds);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(watch::run(
            self.schedules.db().clone(),
            scope,
            resume,
            poll,
            tx,
            slot,
            self.cut.clone(),
        ));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn fire_schedule(
        &self,
        r: Request<pb::FireScheduleRequest>,
    ) -> Result<Response<pb::FireScheduleResponse>, Status> {
        if !self.admitting.load(Ordering::Acquire) {
            self.refused_while_draining.fetch_add(1, Ordering::Relaxed);
            return Err(Status::unavailable(
                "brain is shutting down; retry this fire after it restarts",
            ));
        }
        let peer = peer_of(&r);
        let req = r.into_inner();
        let schedule_id = match Uuid::parse_str(&req.schedule_id) {
            Ok(u) => u,
            Err(e) => {
                return Ok(Response::new(fire_error(
                    "invalid_request",
                    format!("schedule_id: {e}"),
                )))
            }
        };
        let fire_id = match Uuid::parse_str(&req.fire_id) {
            Ok(u) => u,
            Err(e) => {
                return Ok(Response::new(fire_error(
                    "invalid_request",
                    format!("fire_id: {e}"),
                )))
            }
        };
        let version = fire_id.get_version_num();
        if version != 4 && version != 5 {
            return Ok(Response::new(fire_error(
                "invalid_request",
                format!("fire_id must be a version 4 or 5 UUID, got version {version}"),
            )));
        }
        let triggered_by = Uuid::parse_str(&req.triggered_by_user_id).ok();
        let key = peer.primary().to_owned();
        let limited = self.settings.scheduler_grpc_fire_rate_limit_enabled && !key.is_empty();
        if limited {
            let granted = rows::take_token(
                self.schedules.db(),
                &key,
                self.settings.scheduler_grpc_fire_rate_capacity,
                self.settings.scheduler_grpc_fire_rate_per_second,
            )
            .await
            .map_err(internal)?;
            if !granted {
                return Err(Status::resource_exhausted(
                    "FireSchedule rate limit exceeded for this scheduler",
                ));
            }
        }
        let scope = self.scope(&peer).await?;
        let outcome = {
            let _slot = self.fire_slots.acquire().await.map_err(internal)?;
            self.schedules
                .fire(
                    &FireRequest {
                        schedule_id,
                        fire_id,
                        scheduled_for: wire::instant(req.scheduled_for.as_ref()),
                        fired_at: wire::instant(req.fired_at.as_ref()),
                        triggered_by,
                    },
                    &scope,
                )
                .await
                .map_err(internal)?
        };
        if limited && outcome.refunds() {
            rows::refund_token(self.schedules.db(), &key)
                .await
                .map_err(internal)?;
        }
        let response = match outcome {
            FireOutcome::Delivered(id) => pb::FireScheduleResponse {
                command_id: id.to_string(),
                ..Default::default()
            },
            FireOutcome::Buffered => pb::FireScheduleResponse {
                buffered: true,
                ..Default::default()
            },
            FireOutcome::NotFound => fire_error(
                "schedule_not_found",
                format!("schedule {schedule_id} not in brain"),
            ),
            FireOutcome::Denied => return Err(denied_project()),
            FireOutcome::Disabled => fire_error("schedule_disabled", "schedule is disabled"),
            FireOutcome::Paused(at) => fire_error(
                "schedule_paused",
                format!("schedule is paused since {}", at.to_rfc3339()),
            ),
            FireOutcome::Failed(code, message) => fire_error(code, message),
        };
        Ok(Response::new(response))
    }

    async fn acknowledge_fire_result(
        &self,
        r: Request<pb::AcknowledgeFireResultRequest>,
    ) -> Result<Response<pb::AcknowledgeFireResultResponse>, Status> {
        let peer = peer_of(&r);
        let req = r.into_inner();
        let fire_id = Uuid::parse_str(&req.fire_id)
            .map_err(|_| Status::invalid_argument(format!("invalid fire_id '{}'", req.fire_id)))?;
        if !req.command_id.is_empty() && Uuid::parse_str(&req.command_id).is_err() {
            return Err(Status::invalid_argument(format!(
                "invalid command_id '{}'",
                req.command_id
            )));
        }
        let scope = self.scope(&peer).await?;
        match self
            .schedules
            .ack(fire_id, &req.status, &req.error, &scope)
            .await
            .map_err(internal)?
        {
            AckOutcome::Done => {}
            AckOutcome::Unknown => {
                tracing::info!(fire_id = %fire_id, "ack for an unknown fire ignored");
            }
            AckOutcome::Denied => return Err(denied_project()),
        }
        Ok(Response::new(pb::AcknowledgeFireResultResponse {}))
    }

    async fn trigger_schedule(
        &self,
        _r: Request<pb::TriggerScheduleRequest>,
    ) -> Result<Response<pb::TriggerScheduleResponse>, Status> {
        Err(Status::unimplemented("Method not implemented!"))
    }

    async fn list_schedule_snapshot(
        &self,
        _r: Request<pb::ListScheduleSnapshotRequest>,
    ) -> Result<Response<Self::ListScheduleSnapshotStream>, Status> {
        Err(Status::unimplemented("Method not implemented!"))
    }

    async fn watch_schedules_v2(
        &self,
        _r: Request<pb::WatchSchedulesV2Request>,
    ) -> Result<Response<Self::WatchSchedulesV2Stream>, Status> {
        Err(Status::unimplemented("Method not implemented!"))
    }

    async fn get_schedule_state(
        &self,
        _r: Request<pb::GetScheduleStateRequest>,
    ) -> Result<Response<pb::GetScheduleStateResponse>, Status> {
        Err(Status::unimplemented("Method not implemented!"))
    }

    async fn quarantine_schedule(
        &self,
        _r: Request<pb::QuarantineScheduleRequest>,
    ) -> Result<Response<pb::QuarantineScheduleResponse>, Status> {
        Err(Status::unimplemented("Method not implemented!"))
    }

    async fn advance_schedule_cursor(
        &self,
        _r: Request<pb::AdvanceScheduleCursorRequest>,
    ) -> Result<Response<pb::AdvanceScheduleCursorResponse>, Status> {
        Err(Status::unimplemented("Method not implemented!"))
    }
}
