//! Configuration: refusals that name the variable, typo warnings,
//! precedence of the sources, an unusable home.

use super::{ensure, ensure_eq, expect_refusal, R};
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
    ];
    for (var, value) in cases {
        let (code, err, b) = expect_refusal(&ctx, &[(var, value)]).await?;
        ensure(code != 0, format!("{var}={value}: exit status 0"))?;
        ensure(
            err.contains(var),
            format!("{var}={value}: the refusal does not name the variable: {err}"),
        )?;
        if *var == "Z4J_SECRET" {
            ensure(!err.contains(value), "the refusal echoed a secret value")?;
        }
        ensure(
            !b.z4j_home().join("secret.env").exists(),
            format!("{var}={value}: secret.env was written by a refused start"),
        )?;
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

pub async fn unknown_variable(ctx: Arc<Ctx>) -> R {
    let mut b = ctx.start(&[("Z4J_BIND_PROT", "7701")]).await?;
    b.stop().await;
    let err = b.stderr.text();
    ensure(
        err.contains("Z4J_BIND_PROT"),
        format!("no warning names the unknown variable: {err}"),
    )
}

/// Environment beats ~/.z4j/config.env, which beats the default.
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
    ensure_eq(
        err.trim().lines().count() <= 3,
        true,
        "a short refusal, not a trace",
    )
}

/// Z4J_HOME moves ~/.z4j: the secret store lands there, not in $HOME.
pub async fn home_moves(ctx: Arc<Ctx>) -> R {
    let elsewhere = tempfile::tempdir().map_err(|e| e.to_string())?;
    let custom = elsewhere.path().join("z4j-home");
    let b = ctx
        .start(&[("Z4J_HOME", &custom.display().to_string())])
        .await?;
    ensure(
        custom.join("secret.env").is_file(),
        "no secret.env under Z4J_HOME",
    )?;
    ensure(
        !b.z4j_home().exists(),
        "~/.z4j was created although Z4J_HOME moves it",
    )
}
