//! The scheduler surface (scheduler spec): the legacy gRPC protocol the
//! stock z4j-scheduler 1.13 speaks, seen by a client generated from the
//! same proto — the protocol answers, fires buffered and delivered, acks,
//! the watch stream and its caps, mTLS with the allow-list, project
//! bindings and the per-identity fire-rate bucket — and the schedules
//! REST routes that feed it.

use super::{ensure, ensure_eq, owned, R};
use crate::agent::{self, Operator};
use crate::brain::{free_port, Brain};
use crate::runner::Ctx;
use crate::sched::{self, pb, Pki};
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;

pub(super) const BASE: &str = "/api/v1/projects/default/schedules";

/// A brain serving the scheduler gRPC port in plaintext (dev), plus
/// `extra`; returns it with the port.
pub(super) async fn insecure_brain(
    ctx: &Ctx,
    extra: &[(&str, &str)],
) -> Result<(Brain, u16), String> {
    let port = free_port();
    let port_text = port.to_string();
    let mut env = owned(&agent::admin_env());
    env.extend(owned(&[
        ("Z4J_ENVIRONMENT", "dev"),
        ("Z4J_SCHEDULER_GRPC_ENABLED", "true"),
        ("Z4J_SCHEDULER_GRPC_INSECURE", "true"),
        ("Z4J_SCHEDULER_GRPC_BIND_HOST", "127.0.0.1"),
        ("Z4J_SCHEDULER_GRPC_BIND_PORT", &port_text),
    ]));
    env.extend(owned(extra));
    Ok((ctx.start_env(env, None).await?, port))
}

/// A brain with mTLS on the gRPC port (production posture), the suite's
/// PKI, plus `extra`.
async fn mtls_brain(ctx: &Ctx, pki: &Pki, extra: &[(&str, &str)]) -> Result<(Brain, u16), String> {
    let port = free_port();
    let port_text = port.to_string();
    let (cert, key, ca) = (
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("ca.crt"),
    );
    let mut env = owned(&agent::admin_env());
    env.extend(owned(&[
        ("Z4J_SCHEDULER_GRPC_ENABLED", "true"),
        ("Z4J_SCHEDULER_GRPC_BIND_HOST", "127.0.0.1"),
        ("Z4J_SCHEDULER_GRPC_BIND_PORT", &port_text),
        ("Z4J_SCHEDULER_GRPC_TLS_CERT", &cert),
        ("Z4J_SCHEDULER_GRPC_TLS_KEY", &key),
        ("Z4J_SCHEDULER_GRPC_TLS_CA", &ca),
    ]));
    env.extend(owned(extra));
    Ok((ctx.start_env(env, None).await?, port))
}

/// Creates a `z4j-scheduler` schedule through the REST API; its id.
pub(super) async fn create(
    brain: &Brain,
    op: &Operator,
    name: &str,
    extra: Json,
) -> Result<String, String> {
    let mut body = json!({
        "name": name, "engine": "rq", "kind": "interval", "expression": "10s",
        "task_name": "jobs.tick", "args": [1, "two"], "kwargs": {"k": "v"},
        "scheduler": "z4j-scheduler", "source": "cli",
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let (status, s) = op
        .send(brain, reqwest::Method::POST, BASE, Some(body))
        .await?;
    ensure_eq(status, 201, &format!("create schedule {name}: {s}"))?;
    s["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or(format!("create answered no id: {s}"))
}

pub(super) async fn get(brain: &Brain, op: &Operator, id: &str) -> Result<Json, String> {
    let (status, s) = op.get(brain, &format!("{BASE}/{id}")).await?;
    ensure_eq(status, 200, &format!("GET schedule: {s}"))?;
    Ok(s)
}

pub(super) async fn fires(brain: &Brain, op: &Operator, id: &str) -> Result<Vec<Json>, String> {
    let (status, f) = op.get(brain, &format!("{BASE}/{id}/fires")).await?;
    ensure_eq(status, 200, &format!("GET fires: {f}"))?;
    Ok(f.as_array().cloned().unwrap_or_default())
}

pub(super) async fn post(
    brain: &Brain,
    op: &Operator,
    path: &str,
    body: Option<Json>,
) -> Result<(u16, Json), String> {
    op.send(brain, reqwest::Method::POST, &format!("{BASE}{path}"), body)
        .await
}

pub(super) fn slot(secs_ago: i64) -> chrono::DateTime<chrono::Utc> {
    use chrono::{SubsecRound, Utc};
    (Utc::now() - chrono::Duration::seconds(secs_ago)).trunc_subsecs(0)
}

fn code_of<T>(r: &Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// Ping reports the legacy epoch and the version; Negotiate and the
/// current-protocol and trigger RPCs are UNIMPLEMENTED, which is what
/// makes the stock scheduler choose the legacy protocol (spec §2.1-§2.3,
/// §2.10); the server listens where it is told.
pub async fn legacy_surface(ctx: Arc<Ctx>) -> R {
    let (brain, port) = insecure_brain(&ctx, &[]).await?;
    let mut c = sched::insecure(port).await?;
    let before = chrono::Utc::now().timestamp();
    let ping = c
        .ping(pb::PingRequest {})
        .await
        .map_err(|e| format!("Ping: {e}"))?
        .into_inner();
    ensure_eq(ping.scheduler_protocol_epoch, 0, "Ping epoch")?;
    ensure(
        !ping.brain_version.is_empty(),
        "Ping carries no brain_version",
    )?;
    let t = ping.brain_time.map(|t| t.seconds).unwrap_or_default();
    ensure(
        (before - 5..=before + 5).contains(&t),
        format!("Ping brain_time {t} is not now ({before})"),
    )?;
    let n = c
        .negotiate_scheduler_protocol(pb::NegotiateSchedulerProtocolRequest {
            offered: Some(pb::SchedulerProtocolCapabilities {
                protocol_epoch: 1,
                ..Default::default()
            }),
        })
        .await;
    ensure_eq(code_of(&n), Code::Unimplemented, "Negotiate")?;
    let t = c
        .trigger_schedule(pb::TriggerScheduleRequest::default())
        .await;
    ensure_eq(code_of(&t), Code::Unimplemented, "TriggerSchedule")?;
    let g = c
        .get_schedule_state(pb::GetScheduleStateRequest::default())
        .await;
    ensure_eq(code_of(&g), Code::Unimplemented, "GetScheduleState")?;
    // The HTTP port is not the gRPC port.
    ensure(
        port != brain.port,
        "the gRPC port must differ from the HTTP port",
    )?;
    Ok(())
}

/// A plaintext scheduler port is a dev-only switch: in any other posture
/// start-up stops with a line naming the variable.
pub async fn insecure_outside_dev(ctx: Arc<Ctx>) -> R {
    let port = free_port().to_string();
    for environment in ["production", "staging", "development"] {
        let mut spec = crate::runner::spec(&[
            ("Z4J_ENVIRONMENT", environment),
            ("Z4J_SCHEDULER_GRPC_ENABLED", "true"),
            ("Z4J_SCHEDULER_GRPC_INSECURE", "true"),
            ("Z4J_SCHEDULER_GRPC_BIND_HOST", "127.0.0.1"),
            ("Z4J_SCHEDULER_GRPC_BIND_PORT", &port),
        ]);
        spec.expect_exit = true;
        let mut brain = ctx.start_spec(spec).await?;
        let code = brain.wait_exit(Duration::from_secs(20)).await;
        ensure(
            matches!(code, Some(c) if c != 0),
            format!("{environment}: insecure gRPC did not stop start-up (exit {code:?})"),
        )?;
        ensure(
            brain.output().contains("Z4J_SCHEDULER_GRPC_INSECURE"),
            format!(
                "{environment}: the refusal does not name the variable: {}",
                brain.output()
            ),
        )?;
    }
    Ok(())
}

/// The fire path without an agent (buffered), with one (a `schedule.fire`
/// command carrying the payload), acks counting runs once, and every
/// refusal with its code (spec §2.7, §2.9).
pub async fn fire_and_ack(ctx: Arc<Ctx>) -> R {
    let (brain, port) = insecure_brain(&ctx, &[]).await?;
    let op = agent::login(&brain).await?;
    let id = create(&brain, &op, "tick", json!({})).await?;
    let mut c = sched::insecure(port).await?;

    // No agent online: buffered, whatever the catch-up policy.
    let s1 = slot(20);
    let req = sched::fire_request(&id, s1);
    let fire_id = req.fire_id.clone();
    let r = c
        .fire_schedule(req.clone())
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    ensure(
        r.buffered && r.command_id.is_empty() && r.error_code.is_empty(),
        format!("first fire: {r:?}"),
    )?;
    // A retry of the slot is the same fire.
    let r = c
        .fire_schedule(req)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    ensure(r.buffered, format!("retried fire: {r:?}"))?;
    let f = fires(&brain, &op, &id).await?;
    ensure_eq(f.len(), 1, "fire rows after a retried slot")?;
    ensure_eq(f[0]["status"].as_str(), Some("buffered"), "fire status")?;
    ensure_eq(f[0]["fire_id"].as_str(), Some(fire_id.as_str()), "fire id")?;
    ensure_eq(
        f[0]["scheduled_for"]
            .as_str()
            .map(|t| t.starts_with(&s1.format("%Y-%m-%dT%H:%M:%S").to_string())),
        Some(true),
        "scheduled_for is the slot",
    )?;

    // The success ack counts one run and moves last_run_at to the slot;
    // a repeated ack counts nothing.
    for _ in 0..2 {
        c.acknowledge_fire_result(sched::ack(&fire_id, "success", ""))
            .await
            .map_err(|e| format!("ack: {e}"))?;
    }
    let s = get(&brain, &op, &id).await?;
    ensure_eq(
        s["total_runs"].as_i64(),
        Some(1),
        "total_runs after two acks of one fire",
    )?;
    let last = s["last_run_at"].as_str().unwrap_or_default().to_owned();
    ensure(
        last.starts_with(&s1.format("%Y-%m-%dT%H:%M:%S").to_string()),
        format!("last_run_at {last} is not the slot {s1}"),
    )?;
    ensure_eq(
        fires(&brain, &op, &id).await?[0]["status"].as_str(),
        Some("acked_success"),
        "acked fire",
    )?;

    // A failure ack of a fresh fire: acked_failed, no run counted.
    let s2 = slot(10);
    let req2 = sched::fire_request(&id, s2);
    c.fire_schedule(req2.clone())
        .await
        .map_err(|e| e.to_string())?;
    c.acknowledge_fire_result(sched::ack(&req2.fire_id, "failed", "boom\u{1}"))
        .await
        .map_err(|e| format!("ack failed: {e}"))?;
    let f = fires(&brain, &op, &id).await?;
    let row = f
        .iter()
        .find(|r| r["fire_id"] == json!(req2.fire_id))
        .ok_or("failed fire missing")?;
    ensure_eq(row["status"].as_str(), Some("acked_failed"), "failed ack")?;
    ensure_eq(
        row["error_message"].as_str(),
        Some("boom"),
        "sanitised error",
    )?;
    ensure_eq(
        get(&brain, &op, &id).await?["total_runs"].as_i64(),
        Some(1),
        "runs after a failure ack",
    )?;

    // An agent of the engine online: a schedule.fire command reaches it.
    let creds = op.mint(&brain, "worker").await?;
    let mut session = agent::connect(&brain, &creds, Some("w1")).await?;
    let s3 = slot(5);
    let req3 = sched::fire_request(&id, s3);
    let r = c
        .fire_schedule(req3.clone())
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    ensure(
        !r.command_id.is_empty() && !r.buffered,
        format!("fire with an agent online: {r:?}"),
    )?;
    let frame = loop {
        match session.recv(Duration::from_secs(10)).await? {
            Ok((z4j_protocol::FrameType::Command, j)) => break j,
            Ok(_) => continue,
            Err(closed) => return Err(format!("agent socket closed: {closed:?}")),
        }
    };
    let p = &frame["payload"];
    ensure_eq(
        p["action"].as_str(),
        Some("schedule.fire"),
        "command action",
    )?;
    let params = &p["parameters"];
    ensure_eq(
        params["fire_id"].as_str(),
        Some(req3.fire_id.as_str()),
        "payload fire_id",
    )?;
    ensure_eq(
        params["schedule_id"].as_str(),
        Some(id.as_str()),
        "payload schedule_id",
    )?;
    ensure_eq(
        params["task_name"].as_str(),
        Some("jobs.tick"),
        "payload task_name",
    )?;
    ensure_eq(params["engine"].as_str(), Some("rq"), "payload engine")?;
    ensure_eq(params["args"].clone(), json!([1, "two"]), "payload args")?;
    ensure_eq(
        params["kwargs"].clone(),
        json!({"k": "v"}),
        "payload kwargs",
    )?;
    ensure_eq(
        params["scheduled_for"].as_str().map(str::to_owned),
        Some(s3.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()),
        "payload scheduled_for",
    )?;
    let row = fires(&brain, &op, &id)
        .await?
        .into_iter()
        .find(|r| r["fire_id"] == json!(req3.fire_id))
        .ok_or("delivered fire missing")?;
    ensure_eq(row["status"].as_str(), Some("delivered"), "delivered fire")?;
    ensure_eq(
        row["command_id"].as_str(),
        Some(r.command_id.as_str()),
        "fire's command",
    )?;
    // The same slot again: the same command, no second one.
    let again = c
        .fire_schedule(req3)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    ensure_eq(
        again.command_id,
        r.command_id.clone(),
        "retried delivered fire",
    )?;

    // Refusals, each with its code; nothing written for them.
    let bad = |schedule_id: &str, fire_id: &str| pb::FireScheduleRequest {
        schedule_id: schedule_id.into(),
        fire_id: fire_id.into(),
        ..Default::default()
    };
    let code = |r: pb::FireScheduleResponse| r.error_code;
    let v1 = "c232ab00-9414-11ec-b3c8-9f6bdeced846";
    let v4 = uuid::Uuid::new_v4().to_string();
    for (req, want) in [
        (bad("not-a-uuid", &v4), "invalid_request"),
        (bad(&id, "not-a-uuid"), "invalid_request"),
        (bad(&id, v1), "invalid_request"),
        (
            bad(&uuid::Uuid::new_v4().to_string(), &v4),
            "schedule_not_found",
        ),
    ] {
        let got = c
            .fire_schedule(req)
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        ensure_eq(code(got), want.to_owned(), "refused fire")?;
    }
    let (st, _) = post(&brain, &op, &format!("/{id}/pause"), None).await?;
    ensure_eq(st, 200, "pause")?;
    let got = c
        .fire_schedule(bad(&id, &v4))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    ensure_eq(
        got.error_code,
        "schedule_paused".to_owned(),
        "fire while paused",
    )?;
    post(&brain, &op, &format!("/{id}/resume"), None).await?;
    let (st, _) = post(&brain, &op, &format!("/{id}/disable"), None).await?;
    ensure_eq(st, 200, "disable")?;
    let got = c
        .fire_schedule(bad(&id, &v4))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    ensure_eq(
        got.error_code,
        "schedule_disabled".to_owned(),
        "fire while disabled",
    )?;
    ensure(
        !fires(&brain, &op, &id)
            .await?
            .iter()
            .any(|r| r["fire_id"] == json!(v4)),
        "a refused fire left a history row",
    )?;
    let a = c
        .acknowledge_fire_result(sched::ack("nope", "success", ""))
        .await;
    ensure_eq(
        code_of(&a),
        Code::InvalidArgument,
        "ack with a malformed fire_id",
    )?;
    Ok(())
}

/// Next watch event within `wait`, with the time it took.
async fn next_event(
    stream: &mut tonic::Streaming<pb::ScheduleEvent>,
    wait: Duration,
) -> Result<(pb::ScheduleEvent, Duration), String> {
    let t0 = Instant::now();
    match tokio::time::timeout(wait, stream.message()).await {
        Ok(Ok(Some(e))) => Ok((e, t0.elapsed())),
        Ok(Ok(None)) => Err("watch stream ended".into()),
        Ok(Err(s)) => Err(format!("watch stream failed: {s}")),
        Err(_) => Err(format!("no watch event within {wait:?}")),
    }
}

/// Changes reach an open watch within one poll interval as CREATED,
/// UPDATED and DELETED (and not much sooner than the poll cadence allows);
/// a resume token replays what changed after it as CREATED; ListSchedules
/// serves every z4j-scheduler row with the effective enablement (spec
/// §2.4-§2.6).
pub async fn watch(ctx: Arc<Ctx>) -> R {
    let poll = 1.0;
    let (brain, port) =
        insecure_brain(&ctx, &[("Z4J_SCHEDULER_GRPC_WATCH_POLL_SECONDS", "1.0")]).await?;
    let op = agent::login(&brain).await?;
    let early = create(&brain, &op, "early", json!({})).await?;
    let token_before = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = create(
        &brain,
        &op,
        "late",
        json!({"kind": "cron", "expression": "*/5 * * * *"}),
    )
    .await?;
    // Another owner's row is never served.
    create(&brain, &op, "beat", json!({"scheduler": "celery-beat"})).await?;
    let mut c = sched::insecure(port).await?;

    let mut listed = c
        .list_schedules(pb::ListSchedulesRequest {
            project_id: String::new(),
            page_size: 1,
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut ids = Vec::new();
    while let Some(s) = listed.message().await.map_err(|e| e.to_string())? {
        ensure(
            s.control_token.is_empty() && s.schedule_revision == 0,
            "legacy rows carry no current-protocol fields",
        )?;
        ids.push(s.id);
    }
    ids.sort();
    let mut want = vec![early.clone(), late.clone()];
    want.sort();
    ensure_eq(
        ids,
        want,
        "ListSchedules (page_size 1 still streams every row)",
    )?;
    let bad = c
        .list_schedules(pb::ListSchedulesRequest {
            project_id: "nope".into(),
            page_size: 0,
        })
        .await;
    ensure_eq(
        code_of(&bad),
        Code::InvalidArgument,
        "ListSchedules with a malformed project_id",
    )?;

    let mut w = c
        .watch_schedules(pb::WatchSchedulesRequest {
            project_id: String::new(),
            resume_token: token_before,
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let (e, _) = next_event(&mut w, ctx.scaled(5.0)).await?;
    ensure_eq(
        e.kind,
        pb::schedule_event::Kind::Created as i32,
        "replayed after the token",
    )?;
    ensure_eq(
        e.schedule.as_ref().map(|s| s.id.clone()),
        Some(late.clone()),
        "only the row changed after the token",
    )?;
    ensure(
        e.resume_token.ends_with("+00:00") && e.resume_token.len() == 32,
        format!("resume token form: {}", e.resume_token),
    )?;

    let upper = ctx.scaled(poll + 1.5);
    let created = create(&brain, &op, "fresh", json!({})).await?;
    let (e, took) = next_event(&mut w, upper).await?;
    ensure_eq(e.kind, pb::schedule_event::Kind::Created as i32, "new row")?;
    ensure_eq(
        e.schedule.map(|s| s.id),
        Some(created.clone()),
        "created id",
    )?;
    ensure(took <= upper, format!("CREATED after {took:?}"))?;

    let (st, _) = post(&brain, &op, &format!("/{created}/pause"), None).await?;
    ensure_eq(st, 200, "pause")?;
    let (e, _) = next_event(&mut w, upper).await?;
    ensure_eq(
        e.kind,
        pb::schedule_event::Kind::Updated as i32,
        "pause is an update",
    )?;
    ensure_eq(
        e.schedule.map(|s| s.is_enabled),
        Some(false),
        "a paused row is served disabled",
    )?;

    let (st, _) = op
        .send(
            &brain,
            reqwest::Method::DELETE,
            &format!("{BASE}/{created}"),
            None,
        )
        .await?;
    ensure_eq(st, 204, "delete")?;
    let (e, _) = next_event(&mut w, upper).await?;
    ensure_eq(e.kind, pb::schedule_event::Kind::Deleted as i32, "delete")?;
    ensure_eq(e.deleted_id, created, "deleted id")?;

    // Nothing changes: nothing is sent for longer than several polls.
    let quiet = next_event(&mut w, Duration::from_secs_f64(poll * 3.0)).await;
    ensure(
        quiet.is_err(),
        format!("an event without a change: {quiet:?}"),
    )?;
    Ok(())
}

/// The per-identity watch cap at its default (4: the fifth stream is
/// refused, and a closed stream gives its place back) and configured (2),
/// in plaintext mode where every stream shares one identity (spec §2.6.4).
pub async fn watch_caps(ctx: Arc<Ctx>) -> R {
    for (cap, env) in [(4usize, None), (2, Some("2"))] {
        let extra: Vec<(&str, &str)> = env
            .map(|v| vec![("Z4J_SCHEDULER_GRPC_WATCH_MAX_PER_CERT", v)])
            .unwrap_or_default();
        let (_brain, port) = insecure_brain(&ctx, &extra).await?;
        let mut open = Vec::new();
        for i in 0..cap {
            let mut c = sched::insecure(port).await?;
            let s = c
                .watch_schedules(pb::WatchSchedulesRequest::default())
                .await
                .map_err(|e| format!("stream {} of {cap}: {e}", i + 1))?;
            open.push((c, s));
        }
        let mut c = sched::insecure(port).await?;
        let over = c
            .watch_schedules(pb::WatchSchedulesRequest::default())
            .await;
        ensure_eq(
            code_of(&over),
            Code::ResourceExhausted,
            &format!("stream {} over a cap of {cap}", cap + 1),
        )?;
        if let Err(s) = &over {
            ensure_eq(
                s.message(),
                "WatchSchedules per-cert concurrent stream cap reached",
                "cap detail",
            )?;
        }
        drop(open.pop());
        // The slot comes back once the brain sees the stream gone.
        let deadline = Instant::now() + ctx.scaled(10.0);
        loop {
            match c
                .watch_schedules(pb::WatchSchedulesRequest::default())
                .await
            {
                Ok(s) => {
                    open.push((c.clone(), s));
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(format!("a closed stream's slot never came back: {e}")),
            }
        }
    }
    Ok(())
}

/// mTLS: a client certificate is required at the handshake; the allow-list
/// is checked on every call against the certificate's CN and SANs; a bound
/// certificate sees and fires only its projects; the process-wide watch cap
/// counts streams of every identity (spec §1.3-§1.7, §2.6.4).
pub async fn mtls(ctx: Arc<Ctx>) -> R {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pki = Pki::new(dir.path())?;
    let (brain, port) = mtls_brain(
        &ctx,
        &pki,
        &[
            (
                "Z4J_SCHEDULER_GRPC_ALLOWED_CNS",
                r#"["scheduler-1", "DNS:scheduler-3", "scheduler-4"]"#,
            ),
            ("Z4J_SCHEDULER_GRPC_REQUIRE_ALLOWLIST", "true"),
            (
                "Z4J_SCHEDULER_GRPC_CN_PROJECT_BINDINGS",
                r#"{"scheduler-3": ["other"]}"#,
            ),
            ("Z4J_SCHEDULER_GRPC_WATCH_MAX_CONCURRENT", "2"),
        ],
    )
    .await?;
    let op = agent::login(&brain).await?;
    op.create_project(&brain, "other").await?;
    let id = create(&brain, &op, "bound", json!({})).await?;

    // Listed identity: served.
    let mut one = sched::mtls(port, &pki, Some("scheduler-1")).await?;
    one.ping(pb::PingRequest {})
        .await
        .map_err(|e| format!("listed Ping: {e}"))?;
    // Not listed: refused on every call, Ping included.
    let mut two = sched::mtls(port, &pki, Some("scheduler-2")).await?;
    let p = two.ping(pb::PingRequest {}).await;
    ensure_eq(code_of(&p), Code::PermissionDenied, "unlisted Ping")?;
    let f = two.fire_schedule(sched::fire_request(&id, slot(1))).await;
    ensure_eq(code_of(&f), Code::PermissionDenied, "unlisted FireSchedule")?;
    // No certificate: the handshake itself fails.
    let none = match sched::mtls(port, &pki, None).await {
        Ok(mut c) => c.ping(pb::PingRequest {}).await.is_err(),
        Err(_) => true,
    };
    ensure(none, "a client without a certificate was served")?;

    // Bound to "other": the default project's schedule is not served to it
    // and cannot be fired by it; an unbound listed identity sees it.
    let mut three = sched::mtls(port, &pki, Some("scheduler-3")).await?;
    let mut listed = three
        .list_schedules(pb::ListSchedulesRequest::default())
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    ensure(
        listed.message().await.map_err(|e| e.to_string())?.is_none(),
        "a bound certificate was served another project's schedule",
    )?;
    let f = three.fire_schedule(sched::fire_request(&id, slot(2))).await;
    ensure_eq(
        code_of(&f),
        Code::PermissionDenied,
        "bound FireSchedule outside its projects",
    )?;
    let r = one
        .fire_schedule(sched::fire_request(&id, slot(3)))
        .await
        .map_err(|e| format!("unbound fire: {e}"))?
        .into_inner();
    ensure(r.buffered, format!("unbound listed fire: {r:?}"))?;

    // Process cap 2, counted across identities.
    let _w1 = one
        .watch_schedules(pb::WatchSchedulesRequest::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut four = sched::mtls(port, &pki, Some("scheduler-4")).await?;
    let _w2 = four
        .watch_schedules(pb::WatchSchedulesRequest::default())
        .await
        .map_err(|e| e.to_string())?;
    let w3 = three
        .watch_schedules(pb::WatchSchedulesRequest::default())
        .await;
    ensure_eq(
        code_of(&w3),
        Code::ResourceExhausted,
        "third stream over a process cap of 2",
    )?;
    if let Err(s) = w3 {
        ensure_eq(
            s.message(),
            "WatchSchedules concurrent stream cap reached",
            "process cap detail",
        )?;
    }
    Ok(())
}

/// The per-identity fire-rate bucket: `capacity` fires at once, the next
/// refused with RESOURCE_EXHAUSTED, one more after 1/rate seconds and not
/// before; refusals that write nothing give their token back; another
/// identity has its own bucket; with the limit off nothing is refused
/// (spec §2.7.6).
pub async fn fire_rate(ctx: Arc<Ctx>) -> R {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pki = Pki::new(dir.path())?;
    let rate = 0.5;
    let (brain, port) = mtls_brain(
        &ctx,
        &pki,
        &[
            ("Z4J_SCHEDULER_GRPC_FIRE_RATE_CAPACITY", "3"),
            ("Z4J_SCHEDULER_GRPC_FIRE_RATE_PER_SECOND", "0.5"),
        ],
    )
    .await?;
    let op = agent::login(&brain).await?;
    let id = create(&brain, &op, "rated", json!({})).await?;
    let mut a = sched::mtls(port, &pki, Some("sched-a")).await?;
    let mut offset = 100;
    let mut fire = |c: &mut sched::Client| {
        offset += 1;
        let req = sched::fire_request(&id, slot(offset));
        let mut c = c.clone();
        async move { c.fire_schedule(req).await }
    };
    // Refunded refusals do not spend the bucket.
    for _ in 0..5 {
        let r = a
            .fire_schedule(pb::FireScheduleRequest {
                schedule_id: uuid::Uuid::new_v4().to_string(),
                fire_id: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("unknown schedule fire: {e}"))?
            .into_inner();
        ensure_eq(
            r.error_code,
            "schedule_not_found".to_owned(),
            "unknown schedule",
        )?;
    }
    for i in 0..3 {
        let r = fire(&mut a).await;
        ensure_eq(
            code_of(&r),
            Code::Ok,
            &format!("fire {} within capacity 3", i + 1),
        )?;
    }
    let t_empty = Instant::now();
    let over = fire(&mut a).await;
    ensure_eq(
        code_of(&over),
        Code::ResourceExhausted,
        "fire 4 over capacity 3",
    )?;
    if let Err(s) = &over {
        ensure_eq(
            s.message(),
            "FireSchedule rate limit exceeded for this scheduler",
            "detail",
        )?;
    }
    // Another identity is not affected.
    let mut b = sched::mtls(port, &pki, Some("sched-b")).await?;
    ensure_eq(
        code_of(&fire(&mut b).await),
        Code::Ok,
        "another identity's first fire",
    )?;
    // Refill: one token after 1/rate = 2 s, not before.
    tokio::time::sleep(Duration::from_secs_f64(0.5 / rate).saturating_sub(t_empty.elapsed())).await;
    ensure_eq(
        code_of(&fire(&mut a).await),
        Code::ResourceExhausted,
        "fire at half the refill time",
    )?;
    // Unscaled on purpose: a longer wait would refill a second token.
    tokio::time::sleep(Duration::from_secs_f64(1.0 / rate + 0.3).saturating_sub(t_empty.elapsed()))
        .await;
    ensure_eq(
        code_of(&fire(&mut a).await),
        Code::Ok,
        "fire after one refill interval",
    )?;
    ensure_eq(
        code_of(&fire(&mut a).await),
        Code::ResourceExhausted,
        "only one token refilled",
    )?;

    // The limit switched off: no refusals past capacity.
    let (brain2, port2) = mtls_brain(
        &ctx,
        &pki,
        &[
            ("Z4J_SCHEDULER_GRPC_FIRE_RATE_CAPACITY", "1"),
            ("Z4J_SCHEDULER_GRPC_FIRE_RATE_LIMIT_ENABLED", "false"),
        ],
    )
    .await?;
    let op2 = agent::login(&brain2).await?;
    let id2 = create(&brain2, &op2, "free", json!({})).await?;
    let mut c2 = sched::mtls(port2, &pki, Some("sched-a")).await?;
    for i in 0..5 {
        let r = c2
            .fire_schedule(sched::fire_request(&id2, slot(200 + i)))
            .await;
        ensure_eq(
            code_of(&r),
            Code::Ok,
            &format!("fire {} with the limit off", i + 1),
        )?;
    }
    Ok(())
}

/// Schedules REST: validation per kind and zone (422 naming the field),
/// duplicate names (409), roles, cursor pages, and the scheduler's
/// defaults on create (spec §3.2, §4).
pub async fn rest(ctx: Arc<Ctx>) -> R {
    let (brain, _) = insecure_brain(&ctx, &[]).await?;
    let op = agent::login(&brain).await?;
    let base = json!({"name": "n", "engine": "rq", "kind": "interval", "expression": "10s", "task_name": "t"});
    let with = |k: &str, v: Json| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (with("expression", json!("0s")), "expression"),
        (with("expression", json!("ten")), "expression"),
        (
            json!({"name": "n", "engine": "rq", "kind": "cron", "expression": "61 * * * *", "task_name": "t"}),
            "expression",
        ),
        (
            json!({"name": "n", "engine": "rq", "kind": "clocked", "expression": "2026-01-01T00:00:00", "task_name": "t"}),
            "expression",
        ),
        (
            json!({"name": "n", "engine": "rq", "kind": "solar", "expression": "sunrise:95:0", "task_name": "t"}),
            "expression",
        ),
        (with("timezone", json!("localtime")), "timezone"),
    ] {
        let (st, e) = op
            .send(&brain, reqwest::Method::POST, BASE, Some(body.clone()))
            .await?;
        ensure_eq(st, 422, &format!("{body}: {e}"))?;
        ensure_eq(
            e["details"]["field"].as_str(),
            Some(field),
            &format!("422 names the field: {e}"),
        )?;
    }
    for (body, what) in [
        (with("kind", json!("one_shot")), "unknown kind"),
        (with("catch_up", json!("sometimes")), "unknown catch_up"),
        (with("overlap_policy", json!("forbid")), "overlap policy"),
        (with("name", json!("a\nb")), "control character in the name"),
    ] {
        let (st, e) = op
            .send(&brain, reqwest::Method::POST, BASE, Some(body))
            .await?;
        ensure_eq(st, 422, &format!("{what}: {e}"))?;
    }
    let (st, s) = op
        .send(&brain, reqwest::Method::POST, BASE, Some(base.clone()))
        .await?;
    ensure_eq(st, 201, &format!("create: {s}"))?;
    ensure_eq(
        s["catch_up"].as_str(),
        Some("fire_one_missed"),
        "catch_up default on create",
    )?;
    ensure_eq(s["timezone"].as_str(), Some("UTC"), "timezone default")?;
    ensure_eq(
        s["scheduler"].as_str(),
        Some("z4j-scheduler"),
        "owner default",
    )?;
    ensure_eq(s["source"].as_str(), Some("dashboard"), "source default")?;
    let (st, e) = op
        .send(&brain, reqwest::Method::POST, BASE, Some(base.clone()))
        .await?;
    ensure_eq(st, 409, &format!("duplicate name: {e}"))?;
    let id = s["id"].as_str().unwrap_or_default().to_owned();
    let (st, e) = op
        .send(
            &brain,
            reqwest::Method::PATCH,
            &format!("{BASE}/{id}"),
            Some(json!({"expression": "99"})),
        )
        .await?;
    ensure_eq(st, 200, &format!("patch: {e}"))?;
    ensure_eq(e["expression"].as_str(), Some("99"), "patched expression")?;
    ensure_eq(e["name"].as_str(), Some("n"), "name unchanged")?;
    let (st, _) = op
        .send(
            &brain,
            reqwest::Method::PATCH,
            &format!("{BASE}/{id}"),
            Some(json!({"kind": "cron"})),
        )
        .await?;
    ensure_eq(
        st,
        422,
        "patch leaving an interval expression under kind cron",
    )?;
    for i in 0..3 {
        create(&brain, &op, &format!("p{i}"), json!({})).await?;
    }
    let (st, page) = op.get(&brain, &format!("{BASE}?limit=2")).await?;
    ensure_eq(st, 200, "list")?;
    ensure_eq(page["items"].as_array().map(Vec::len), Some(2), "page size")?;
    ensure_eq(
        page["circuit_breaker_threshold"].as_i64(),
        Some(5),
        "threshold in the list",
    )?;
    let cursor = page["next_cursor"]
        .as_str()
        .ok_or("no next_cursor")?
        .to_owned();
    let (_, page2) = op
        .get(
            &brain,
            &format!(
                "{BASE}?limit=2&cursor={}",
                url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect::<String>()
            ),
        )
        .await?;
    let names: Vec<&str> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(page2["items"].as_array().into_iter().flatten())
        .filter_map(|s| s["name"].as_str())
        .collect();
    ensure_eq(names, vec!["n", "p0", "p1", "p2"], "pages in name order")?;
    for bad in ["0", "501"] {
        let (st, _) = op.get(&brain, &format!("{BASE}?limit={bad}")).await?;
        ensure_eq(st, 422, &format!("limit={bad}"))?;
    }
    let (st, _) = op
        .get(&brain, &format!("{BASE}/{}", uuid::Uuid::new_v4()))
        .await?;
    ensure_eq(st, 404, "unknown schedule")?;
    let (st, _) = post(&brain, &op, &format!("/{id}/explode"), None).await?;
    ensure_eq(st, 404, "unknown schedule action")?;
    let (st, s) = post(&brain, &op, &format!("/{id}/pause"), None).await?;
    ensure(
        st == 200 && s["paused_at"].is_string(),
        format!("pause: {st} {s}"),
    )?;
    let (_, again) = post(&brain, &op, &format!("/{id}/pause"), None).await?;
    ensure_eq(
        again["paused_at"].clone(),
        s["paused_at"].clone(),
        "a repeated pause keeps the first time",
    )?;
    Ok(())
}

/// What is wrong, the environment, and the variable the refusal names.
type Refusal<'a> = (&'a str, Vec<(String, String)>, &'a str);

/// Start-up stops with one line naming the variable for every bad
/// scheduler setting: a required allow-list left empty, missing, blank or
/// mismatched TLS files, a bare string where a JSON list belongs, a port in
/// use; in dev an empty required allow-list only keeps the gRPC port shut
/// (spec §1.2, §1.3, §1.6).
pub async fn start_refusals(ctx: Arc<Ctx>) -> R {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pki = Pki::new(dir.path())?;
    let (other_cert, other_key) = pki.issue("localhost", &["localhost"], true)?;
    std::fs::write(dir.path().join("other.key"), other_key).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("other.crt"), other_cert).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("blank.key"), "  \n").map_err(|e| e.to_string())?;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let busy_port = busy
        .local_addr()
        .map_err(|e| e.to_string())?
        .port()
        .to_string();
    let (cert, key, ca) = (
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("ca.crt"),
    );
    let missing = pki.path("missing.crt");
    let blank = pki.path("blank.key");
    let other_key = pki.path("other.key");
    let port = free_port().to_string();
    let tls = |c: &str, k: &str, a: &str, port: &str| -> Vec<(String, String)> {
        owned(&[
            ("Z4J_SCHEDULER_GRPC_ENABLED", "true"),
            ("Z4J_SCHEDULER_GRPC_BIND_HOST", "127.0.0.1"),
            ("Z4J_SCHEDULER_GRPC_BIND_PORT", port),
            ("Z4J_SCHEDULER_GRPC_TLS_CERT", c),
            ("Z4J_SCHEDULER_GRPC_TLS_KEY", k),
            ("Z4J_SCHEDULER_GRPC_TLS_CA", a),
        ])
    };
    let listed = (
        "Z4J_SCHEDULER_GRPC_ALLOWED_CNS".to_owned(),
        r#"["s1"]"#.to_owned(),
    );
    let cases: Vec<Refusal> = vec![
        (
            "required allow-list empty",
            [
                tls(&cert, &key, &ca, &port),
                owned(&[("Z4J_SCHEDULER_GRPC_REQUIRE_ALLOWLIST", "true")]),
            ]
            .concat(),
            "Z4J_SCHEDULER_GRPC_ALLOWED_CNS",
        ),
        (
            "missing certificate file",
            [tls(&missing, &key, &ca, &port), vec![listed.clone()]].concat(),
            "Z4J_SCHEDULER_GRPC_TLS_CERT",
        ),
        (
            "blank key file",
            [tls(&cert, &blank, &ca, &port), vec![listed.clone()]].concat(),
            "Z4J_SCHEDULER_GRPC_TLS_KEY",
        ),
        (
            "key of another certificate",
            [tls(&cert, &other_key, &ca, &port), vec![listed.clone()]].concat(),
            "Z4J_SCHEDULER_GRPC_TLS",
        ),
        (
            "CA unset",
            [tls(&cert, &key, "", &port), vec![listed.clone()]].concat(),
            "Z4J_SCHEDULER_GRPC_TLS_CA",
        ),
        (
            "allow-list as a bare string",
            [
                tls(&cert, &key, &ca, &port),
                owned(&[("Z4J_SCHEDULER_GRPC_ALLOWED_CNS", "scheduler-1")]),
            ]
            .concat(),
            "Z4J_SCHEDULER_GRPC_ALLOWED_CNS",
        ),
        (
            "bindings not an object of lists",
            [
                tls(&cert, &key, &ca, &port),
                owned(&[(
                    "Z4J_SCHEDULER_GRPC_CN_PROJECT_BINDINGS",
                    r#"{"s1": "acme"}"#,
                )]),
            ]
            .concat(),
            "Z4J_SCHEDULER_GRPC_CN_PROJECT_BINDINGS",
        ),
        (
            "port in use",
            [tls(&cert, &key, &ca, &busy_port), vec![listed.clone()]].concat(),
            "Z4J_SCHEDULER_GRPC_BIND_PORT",
        ),
    ];
    for (what, env, names) in cases {
        let mut spec = crate::runner::spec(&[]);
        spec.env = env;
        spec.expect_exit = true;
        let mut brain = ctx.start_spec(spec).await?;
        let code = brain.wait_exit(Duration::from_secs(20)).await;
        ensure(
            matches!(code, Some(c) if c != 0),
            format!("{what}: start-up went on (exit {code:?})"),
        )?;
        let out = brain.output();
        ensure(
            out.contains(names),
            format!("{what}: the refusal does not name {names}: {out}"),
        )?;
    }
    // Dev: the brain runs, the gRPC port stays shut.
    let (brain, grpc_port) =
        insecure_brain(&ctx, &[("Z4J_SCHEDULER_GRPC_REQUIRE_ALLOWLIST", "true")]).await?;
    let (st, _) = agent::login(&brain)
        .await
        .map(|_| (200, ()))
        .unwrap_or((0, ()));
    ensure_eq(st, 200, "dev brain with a refused gRPC server serves HTTP")?;
    ensure(
        sched::insecure(grpc_port).await.is_err(),
        "dev: the gRPC port answered with an empty required allow-list",
    )?;
    drop(busy);
    Ok(())
}

/// The real z4j-scheduler 1.13.0 in plaintext dev mode, pointed at the
/// brain: it must have started and stay serving for the case.
async fn real_scheduler(
    brain: &Brain,
    grpc_port: u16,
    ops_port: u16,
    cwd: &std::path::Path,
    extra: &[(&str, &str)],
) -> Result<crate::python::Proc, String> {
    let ops_port = ops_port.to_string();
    let mut env = owned(&[
        (
            "Z4J_SCHEDULER_BRAIN_GRPC_URL",
            &format!("127.0.0.1:{grpc_port}"),
        ),
        ("Z4J_SCHEDULER_BRAIN_REST_URL", &brain.base_url),
        ("Z4J_SCHEDULER_INSECURE_GRPC", "true"),
        ("Z4J_SCHEDULER_ENVIRONMENT", "dev"),
        ("Z4J_SCHEDULER_BIND_HOST", "127.0.0.1"),
        ("Z4J_SCHEDULER_BIND_PORT", &ops_port),
        ("Z4J_SCHEDULER_LOG_JSON", "false"),
    ]);
    env.extend(owned(extra));
    let mut proc = crate::python::Proc::spawn(&["-m", "z4j_scheduler", "serve"], &env, cwd).await?;
    // Synced, or gone: a start-up failure ends the process at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if proc
            .output()
            .iter()
            .any(|l| l.contains("cache initial sync complete"))
        {
            return Ok(proc);
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Err(format!(
                "z4j-scheduler exited ({status}):\n{}",
                proc.output().join("\n")
            ));
        }
        if Instant::now() > deadline {
            let out = proc.output().join("\n");
            terminate(proc).await;
            return Err(format!("z4j-scheduler did not sync within 60 s:\n{out}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM, then the usual wait.
async fn terminate(proc: crate::python::Proc) {
    if let Some(pid) = proc.child.id() {
        // SAFETY: signalling a child this suite started.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    proc.stop().await;
}

/// A dev brain with plaintext gRPC polling its watch every 0.5 s, whose
/// fleet page reads a scheduler's ops port reserved here, and an operator.
struct OpsBrain {
    brain: Brain,
    op: Operator,
    grpc_port: u16,
    ops_port: u16,
}

async fn ops_brain(ctx: &Ctx) -> Result<OpsBrain, String> {
    let ops_port = free_port();
    let info_urls = format!(r#"["http://127.0.0.1:{ops_port}"]"#);
    let (brain, grpc_port) = insecure_brain(
        ctx,
        &[
            ("Z4J_SCHEDULER_GRPC_WATCH_POLL_SECONDS", "0.5"),
            ("Z4J_SCHEDULER_INFO_URLS", &info_urls),
        ],
    )
    .await?;
    let op = agent::login(&brain).await?;
    Ok(OpsBrain {
        brain,
        op,
        grpc_port,
        ops_port,
    })
}

/// Interop with the real z4j-scheduler 1.13.0 and a real RQ worker running
/// the z4j-bare agent: an interval schedule created through the REST API is
/// fired by the scheduler every slot, each fire reaches the agent as
/// `schedule.fire`, the job runs on the worker, the scheduler's acks advance
/// `total_runs` and `last_run_at`; disabling the schedule stops the fires
/// within the watch cadence.
pub async fn real_scheduler_interop(ctx: Arc<Ctx>) -> R {
    if !crate::python::redis_available().await {
        return Err("Redis is not listening on 127.0.0.1:6379 (the RQ worker needs it)".into());
    }
    let OpsBrain {
        brain,
        op,
        grpc_port,
        ops_port,
    } = ops_brain(&ctx).await?;
    let worker = RqWorker::start(&ctx, &brain, &op).await?;
    let id = create(
        &brain,
        &op,
        "interop",
        json!({"expression": "2s", "task_name": "rq_jobs.add", "args": [2, 3], "kwargs": {}, "queue": worker.queue}),
    )
    .await?;
    let cwd = tempfile::tempdir().map_err(|e| e.to_string())?;
    let scheduler = real_scheduler(&brain, grpc_port, ops_port, cwd.path(), &[]).await?;
    // The fleet page sees the running scheduler.
    let (st, fleet) = op.get(&brain, "/api/v1/schedulers").await?;
    ensure_eq(st, 200, &format!("fleet: {fleet}"))?;
    ensure_eq(
        fleet["healthy"].as_i64(),
        Some(1),
        &format!("fleet with the real scheduler: {fleet}"),
    )?;
    ensure_eq(
        fleet["schedulers"][0]["info"]["schedules_loaded"].as_i64(),
        Some(1),
        "schedules the scheduler loaded",
    )?;
    let context = |what: String| {
        format!(
            "{what}\nscheduler output:\n{}\nworker output:\n{}",
            scheduler.output().join("\n"),
            worker.proc.output().join("\n")
        )
    };
    fired_jobs_run(&ctx, &brain, &op, &id, &context).await?;

    // Disabled: after one watch cycle and one in-flight slot, no new fire.
    let (st, _) = post(&brain, &op, &format!("/{id}/disable"), None).await?;
    ensure_eq(st, 200, "disable")?;
    tokio::time::sleep(ctx.scaled(0.5 + 2.0 + 1.0)).await;
    let settled = fires(&brain, &op, &id).await?.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = fires(&brain, &op, &id).await?.len();
    ensure_eq(after, settled, "fires after the schedule was disabled")?;
    terminate(scheduler).await;
    worker.proc.stop().await;
    Ok(())
}

/// A real RQ worker running the z4j-bare agent on its own queue, online
/// with the `rq` engine.
pub(super) struct RqWorker {
    pub proc: crate::python::Proc,
    pub queue: String,
    _home: tempfile::TempDir,
}

impl RqWorker {
    pub(super) async fn start(ctx: &Ctx, brain: &Brain, op: &Operator) -> Result<RqWorker, String> {
        let creds = op.mint(brain, "rq-worker").await?;
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        let queue = format!("z4jsched-{}", uuid::Uuid::new_v4().simple());
        let mut env = super::interop::agent_env(brain, &creds, "ws", home.path());
        env.push(("Z4J_DEV_MODE".into(), "1".into()));
        env.push(("Z4J_RQ_REDIS_URL".into(), "redis://127.0.0.1:6379/0".into()));
        env.push((
            "PYTHONPATH".into(),
            crate::python::scripts_dir().display().to_string(),
        ));
        let proc = super::interop::spawn_rq_worker(&env, &queue).await?;
        // The worker's agent online with its engine before the first slot.
        let deadline = Instant::now() + ctx.scaled(60.0);
        loop {
            let (_, agents) = op.get(brain, "/api/v1/projects/default/agents").await?;
            let online = agents.as_array().into_iter().flatten().any(|a| {
                a["state"] == "online"
                    && a["engine_adapters"]
                        .as_array()
                        .is_some_and(|e| e.contains(&json!("rq")))
            });
            if online {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the RQ worker's agent never came online:\n{}",
                    proc.output().join("\n")
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(RqWorker {
            proc,
            queue,
            _home: home,
        })
    }
}

/// Two delivered, acknowledged fires of the 2 s interval schedule `id`
/// with the scheduler's fire ids; the first one's `schedule.fire` command
/// completed with the RQ job it enqueued, the job ran on the worker, and
/// `total_runs`/`last_run_at` advanced. `context` adds the processes'
/// output to a failure.
pub(super) async fn fired_jobs_run(
    ctx: &Ctx,
    brain: &Brain,
    op: &Operator,
    id: &str,
    context: &(dyn Fn(String) -> String + Sync),
) -> R {
    let deadline = Instant::now() + ctx.scaled(30.0);
    let acked = loop {
        let f = fires(brain, op, id).await?;
        let acked: Vec<Json> = f
            .iter()
            .filter(|r| r["status"] == "acked_success" && r["command_id"].is_string())
            .cloned()
            .collect();
        if acked.len() >= 2 {
            break acked;
        }
        if Instant::now() > deadline {
            let seen: Vec<String> = f
                .iter()
                .map(|r| format!("{} (command {})", r["status"], r["command_id"]))
                .collect();
            return Err(context(format!(
                "fewer than two acknowledged delivered fires among {} recorded: {seen:?}",
                f.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for r in &acked {
        let slot = r["scheduled_for"].as_str().unwrap_or_default();
        let secs = chrono::DateTime::parse_from_rfc3339(slot)
            .map(|t| t.timestamp())
            .unwrap_or(1);
        ensure_eq(
            secs % 2,
            0,
            &format!("interval slots are multiples of 2 s since the epoch: {slot}"),
        )?;
        let expected = sched::cadence_fire_id(
            id,
            chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default(),
        );
        ensure_eq(
            r["fire_id"].as_str(),
            Some(expected.as_str()),
            "the scheduler's fire id for the slot",
        )?;
    }
    // The command completed on the agent with the RQ job it enqueued, and
    // the job ran on the worker.
    let command_id = acked[0]["command_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let deadline = Instant::now() + ctx.scaled(30.0);
    let job = loop {
        let (_, c) = op
            .get(
                brain,
                &format!("/api/v1/projects/default/commands/{command_id}"),
            )
            .await?;
        if c["status"] == "completed" {
            ensure_eq(
                c["action"].as_str(),
                Some("schedule.fire"),
                "command action",
            )?;
            break c["result"]["task_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
        if Instant::now() > deadline {
            return Err(context(format!("schedule.fire command not completed: {c}")));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    ensure(
        !job.is_empty(),
        "the agent reported no task_id for the fire",
    )?;
    let deadline = Instant::now() + ctx.scaled(60.0);
    loop {
        let (_, t) = op
            .get(brain, &format!("/api/v1/projects/default/tasks/rq/{job}"))
            .await?;
        if t["state"] == "success" {
            break;
        }
        if Instant::now() > deadline {
            return Err(context(format!("the fired job never succeeded: {t}")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let s = get(brain, op, id).await?;
    ensure(
        s["total_runs"].as_i64().unwrap_or(0) >= 2,
        format!("total_runs after two acked fires: {s}"),
    )?;
    ensure(
        s["last_run_at"].is_string(),
        format!("last_run_at after acked fires: {s}"),
    )
}

/// SIGTERM: from the signal on a new fire is refused with UNAVAILABLE
/// while other calls are still served; an open watch stream is served for
/// the grace window and ended when it is over (decision Y2) — at the default 5 s and configured 2 s, each
/// with a lower and an upper bound (spec §1.10).
pub async fn grace_drain(ctx: Arc<Ctx>) -> R {
    for (grace, env) in [(5.0, None), (2.0, Some("2"))] {
        let extra: Vec<(&str, &str)> = env
            .map(|v| vec![("Z4J_SCHEDULER_GRPC_GRACE_SECONDS", v)])
            .unwrap_or_default();
        let (mut brain, port) = insecure_brain(&ctx, &extra).await?;
        let op = agent::login(&brain).await?;
        let id = create(&brain, &op, "drain", json!({})).await?;
        let mut c = sched::insecure(port).await?;
        let mut w = c
            .watch_schedules(pb::WatchSchedulesRequest::default())
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        // The stream is live before the signal.
        c.ping(pb::PingRequest {})
            .await
            .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        brain.signal(libc::SIGTERM);
        // The signal is handled asynchronously; well within this.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let req = sched::fire_request(&id, slot(3));
        let fire = c.fire_schedule(req.clone()).await;
        ensure_eq(
            code_of(&fire),
            Code::Unavailable,
            &format!("grace {grace}: a fire after SIGTERM"),
        )?;
        if let Err(s) = &fire {
            ensure(
                s.message().contains("shutting down"),
                format!("grace {grace}: refusal detail {:?}", s.message()),
            )?;
        }
        // The scheduler's other calls are still served while draining.
        let ping = c.ping(pb::PingRequest {}).await;
        ensure_eq(
            code_of(&ping),
            Code::Ok,
            &format!("grace {grace}: Ping while draining"),
        )?;
        let ended = tokio::time::timeout(ctx.scaled(grace + 15.0), async {
            loop {
                match w.message().await {
                    Ok(Some(_)) => continue,
                    _ => return t0.elapsed(),
                }
            }
        })
        .await
        .map_err(|_| format!("grace {grace}: the watch stream was never ended"))?;
        let upper = ctx.scaled(grace + 4.0);
        ensure(
            ended >= Duration::from_secs_f64(grace - 0.25) && ended <= upper,
            format!("grace {grace}: the open stream ended after {ended:?} (want {grace} s, at most {upper:?})"),
        )?;
        let code = brain.wait_exit(ctx.scaled(20.0)).await;
        ensure_eq(code, Some(0), &format!("grace {grace}: exit status"))?;
    }
    Ok(())
}

/// The listener's defaults: off unless enabled (the other gRPC settings
/// alone open nothing); enabled, it binds every interface (127.0.0.2
/// reaches it) on port 7701.
pub async fn default_bind(ctx: Arc<Ctx>) -> R {
    let port = free_port();
    let port_text = port.to_string();
    let mut env = owned(&[
        ("Z4J_ENVIRONMENT", "dev"),
        ("Z4J_SCHEDULER_GRPC_INSECURE", "true"),
        ("Z4J_SCHEDULER_GRPC_BIND_HOST", "127.0.0.1"),
        ("Z4J_SCHEDULER_GRPC_BIND_PORT", &port_text),
    ]);
    let off = ctx.start_env(env.clone(), None).await?;
    ensure(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the gRPC port is open with Z4J_SCHEDULER_GRPC_ENABLED unset",
    )?;
    drop(off);
    env.retain(|(k, _)| !k.starts_with("Z4J_SCHEDULER_GRPC_BIND"));
    env.push(("Z4J_SCHEDULER_GRPC_ENABLED".into(), "true".into()));
    let _on = ctx.start_env(env, None).await?;
    let ch = tonic::transport::Channel::from_static("http://127.0.0.2:7701")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("default bind: 127.0.0.2:7701 does not answer: {e}"))?;
    let mut c = z4j_scheduler_proto::v1::scheduler_service_client::SchedulerServiceClient::new(ch);
    c.ping(pb::PingRequest {})
        .await
        .map_err(|e| format!("Ping on the default bind: {e}"))?;
    Ok(())
}

/// The process cap at its default: 64 streams are served, the 65th is
/// refused (the per-identity cap raised out of the way).
pub async fn watch_max_concurrent_default(ctx: Arc<Ctx>) -> R {
    let (_brain, port) =
        insecure_brain(&ctx, &[("Z4J_SCHEDULER_GRPC_WATCH_MAX_PER_CERT", "1000")]).await?;
    let c = sched::insecure(port).await?;
    let mut open = Vec::new();
    for i in 0..64 {
        let s = c
            .clone()
            .watch_schedules(pb::WatchSchedulesRequest::default())
            .await
            .map_err(|e| format!("stream {} of 64: {e}", i + 1))?;
        open.push(s);
    }
    let over = c
        .clone()
        .watch_schedules(pb::WatchSchedulesRequest::default())
        .await;
    ensure_eq(
        code_of(&over),
        Code::ResourceExhausted,
        "stream 65 over the default cap of 64",
    )?;
    if let Err(s) = over {
        ensure_eq(
            s.message(),
            "WatchSchedules concurrent stream cap reached",
            "cap detail",
        )?;
    }
    Ok(())
}

/// The poll cadence at its default (2 s): a change made just after a poll
/// is sent about one interval later — not within 1.5 s, not after 2 s plus
/// the tolerance.
pub async fn watch_poll_default(ctx: Arc<Ctx>) -> R {
    let (brain, port) = insecure_brain(&ctx, &[]).await?;
    let op = agent::login(&brain).await?;
    let mut c = sched::insecure(port).await?;
    let mut w = c
        .watch_schedules(pb::WatchSchedulesRequest::default())
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut latencies = Vec::new();
    create(&brain, &op, "phase", json!({})).await?;
    next_event(&mut w, ctx.scaled(5.0)).await?;
    for i in 0..3 {
        // Just after a poll: the next one is a whole interval away.
        let t0 = Instant::now();
        create(&brain, &op, &format!("poll{i}"), json!({})).await?;
        next_event(&mut w, ctx.scaled(6.0)).await?;
        latencies.push(t0.elapsed());
    }
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    ensure(
        slowest >= Duration::from_millis(1500) && slowest <= ctx.scaled(2.0 + 1.0),
        format!("changes made right after a poll reached the watch after {latencies:?} (want about 2 s)"),
    )?;
    Ok(())
}

/// The fire-rate bucket at its defaults: a fresh identity gets its
/// capacity of 600 fires at once (plus what refills meanwhile at 10/s),
/// then refills at 10 per second.
pub async fn fire_rate_default(ctx: Arc<Ctx>) -> R {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pki = Pki::new(dir.path())?;
    let (brain, port) = mtls_brain(&ctx, &pki, &[]).await?;
    let op = agent::login(&brain).await?;
    let id = create(&brain, &op, "default-rate", json!({})).await?;
    let c = sched::mtls(port, &pki, Some("sched-default")).await?;
    let burst = |from: i64| {
        let c = c.clone();
        let id = id.clone();
        async move {
            let t0 = Instant::now();
            let mut n = 0i64;
            loop {
                let r = c
                    .clone()
                    .fire_schedule(sched::fire_request(&id, slot(from + n)))
                    .await;
                match code_of(&r) {
                    Code::Ok => n += 1,
                    Code::ResourceExhausted => return Ok::<_, String>((n, t0.elapsed())),
                    other => return Err(format!("fire {}: {other:?}", n + 1)),
                }
                if n > 5000 {
                    return Err("no refusal after 5000 fires".into());
                }
            }
        }
    };
    let (n, took) = burst(10_000).await?;
    let refill = (10.0 * took.as_secs_f64()).ceil() as i64;
    ensure(
        n >= 600 && n <= 600 + refill + 1,
        format!("{n} fires before the first refusal in {took:?} (want 600 plus at most {refill} refilled)"),
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (m, took2) = burst(20_000).await?;
    let extra = (10.0 * took2.as_secs_f64()).ceil() as i64;
    ensure(
        (18..=22 + extra).contains(&m),
        format!("{m} fires after a 2 s pause (want about 20 at 10/s, plus {extra} refilled during the burst)"),
    )?;
    Ok(())
}

/// Fires `slots` of a schedule with no agent online (buffered), each acked
/// success as the stock scheduler does; their fire ids.
async fn buffer_slots(
    c: &mut sched::Client,
    id: &str,
    slots: &[i64],
) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    for s in slots {
        let req = sched::fire_request(id, slot(*s));
        let r = c
            .fire_schedule(req.clone())
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        ensure(
            r.buffered,
            format!("fire of slot -{s}s was not buffered: {r:?}"),
        )?;
        c.acknowledge_fire_result(sched::ack(&req.fire_id, "success", ""))
            .await
            .map_err(|e| e.to_string())?;
        ids.push(req.fire_id);
    }
    Ok(ids)
}

/// The fire ids of the `schedule.fire` commands an agent receives within
/// `wait`, with the time the first arrived.
async fn fired_commands(
    session: &mut agent::Session,
    wait: Duration,
) -> Result<(Vec<String>, Option<Duration>), String> {
    let t0 = Instant::now();
    let mut ids = Vec::new();
    let mut first = None;
    loop {
        let left = wait.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return Ok((ids, first));
        }
        match session.recv(left).await {
            Ok(Ok((z4j_protocol::FrameType::Command, j))) => {
                if j["payload"]["action"] == "schedule.fire" {
                    first.get_or_insert(t0.elapsed());
                    ids.push(
                        j["payload"]["parameters"]["fire_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(closed)) => return Err(format!("agent socket closed: {closed:?}")),
            // Nothing more within the wait.
            Err(_) => return Ok((ids, first)),
        }
    }
}

/// Waits for the next `schedule.fire` command.
async fn first_fire(session: &mut agent::Session, wait: Duration) -> R {
    let t0 = Instant::now();
    loop {
        let left = wait.saturating_sub(t0.elapsed());
        match session.recv(left).await? {
            Ok((z4j_protocol::FrameType::Command, j))
                if j["payload"]["action"] == "schedule.fire" =>
            {
                return Ok(())
            }
            Ok(_) if !left.is_zero() => continue,
            Ok(_) => return Err(format!("no schedule.fire within {wait:?}")),
            Err(closed) => return Err(format!("agent socket closed: {closed:?}")),
        }
    }
}

/// Pending-fires replay: buffered fires are delivered once an agent of the
/// engine comes online, each schedule's catch-up policy deciding which
/// (fire_one_missed: the latest, fire_all_missed: all in order, skip:
/// none); a disabled schedule's buffers are dropped, a paused one's wait
/// for its resume; dropped buffers are marked on their fire rows; the
/// replay runs on its cadence, configured (1 s) and at its default (10 s),
/// each bounded from below and above (spec §5.2).
pub async fn replay(ctx: Arc<Ctx>) -> R {
    let (brain, port) =
        insecure_brain(&ctx, &[("Z4J_PENDING_FIRES_REPLAY_INTERVAL_SECONDS", "1")]).await?;
    let op = agent::login(&brain).await?;
    let mut c = sched::insecure(port).await?;
    let one = create(&brain, &op, "one", json!({})).await?;
    let all = create(&brain, &op, "all", json!({"catch_up": "fire_all_missed"})).await?;
    let skip = create(&brain, &op, "skip", json!({"catch_up": "skip"})).await?;
    let off = create(&brain, &op, "off", json!({})).await?;
    let held = create(&brain, &op, "held", json!({})).await?;
    let slots = [40, 30, 20];
    let one_ids = buffer_slots(&mut c, &one, &slots).await?;
    let all_ids = buffer_slots(&mut c, &all, &slots).await?;
    let skip_ids = buffer_slots(&mut c, &skip, &slots).await?;
    buffer_slots(&mut c, &off, &slots).await?;
    let held_ids = buffer_slots(&mut c, &held, &slots).await?;
    post(&brain, &op, &format!("/{off}/disable"), None).await?;
    post(&brain, &op, &format!("/{held}/pause"), None).await?;

    let creds = op.mint(&brain, "replayer").await?;
    let mut session = agent::connect(&brain, &creds, Some("w1")).await?;
    let (got, first) = fired_commands(&mut session, ctx.scaled(1.0 + 3.0)).await?;
    let mut want = vec![one_ids[2].clone()];
    want.extend(all_ids.iter().cloned());
    let mut sorted_got = got.clone();
    sorted_got.sort();
    want.sort();
    ensure_eq(
        sorted_got,
        want,
        "fires replayed (one latest, all three, none of skip/disabled/paused)",
    )?;
    let order: Vec<&String> = got.iter().filter(|f| all_ids.contains(f)).collect();
    ensure_eq(
        order,
        all_ids.iter().collect::<Vec<_>>(),
        "fire_all_missed replays in slot order",
    )?;
    ensure(
        first.is_some_and(|t| t <= ctx.scaled(1.0 + 1.0)),
        format!("first replay after {first:?} (interval 1 s)"),
    )?;
    let rows = fires(&brain, &op, &one).await?;
    let row = |id: &str| {
        rows.iter()
            .find(|r| r["fire_id"] == json!(id))
            .cloned()
            .unwrap_or_default()
    };
    ensure(
        row(&one_ids[2])["command_id"].is_string(),
        format!("replayed fire has its command: {}", row(&one_ids[2])),
    )?;
    ensure_eq(
        row(&one_ids[0])["error_code"].as_str(),
        Some("buffer_dropped"),
        "an older buffer of fire_one_missed",
    )?;
    let skipped = fires(&brain, &op, &skip).await?;
    ensure(
        skip_ids.iter().all(|id| {
            skipped
                .iter()
                .any(|r| r["fire_id"] == json!(id) && r["error_code"] == "buffer_dropped")
        }),
        format!("skip's buffers are marked dropped: {skipped:?}"),
    )?;
    // The paused schedule's buffers wait; resumed, its latest is delivered.
    post(&brain, &op, &format!("/{held}/resume"), None).await?;
    let (got, _) = fired_commands(&mut session, ctx.scaled(1.0 + 2.0)).await?;
    ensure_eq(got, vec![held_ids[2].clone()], "after resume")?;

    // The cadence: a buffer made while the agent is away is delivered at
    // the next pass, one interval after the previous delivery.
    for (interval, env) in [(1.0, Some("1")), (10.0, None)] {
        let extra: Vec<(&str, &str)> = env
            .map(|v| vec![("Z4J_PENDING_FIRES_REPLAY_INTERVAL_SECONDS", v)])
            .unwrap_or_default();
        let (brain, port) = insecure_brain(&ctx, &extra).await?;
        let op = agent::login(&brain).await?;
        let mut c = sched::insecure(port).await?;
        let id = create(
            &brain,
            &op,
            "cadence",
            json!({"catch_up": "fire_all_missed"}),
        )
        .await?;
        let creds = op.mint(&brain, "cadence").await?;
        buffer_slots(&mut c, &id, &[50]).await?;
        let mut s = agent::connect(&brain, &creds, Some("w1")).await?;
        first_fire(&mut s, ctx.scaled(interval + 2.0))
            .await
            .map_err(|e| format!("interval {interval}: first delivery: {e}"))?;
        let t_a = Instant::now();
        drop(s);
        // The agent is offline once its socket is gone.
        tokio::time::sleep(Duration::from_millis(300)).await;
        buffer_slots(&mut c, &id, &[45]).await?;
        let mut s = agent::connect(&brain, &creds, Some("w1")).await?;
        first_fire(&mut s, ctx.scaled(interval + 2.0))
            .await
            .map_err(|e| format!("interval {interval}: second delivery: {e}"))?;
        let gap = t_a.elapsed();
        ensure(
            gap >= Duration::from_secs_f64(interval * 0.8) && gap <= ctx.scaled(interval + 1.5),
            format!("interval {interval}: consecutive replays {gap:?} apart"),
        )?;
    }
    Ok(())
}

/// The circuit breaker: at its default threshold (5) four failed fires in
/// a row keep a schedule enabled and five disable it, with an audit row;
/// configured to 2, the second failure trips it; 0 turns it off; a sweep
/// happens within its interval (spec §5.3).
pub async fn breaker(ctx: Arc<Ctx>) -> R {
    let interval = 5.0;
    for (threshold, env) in [(5usize, None), (2, Some("2")), (0, Some("0"))] {
        let mut extra = vec![("Z4J_SCHEDULE_CIRCUIT_BREAKER_INTERVAL_SECONDS", "5")];
        if let Some(v) = env {
            extra.push(("Z4J_SCHEDULE_CIRCUIT_BREAKER_THRESHOLD", v));
        }
        let (brain, port) = insecure_brain(&ctx, &extra).await?;
        let op = agent::login(&brain).await?;
        let mut c = sched::insecure(port).await?;
        let below = create(&brain, &op, "below", json!({})).await?;
        let at = create(&brain, &op, "at", json!({})).await?;
        let failing = threshold.max(5);
        for (id, n) in [(&below, threshold.saturating_sub(1)), (&at, failing)] {
            for i in 0..n {
                let req = sched::fire_request(id, slot(100 + 10 * i as i64));
                c.fire_schedule(req.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                c.acknowledge_fire_result(sched::ack(&req.fire_id, "failed", "dispatch failed"))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let t0 = Instant::now();
        let deadline = t0 + ctx.scaled(interval + 3.0);
        let tripped = loop {
            let s = get(&brain, &op, &at).await?;
            if s["is_enabled"] == json!(false) {
                break Some(t0.elapsed());
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        if threshold == 0 {
            ensure(
                tripped.is_none(),
                "threshold 0: the breaker disabled a schedule",
            )?;
        } else {
            let took = tripped.ok_or(format!("threshold {threshold}: {failing} failures did not disable the schedule within a sweep"))?;
            ensure(
                took <= ctx.scaled(interval + 3.0),
                format!("tripped after {took:?}"),
            )?;
            let s = get(&brain, &op, &below).await?;
            ensure_eq(
                s["is_enabled"].as_bool(),
                Some(true),
                &format!("threshold {threshold}: one failure fewer keeps it enabled"),
            )?;
            let (_, audit) = op
                .get(
                    &brain,
                    "/api/v1/projects/default/audit?action_prefix=schedule.circuit_breaker",
                )
                .await?;
            let items = audit["items"].as_array().cloned().unwrap_or_default();
            ensure(
                items.iter().any(|e| {
                    e["target_id"] == json!(at) || e["target_id"].as_str() == Some(at.as_str())
                }),
                format!("no schedule.circuit_breaker.tripped audit row: {audit}"),
            )?;
        }
    }
    Ok(())
}

/// `GET /api/v1/schedulers`: every instance of `Z4J_SCHEDULER_INFO_URLS`
/// probed at `/info` — a valid answer ok, an error status, a body of the
/// wrong shape, a redirect (not followed) and a non-HTTP URL not ok, an
/// unreachable or hanging one unknown (null) within the 3 s budget; the
/// whole answer stays 200. Unset, the list is empty; API keys are refused.
pub async fn fleet(ctx: Arc<Ctx>) -> R {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let info = json!({"version": "1.13.0", "instance_id": "i-1", "started_at": "2026-12-02T00:00:00+00:00",
        "ready": true, "uptime_seconds": 12.5, "schedules_loaded": 3,
        "subsystems": {"brain_client_connected": true, "cache_initial_sync_complete": true, "leader_gate_initialised": true}});
    let server = |status: u16, body: Json, delay: u64| async move {
        let s = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/info"))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_json(body)
                    .set_delay(Duration::from_secs(delay)),
            )
            .mount(&s)
            .await;
        s
    };
    let good = server(200, info.clone(), 0).await;
    let failing = server(503, json!({"status": "not_ready"}), 0).await;
    let mut wrong = info.clone();
    wrong["schedules_loaded"] = json!("three");
    let misshapen = server(200, wrong, 0).await;
    let hanging = server(200, info.clone(), 10).await;
    let moved = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/info"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", good.uri()))
        .mount(&moved)
        .await;
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let urls = json!([
        good.uri(),
        failing.uri(),
        misshapen.uri(),
        hanging.uri(),
        moved.uri(),
        unreachable,
        "ftp://127.0.0.1/"
    ]);
    let (brain, _) =
        insecure_brain(&ctx, &[("Z4J_SCHEDULER_INFO_URLS", &urls.to_string())]).await?;
    let op = agent::login(&brain).await?;
    let t0 = Instant::now();
    let (st, f) = op.get(&brain, "/api/v1/schedulers").await?;
    let took = t0.elapsed();
    ensure_eq(st, 200, &format!("fleet: {f}"))?;
    ensure(
        took <= ctx.scaled(3.0 + 1.5),
        format!("the fleet answer took {took:?} with a hanging instance"),
    )?;
    let oks: Vec<Json> = f["schedulers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["ok"].clone())
        .collect();
    ensure_eq(
        oks,
        vec![
            json!(true),
            json!(false),
            json!(false),
            Json::Null,
            json!(false),
            Json::Null,
            json!(false),
        ],
        &format!("per-instance verdicts: {f}"),
    )?;
    ensure_eq(
        f["schedulers"][0]["info"]["schedules_loaded"].as_i64(),
        Some(3),
        "the payload of a valid instance",
    )?;
    ensure(
        f["schedulers"][1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("HTTP 503")),
        format!("error of a failing instance: {}", f["schedulers"][1]),
    )?;
    ensure_eq(f["total"].as_i64(), Some(7), "total")?;
    ensure_eq(f["healthy"].as_i64(), Some(1), "healthy")?;
    // Unset: nothing to probe.
    let (plain, _) = insecure_brain(&ctx, &[]).await?;
    let op2 = agent::login(&plain).await?;
    let (st, f) = op2.get(&plain, "/api/v1/schedulers").await?;
    ensure_eq(st, 200, "fleet with no URLs")?;
    ensure_eq(
        f,
        json!({"schedulers": [], "total": 0, "healthy": 0}),
        "fleet with no URLs",
    )?;
    Ok(())
}

/// `Z4J_SCHEDULER_TRIGGER_*` are accepted and ignored (decision Y6): the
/// brain starts with them set, says so once naming them, and fires work
/// as without them.
pub async fn trigger_ignored(ctx: Arc<Ctx>) -> R {
    let (brain, port) = insecure_brain(
        &ctx,
        &[
            ("Z4J_SCHEDULER_TRIGGER_URL", "127.0.0.1:7802"),
            ("Z4J_SCHEDULER_TRIGGER_TLS_CERT", "/nonexistent/cert.pem"),
            ("Z4J_SCHEDULER_TRIGGER_TLS_KEY", "/nonexistent/key.pem"),
            ("Z4J_SCHEDULER_TRIGGER_TLS_CA", "/nonexistent/ca.pem"),
        ],
    )
    .await?;
    // The line is written before the brain answers, but the pipe reader
    // may not have taken it yet (a CI failure).
    brain
        .wait_output("accepted and ignored", Duration::from_secs(5))
        .await;
    let out = brain.output();
    for v in [
        "Z4J_SCHEDULER_TRIGGER_URL",
        "Z4J_SCHEDULER_TRIGGER_TLS_CERT",
        "Z4J_SCHEDULER_TRIGGER_TLS_KEY",
        "Z4J_SCHEDULER_TRIGGER_TLS_CA",
    ] {
        ensure(
            out.contains(v),
            format!("the start-up line does not name {v}: {out}"),
        )?;
    }
    let op = agent::login(&brain).await?;
    let id = create(&brain, &op, "t", json!({})).await?;
    let mut c = sched::insecure(port).await?;
    let r = c
        .fire_schedule(sched::fire_request(&id, slot(5)))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    ensure(
        r.buffered,
        format!("fire with the trigger variables set: {r:?}"),
    )?;
    // Counted last, so a repeat printed after start-up would be seen.
    ensure_eq(
        brain.output().matches("accepted and ignored").count(),
        1,
        "one line",
    )?;
    Ok(())
}

/// Retention, through the testing clock on one database: a buffered fire
/// is kept 7 days (still pending 1 h before, gone 1 h after, at the
/// replay's first pass), fire history 30 days (a row is kept 1 h before its
/// 30th day and pruned at the first pass 1 h after, a younger row kept)
/// (spec §5.2, §5.4).
pub async fn retention(ctx: Arc<Ctx>) -> R {
    let grpc_port = free_port().to_string();
    let (env, pg) = ctx
        .pinned_admin_env(&[
            ("Z4J_ENVIRONMENT", "dev"),
            ("Z4J_SCHEDULER_GRPC_ENABLED", "true"),
            ("Z4J_SCHEDULER_GRPC_INSECURE", "true"),
            ("Z4J_SCHEDULER_GRPC_BIND_HOST", "127.0.0.1"),
            ("Z4J_SCHEDULER_GRPC_BIND_PORT", &grpc_port),
            ("Z4J_PENDING_FIRES_REPLAY_INTERVAL_SECONDS", "1"),
        ])
        .await?;
    let port: u16 = grpc_port.parse().map_err(|_| "port")?;
    let at = |days: f64, home: Option<crate::brain::Home>| {
        let mut e = env.clone();
        let secs = (days * 86_400.0) as i64;
        if secs != 0 {
            e.push(("Z4J_TESTING_CLOCK_OFFSET_SECONDS".into(), secs.to_string()));
        }
        (e, home)
    };
    let hour = 1.0 / 24.0;
    let (e, h) = at(0.0, None);
    let brain = ctx.start_env(e, h).await?;
    let op = agent::login(&brain).await?;
    let id = create(&brain, &op, "kept", json!({})).await?;
    let mut c = sched::insecure(port).await?;
    let f1 = buffer_slots(&mut c, &id, &[60]).await?.remove(0);
    let home = brain.stop_keep_home().await;
    let pending = |home: crate::brain::Home| {
        let ctx = ctx.clone();
        let pg = pg.clone();
        async move {
            let mut conn = super::grey::connect(&ctx, &home.path, pg.as_deref()).await?;
            conn.i64("SELECT count(*) FROM pending_fires").await
        }
    };

    // One hour before the buffer's seventh day: still pending.
    let (e, h) = at(7.0 - hour, Some(home));
    let brain = ctx.start_env(e, h).await?;
    tokio::time::sleep(ctx.scaled(2.5)).await;
    let home = brain.stop_keep_home().await;
    ensure_eq(
        pending(home.clone()).await?,
        1,
        "buffered fires 1 h before expiry",
    )?;
    // One hour after: the replay's first pass deleted it.
    let (e, h) = at(7.0 + hour, Some(home));
    let brain = ctx.start_env(e, h).await?;
    let op = agent::login(&brain).await?;
    let mut c = sched::insecure(port).await?;
    let f2 = buffer_slots(&mut c, &id, &[30]).await?.remove(0);
    tokio::time::sleep(ctx.scaled(2.5)).await;
    let f = fires(&brain, &op, &id).await?;
    ensure_eq(f.len(), 2, "fire rows after the first buffer expired")?;
    let home = brain.stop_keep_home().await;
    ensure_eq(
        pending(home.clone()).await?,
        1,
        "only the new buffer is pending 1 h after the first expired",
    )?;

    // Fire history: f1 was written at day 0, f2 at day 7.
    let (e, h) = at(30.0 - hour, Some(home));
    let brain = ctx.start_env(e, h).await?;
    let op = agent::login(&brain).await?;
    tokio::time::sleep(ctx.scaled(2.0)).await;
    ensure_eq(
        fires(&brain, &op, &id).await?.len(),
        2,
        "fires 1 h before the first's 30th day",
    )?;
    let home = brain.stop_keep_home().await;
    let (e, h) = at(30.0 + hour, Some(home));
    let brain = ctx.start_env(e, h).await?;
    let op = agent::login(&brain).await?;
    let deadline = Instant::now() + ctx.scaled(5.0);
    loop {
        let ids: Vec<String> = fires(&brain, &op, &id)
            .await?
            .iter()
            .filter_map(|r| r["fire_id"].as_str().map(str::to_owned))
            .collect();
        if ids == vec![f2.clone()] {
            break;
        }
        ensure(
            Instant::now() < deadline,
            format!("fires 1 h after the first's 30th day: {ids:?} (want only {f2}, not {f1})"),
        )?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// The breaker's sweep at its default cadence (60 s): failures recorded
/// just after start-up (the first sweep runs at boot) trip the schedule at
/// the next sweep — not before 50 s, not after 60 s plus the tolerance.
pub async fn breaker_interval_default(ctx: Arc<Ctx>) -> R {
    let (brain, port) = insecure_brain(&ctx, &[]).await?;
    let booted = Instant::now();
    let op = agent::login(&brain).await?;
    let mut c = sched::insecure(port).await?;
    let id = create(&brain, &op, "slow-sweep", json!({})).await?;
    for i in 0..5 {
        let req = sched::fire_request(&id, slot(100 + 10 * i));
        c.fire_schedule(req.clone())
            .await
            .map_err(|e| e.to_string())?;
        c.acknowledge_fire_result(sched::ack(&req.fire_id, "failed", "dispatch failed"))
            .await
            .map_err(|e| e.to_string())?;
    }
    let deadline = booted + ctx.scaled(60.0 + 5.0);
    loop {
        if get(&brain, &op, &id).await?["is_enabled"] == json!(false) {
            let at = booted.elapsed();
            return ensure(
                at >= Duration::from_secs(50),
                format!("tripped {at:?} after start-up (the default sweep is every 60 s)"),
            );
        }
        ensure(
            Instant::now() < deadline,
            "five failures not tripped within 60 s of start-up plus the tolerance",
        )?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// mTLS with the real z4j-scheduler 1.13.0 and a client certificate from
/// the target's `mint-scheduler-cert`: the listed scheduler syncs and its
/// fires are acknowledged; a scheduler whose certificate is not on the
/// allow-list is refused at its first call and exits (spec §7, §10.2).
pub async fn real_scheduler_mtls(ctx: Arc<Ctx>) -> R {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pki = Pki::new(dir.path())?;
    let out = dir.path().join("sched");
    let out_text = out.display().to_string();
    for name in ["scheduler-1", "scheduler-2"] {
        let r = crate::brain::run_cli(
            &ctx.target,
            dir.path(),
            &[],
            &[
                "mint-scheduler-cert",
                "--name",
                name,
                "--ca-cert",
                &pki.path("ca.crt"),
                "--ca-key",
                &pki.path("ca.key"),
                "--out-dir",
                &out_text,
            ],
        )?;
        ensure_eq(
            r.code,
            0,
            &format!("mint-scheduler-cert {name}: {}{}", r.stdout, r.stderr),
        )?;
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join(format!("{name}.key")))
            .map_err(|e| format!("{name}.key: {e}"))?
            .permissions()
            .mode();
        ensure_eq(mode & 0o777, 0o600, &format!("{name}.key mode"))?;
    }
    let bad = crate::brain::run_cli(
        &ctx.target,
        dir.path(),
        &[],
        &[
            "mint-scheduler-cert",
            "--name",
            "../escape",
            "--ca-cert",
            &pki.path("ca.crt"),
            "--ca-key",
            &pki.path("ca.key"),
            "--out-dir",
            &out_text,
        ],
    )?;
    ensure(
        bad.code != 0,
        "mint-scheduler-cert accepted a name with a path in it",
    )?;
    let (brain, port) = mtls_brain(
        &ctx,
        &pki,
        &[
            ("Z4J_SCHEDULER_GRPC_ALLOWED_CNS", r#"["scheduler-1"]"#),
            ("Z4J_SCHEDULER_GRPC_REQUIRE_ALLOWLIST", "true"),
            ("Z4J_SCHEDULER_GRPC_WATCH_POLL_SECONDS", "0.5"),
        ],
    )
    .await?;
    let op = agent::login(&brain).await?;
    let id = create(&brain, &op, "tls", json!({"expression": "2s"})).await?;
    let tls = |name: &str| {
        vec![
            ("Z4J_SCHEDULER_INSECURE_GRPC".to_owned(), "false".to_owned()),
            (
                "Z4J_SCHEDULER_ENVIRONMENT".to_owned(),
                "production".to_owned(),
            ),
            (
                "Z4J_SCHEDULER_TLS_CERT".to_owned(),
                out.join(format!("{name}.crt")).display().to_string(),
            ),
            (
                "Z4J_SCHEDULER_TLS_KEY".to_owned(),
                out.join(format!("{name}.key")).display().to_string(),
            ),
            ("Z4J_SCHEDULER_TLS_CA".to_owned(), pki.path("ca.crt")),
            (
                "Z4J_SCHEDULER_BRAIN_GRPC_URL".to_owned(),
                format!("localhost:{port}"),
            ),
        ]
    };
    let cwd = tempfile::tempdir().map_err(|e| e.to_string())?;
    let env1 = tls("scheduler-1");
    let env1: Vec<(&str, &str)> = env1.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let scheduler = real_scheduler(&brain, port, free_port(), cwd.path(), &env1).await?;
    let deadline = Instant::now() + ctx.scaled(20.0);
    loop {
        let acked = fires(&brain, &op, &id)
            .await?
            .iter()
            .filter(|r| r["status"] == "acked_success")
            .count();
        if acked >= 2 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the mTLS scheduler's fires were not acknowledged:\n{}",
                scheduler.output().join("\n")
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    terminate(scheduler).await;
    // Not on the allow-list: refused, and the scheduler gives up.
    let env2 = tls("scheduler-2");
    let env2: Vec<(&str, &str)> = env2.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cwd2 = tempfile::tempdir().map_err(|e| e.to_string())?;
    match real_scheduler(&brain, port, free_port(), cwd2.path(), &env2).await {
        Ok(p) => {
            let out = p.output().join("\n");
            terminate(p).await;
            Err(format!(
                "a scheduler with an unlisted certificate synced:\n{out}"
            ))
        }
        Err(out) => ensure(
            out.contains("PERMISSION_DENIED") || out.contains("not authorised"),
            format!("the unlisted scheduler failed for another reason:\n{out}"),
        ),
    }
}

/// "Fire now": a `submit_task` command with the schedule's task to an
/// online agent of its engine, no fire history and no run counted; a
/// disabled schedule can still be fired by hand, a paused one cannot
/// (409); without an agent of the engine it is 404 with the reason
/// (spec §4.10).
pub async fn trigger_now(ctx: Arc<Ctx>) -> R {
    let (brain, _) = insecure_brain(&ctx, &[]).await?;
    let op = agent::login(&brain).await?;
    let id = create(&brain, &op, "manual", json!({"queue": "q1"})).await?;
    let (st, e) = post(&brain, &op, &format!("/{id}/trigger"), None).await?;
    ensure_eq(st, 404, &format!("trigger with no agent: {e}"))?;
    ensure_eq(
        e["details"]["reason"].as_str(),
        Some("no_online_agent"),
        "reason without agents",
    )?;
    let other = op.mint(&brain, "celery-only").await?;
    let mut hello = agent::hello(Some("w0"));
    hello["payload"]["engines"] = json!(["celery"]);
    hello["payload"]["capabilities"] = json!({"celery": []});
    let _celery = agent::connect_with_hello(&brain, &other, hello).await?;
    let (st, e) = post(&brain, &op, &format!("/{id}/trigger"), None).await?;
    ensure_eq(
        st,
        404,
        &format!("trigger with only another engine online: {e}"),
    )?;
    ensure_eq(
        e["details"]["reason"].as_str(),
        Some("engine_not_installed"),
        "reason with another engine",
    )?;

    let creds = op.mint(&brain, "rq-agent").await?;
    let mut session = agent::connect(&brain, &creds, Some("w1")).await?;
    post(&brain, &op, &format!("/{id}/disable"), None).await?;
    let (st, s) = post(&brain, &op, &format!("/{id}/trigger"), None).await?;
    ensure_eq(st, 200, &format!("trigger of a disabled schedule: {s}"))?;
    ensure_eq(
        s["id"].as_str(),
        Some(id.as_str()),
        "the schedule is answered",
    )?;
    let frame = loop {
        match session.recv(Duration::from_secs(10)).await? {
            Ok((z4j_protocol::FrameType::Command, j)) => break j,
            Ok(_) => continue,
            Err(closed) => return Err(format!("agent socket closed: {closed:?}")),
        }
    };
    let p = &frame["payload"];
    ensure_eq(p["action"].as_str(), Some("submit_task"), "fire-now action")?;
    let params = &p["parameters"];
    ensure_eq(params["name"].as_str(), Some("jobs.tick"), "task name")?;
    ensure_eq(params["args"].clone(), json!([1, "two"]), "args")?;
    ensure_eq(params["queue"].as_str(), Some("q1"), "queue")?;
    ensure_eq(
        params["filter"]["engine"].as_str(),
        Some("rq"),
        "engine filter",
    )?;
    ensure(
        fires(&brain, &op, &id).await?.is_empty(),
        "fire now wrote fire history",
    )?;
    ensure_eq(
        get(&brain, &op, &id).await?["total_runs"].as_i64(),
        Some(0),
        "fire now counted a run",
    )?;

    post(&brain, &op, &format!("/{id}/pause"), None).await?;
    let (st, e) = post(&brain, &op, &format!("/{id}/trigger"), None).await?;
    ensure_eq(st, 409, &format!("trigger of a paused schedule: {e}"))?;
    ensure_eq(
        e["details"]["reason"].as_str(),
        Some("schedule_paused"),
        "paused reason",
    )?;
    Ok(())
}

/// Seconds from a variable of the suite's own environment, else `default`.
fn knob(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The real scheduler's HTTP/2 keepalive pings (every 5 s here, the least
/// it allows; every 30 s by default) are tolerated: over the soak its watch
/// stream is opened once and never cut (no GOAWAY `too_many_pings`), and it
/// still delivers a schedule created at the end. The soak is 60 s in CI;
/// the campaign runs 600 s at the scheduler's default cadence
/// (`Z4J_CONFORMANCE_KEEPALIVE_SECONDS=600 Z4J_CONFORMANCE_KEEPALIVE_PING_SECONDS=30`).
pub async fn keepalive(ctx: Arc<Ctx>) -> R {
    let soak = knob("Z4J_CONFORMANCE_KEEPALIVE_SECONDS", 60.0);
    let ping = knob("Z4J_CONFORMANCE_KEEPALIVE_PING_SECONDS", 5.0).to_string();
    let OpsBrain {
        brain,
        op,
        grpc_port,
        ops_port,
    } = ops_brain(&ctx).await?;
    let cwd = tempfile::tempdir().map_err(|e| e.to_string())?;
    let scheduler = real_scheduler(
        &brain,
        grpc_port,
        ops_port,
        cwd.path(),
        &[("Z4J_SCHEDULER_GRPC_KEEPALIVE_SECONDS", &ping)],
    )
    .await?;
    tokio::time::sleep(Duration::from_secs_f64(soak)).await;
    let out = scheduler.output();
    let opened = out.iter().filter(|l| l.contains("stream healthy")).count();
    let policed = out
        .iter()
        .find(|l| l.contains("too_many_pings") || l.contains("GOAWAY"));
    let context = |what: String| format!("{what}\nscheduler output:\n{}", out.join("\n"));
    if let Some(line) = policed {
        return Err(context(format!("the brain policed the pings: {line}")));
    }
    if opened != 1 {
        return Err(context(format!(
            "the watch stream was opened {opened} times over {soak} s of {ping} s pings"
        )));
    }
    create(&brain, &op, "after-soak", json!({})).await?;
    let deadline = Instant::now() + ctx.scaled(5.0);
    loop {
        let (_, f) = op.get(&brain, "/api/v1/schedulers").await?;
        if f["schedulers"][0]["info"]["schedules_loaded"] == 1 {
            break;
        }
        if Instant::now() > deadline {
            return Err(context(format!(
                "the scheduler did not load a schedule created after the soak: {f}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    terminate(scheduler).await;
    Ok(())
}

/// Two replicas on one PostgreSQL database behind one address (a TCP
/// forwarder standing in for the load balancer): the real scheduler fires
/// through the first; when it is killed the scheduler reconnects to the
/// second, whose watch stream then serves it — fires go on, and disabling
/// the schedule through the second replica stops them.
pub async fn replica_takeover(ctx: Arc<Ctx>) -> R {
    let (db_env, _) = ctx.pinned_database().await?;
    let replica = |port: u16| {
        let mut env = owned(&agent::admin_env());
        env.extend(owned(&[
            ("Z4J_ENVIRONMENT", "dev"),
            ("Z4J_SCHEDULER_GRPC_ENABLED", "true"),
            ("Z4J_SCHEDULER_GRPC_INSECURE", "true"),
            ("Z4J_SCHEDULER_GRPC_BIND_HOST", "127.0.0.1"),
            ("Z4J_SCHEDULER_GRPC_BIND_PORT", &port.to_string()),
            ("Z4J_SCHEDULER_GRPC_WATCH_POLL_SECONDS", "0.5"),
        ]));
        env.extend(db_env.clone());
        env
    };
    let (pa, pb) = (free_port(), free_port());
    let mut a = ctx.start_env(replica(pa), None).await?;
    let b = ctx.start_env(replica(pb), None).await?;
    let (op_a, op_b) = (agent::login(&a).await?, agent::login(&b).await?);
    let id = create(&a, &op_a, "takeover", json!({"expression": "2s"})).await?;
    let lb = sched::Forwarder::start(pa).await?;
    let cwd = tempfile::tempdir().map_err(|e| e.to_string())?;
    let scheduler = real_scheduler(&a, lb.port, free_port(), cwd.path(), &[]).await?;
    let context = |what: String| {
        format!(
            "{what}\nscheduler output:\n{}",
            scheduler.output().join("\n")
        )
    };
    let fired_after = |rows: &[Json], t: chrono::DateTime<chrono::Utc>| {
        rows.iter()
            .filter(|r| {
                r["scheduled_for"]
                    .as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .is_some_and(|s| s > t)
            })
            .count()
    };
    let deadline = Instant::now() + ctx.scaled(20.0);
    while fires(&b, &op_b, &id).await?.is_empty() {
        if Instant::now() > deadline {
            return Err(context("no fire through the first replica".into()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    a.kill();
    lb.switch(pb);
    let killed = chrono::Utc::now() + chrono::Duration::seconds(1);
    let deadline = Instant::now() + ctx.scaled(40.0);
    while fired_after(&fires(&b, &op_b, &id).await?, killed) < 2 {
        if Instant::now() > deadline {
            return Err(context(format!(
                "no fires through the second replica after the first was killed: {:?}",
                fires(&b, &op_b, &id).await?
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (st, _) = post(&b, &op_b, &format!("/{id}/disable"), None).await?;
    ensure_eq(st, 200, "disable through the second replica")?;
    tokio::time::sleep(ctx.scaled(0.5 + 2.0 + 1.0)).await;
    let settled = fires(&b, &op_b, &id).await?.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = fires(&b, &op_b, &id).await?.len();
    if after != settled {
        return Err(context(format!(
            "fires went on after the second replica disabled the schedule ({settled} -> {after})"
        )));
    }
    terminate(scheduler).await;
    Ok(())
}

/// `GET …/schedules/runs`: the newest fires of several schedules in one
/// request, newest first, `limit` (default 20, 1..50) per schedule; ids of
/// another project are dropped, a schedule without fires has an empty list;
/// a bad id, a limit outside 1..50 or more than 500 ids is 422 naming it.
pub async fn runs(ctx: Arc<Ctx>) -> R {
    let (brain, port) = insecure_brain(&ctx, &[]).await?;
    let op = agent::login(&brain).await?;
    let busy = create(&brain, &op, "busy", json!({})).await?;
    let idle = create(&brain, &op, "idle", json!({})).await?;
    op.create_project(&brain, "elsewhere").await?;
    let (st, other) = op
        .send(
            &brain,
            reqwest::Method::POST,
            "/api/v1/projects/elsewhere/schedules",
            Some(json!({"name": "theirs", "engine": "rq", "kind": "interval", "expression": "10s", "task_name": "t", "scheduler": "z4j-scheduler"})),
        )
        .await?;
    ensure_eq(st, 201, &format!("schedule in another project: {other}"))?;
    let other = other["id"].as_str().unwrap_or_default().to_owned();
    let mut c = sched::insecure(port).await?;
    // Taken once: a second boundary between firing and checking moves
    // `slot(ago)` by one.
    let (s300, s200, s100) = (slot(300), slot(200), slot(100));
    for at in [s300, s200, s100] {
        for id in [&busy, &other] {
            c.fire_schedule(sched::fire_request(id, at))
                .await
                .map_err(|e| format!("fire: {e}"))?;
        }
    }
    let get_runs = |q: String| {
        let op = op.clone();
        let brain = &brain;
        async move { op.get(brain, &format!("{BASE}/runs?{q}")).await }
    };
    let (st, r) = get_runs(format!("id={busy}&id={idle}&id={other}&limit=2")).await?;
    ensure_eq(st, 200, &format!("runs: {r}"))?;
    ensure_eq(r["limit"].as_i64(), Some(2), "limit echoed")?;
    let items = r["items"].as_array().cloned().unwrap_or_default();
    ensure_eq(
        items
            .iter()
            .map(|i| i["schedule_id"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>(),
        vec![busy.clone(), idle.clone()],
        "schedules in the answer (another project's dropped)",
    )?;
    let newest: Vec<i64> = items[0]["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["scheduled_for"].as_str())
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp())
        .collect();
    ensure_eq(
        newest,
        vec![s100.timestamp(), s200.timestamp()],
        "the two newest fires, newest first",
    )?;
    ensure_eq(
        items[1]["runs"].clone(),
        json!([]),
        "a schedule without fires",
    )?;
    let (_, r) = get_runs(format!("id={busy}")).await?;
    ensure_eq(r["limit"].as_i64(), Some(20), "default limit")?;
    ensure_eq(
        r["items"][0]["runs"].as_array().map(Vec::len),
        Some(3),
        "all three fires under the default limit",
    )?;
    let (st, _) = get_runs(format!("id={busy}&limit=50")).await?;
    ensure_eq(st, 200, "limit 50")?;
    // One schedule's fires: limit clamped silently to 1..1000 (default 100).
    for (q, want) in [
        ("", 3),
        ("?limit=2", 2),
        ("?limit=0", 1),
        ("?limit=5000", 3),
        ("?limit=x", 3),
    ] {
        let (st, f) = op.get(&brain, &format!("{BASE}/{busy}/fires{q}")).await?;
        ensure_eq(
            (st, f.as_array().map(Vec::len)),
            (200, Some(want)),
            &format!("fires{q}"),
        )?;
    }
    for (q, what) in [
        (format!("id={busy}&limit=0"), "limit"),
        (format!("id={busy}&limit=51"), "limit"),
        ("id=not-a-uuid".to_owned(), "id"),
    ] {
        let (st, body) = get_runs(q.clone()).await?;
        ensure_eq(st, 422, &format!("{q}: {body}"))?;
        ensure(
            body.to_string().contains(what),
            format!("{q}: the error does not name {what}: {body}"),
        )?;
    }
    let many = |n: usize| {
        (0..n)
            .map(|_| format!("id={}", uuid::Uuid::new_v4()))
            .collect::<Vec<_>>()
            .join("&")
    };
    let (st, _) = get_runs(many(500)).await?;
    ensure_eq(st, 200, "500 ids")?;
    let (st, body) = get_runs(many(501)).await?;
    ensure_eq(st, 422, &format!("501 ids: {body}"))?;
    Ok(())
}
