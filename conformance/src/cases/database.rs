//! Database section: location, URL forms, migrations, TLS rule, timeouts.

use super::{client, ensure, ensure_eq, expect_refusal, get_json, R};
use crate::brain::StartSpec;
use crate::runner::Ctx;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRETS: [(&str, &str); 2] = [
    ("Z4J_SECRET", "conformance-master-secret-0123456789abcdef"),
    (
        "Z4J_SESSION_SECRET",
        "conformance-session-secret-0123456789abcdef",
    ),
];

/// Unset Z4J_DATABASE_URL: SQLite at ~/.z4j/z4j.db; Z4J_HOME moves it.
pub async fn sqlite_default(ctx: Arc<Ctx>) -> R {
    let b = ctx.start(&[]).await?;
    let db = b.z4j_home().join("z4j.db");
    ensure(db.is_file(), format!("{} was not created", db.display()))?;
    drop(b);
    let moved = tempfile::tempdir().map_err(|e| e.to_string())?;
    let custom = moved.path().join("custom-home");
    let b = ctx
        .start(&[("Z4J_HOME", &custom.display().to_string())])
        .await?;
    ensure(
        custom.join("z4j.db").is_file(),
        "Z4J_HOME did not move the database",
    )?;
    ensure(
        custom.join("secret.env").is_file(),
        "Z4J_HOME did not move secret.env",
    )?;
    ensure(
        !b.z4j_home().join("z4j.db").exists(),
        "~/.z4j was used despite Z4J_HOME",
    )
}

async fn pg_conn(ctx: &Ctx, name: &str) -> Result<sqlx::PgConnection, String> {
    let plain = ctx.pg_plain_url(name).ok_or("no PostgreSQL URL")?;
    <sqlx::PgConnection as sqlx::Connection>::connect(&plain)
        .await
        .map_err(|e| e.to_string())
}

/// The documented `postgresql+asyncpg://` form is accepted and used.
pub async fn postgres_documented_url(ctx: Arc<Ctx>) -> R {
    let (name, url) = ctx.new_pg_database().await?;
    ensure(
        url.starts_with("postgresql+asyncpg://"),
        "the suite must pass the documented form",
    )?;
    let b = ctx
        .start(&[("Z4J_DATABASE_URL", &url), SECRETS[0], SECRETS[1]])
        .await?;
    let (s, _) = get_json(&b, "/api/v1/setup/status", None).await?;
    ensure_eq(s, 200, "setup/status on PostgreSQL")?;
    let mut conn = pg_conn(&ctx, &name).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    ensure_eq(tables, 1, "the brain's schema in the given database")
}

/// Default true: a fresh database is migrated. false: an empty database is
/// refused with a message pointing at the migration.
pub async fn auto_migrate(ctx: Arc<Ctx>) -> R {
    let b = ctx.start(&[]).await?;
    let (s, body) = get_json(&b, "/api/v1/setup/status", None).await?;
    ensure_eq(s, 200, "setup/status on a freshly migrated database")?;
    ensure_eq(body["first_boot"].as_bool(), Some(true), "first_boot")?;
    drop(b);
    let (code, err, _b) = expect_refusal(&ctx, &[("Z4J_AUTO_MIGRATE", "false")]).await?;
    ensure(code != 0, "exit status 0 for an unmigrated database")?;
    ensure(
        err.to_lowercase().contains("migrat"),
        format!("the refusal does not mention migrations: {err}"),
    )
}

/// A loopback PostgreSQL URL without sslmode starts under the default
/// `Z4J_REQUIRE_DB_SSL=true` ("auto-relaxed when the URL points at a
/// loopback host").
pub async fn require_db_ssl_loopback(ctx: Arc<Ctx>) -> R {
    let b = ctx
        .start_spec(StartSpec {
            observe_defaults: vec!["Z4J_REQUIRE_DB_SSL"],
            ..StartSpec::default()
        })
        .await?;
    let (status, _) = get_json(&b, "/api/v1/health", None).await?;
    ensure_eq(status, 200, "health on a loopback database without sslmode")
}

/// Non-loopback PostgreSQL without sslmode is refused; false accepts it.
pub async fn require_db_ssl(ctx: Arc<Ctx>) -> R {
    let remote = "postgresql+asyncpg://z4j@db.example.invalid:5432/z4j";
    let (code, err, _b) = super::expect_refusal_observing(
        &ctx,
        &[("Z4J_DATABASE_URL", remote), SECRETS[0], SECRETS[1]],
        &["Z4J_REQUIRE_DB_SSL"],
    )
    .await?;
    ensure(code != 0, "exit 0 for a plaintext non-loopback URL")?;
    ensure(
        err.contains("sslmode"),
        format!("the refusal does not name sslmode: {err}"),
    )?;
    // With the rule off the URL passes validation (and then fails to connect).
    let (code, err, _b) = expect_refusal(
        &ctx,
        &[
            ("Z4J_DATABASE_URL", remote),
            ("Z4J_REQUIRE_DB_SSL", "false"),
            SECRETS[0],
            SECRETS[1],
        ],
    )
    .await?;
    ensure(
        code != 0,
        "an unreachable database must still stop start-up",
    )?;
    ensure(
        !err.contains("sslmode"),
        format!("Z4J_REQUIRE_DB_SSL=false still demanded sslmode: {err}"),
    )
}

/// Holds ACCESS EXCLUSIVE on `users`; returns how long a request that reads
/// users took to fail (it must fail, not hang).
async fn time_blocked_request(ctx: &Ctx, env: &[(&str, &str)]) -> Result<(u16, Duration), String> {
    let (name, url) = ctx.new_pg_database().await?;
    let mut all: Vec<(&str, &str)> = vec![("Z4J_DATABASE_URL", &url), SECRETS[0], SECRETS[1]];
    all.extend_from_slice(env);
    let b = ctx.start(&all).await?;
    let mut locker = super::lock_users(ctx, &name).await?;
    let started = Instant::now();
    let status = client()
        .get(b.url("/api/v1/setup/status"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| format!("the request hung: {e}"))?
        .status()
        .as_u16();
    let took = started.elapsed();
    let _ = sqlx::query("ROLLBACK").execute(&mut locker).await;
    Ok((status, took))
}

pub async fn lock_timeout(ctx: Arc<Ctx>) -> R {
    let (status, took) = time_blocked_request(&ctx, &[]).await?;
    ensure(
        status >= 500,
        format!("status {status} while the lock was held"),
    )?;
    ensure(
        took >= Duration::from_millis(2500) && took <= ctx.scaled(6.0),
        format!("default lock_timeout 3000 ms: the request failed after {took:?}"),
    )?;
    let (status, took) = time_blocked_request(&ctx, &[("Z4J_DB_LOCK_TIMEOUT_MS", "300")]).await?;
    ensure(
        status >= 500,
        format!("status {status} while the lock was held"),
    )?;
    ensure(
        took >= Duration::from_millis(250) && took <= ctx.scaled(2.0),
        format!("lock_timeout 300 ms: the request failed after {took:?}"),
    )
}

pub async fn statement_timeout(ctx: Arc<Ctx>) -> R {
    // A long lock timeout leaves the statement timeout to end the wait.
    let (status, took) =
        time_blocked_request(&ctx, &[("Z4J_DB_LOCK_TIMEOUT_MS", "600000")]).await?;
    ensure(
        status >= 500,
        format!("status {status} while the lock was held"),
    )?;
    ensure(
        took >= Duration::from_millis(9500) && took <= ctx.scaled(16.0),
        format!("default statement_timeout 10000 ms: the request failed after {took:?}"),
    )?;
    let (status, took) = time_blocked_request(
        &ctx,
        &[
            ("Z4J_DB_LOCK_TIMEOUT_MS", "600000"),
            ("Z4J_DB_STATEMENT_TIMEOUT_MS", "500"),
        ],
    )
    .await?;
    ensure(
        status >= 500,
        format!("status {status} while the lock was held"),
    )?;
    ensure(
        took >= Duration::from_millis(450) && took <= ctx.scaled(3.0),
        format!("statement_timeout 500 ms: the request failed after {took:?}"),
    )
}

/// A server that accepts TCP and never answers: start-up gives up after the
/// connect timeout.
pub async fn connect_timeout(ctx: Arc<Ctx>) -> R {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let url = format!("postgresql+asyncpg://z4j@127.0.0.1:{port}/z4j");
    let measure = |env: Vec<(&'static str, String)>| {
        let ctx = ctx.clone();
        async move {
            let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let started = Instant::now();
            let (code, _, _b) = expect_refusal(&ctx, &pairs).await?;
            Ok::<_, String>((code, started.elapsed()))
        }
    };
    let base = vec![
        ("Z4J_DATABASE_URL", url.clone()),
        (SECRETS[0].0, SECRETS[0].1.to_owned()),
        (SECRETS[1].0, SECRETS[1].1.to_owned()),
    ];
    let (code, took) = measure(base.clone()).await?;
    ensure(code != 0, "exit 0 without a database")?;
    ensure(
        took >= Duration::from_secs(9) && took <= Duration::from_secs(10) + ctx.scaled(4.0),
        format!("default connect timeout 10 s: start-up gave up after {took:?}"),
    )?;
    let mut short = base;
    short.push(("Z4J_ASYNCPG_CONNECT_TIMEOUT", "2".into()));
    let (code, took) = measure(short).await?;
    holder.abort();
    ensure(code != 0, "exit 0 without a database")?;
    ensure(
        took >= Duration::from_millis(1800) && took <= ctx.scaled(8.0),
        format!("connect timeout 2 s: start-up gave up after {took:?}"),
    )
}

async fn brain_backend_ages(
    conn: &mut sqlx::PgConnection,
    db: &str,
) -> Result<Vec<(i32, f64)>, String> {
    sqlx::query_as::<_, (i32, f64)>(
        "SELECT pid, extract(epoch FROM now() - backend_start)::float8 FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid() \
         AND application_name NOT LIKE 'z4j-brain-registry-%'",
    )
    .bind(db)
    .fetch_all(conn)
    .await
    .map_err(|e| e.to_string())
}

/// Pooled connections are recycled after the configured lifetime (the
/// registry's LISTEN connection has its own max age, see registry.max-age).
pub async fn connection_lifetime(ctx: Arc<Ctx>) -> R {
    for (value, observe_secs) in [(Some("2"), 7u64), (None, 75)] {
        let (name, url) = ctx.new_pg_database().await?;
        let mut env: Vec<(&str, &str)> = vec![("Z4J_DATABASE_URL", &url), SECRETS[0], SECRETS[1]];
        if let Some(v) = value {
            env.push(("Z4J_DATABASE_MAX_INACTIVE_CONNECTION_LIFETIME_SECONDS", v));
        }
        let lifetime = value.map_or(60.0, |v| v.parse().unwrap_or(60.0));
        let b = ctx.start(&env).await?;
        let mut conn = pg_conn(&ctx, &name).await?;
        let mut pids = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(observe_secs);
        let mut oldest: f64 = 0.0;
        while Instant::now() < deadline {
            let _ = get_json(&b, "/api/v1/health/ready", None).await?;
            let ages = brain_backend_ages(&mut conn, &name).await?;
            for (pid, age) in &ages {
                pids.insert(*pid);
                oldest = oldest.max(*age);
            }
            tokio::time::sleep(Duration::from_millis(if value.is_some() {
                250
            } else {
                2000
            }))
            .await;
        }
        let slack = if value.is_some() { 3.0 } else { 8.0 } * ctx.tolerance;
        ensure(
            oldest <= lifetime + slack && oldest >= lifetime - slack,
            format!(
                "the oldest brain connection lived {oldest:.1} s with a {lifetime} s lifetime \
                 (want it recycled at that age, not before)"
            ),
        )?;
        ensure(
            pids.len() >= 2,
            format!("connections were never recycled (pids {pids:?})"),
        )?;
    }
    Ok(())
}

/// An unreachable database stops start-up with a line naming the problem.
pub async fn unreachable(ctx: Arc<Ctx>) -> R {
    let port = crate::brain::free_port();
    let url = format!("postgresql+asyncpg://z4j@127.0.0.1:{port}/z4j");
    let (code, err, _b) =
        expect_refusal(&ctx, &[("Z4J_DATABASE_URL", &url), SECRETS[0], SECRETS[1]]).await?;
    ensure(code != 0, "exit 0 with an unreachable database")?;
    ensure(
        err.contains(&port.to_string()) || err.to_lowercase().contains("connect"),
        format!("the refusal does not say what failed: {err}"),
    )
}

/// Size of the SQLite WAL file of a brain; `None` when there is none (a
/// TRUNCATE checkpoint leaves an empty file, closing the database removes it).
fn wal_size(b: &crate::brain::Brain) -> Option<u64> {
    std::fs::metadata(b.z4j_home().join("z4j.db-wal"))
        .ok()
        .map(|m| m.len())
}

/// Writes something (a failed setup attempt is recorded in the database).
async fn write_something(b: &crate::brain::Brain) -> R {
    for i in 0..3 {
        client()
            .post(b.url("/api/v1/setup/complete"))
            .json(&serde_json::json!({"token": format!("wrong-token-{i:04}"), "email": "a@example.com", "password": "Tr0ub4dor&3xyz"}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// SQLite: the WAL is truncated every interval (first pass one interval
/// after start): not before it, and by it plus slack.
async fn wal_truncated_after(ctx: &Ctx, value: Option<&str>, interval: u64) -> R {
    const CLOSED: &str = "the WAL file disappeared: the database was closed, not checkpointed";
    let env: Vec<(&str, &str)> = value
        .map(|v| vec![("Z4J_WAL_CHECKPOINT_INTERVAL_SECONDS", v)])
        .unwrap_or_default();
    let started = Instant::now();
    let b = ctx.start(&env).await?;
    write_something(&b).await?;
    ensure(
        wal_size(&b).is_some_and(|n| n > 0),
        "no WAL after writes: is the database in WAL mode?",
    )?;
    // Well before the first pass the WAL is still there.
    let early = Duration::from_secs(interval.saturating_sub(20));
    tokio::time::sleep(early.saturating_sub(started.elapsed())).await;
    match wal_size(&b) {
        Some(n) if n > 0 => {}
        Some(_) => {
            return Err(format!(
                "the WAL was truncated before the {interval} s interval elapsed"
            ))
        }
        None => return Err(CLOSED.into()),
    }
    let deadline = started + Duration::from_secs(interval) + ctx.scaled(15.0);
    loop {
        match wal_size(&b) {
            Some(0) => return Ok(()),
            None => return Err(CLOSED.into()),
            Some(_) if Instant::now() > deadline => {
                return Err(format!(
                    "the WAL was not truncated within {interval} s (+15 s)"
                ))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

pub async fn wal_checkpoint_configured(ctx: Arc<Ctx>) -> R {
    wal_truncated_after(&ctx, Some("60"), 60).await
}

pub async fn wal_checkpoint_default(ctx: Arc<Ctx>) -> R {
    wal_truncated_after(&ctx, None, 300).await
}
