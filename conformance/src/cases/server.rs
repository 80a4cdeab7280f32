//! Server section: health, readiness, bind defaults, logs, shutdown.

use super::{client, ensure, ensure_eq, get_json, R};
use crate::brain::StartSpec;
use crate::runner::Ctx;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn health_and_readiness(ctx: Arc<Ctx>) -> R {
    let b = ctx.start(&[]).await?;
    let (s, body) = get_json(&b, "/api/v1/health", None).await?;
    ensure_eq(s, 200, "GET /api/v1/health status")?;
    ensure_eq(body, serde_json::json!({"status": "ok"}), "health body")?;
    let (s, body) = get_json(&b, "/api/v1/health/ready", None).await?;
    ensure_eq(s, 200, "GET /api/v1/health/ready status")?;
    ensure_eq(body, serde_json::json!({"status": "ready"}), "ready body")?;
    // A domain error carries the envelope and the request id of the header.
    let resp = client()
        .get(b.url("/api/v1/health/system"))
        .header("x-request-id", "conformance-trace-1")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(
        resp.status().as_u16(),
        401,
        "anonymous /api/v1/health/system",
    )?;
    let header = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    ensure_eq(
        header.as_deref(),
        Some("conformance-trace-1"),
        "echoed x-request-id",
    )?;
    let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    ensure_eq(
        body["error"].as_str(),
        Some("unauthenticated"),
        "envelope error code",
    )?;
    ensure_eq(
        body["request_id"].as_str(),
        Some("conformance-trace-1"),
        "envelope request_id",
    )?;
    ensure(
        body["message"].is_string() && body["details"].is_object(),
        format!("envelope shape: {body}"),
    )
}

/// Port 7700 can hold one brain at a time; the SQLite and PostgreSQL runs
/// of the default-bind case take turns.
static DEFAULT_PORT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Without Z4J_BIND_HOST/PORT the brain listens on 0.0.0.0:7700.
pub async fn default_bind(ctx: Arc<Ctx>) -> R {
    let _turn = DEFAULT_PORT.lock().await;
    if std::net::TcpListener::bind("0.0.0.0:7700").is_err() {
        return Err(
            "port 7700 is in use on this machine, so the default cannot be observed".into(),
        );
    }
    let mut spec = StartSpec {
        default_bind: true,
        ..StartSpec::default()
    };
    spec.env.push(("Z4J_LOG_JSON".into(), "false".into()));
    let b = ctx.start_spec(spec).await?;
    // 0.0.0.0 accepts on every loopback address, not just 127.0.0.1.
    // 127.0.0.1 answering proves the port; 127.0.0.2 the host.
    for (addr, clause) in [
        ("127.0.0.1", "Z4J_BIND_PORT"),
        ("127.0.0.2", "Z4J_BIND_HOST"),
    ] {
        let status = client()
            .get(format!("http://{addr}:7700/api/v1/health"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if status.as_ref().ok() != Some(&200) {
            ctx.fail_clause(
                clause,
                format!("health via {addr}:7700: {status:?}\n{}", b.output()),
            );
        }
    }
    drop(b);
    // A configured host and port (the harness sets 127.0.0.1 and a free
    // port) are honoured: nothing answers on 127.0.0.2.
    let b = ctx.start(&[]).await?;
    let other = client()
        .get(format!("http://127.0.0.2:{}/api/v1/health", b.port))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    ensure(
        other.is_err(),
        "a brain bound to 127.0.0.1 answered on 127.0.0.2",
    )
}

fn log_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(['║', '╔', '╚']))
        .collect()
}

pub async fn json_logs_label(ctx: Arc<Ctx>) -> R {
    // Defaults: JSON lines at INFO, each carrying the environment label; a
    // served request is not logged (that is a debug line).
    let mut b = ctx.start(&[]).await?;
    super::get_json(&b, "/api/v1/health", None).await?;
    b.stop().await;
    let err = b.stderr.text();
    let lines = log_lines(&err);
    ensure(!lines.is_empty(), "no log lines at the default level")?;
    let mut saw_info = false;
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l)
            .map_err(|_| format!("log line is not JSON (Z4J_LOG_JSON defaults to true): {l}"))?;
        ensure_eq(
            v["environment"].as_str(),
            Some("production"),
            "environment label of a log line",
        )?;
        let level = v["level"].as_str().unwrap_or_default();
        saw_info |= level.eq_ignore_ascii_case("info");
        ensure(
            !level.eq_ignore_ascii_case("debug"),
            format!("a debug line at the default level (INFO): {l}"),
        )?;
    }
    ensure(saw_info, "no info line: Z4J_LOG_LEVEL defaults to INFO")?;

    // Console format, another label, DEBUG: no JSON, label on every line.
    let mut b = ctx
        .start(&[
            ("Z4J_LOG_JSON", "false"),
            ("Z4J_ENVIRONMENT", "staging-eu"),
            ("Z4J_LOG_LEVEL", "DEBUG"),
        ])
        .await?;
    super::get_json(&b, "/api/v1/health", None).await?;
    b.stop().await;
    let err = b.stderr.text();
    let lines = log_lines(&err);
    ensure(!lines.is_empty(), "no console log lines")?;
    ensure(
        lines
            .iter()
            .any(|l| l.to_ascii_lowercase().contains(" debug ")),
        "no debug line at Z4J_LOG_LEVEL=DEBUG after a request",
    )?;
    for l in &lines {
        ensure(
            !l.starts_with('{'),
            format!("JSON line despite Z4J_LOG_JSON=false: {l}"),
        )?;
        ensure(
            l.contains("staging-eu"),
            format!("line without the environment label: {l}"),
        )?;
    }
    // WARNING hides info lines.
    let mut b = ctx.start(&[("Z4J_LOG_LEVEL", "WARNING")]).await?;
    b.stop().await;
    let err = b.stderr.text();
    for l in log_lines(&err) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
            let level = v["level"].as_str().unwrap_or("").to_ascii_lowercase();
            ensure(
                level != "info" && level != "debug",
                format!("{level} line at WARNING: {l}"),
            )?;
        }
    }
    Ok(())
}

/// SIGTERM lets an in-flight request finish, then the process exits 0.
pub async fn graceful_shutdown(ctx: Arc<Ctx>) -> R {
    let (name, url) = ctx.new_pg_database().await?;
    let mut b = ctx
        .start(&[
            ("Z4J_DATABASE_URL", &url),
            ("Z4J_SECRET", "conformance-master-secret-0123456789abcdef"),
            (
                "Z4J_SESSION_SECRET",
                "conformance-session-secret-0123456789abcdef",
            ),
        ])
        .await?;
    let mut locker = super::lock_users(&ctx, &name).await?;
    let url_status = b.url("/api/v1/setup/status");
    let in_flight = tokio::spawn(async move {
        client()
            .get(url_status)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure(
        !in_flight.is_finished(),
        "the request did not block on the lock",
    )?;
    b.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(700)).await;
    ensure(
        b.wait_exit(Duration::ZERO).await.is_none(),
        "the brain exited before its in-flight request finished",
    )?;
    sqlx::query("COMMIT")
        .execute(&mut locker)
        .await
        .map_err(|e| e.to_string())?;
    let status = in_flight
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the in-flight request was cut off: {e}"))?;
    ensure_eq(status, 200, "status of the drained request")?;
    let started = Instant::now();
    let code = b
        .wait_exit(ctx.scaled(10.0))
        .await
        .ok_or("the brain did not exit after draining")?;
    ensure_eq(code, 0, "exit status after SIGTERM")?;
    ensure(
        started.elapsed() < ctx.scaled(10.0),
        "shutdown took too long",
    )
}
