//! Schedules: the rules of a definition, and the legacy (epoch 0) fire
//! protocol the stock z4j-scheduler speaks: a fire becomes a
//! `schedule.fire` command to an online agent of the schedule's engine,
//! or a buffered fire when none is online; the scheduler's ack counts the
//! run (scheduler spec §2.7-§2.9). Used by the gRPC transport, the REST
//! routes and the replay and breaker workers.

pub mod validate;

use crate::audit::{self, AuditError, Entry};
use crate::commands::Commands;
use crate::settings::Settings;
use crate::store::agents::{self, Liveness};
use crate::store::commands::{Action, Command, Issued, NewCommand, Status};
use crate::store::schedules::{self as rows, FireStatus, FireWrite, Schedule};
use crate::store::{Db, StoreError, Ts};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The projects a caller may touch: all, or those its certificate is
/// bound to (scheduler spec §1.7).
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    Projects(Vec<Uuid>),
}

impl Scope {
    pub fn permits(&self, project: Uuid) -> bool {
        match self {
            Scope::All => true,
            Scope::Projects(ids) => ids.contains(&project),
        }
    }

    pub fn ids(&self) -> Option<&[Uuid]> {
        match self {
            Scope::All => None,
            Scope::Projects(ids) => Some(ids),
        }
    }
}

/// A `FireSchedule` call with its ids parsed.
pub struct FireRequest {
    pub schedule_id: Uuid,
    pub fire_id: Uuid,
    /// The slot as sent (`None` when the Timestamp was unset).
    pub scheduled_for: Option<DateTime<Utc>>,
    pub fired_at: Option<DateTime<Utc>>,
    pub triggered_by: Option<Uuid>,
}

/// What a fire came to.
#[derive(Debug, PartialEq)]
pub enum FireOutcome {
    Delivered(Uuid),
    Buffered,
    /// No `z4j-scheduler` schedule with that id (the token is refunded).
    NotFound,
    /// The schedule's project is outside the caller's binding.
    Denied,
    Disabled,
    Paused(Ts),
    /// `brain_error` or `command_failed`, with the (sanitised) message.
    Failed(&'static str, String),
}

impl FireOutcome {
    /// Refusals that give the rate-limit token back.
    pub fn refunds(&self) -> bool {
        matches!(
            self,
            FireOutcome::NotFound | FireOutcome::Disabled | FireOutcome::Paused(_)
        )
    }
}

/// What an ack came to.
#[derive(Debug, PartialEq)]
pub enum AckOutcome {
    /// Applied (or a repeat that changed nothing).
    Done,
    /// No such fire, or its schedule is gone: nothing to do.
    Unknown,
    Denied,
}

/// Error text as the scheduler is shown it: control characters dropped
/// (tab, printable ASCII and Latin-1 kept), at most 500 characters.
pub fn sanitise(text: &str) -> String {
    let kept: String = text
        .chars()
        .filter(|c| *c == '\t' || (' '..='~').contains(c) || ('\u{a0}'..='\u{ff}').contains(c))
        .collect();
    if kept.chars().count() > 500 {
        let mut cut: String = kept.chars().take(497).collect();
        cut.push_str("...");
        cut
    } else {
        kept
    }
}

/// Python's `datetime.isoformat()` of a UTC instant: microseconds only
/// when non-zero, `+00:00` offset (the form the agent and scheduler use).
pub fn iso(t: DateTime<Utc>) -> String {
    use chrono::Timelike;
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// The command payload of a fire (§2.7.3), also what a buffer stores.
pub fn fire_payload(s: &Schedule, r: &FireRequest) -> serde_json::Value {
    json!({
        "schedule_id": s.id,
        "schedule_name": s.name,
        "task_name": s.task_name,
        "engine": s.engine,
        "queue": s.queue,
        "args": s.args.0,
        "kwargs": s.kwargs.0,
        "fire_id": r.fire_id,
        "scheduled_for": r.scheduled_for.map(iso).unwrap_or_default(),
        "fired_at": r.fired_at.map(iso).unwrap_or_default(),
    })
}

pub fn idempotency_key(schedule_id: Uuid, fire_id: Uuid) -> String {
    format!("schedule:{schedule_id}:fire:{fire_id}")
}

/// A v5 id without a user is a cadence fire; anything else is manual.
pub fn is_cadence(fire_id: Uuid, triggered_by: Option<Uuid>) -> bool {
    fire_id.get_version_num() == 5 && triggered_by.is_none()
}

/// Of a project's agents, the online one running `engine` that was seen
/// most recently.
pub fn pick_agent(agents: &[agents::Agent], engine: &str) -> Option<Uuid> {
    agents
        .iter()
        .filter(|a| {
            a.state == Liveness::Online
                && a.revoked_at.is_none()
                && a.engine_adapters
                    .0
                    .as_array()
                    .is_some_and(|e| e.iter().any(|v| v.as_str() == Some(engine)))
        })
        .max_by_key(|a| a.last_seen_at)
        .map(|a| a.id)
}

/// The schedules service: cheap to clone.
#[derive(Clone)]
pub struct Schedules {
    settings: Arc<Settings>,
    db: Db,
    commands: Commands,
    alerts: crate::notify::Alerts,
    metrics: Arc<crate::metrics::Metrics>,
    /// Dashboards are told when a schedule's runs or state change (D14).
    live: Arc<crate::fleet::live::Live>,
}

/// Dashboards of the project refetch its schedules (decision D14): after
/// every committed schedule write, from REST and from the scheduler paths.
pub fn announce(live: &Arc<crate::fleet::live::Live>, settings: &Settings, project: Uuid) {
    if !settings.mutant(crate::settings::mutant::Mutant::ScheduleTopicSilent) {
        live.publish(project, crate::fleet::live::Topic::Schedule);
    }
}

impl Schedules {
    pub fn new(
        settings: Arc<Settings>,
        db: Db,
        commands: Commands,
        alerts: crate::notify::Alerts,
        metrics: Arc<crate::metrics::Metrics>,
        live: Arc<crate::fleet::live::Live>,
    ) -> Schedules {
        Schedules {
            settings,
            db,
            commands,
            alerts,
            metrics,
            live,
        }
    }

    /// After a committed change to a project's schedules or fires.
    fn changed(&self, project: Uuid) {
        announce(&self.live, &self.settings, project);
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The online agent that runs `engine` in the project, most recently
    /// seen first (§2.7.4).
    pub async fn agent_for(
        &self,
        project_id: Uuid,
        engine: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        Ok(pick_agent(
            &agents::list(&self.db, project_id).await?,
            engine,
        ))
    }

    /// `FireSchedule` on the legacy path, after admission, id checks and
    /// the rate limit (§2.7.1 steps 8-17).
    pub async fn fire(&self, r: &FireRequest, scope: &Scope) -> Result<FireOutcome, Error> {
        use chrono::SubsecRound;
        let slot = Ts(r
            .scheduled_for
            .unwrap_or_else(|| Ts::now().0)
            .trunc_subsecs(0));
        // Read unlocked to choose the agent, then re-read under the lock.
        let Some(peek) = rows::get(&self.db, r.schedule_id).await? else {
            return Ok(FireOutcome::NotFound);
        };
        let agent = self.agent_for(peek.project_id, &peek.engine).await?;
        let mut tx = audit::begin(&self.db).await?;
        let Some(s) = rows::lock_served(&mut tx, r.schedule_id).await? else {
            return Ok(FireOutcome::NotFound);
        };
        if !scope.permits(s.project_id) {
            return Ok(FireOutcome::Denied);
        }
        let triggered_by = match r.triggered_by {
            Some(u) => crate::store::projects::role_of(&mut tx, u, s.project_id)
                .await?
                .map(|_| u),
            None => None,
        };
        if !s.is_enabled {
            return Ok(FireOutcome::Disabled);
        }
        if let Some(at) = s.paused_at {
            return Ok(FireOutcome::Paused(at));
        }
        let payload = fire_payload(&s, r);
        let write = |status, command_id, code, message| FireWrite {
            fire_id: r.fire_id,
            schedule_id: s.id,
            project_id: s.project_id,
            command_id,
            triggered_by,
            status,
            scheduled_for: slot,
            error_code: code,
            error_message: message,
        };
        // The engine's agent may have gone since the peek; a different
        // engine after an edit is checked again.
        let agent = match agent {
            Some(a) if s.engine == peek.engine && s.project_id == peek.project_id => Some(a),
            _ => self.agent_for(s.project_id, &s.engine).await?,
        };
        let Some(agent_id) = agent else {
            let expires =
                Ts::now().plus_seconds(self.settings.pending_fires_retention_days * 86_400);
            rows::buffer(&mut tx, &s, r.fire_id, &payload, slot, expires).await?;
            rows::record_fire(&mut tx, &write(FireStatus::Buffered, None, None, None)).await?;
            rows::set_last_fire(&mut tx, s.id, r.fire_id).await?;
            tx.commit().await?;
            self.changed(s.project_id);
            return Ok(FireOutcome::Buffered);
        };
        let issued = self
            .persist_fire(&mut tx, &s, agent_id, r.fire_id, &payload)
            .await;
        let issued = match issued {
            Ok(i) => i,
            Err(e) => {
                drop(tx);
                tracing::warn!(error = %e, schedule_id = %s.id, fire_id = %r.fire_id, "schedule.fire could not be issued");
                let message = sanitise(&e.to_string());
                let mut tx = self.db.begin().await?;
                rows::record_fire(
                    &mut tx,
                    &write(
                        FireStatus::Failed,
                        None,
                        Some("brain_error"),
                        Some(&message),
                    ),
                )
                .await?;
                tx.commit().await?;
                self.changed(s.project_id);
                return Ok(FireOutcome::Failed("brain_error", message));
            }
        };
        let (command, new) = match issued {
            Issued::New(c) => (c, true),
            Issued::Replayed(c) => (c, false),
        };
        rows::set_last_fire(&mut tx, s.id, r.fire_id).await?;
        if command.status == Status::Failed {
            let message = sanitise(command.error.as_deref().unwrap_or("command failed"));
            rows::record_fire(
                &mut tx,
                &write(
                    FireStatus::Failed,
                    Some(command.id),
                    Some("command_failed"),
                    Some(&message),
                ),
            )
            .await?;
            tx.commit().await?;
            self.changed(s.project_id);
            return Ok(FireOutcome::Failed("command_failed", message));
        }
        rows::record_fire(
            &mut tx,
            &write(FireStatus::Delivered, Some(command.id), None, None),
        )
        .await?;
        if new {
            let mut e = Entry::new("command.issue.schedule.fire", "success")
                .target("command", command.id)
                .in_project(s.project_id)
                .meta(json!({"agent_id": agent_id, "schedule_id": s.id, "fire_id": r.fire_id}));
            e.user_id = triggered_by;
            audit::append(&mut tx, &self.settings, &e).await?;
        }
        tx.commit().await?;
        self.changed(s.project_id);
        self.hand_over(&command).await;
        Ok(FireOutcome::Delivered(command.id))
    }

    /// The `schedule.fire` command of a fire, in the caller's transaction;
    /// a repeated fire id returns the command it already has.
    async fn persist_fire(
        &self,
        tx: &mut crate::store::Tx,
        s: &Schedule,
        agent_id: Uuid,
        fire_id: Uuid,
        payload: &serde_json::Value,
    ) -> Result<Issued, StoreError> {
        let key = idempotency_key(s.id, fire_id);
        self.commands
            .persist(
                tx,
                &NewCommand {
                    project_id: s.project_id,
                    agent_id,
                    issued_by: None,
                    action: Action::ScheduleFire,
                    target_type: "schedule",
                    target_id: Some(&s.id.to_string()),
                    payload,
                    idempotency_key: Some(&key),
                    timeout_seconds: self.settings.command_timeout_seconds,
                    source_ip: "",
                },
            )
            .await
    }

    /// Delivers a committed command that is still waiting for its agent.
    pub async fn hand_over(&self, c: &Command) {
        if c.status == Status::Pending {
            if let Some(agent) = c.agent_id {
                self.commands.dispatch_new(agent, c).await;
            }
        }
    }

    /// `AcknowledgeFireResult` (§2.9): `status == "success"` exactly is a
    /// success; anything else a failure with `error` as its reason.
    pub async fn ack(
        &self,
        fire_id: Uuid,
        status: &str,
        error: &str,
        scope: &Scope,
    ) -> Result<AckOutcome, Error> {
        let Some(fire) = rows::fire_by_fire_id(&self.db, fire_id).await? else {
            return Ok(AckOutcome::Unknown);
        };
        let Some(schedule_id) = fire.schedule_id else {
            return Ok(AckOutcome::Unknown);
        };
        let Some(s) = rows::get(&self.db, schedule_id).await? else {
            return Ok(AckOutcome::Unknown);
        };
        if !scope.permits(s.project_id) {
            return Ok(AckOutcome::Denied);
        }
        let success = status == "success";
        let message = (!success).then(|| sanitise(error));
        let code: Option<String> = message.as_ref().map(|m| m.chars().take(64).collect());
        let mut tx = audit::begin(&self.db).await?;
        let counted =
            rows::ack_fire(&mut tx, &fire, success, code.as_deref(), message.as_deref()).await?;
        if counted && success {
            let cadence = is_cadence(fire.fire_id, fire.triggered_by_user_id)
                .then_some((fire.scheduled_for, fire.fire_id));
            rows::count_run(&mut tx, s.id, cadence).await?;
        }
        let action = if success {
            "schedule.ack.success"
        } else {
            "schedule.ack.failed"
        };
        audit::append(
            &mut tx,
            &self.settings,
            &Entry::new(action, "success")
                .target("schedule", s.id)
                .in_project(s.project_id)
                .meta(json!({"fire_id": fire_id, "ack_status": status, "error": message, "counted": counted})),
        )
        .await?;
        tx.commit().await?;
        self.changed(s.project_id);
        Ok(AckOutcome::Done)
    }
}

/// What one replay pass did.
#[derive(Debug, Default, PartialEq)]
pub struct Replayed {
    pub expired: u64,
    pub delivered: u64,
    pub dropped: u64,
}

/// The buffers a schedule's policy keeps for delivery, oldest first; the
/// rest are dropped (scheduler spec §5.2 step 3).
fn kept(policy: rows::CatchUp, n: usize) -> std::ops::Range<usize> {
    match policy {
        rows::CatchUp::Skip => 0..0,
        rows::CatchUp::FireOneMissed => n.saturating_sub(1)..n,
        rows::CatchUp::FireAllMissed => 0..n,
    }
}

/// Buffered fires taken per (project, engine) in one pass.
const REPLAY_BATCH: i64 = 200;

impl Schedules {
    /// One pass of the pending-fires replay: expired buffers deleted; for
    /// every (project, engine) with an online agent, each schedule's
    /// buffers go through its catch-up policy and the kept ones are
    /// delivered as `schedule.fire`, each in its own transaction. A dropped
    /// buffer leaves `buffer_dropped` on its fire row; buffers of a paused
    /// schedule wait for its resume (scheduler spec D2, D7).
    pub async fn replay(&self) -> Result<Replayed, Error> {
        let mut done = Replayed {
            expired: rows::expire_pending(&self.db, Ts::now()).await?,
            ..Replayed::default()
        };
        for (project_id, engine) in rows::pending_pairs(&self.db).await? {
            let Some(agent_id) = self.agent_for(project_id, &engine).await? else {
                continue;
            };
            let buffers = rows::pending_of(&self.db, project_id, &engine, REPLAY_BATCH).await?;
            let mut by_schedule: Vec<(Uuid, Vec<rows::Pending>)> = Vec::new();
            for b in buffers {
                match by_schedule.iter_mut().find(|(id, _)| *id == b.schedule_id) {
                    Some((_, list)) => list.push(b),
                    None => by_schedule.push((b.schedule_id, vec![b])),
                }
            }
            for (schedule_id, list) in by_schedule {
                // A deleted schedule's buffers go with it (cascade).
                let Some(s) = rows::get(&self.db, schedule_id).await? else {
                    continue;
                };
                if s.paused_at.is_some() {
                    continue;
                }
                let keep = if s.is_enabled {
                    kept(s.catch_up, list.len())
                } else {
                    0..0
                };
                for (i, b) in list.iter().enumerate() {
                    if keep.contains(&i) {
                        self.deliver_buffer(&s, b, agent_id).await?;
                        done.delivered += 1;
                    } else {
                        rows::drop_pending(
                            &self.db,
                            b,
                            if s.is_enabled {
                                s.catch_up.as_str()
                            } else {
                                "disabled"
                            },
                        )
                        .await?;
                        done.dropped += 1;
                        self.changed(s.project_id);
                    }
                }
            }
        }
        Ok(done)
    }

    async fn deliver_buffer(
        &self,
        s: &Schedule,
        b: &rows::Pending,
        agent_id: Uuid,
    ) -> Result<(), Error> {
        let mut tx = audit::begin(&self.db).await?;
        let issued = self
            .persist_fire(&mut tx, s, agent_id, b.fire_id, &b.payload.0)
            .await?;
        let (command, new) = match issued {
            Issued::New(c) => (c, true),
            Issued::Replayed(c) => (c, false),
        };
        let existing = rows::fire_by_fire_id(&mut tx, b.fire_id).await?;
        rows::record_fire(
            &mut tx,
            &FireWrite {
                fire_id: b.fire_id,
                schedule_id: s.id,
                project_id: s.project_id,
                command_id: Some(command.id),
                triggered_by: existing.and_then(|f| f.triggered_by_user_id),
                status: FireStatus::Delivered,
                scheduled_for: b.scheduled_for,
                error_code: None,
                error_message: None,
            },
        )
        .await?;
        rows::delete_pending(&mut tx, b.id).await?;
        if new {
            audit::append(
                &mut tx,
                &self.settings,
                &Entry::new("command.issue.schedule.fire", "success")
                    .target("command", command.id)
                    .in_project(s.project_id)
                    .meta(json!({"agent_id": agent_id, "schedule_id": s.id, "fire_id": b.fire_id, "replayed": true})),
            )
            .await?;
        }
        tx.commit().await?;
        self.changed(s.project_id);
        self.hand_over(&command).await;
        Ok(())
    }

    /// One pass of the circuit breaker: an enabled schedule whose newest
    /// `threshold` fires (within retention + 1 day) all failed is disabled,
    /// with an audit row (scheduler spec §5.3). The names of the tripped.
    pub async fn breaker(&self, threshold: i64) -> Result<Vec<String>, Error> {
        let mut tripped = Vec::new();
        if threshold <= 0 {
            return Ok(tripped);
        }
        let since =
            Ts::now().plus_seconds(-(self.settings.schedule_fires_retention_days + 1) * 86_400);
        for (id, _) in rows::enabled_ids(&self.db).await? {
            let statuses = rows::recent_statuses(&self.db, id, since, threshold).await?;
            if statuses.len() as i64 != threshold || !statuses.iter().all(|s| s.is_failure()) {
                continue;
            }
            let mut tx = audit::begin(&self.db).await?;
            let Some(s) = rows::get(&mut tx, id).await? else {
                continue;
            };
            if !rows::disable_if_enabled(&mut tx, id).await? {
                continue;
            }
            let mut e = Entry::new("schedule.circuit_breaker.tripped", "success")
                .target("schedule", s.id)
                .in_project(s.project_id)
                .meta(json!({"name": s.name, "scheduler": s.scheduler, "engine": s.engine, "consecutive_failures": threshold}));
            e.outcome = Some("deny".into());
            audit::append(&mut tx, &self.settings, &e).await?;
            tx.commit().await?;
            self.changed(s.project_id);
            tracing::warn!(schedule_id = %s.id, name = %s.name, failures = threshold, "schedule disabled by the circuit breaker");
            // Best effort, after the commit: the disable stands either way.
            let mut fields = serde_json::Map::new();
            fields.insert("schedule_id".into(), s.id.to_string().into());
            fields.insert("schedule_name".into(), s.name.clone().into());
            fields.insert("engine".into(), s.engine.clone().into());
            fields.insert("consecutive_failures".into(), threshold.into());
            fields.insert("state".into(), "circuit_tripped".into());
            fields.insert(
                "message".into(),
                format!(
                    "schedule {:?} disabled after {threshold} consecutive failed fires",
                    s.name
                )
                .into(),
            );
            self.alerts.raise(crate::notify::Alert {
                project_id: s.project_id,
                trigger: "schedule.circuit_breaker.tripped",
                task_id: None,
                task_name: None,
                fields,
            });
            tripped.push(s.name);
        }
        Ok(tripped)
    }

    /// One pass of the misfire detector (scheduler spec §5.5): an enabled,
    /// unpaused cron or interval schedule whose expected fire (after its
    /// last run, else its creation) is more than the grace in the past is
    /// announced once per anchor — a claim, an audit row, the counter and
    /// a `schedule.misfired` notification — at most 200 per pass; claims
    /// older than 30 days are forgotten. The number announced.
    pub async fn detect_misfires(&self) -> Result<usize, Error> {
        const PER_PASS: usize = 200;
        let grace = self.settings.scheduler_misfire_grace_seconds;
        let now = Ts::now();
        let mut announced = 0;
        for s in rows::misfire_candidates(&self.db).await? {
            if announced == PER_PASS {
                break;
            }
            let anchor = s.last_run_at.unwrap_or(s.created_at);
            let Some(expected) =
                validate::next_fire_after(s.kind, &s.expression, &s.timezone, anchor.0)
            else {
                continue;
            };
            let late = now.0 - expected;
            if late <= chrono::Duration::seconds(grace) {
                continue;
            }
            let mut tx = audit::begin(&self.db).await?;
            if !rows::claim_misfire(&mut tx, s.id, anchor).await? {
                continue;
            }
            let mut e = Entry::new("scheduler.misfire_detected", "failed")
                .target("schedule", s.id)
                .in_project(s.project_id)
                .meta(json!({
                    "name": s.name, "scheduler": s.scheduler, "engine": s.engine,
                    "kind": s.kind.as_str(), "expected_fire_at": iso(expected),
                    "last_run_at": s.last_run_at.map(Ts::to_rfc3339),
                    "lateness_seconds": late.num_seconds(), "grace_seconds": grace,
                }));
            e.outcome = Some("error".into());
            // The claim commits with the audit row or not at all.
            audit::append(&mut tx, &self.settings, &e).await?;
            tx.commit().await?;
            announced += 1;
            tracing::warn!(schedule_id = %s.id, name = %s.name, expected = %iso(expected), lateness_seconds = late.num_seconds(), "schedule misfired");
            crate::metrics::bump(
                &self.metrics.scheduler_misfires,
                &[&s.project_id.to_string()],
            );
            let mut fields = serde_json::Map::new();
            fields.insert("schedule_id".into(), s.id.to_string().into());
            fields.insert("schedule_name".into(), s.name.clone().into());
            fields.insert("engine".into(), s.engine.clone().into());
            fields.insert("expected_fire_at".into(), iso(expected).into());
            fields.insert("lateness_seconds".into(), late.num_seconds().into());
            fields.insert("state".into(), "misfired".into());
            self.alerts.raise(crate::notify::Alert {
                project_id: s.project_id,
                trigger: "schedule.misfired",
                task_id: None,
                task_name: None,
                fields,
            });
        }
        rows::prune_misfire_claims(&self.db, now.plus_seconds(-30 * 86_400)).await?;
        Ok(announced)
    }

    /// Deletes fire history older than `Z4J_SCHEDULE_FIRES_RETENTION_DAYS`
    /// in batches until a batch comes back short (the backlog never grows).
    pub async fn prune_fires(&self) -> Result<u64, Error> {
        const BATCH: i64 = 1000;
        let cutoff = Ts::now().plus_seconds(-self.settings.schedule_fires_retention_days * 86_400);
        let mut total = 0;
        loop {
            let n = rows::prune_fires(&self.db, cutoff, BATCH).await?;
            total += n;
            if (n as i64) < BATCH {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_up_policies_keep() {
        use rows::CatchUp::*;
        assert_eq!(kept(Skip, 3), 0..0);
        assert_eq!(kept(FireOneMissed, 3), 2..3);
        assert_eq!(kept(FireOneMissed, 0), 0..0);
        assert_eq!(kept(FireAllMissed, 3), 0..3);
    }

    #[test]
    fn sanitised_messages() {
        assert_eq!(sanitise("a\u{1}b\tc\u{e9}\u{263a}"), "ab\tc\u{e9}");
        let long = "x".repeat(600);
        let s = sanitise(&long);
        assert_eq!(s.chars().count(), 500);
        assert!(s.ends_with("..."));
    }

    #[test]
    fn python_iso_form() {
        let t = DateTime::parse_from_rfc3339("2026-03-08T07:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(iso(t), "2026-03-08T07:30:00+00:00");
        let t = DateTime::parse_from_rfc3339("2026-01-01T00:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(iso(t), "2026-01-01T00:00:00.123456+00:00");
    }

    #[test]
    fn fire_id_derivation_vectors_are_v5() {
        // The scheduler's cadence ids (scheduler spec §2.7.2).
        let ns = Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"z4j-scheduler.fire-id.v1");
        assert_eq!(ns.to_string(), "9ac4b3ba-93f1-5398-9596-abcdc992d6d8");
        let id = Uuid::new_v5(
            &ns,
            b"00000000-0000-4000-8000-000000000001:2026-03-08T07:30:00+00:00",
        );
        assert_eq!(id.to_string(), "3c145d1d-e9c0-55fa-b8bc-b2ead11b99a0");
        assert!(is_cadence(id, None));
        assert!(!is_cadence(id, Some(Uuid::new_v4())));
        assert!(!is_cadence(Uuid::new_v4(), None));
    }
}
