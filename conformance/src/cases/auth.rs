//! Login and sessions (http-api 2): lockout, per-failure backoff, the
//! per-IP login bucket, a uniform response time (checked statistically),
//! idle and absolute session limits, remember-me, User-Agent pinning,
//! session-secret rotation, password rehash on login.

use super::{client, ensure, ensure_eq, owned, R};
use crate::agent::{self, Operator, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::brain::{Brain, StartSpec};
use crate::runner::Ctx;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One login attempt: status, body without `request_id`, wall time.
pub(super) async fn attempt(
    brain: &Brain,
    email: &str,
    password: &str,
    from: Option<&str>,
) -> Result<(u16, Json, Duration), String> {
    let mut req = client()
        .post(brain.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}));
    if let Some(ip) = from {
        req = req.header("x-forwarded-for", ip);
    }
    let started = Instant::now();
    let resp = req.send().await.map_err(|e| format!("login: {e}"))?;
    let status = resp.status().as_u16();
    let mut body: Json = resp.json().await.unwrap_or(Json::Null);
    let took = started.elapsed();
    if let Some(o) = body.as_object_mut() {
        o.remove("request_id");
    }
    Ok((status, body, took))
}

/// Lockout after `Z4J_LOGIN_LOCKOUT_THRESHOLD` failures for
/// `Z4J_LOGIN_LOCKOUT_DURATION_SECONDS`; the refusal is the same as for an
/// unknown account; a success resets the count.
pub async fn lockout(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_LOGIN_LOCKOUT_THRESHOLD", "3"),
        ("Z4J_LOGIN_LOCKOUT_DURATION_SECONDS", "60"),
        ("Z4J_LOGIN_BACKOFF_BASE_SECONDS", "0"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]);
    let brain = ctx.start(&env).await?;
    let (_, unknown, _) = attempt(&brain, "nobody@example.com", "x", None).await?;
    // Two failures, a success, two failures, a success: never locked.
    for round in 0..2 {
        for _ in 0..2 {
            attempt(&brain, ADMIN_EMAIL, "wrong-password", None).await?;
        }
        let (status, _, _) = attempt(&brain, ADMIN_EMAIL, ADMIN_PASSWORD, None).await?;
        ensure_eq(
            status,
            200,
            &format!("round {round}: a success resets the failure count"),
        )?;
    }
    for _ in 0..3 {
        attempt(&brain, ADMIN_EMAIL, "wrong-password", None).await?;
    }
    let locked_at = Instant::now();
    let (status, body, _) = attempt(&brain, ADMIN_EMAIL, ADMIN_PASSWORD, None).await?;
    ensure_eq(status, 401, "the right password while locked")?;
    ensure_eq(
        body,
        unknown,
        "a locked account answers like an unknown one",
    )?;
    // Still locked just before the duration ends, open after it.
    tokio::time::sleep(Duration::from_secs(50).saturating_sub(locked_at.elapsed())).await;
    let (status, _, _) = attempt(&brain, ADMIN_EMAIL, ADMIN_PASSWORD, None).await?;
    ensure_eq(status, 401, "still locked at 50 s of 60")?;
    // That refused attempt re-armed the lock: 60 s from now.
    let rearmed = Instant::now();
    tokio::time::sleep(Duration::from_secs(61).saturating_sub(rearmed.elapsed())).await;
    let (status, body, _) = attempt(&brain, ADMIN_EMAIL, ADMIN_PASSWORD, None).await?;
    ensure_eq(status, 200, &format!("unlocked after the duration: {body}"))
}

/// The k-th consecutive failure for one email waits
/// `min(max, base * 2^(k-1))` beyond the floor, for known and unknown
/// accounts alike; a success ends the streak.
pub async fn backoff(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_LOGIN_BACKOFF_BASE_SECONDS", "0.2"),
        ("Z4J_LOGIN_BACKOFF_MAX_SECONDS", "0.8"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "100"),
        ("Z4J_ARGON2_TIME_COST", "1"),
        ("Z4J_ARGON2_MEMORY_COST", "8192"),
        ("Z4J_ARGON2_PARALLELISM", "1"),
    ]);
    let brain = ctx.start(&env).await?;
    let floor = 0.1;
    let slack = ctx.scaled(0.35).as_secs_f64();
    let want = [0.2, 0.4, 0.8, 0.8];
    for email in ["ghost@example.com", ADMIN_EMAIL] {
        for (k, extra) in want.iter().enumerate() {
            let (status, _, took) = attempt(&brain, email, "wrong-password", None).await?;
            ensure_eq(status, 401, "failed login")?;
            let t = took.as_secs_f64();
            ensure(
                t >= floor + extra - 0.01 && t <= floor + extra + slack,
                format!(
                    "{email}: failure {} took {t:.3}s, want {:.1}s",
                    k + 1,
                    floor + extra
                ),
            )?;
        }
    }
    // Another email starts its own streak; a success resets the admin's.
    let (_, _, took) = attempt(&brain, "other@example.com", "x", None).await?;
    ensure(
        took.as_secs_f64() <= floor + 0.2 + slack,
        format!("a fresh email's first failure took {took:?}"),
    )?;
    let (status, _, _) = attempt(&brain, ADMIN_EMAIL, ADMIN_PASSWORD, None).await?;
    ensure_eq(status, 200, "success")?;
    let (_, _, took) = attempt(&brain, ADMIN_EMAIL, "wrong-password", None).await?;
    let t = took.as_secs_f64();
    ensure(
        t >= floor + 0.19 && t <= floor + 0.2 + slack,
        format!("after a success the next failure is back to the base: {t:.3}s"),
    )
}

/// 20 login attempts per address per rolling minute; the 21st is 429 with
/// `Retry-After`.
pub async fn login_bucket(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_LOGIN_BACKOFF_BASE_SECONDS", "0"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]);
    let brain = ctx.start(&env).await?;
    for i in 0..20 {
        let (status, _, _) = attempt(&brain, &format!("u{i}@example.com"), "x", None).await?;
        ensure_eq(status, 401, &format!("attempt {}", i + 1))?;
    }
    let resp = client()
        .post(brain.url("/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let retry: Option<u64> = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Json = resp.json().await.unwrap_or(Json::Null);
    ensure_eq(status, 429, &format!("21st attempt: {body}"))?;
    ensure(
        retry.is_some_and(|r| (1..=60).contains(&r)),
        format!("Retry-After in 1..=60: {retry:?}"),
    )?;
    ensure(
        body["detail"].as_str().is_some_and(|d| {
            d.starts_with("too many requests; retry in") && d.ends_with("(login)")
        }),
        format!("429 body names the bucket: {body}"),
    )
}

/// Two-sample Kolmogorov-Smirnov statistic.
fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `Z4J_LOGIN_MIN_DURATION_MS`: every answer takes at least the floor, and
/// the response times for an existing account (wrong password) and an
/// unknown one cannot be told apart (two-sample KS test, alpha = 0.001).
pub async fn uniform_timing(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_LOGIN_MIN_DURATION_MS", "400"),
        ("Z4J_LOGIN_BACKOFF_BASE_SECONDS", "0"),
        ("Z4J_LOGIN_LOCKOUT_THRESHOLD", "100"),
        ("Z4J_TRUSTED_PROXIES", "[\"127.0.0.1/32\", \"::1/128\"]"),
        ("Z4J_ARGON2_TIME_COST", "1"),
        ("Z4J_ARGON2_MEMORY_COST", "8192"),
        ("Z4J_ARGON2_PARALLELISM", "1"),
    ]);
    let brain = Arc::new(ctx.start(&env).await?);
    const N: usize = 48;
    // Interleaved, four at a time, each from its own (forwarded) address so
    // the per-IP bucket never interferes.
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for chunk in 0..(2 * N / 4) {
        let mut tasks = Vec::new();
        for k in 0..4 {
            let i = chunk * 4 + k;
            let brain = brain.clone();
            tasks.push(tokio::spawn(async move {
                let ip = format!("198.51.100.{}", i % 250 + 1);
                let is_known = i % 2 == 0;
                let email = if is_known {
                    ADMIN_EMAIL.to_owned()
                } else {
                    format!("nobody-{i}@example.com")
                };
                attempt(&brain, &email, "wrong-password", Some(&ip))
                    .await
                    .map(|(status, _, took)| (is_known, status, took))
            }));
        }
        for t in tasks {
            let (is_known, status, took) = t.await.map_err(|e| e.to_string())??;
            ensure_eq(status, 401, "failed login")?;
            let ms = took.as_secs_f64() * 1000.0;
            ensure(
                ms >= 400.0,
                format!("a login answered in {ms:.1} ms, under the 400 ms floor"),
            )?;
            if is_known {
                known.push(ms);
            } else {
                unknown.push(ms);
            }
        }
    }
    // A success is held to the floor too.
    let (status, _, took) =
        attempt(&brain, ADMIN_EMAIL, ADMIN_PASSWORD, Some("198.51.100.251")).await?;
    ensure(
        status == 200 && took >= Duration::from_millis(400),
        format!("successful login {status} in {took:?}"),
    )?;
    let d = ks_statistic(&known, &unknown);
    // Critical value at alpha = 0.001: 1.95 * sqrt((n + m) / (n m)).
    let n = known.len() as f64;
    let m = unknown.len() as f64;
    let critical = 1.95 * ((n + m) / (n * m)).sqrt();
    ensure(
        d < critical,
        format!(
            "existing vs unknown account response times differ: KS D = {d:.3} >= {critical:.3} \
             (medians {:.1} ms vs {:.1} ms)",
            median(&known),
            median(&unknown)
        ),
    )?;
    ensure(
        (median(&known) - median(&unknown)).abs() < 25.0,
        format!(
            "median response times differ by more than 25 ms: {:.1} vs {:.1}",
            median(&known),
            median(&unknown)
        ),
    )
}

/// `Z4J_LOG_LOGIN_EMAIL`: the attempted address is logged only when set.
pub async fn log_login_email(ctx: Arc<Ctx>) -> R {
    for (flag, want) in [("true", true), ("false", false)] {
        let mut env = agent::admin_env();
        env.extend_from_slice(&[
            ("Z4J_LOG_LOGIN_EMAIL", flag),
            ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
        ]);
        let brain = ctx.start(&env).await?;
        let probe = format!("probe-{flag}@example.com");
        attempt(&brain, &probe, "x", None).await?;
        // The pipe reader may lag the brain's write: the address gets 5 s to
        // show up, and its absence is judged after 1 s.
        let wait = Duration::from_millis(if want { 5_000 } else { 1_000 });
        ensure_eq(
            brain.wait_output(&probe, wait).await,
            want,
            &format!("Z4J_LOG_LOGIN_EMAIL={flag}: attempted email in the log"),
        )?;
    }
    Ok(())
}

pub(super) async fn me(brain: &Brain, op: &Operator, ua: Option<&str>) -> Result<u16, String> {
    let mut req = client()
        .get(brain.url("/api/v1/auth/me"))
        .header("cookie", &op.cookie);
    if let Some(ua) = ua {
        req = req.header("user-agent", ua);
    }
    Ok(req
        .send()
        .await
        .map_err(|e| e.to_string())?
        .status()
        .as_u16())
}

async fn login_remember(brain: &Brain) -> Result<Operator, String> {
    let resp = client()
        .post(brain.url("/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "remember_me": true}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq(resp.status().as_u16(), 200, "remember-me login")?;
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Operator {
        cookie,
        csrf: String::new(),
    })
}

/// Idle timeout, absolute lifetime and remember-me at their minimum (60 s).
pub async fn session_limits(ctx: Arc<Ctx>) -> R {
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_SESSION_IDLE_TIMEOUT_SECONDS", "60"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]);
    let idle_brain = ctx.start(&env).await?;
    let idle = agent::login(&idle_brain).await?;
    let remembered = login_remember(&idle_brain).await?;
    let mut env = agent::admin_env();
    env.extend_from_slice(&[
        ("Z4J_SESSION_ABSOLUTE_LIFETIME_SECONDS", "60"),
        ("Z4J_SESSION_IDLE_TIMEOUT_SECONDS", "3600"),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]);
    let abs_brain = ctx.start(&env).await?;
    let busy = agent::login(&abs_brain).await?;
    let started = Instant::now();
    ensure_eq(me(&idle_brain, &idle, None).await?, 200, "fresh session")?;
    // Busy every 15 s: still refused once 60 s passed since login.
    while started.elapsed() < Duration::from_secs(45) {
        ensure_eq(
            me(&abs_brain, &busy, None).await?,
            200,
            "inside the absolute lifetime",
        )?;
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    tokio::time::sleep(Duration::from_secs(62).saturating_sub(started.elapsed())).await;
    ensure_eq(
        me(&abs_brain, &busy, None).await?,
        401,
        "past the absolute lifetime, though busy",
    )?;
    ensure_eq(
        me(&idle_brain, &idle, None).await?,
        401,
        "idle for 62 s with a 60 s idle timeout",
    )?;
    ensure_eq(
        me(&idle_brain, &remembered, None).await?,
        200,
        "a remember-me session has no idle timeout",
    )
}

/// `Z4J_SESSION_PIN_USER_AGENT`: another User-Agent ends the session for
/// good; off by default.
pub async fn pin_user_agent(ctx: Arc<Ctx>) -> R {
    for (flag, pinned) in [("true", true), ("false", false)] {
        let mut env = agent::admin_env();
        env.extend_from_slice(&[
            ("Z4J_SESSION_PIN_USER_AGENT", flag),
            ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
        ]);
        let brain = ctx.start(&env).await?;
        let op = agent::login(&brain).await?;
        // The login carried reqwest's default (no) User-Agent.
        ensure_eq(me(&brain, &op, None).await?, 200, "same client")?;
        let other = me(&brain, &op, Some("curl/8.0")).await?;
        let back = me(&brain, &op, None).await?;
        let want = if pinned { (401, 401) } else { (200, 200) };
        ensure_eq(
            (other, back),
            want,
            &format!("pinning {flag}: other UA, then the original"),
        )?;
    }
    Ok(())
}

/// `Z4J_PREVIOUS_SESSION_SECRETS`: a cookie signed under the retired secret
/// is accepted while the secret is listed as previous, and refused after.
pub async fn session_secret_rotation(ctx: Arc<Ctx>) -> R {
    const OLD: &str = "old-session-secret-0123456789abcdef0123456789";
    const NEW: &str = "new-session-secret-0123456789abcdef0123456789";
    let (base, _) = ctx.pinned_database().await?;
    let with = |secret: &str, previous: Option<&str>| {
        let mut env: Vec<(String, String)> = base
            .iter()
            .filter(|(k, _)| k != "Z4J_SESSION_SECRET")
            .cloned()
            .collect();
        env.extend(owned(&agent::admin_env()));
        env.push(("Z4J_SESSION_SECRET".into(), secret.into()));
        if let Some(p) = previous {
            env.push(("Z4J_PREVIOUS_SESSION_SECRETS".into(), p.into()));
        }
        env
    };
    let brain = ctx
        .start_spec(StartSpec {
            env: with(OLD, None),
            ..Default::default()
        })
        .await?;
    let op = agent::login(&brain).await?;
    let home = brain.stop_keep_home().await;
    let brain = ctx
        .start_spec(StartSpec {
            env: with(NEW, Some(OLD)),
            home: Some(home),
            ..Default::default()
        })
        .await?;
    ensure_eq(
        me(&brain, &op, None).await?,
        200,
        "old cookie while OLD is a previous secret",
    )?;
    let fresh = agent::login(&brain).await?;
    let home = brain.stop_keep_home().await;
    let brain = ctx
        .start_spec(StartSpec {
            env: with(NEW, None),
            home: Some(home),
            ..Default::default()
        })
        .await?;
    ensure_eq(
        me(&brain, &op, None).await?,
        401,
        "old cookie after OLD is retired",
    )?;
    ensure_eq(
        me(&brain, &fresh, None).await?,
        200,
        "cookie signed with the current secret",
    )
}

async fn stored_hash(
    ctx: &Ctx,
    home: &crate::brain::Home,
    pg_name: Option<&str>,
) -> Result<String, String> {
    super::grey::connect(ctx, &home.path, pg_name)
        .await?
        .text("SELECT password_hash FROM users WHERE email = 'conformance-admin@example.com'")
        .await
}

/// `Z4J_ARGON2_*`: new hashes carry the configured cost; a stored hash is
/// upgraded on the next successful login after a cost increase, never
/// downgraded.
pub async fn rehash_on_login(ctx: Arc<Ctx>) -> R {
    let (base, pg_name) = ctx.pinned_database().await?;
    let with = |t: &str, m: &str| {
        let mut env = base.clone();
        env.extend(owned(&agent::admin_env()));
        env.extend(owned(&[
            ("Z4J_ARGON2_TIME_COST", t),
            ("Z4J_ARGON2_MEMORY_COST", m),
            ("Z4J_ARGON2_PARALLELISM", "1"),
            ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
        ]));
        env
    };
    let mut home = None;
    for (t, m, login, want) in [
        ("1", "8192", false, "$argon2id$v=19$m=8192,t=1,p=1$"),
        ("2", "9216", true, "$argon2id$v=19$m=9216,t=2,p=1$"),
        ("1", "8192", true, "$argon2id$v=19$m=9216,t=2,p=1$"),
    ] {
        let brain = ctx
            .start_spec(StartSpec {
                env: with(t, m),
                home: home.take(),
                ..Default::default()
            })
            .await?;
        if login {
            agent::login(&brain).await?;
        }
        let h = brain.stop_keep_home().await;
        let stored = stored_hash(&ctx, &h, pg_name.as_deref()).await?;
        ensure(
            stored.starts_with(want),
            format!("t={t} m={m}: stored hash {stored:.40}..., want prefix {want}"),
        )?;
        home = Some(h);
    }
    // The documented costs, with the variables unset: a fresh hash on a
    // fresh database carries m=65536, t=3, p=4.
    let (env, pg_name) = ctx.pinned_admin_env(&[]).await?;
    let brain = ctx.start_env(env, None).await?;
    let h = brain.stop_keep_home().await;
    let stored = stored_hash(&ctx, &h, pg_name.as_deref()).await?;
    let want = "$argon2id$v=19$m=65536,t=3,p=4$";
    ensure(
        stored.starts_with(want),
        format!("costs unset: stored hash {stored:.40}..., want prefix {want}"),
    )
}
