//! Configuration: refusals that name the variable, typo warnings,
//! precedence of the sources, an unusable home.

use super::{ensure, expect_refusal, R};
use crate::brain::free_port;
use crate::runner::Ctx;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

/// Each bad value stops start-up with a line naming the variable, exits
/// non-zero and writes nothing.
pub async fn bad_values(ctx: Arc<Ctx>) -> R {
    let cases: &[(&str, &str)] = &[
        ("Z4J_BIND_PORT", "70000"),
        ("Z4J_BIND_PORT", "seven"),
        ("Z4J_PUBLIC_URL", "http://z4j.example.com"),
        ("Z4J_PUBLIC_URL", "https://user:pw@z4j.example.com"),
        ("Z4J_PUBLIC_URL", "https://z4j example.com"),
        ("Z4J_PUBLIC_URL", "ftp://z4j.example.com"),
        ("Z4J_SESSION_COOKIE_SAMESITE", "none"),
        ("Z4J_MFA_ENROLLMENT_GRACE_DAYS", "0"),
        ("Z4J_MFA_ENROLLMENT_GRACE_DAYS", "91"),
        ("Z4J_MFA_RECOVERY_CODE_COUNT", "4"),
        ("Z4J_MFA_RECOVERY_CODE_COUNT", "51"),
        ("Z4J_MFA_REMEMBER_DEVICE_DAYS", "91"),
        ("Z4J_FIRST_BOOT_TOKEN_TTL_SECONDS", "59"),
        ("Z4J_FIRST_BOOT_ATTEMPTS_PER_IP", "101"),
        ("Z4J_METRICS_PUBLIC", "perhaps"),
        ("Z4J_ALLOWED_HOSTS", "a.example.com,b.example.com"),
        ("Z4J_TRUSTED_PROXIES", "[\"10.0.0.0/33\"]"),
        ("Z4J_SECRET", "too-short"),
        // A database URL is a secret (it carries the password): a mistyped
        // one, one with credentials before "://" (a fuzz finding), an
        // unsupported scheme's and one with a bad port are refused without
        // being printed back.
        (
            "Z4J_DATABASE_URL",
            "postgresql+asyncpg:/z4j:s3cret-db-pw@db.example.com/z4j",
        ),
        ("Z4J_DATABASE_URL", "z4j:s3cret-db-pw@db.example.com://z4j"),
        (
            "Z4J_DATABASE_URL",
            "mysql://z4j:s3cret-db-pw@db.example.com/z4j",
        ),
        (
            "Z4J_DATABASE_URL",
            "postgresql+asyncpg://z4j:s3cret-db-pw@db.example.com:port/z4j",
        ),
    ];
    // What of a value is secret and must not appear in the refusal.
    let secret_of = |var: &str, value: &'static str| match var {
        "Z4J_SECRET" => Some(value),
        "Z4J_DATABASE_URL" => Some("s3cret-db-pw"),
        _ => None,
    };
    // Each value is judged on its own clause; the case goes on after a miss.
    let clause_of = |var: &str| match var {
        "Z4J_BIND_PORT"
        | "Z4J_METRICS_PUBLIC"
        | "Z4J_ALLOWED_HOSTS"
        | "Z4J_TRUSTED_PROXIES"
        | "Z4J_SECRET"
        | "Z4J_DATABASE_URL" => "config.bad-value-refused".to_owned(),
        other => other.to_owned(),
    };
    for (var, value) in cases {
        // Production posture said explicitly: an http public URL is refused
        // there, and the reference's SQLite CLI picks `dev` by itself.
        let env = [(*var, *value), ("Z4J_ENVIRONMENT", "production")];
        let clause = clause_of(var);
        // An http public URL is judged without the target's opt-in.
        let observe: &[&'static str] = if *var == "Z4J_PUBLIC_URL" {
            &["Z4J_ALLOW_HTTP_PUBLIC_URL"]
        } else {
            &[]
        };
        let (code, err, b) = match super::expect_refusal_observing(&ctx, &env, observe).await {
            Ok(r) => r,
            Err(e) => {
                ctx.fail_clause(&clause, format!("{var}={value}: {}", first_line(&e)));
                continue;
            }
        };
        // Named as the variable or as its settings field (`bind_port`).
        let field = var.trim_start_matches("Z4J_").to_lowercase();
        let problem = if code == 0 {
            Some(format!("{var}={value}: exit status 0"))
        } else if !err.contains(var) && !err.contains(&field) {
            Some(format!(
                "{var}={value}: the refusal does not name the variable: {err}"
            ))
        } else {
            secret_of(var, value)
                .filter(|s| err.contains(s))
                .map(|secret| format!("{var}: the refusal echoed a secret ({secret})"))
        };
        // "Writes nothing" is the refusal clause's, whichever variable.
        if b.z4j_home().join("secret.env").exists() {
            ctx.fail_clause(
                "config.bad-value-refused",
                format!("{var}={value}: secret.env was written by a refused start"),
            );
        }
        if let Some(p) = problem {
            ctx.fail_clause(&clause, p);
        }
    }
    // The forms operators write are accepted, and http is allowed with the
    // escape hatch.
    let b = ctx
        .start(&[
            ("Z4J_METRICS_PUBLIC", "yes"),
            ("Z4J_PUBLIC_URL", "http://z4j.example.com"),
            ("Z4J_ALLOW_HTTP_PUBLIC_URL", "1"),
            ("Z4J_ALLOWED_HOSTS", "[\"z4j.example.com\"]"),
            ("Z4J_TRUSTED_PROXIES", "[\"10.0.0.0/8\", \"127.0.0.1\"]"),
        ])
        .await?;
    drop(b);
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

pub async fn unknown_variable(ctx: Arc<Ctx>) -> R {
    let mut b = ctx.start(&[("Z4J_BIND_PROT", "7701")]).await?;
    b.stop().await;
    let err = b.output();
    ensure(
        err.contains("Z4J_BIND_PROT"),
        format!("no warning names the unknown variable: {err}"),
    )
}

/// Environment beats ~/.z4j/config.env, which beats the default. With
/// `Z4J_HOME` unset the file is read from the documented default home.
pub async fn precedence(ctx: Arc<Ctx>) -> R {
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let z4j = home.path().join(".z4j");
    std::fs::create_dir_all(&z4j).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&z4j, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    let file_port = free_port();
    std::fs::write(
        z4j.join("config.env"),
        format!("# conformance\nZ4J_BIND_HOST=127.0.0.1\nZ4J_BIND_PORT={file_port}\n"),
    )
    .map_err(|e| e.to_string())?;
    // config.env alone decides the port.
    let mut spec = crate::brain::StartSpec {
        default_bind: true,
        home: Some(crate::brain::Home::at(home.path().to_owned())),
        expect_exit: true,
        ..Default::default()
    };
    let b = ctx.start_spec(spec.clone()).await?;
    let url = format!("http://127.0.0.1:{file_port}/api/v1/health");
    let answered = wait_for(&url, ctx.scaled(20.0)).await;
    drop(b);
    ensure(
        answered,
        format!("the brain did not listen on the config.env port {file_port}"),
    )?;
    // The environment overrides it.
    let env_port = free_port();
    spec.env
        .push(("Z4J_BIND_PORT".into(), env_port.to_string()));
    let b = ctx.start_spec(spec).await?;
    let answered = wait_for(
        &format!("http://127.0.0.1:{env_port}/api/v1/health"),
        ctx.scaled(20.0),
    )
    .await;
    drop(b);
    ensure(
        answered,
        format!("the environment's port {env_port} did not win over config.env"),
    )
}

async fn wait_for(url: &str, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if super::client()
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    false
}

/// A home that cannot be created stops start-up with a line naming it.
pub async fn unwritable_home(ctx: Arc<Ctx>) -> R {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").map_err(|e| e.to_string())?;
    let home = blocker.join("z4j-home");
    let home_s = home.display().to_string();
    let (code, err, _b) = expect_refusal(&ctx, &[("Z4J_HOME", &home_s)]).await?;
    ensure(code != 0, "exit 0 with an unusable Z4J_HOME")?;
    ensure(
        err.contains(&home_s),
        format!("the refusal does not name the path: {err}"),
    )?;
    let lines = err.lines().filter(|l| !l.trim().is_empty()).count();
    ensure(
        lines <= 3,
        format!("a short refusal, not a trace ({lines} lines): {err}"),
    )
}

/// Z4J_HOME moves ~/.z4j: the secret store lands there, not in $HOME.
pub async fn home_moves(ctx: Arc<Ctx>) -> R {
    let elsewhere = tempfile::tempdir().map_err(|e| e.to_string())?;
    let custom = elsewhere.path().join("z4j-home");
    let b = ctx
        .start(&[("Z4J_HOME", &custom.display().to_string())])
        .await?;
    // On SQLite the secret store is minted there; on PostgreSQL nothing
    // must be minted (replicas share secrets), so only the database file
    // location and the absence of ~/.z4j say anything.
    if ctx.db == crate::runner::Database::Sqlite {
        ensure(
            custom.join("secret.env").is_file() && custom.join("z4j.db").is_file(),
            "no secret.env and z4j.db under Z4J_HOME",
        )?;
    }
    ensure(
        !b.z4j_home().exists(),
        "~/.z4j was created although Z4J_HOME moves it",
    )
}
